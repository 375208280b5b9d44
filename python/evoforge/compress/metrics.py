"""Perplexity of a model on a text, and of a compression result's variants (dense, uniform, the
baselines, the search's) on the same tokens."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from .._checks import INT_MAX, check_int
from ..errors import ConfigError
from .result import CompressionResult, variant
from .tokens import check_tokens, vocab_size

__all__ = ["compare_perplexity", "perplexity", "text_ids"]


def perplexity(model: Any, ids: torch.Tensor, *, window: int = 512, max_windows: int | None = None) -> float:
    """Perplexity over non-overlapping windows of ``window`` tokens (>= 2) of a 1-D token sequence
    ``ids`` (integer tensor, ids within the model's vocabulary), at most ``max_windows`` of them."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a causal LM), got {type(model).__name__}")
    p = next(model.parameters(), None)
    if p is None:
        raise ConfigError(f"model {type(model).__name__} has no parameters (not a causal LM)")
    ids = check_tokens(ids, "ids", vocab=vocab_size(model), ndim=1)
    window = check_int(window, "window", 2, INT_MAX)
    n = ids.numel() // window
    if max_windows is not None:
        n = min(n, check_int(max_windows, "max_windows", 1))
    if n < 1:
        raise ConfigError(f"the text has {ids.numel()} tokens, fewer than one window of {window}")
    dev = p.device
    nll, count = 0.0, 0
    with torch.inference_mode():
        for w in range(n):
            x = ids[w * window:(w + 1) * window][None, :].to(dev)
            logits = model(input_ids=x, use_cache=False).logits.float()
            lp = torch.log_softmax(logits[0, :-1], dim=-1)
            nll -= float(lp.gather(1, x[0, 1:, None]).sum())
            count += window - 1
    return math.exp(nll / count)


def text_ids(tokenizer: Any, path: str | os.PathLike) -> torch.Tensor:
    """The token ids of a whole UTF-8 text file (no special tokens), 1-D."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"text file not found: {str(p)!r}")
    if tokenizer is None:
        raise ConfigError("perplexity needs a tokenizer (the model directory has none)")
    text = p.read_text(encoding="utf-8", errors="replace")
    ids = tokenizer.encode(text, add_special_tokens=False) if hasattr(tokenizer, "encode") else tokenizer(text)
    return torch.tensor(list(ids), dtype=torch.long)


def compare_perplexity(result: CompressionResult, ids: torch.Tensor, *, window: int = 512,
                       max_windows: int | None = None) -> dict:
    """Perplexity of the dense, uniform and searched models (and the baselines) on ``ids``, stored
    in ``result.ppl``; the model is left dense."""
    adapter = result._adapter  # type: ignore[attr-defined]
    out = {"dense": perplexity(adapter.model, ids, window=window, max_windows=max_windows)}
    runs = [("uniform", result._initial), ("evoforge", result.genome)]  # type: ignore[attr-defined]
    runs += [(n, b["genome"]) for n, b in result.baselines.items()]
    for name, g in runs:
        with variant(result, g):
            out[name] = perplexity(adapter.model, ids, window=window, max_windows=max_windows)
    result.ppl = out
    return out
