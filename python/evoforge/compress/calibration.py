"""Calibration tokens for building layer databases and measuring KL: from a text file, or sampled
from the dense model itself (no tokenizer and no data set needed).

Both return a ``torch.LongTensor`` of shape (n, length) on the CPU; the same arguments give the same
tokens.
"""

from __future__ import annotations

import inspect
import math
import os
from pathlib import Path
from typing import Any

import torch

from .._checks import INT_MAX, check_int
from ..errors import ConfigError

__all__ = ["sample_sequences", "tokens_from_text"]


def _count(x: Any, name: str) -> int:
    return check_int(x, name, 1, INT_MAX)


def _sizes(n: Any, length: Any) -> tuple[int, int]:
    """``n`` sequences of ``length`` tokens, at most 2**31 tokens in all (an absurd size is refused
    before anything is allocated or generated)."""
    n, length = _count(n, "n"), _count(length, "length")
    if n * length > 2**31:
        raise ConfigError(f"n x length must be at most 2**31 tokens, got {n} x {length}")
    return n, length


def _seed(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"seed must be an int, got {type(x).__name__}")
    return int(x)


def _device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def sample_sequences(
    model: Any,
    n: int,
    length: int,
    *,
    seed: int,
    bos_token_id: int = 1,
    temperature: float = 1.0,
    batch_size: int = 64,
) -> torch.Tensor:
    """``n`` sequences of ``length`` tokens sampled from the model's own next-token distribution.

    Each sequence starts with ``bos_token_id`` and continues by ancestral sampling (KV cache, no
    gradients); ``temperature = 0`` takes the argmax instead. Sequence i draws on its own CPU
    ``torch.Generator`` seeded from ``(seed, i)``, so the result depends only on ``seed``, n, length
    and the model's logits (not on ``batch_size``): the same on one machine, while another device may
    differ in the last bits of the logits and so in rare draws.

    Parameters
    ----------
    model : a Hugging Face causal LM (its KV cache is passed as ``cache`` or, before transformers
        5.x, ``past_key_values``), or a ``ModelAdapter``.
    n, length : int >= 1
        Number of sequences and tokens per sequence (BOS included).
    seed : int
    bos_token_id : int >= 0
    temperature : float >= 0
    batch_size : int >= 1
        Sequences generated together.

    Returns
    -------
    torch.LongTensor, shape (n, length), on the CPU.
    """
    model = getattr(model, "model", model) if not isinstance(model, torch.nn.Module) else model
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module or a ModelAdapter, got {type(model).__name__}")
    (n, length), batch_size = _sizes(n, length), _count(batch_size, "batch_size")
    seed = _seed(seed)
    if isinstance(bos_token_id, bool) or not isinstance(bos_token_id, int) or bos_token_id < 0:
        raise ConfigError(f"bos_token_id must be an int >= 0, got {bos_token_id!r}")
    temperature = float(temperature)
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise ConfigError(f"temperature must be a finite float >= 0, got {temperature}")
    dev = _device(model)
    # transformers >= 5.x names the KV cache ``cache``; older versions ``past_key_values``
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    # one generator per sequence, so the result does not depend on batch_size
    gens = [torch.Generator().manual_seed((seed * 0x9E3779B97F4A7C15 + i) % (1 << 63)) for i in range(n)]
    out = torch.empty((n, length), dtype=torch.long)
    out[:, 0] = bos_token_id
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b0 in range(0, n, batch_size):
                b1 = min(n, b0 + batch_size)
                ids = out[b0:b1, :1].to(dev)
                past: dict = {}
                for t in range(1, length):
                    res = model(input_ids=ids, use_cache=True, **past)
                    past = {cache_kw: getattr(res, cache_kw)}
                    logits = res.logits[:, -1].float().cpu()
                    if temperature == 0:
                        nxt = logits.argmax(dim=-1)
                    else:
                        probs = torch.softmax(logits / temperature, dim=-1)
                        nxt = torch.stack([torch.multinomial(probs[j], 1, generator=gens[b0 + j])[0]
                                           for j in range(b1 - b0)])
                    out[b0:b1, t] = nxt
                    ids = nxt[:, None].to(dev)
    finally:
        model.train(was_training)
    return out


def _encode(tokenizer: Any, text: str) -> list[int]:
    if hasattr(tokenizer, "encode"):
        try:
            ids = tokenizer.encode(text, add_special_tokens=False)
        except TypeError:
            ids = tokenizer.encode(text)
    elif callable(tokenizer):
        ids = tokenizer(text)
    else:
        raise TypeError(f"tokenizer must have .encode(text) or be callable, got {type(tokenizer).__name__}")
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def tokens_from_text(tokenizer: Any, path: str | os.PathLike, n: int, length: int, *, seed: int) -> torch.Tensor:
    """``n`` non-overlapping windows of ``length`` tokens from a UTF-8 text file.

    The whole file is tokenised once (no special tokens added) and cut into consecutive windows
    ``[i*length, (i+1)*length)``; ``n`` distinct windows are drawn at random (``seed``), in the
    order drawn.

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer (``encode(text, add_special_tokens=False)``) or any
        callable text -> list of ids.
    path : path of the text file.
    n, length : int >= 1
    seed : int

    Returns
    -------
    torch.LongTensor, shape (n, length).

    Raises
    ------
    FileNotFoundError
        The file does not exist (the message names it).
    ConfigError
        The file holds fewer than ``n`` windows of ``length`` tokens (the message says how many).
    """
    n, length = _sizes(n, length)
    seed = _seed(seed)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"calibration text file not found: {str(p)!r}")
    ids = _encode(tokenizer, p.read_text(encoding="utf-8", errors="replace"))
    windows = len(ids) // length
    if windows < n:
        raise ConfigError(
            f"{str(p)!r} has {len(ids)} tokens: {windows} windows of {length}, fewer than the {n} requested")
    t = torch.tensor(ids[: windows * length], dtype=torch.long).reshape(windows, length)
    pick = torch.randperm(windows, generator=torch.Generator().manual_seed(seed))[:n]
    return t[pick].clone()
