"""Experts to merge, made here: a short fine-tune of a base model on a text (no pair of fine-tunes
of one base ships on PyPI)."""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from .._checks import INT_MAX, check_int, check_real
from ..errors import ConfigError
from .merger import as_float32
from ..compress.calibration import _encode

__all__ = ["finetune"]


def finetune(model: nn.Module, text: str | os.PathLike, tokenizer: Any, *, steps: int = 200, lr: float = 1e-3,
             seq_len: int = 128, batch_size: int = 8, seed: int = 0, progress: bool = False) -> nn.Module:
    """A fine-tuned copy of ``model`` (float32): ``steps`` AdamW steps of next-token loss on random
    windows of ``text`` (a UTF-8 file), deterministic for a seed on one thread count."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(text, (str, os.PathLike)):  # open(3) would read (and close) file descriptor 3
        raise TypeError(f"text must be a path (str or os.PathLike), got {type(text).__name__}")
    steps, seed = check_int(steps, "steps", 1), check_int(seed, "seed", 0, 2**64 - 1)
    seq_len, batch_size = check_int(seq_len, "seq_len", 2), check_int(batch_size, "batch_size", 1, INT_MAX)
    if not check_real(lr, "lr") > 0:
        raise ConfigError(f"lr must be > 0, got {lr!r}")
    with open(text, encoding="utf-8", errors="replace") as f:
        ids = np.asarray(_encode(tokenizer, f.read()), dtype=np.int64)
    if len(ids) <= seq_len:
        raise ConfigError(f"{str(text)!r} has {len(ids)} tokens, fewer than one window of {seq_len}")
    student = as_float32(copy.deepcopy(model)).train()
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="fine-tune", leave=False)
    for _ in it:
        start = rng.integers(0, len(ids) - seq_len, size=batch_size)
        x = torch.from_numpy(np.stack([ids[s:s + seq_len] for s in start]))
        loss = student(input_ids=x, labels=x, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return student.eval()
