"""The teacher of the KL fitness: the dense model's next-token distributions on the calibration
tokens (:func:`build_teacher`, on :func:`evoforge.kl.teacher_targets`), and the unfused torch KL
against it (:func:`kl_torch`, the reference's way, for benchmarks).

Devices: the dense forward runs on the model's device; each batch's logits are then prepared once
on the host by the C++ kernel and kept there (memory-mapped with a directory), so the teacher never
has to fit on a GPU; the fitness copies each minibatch's slice to the device
(:meth:`evoforge.kl.Teacher.to`). :func:`kl_torch` runs on the logits' device."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..kl import Teacher, teacher_targets, write_teacher_meta
from .adapters import ModelAdapter

__all__ = ["build_teacher", "kl_torch"]


def build_teacher(adapter: ModelAdapter, tokens: torch.Tensor, *, top_k: int | None, tail: bool, batch_size: int,
                  directory: Path | None) -> Teacher:
    """Teacher targets of the dense model (as it is now) for every token of ``tokens`` [N, S],
    prepared ``batch_size`` sequences at a time (no [N*S, V] logits at once) and, with ``directory``,
    written there as ``.npy`` files and memory-mapped back (reused when the model, tokens and
    settings are those of the teacher already there)."""
    key = hashlib.sha256(b"%s|%r|%r|%r" % (adapter.fingerprint().encode(), top_k, tail,
                                           tuple(tokens.shape))
                         + tokens.cpu().numpy().tobytes()).hexdigest()
    if directory is not None and (directory / "teacher.json").is_file():
        info = json.loads((directory / "teacher.json").read_text()).get("info", {})
        if info.get("key") == key:
            return Teacher.load(directory, mmap=True)
    if directory is not None:
        (directory / "teacher.json").unlink(missing_ok=True)  # the arrays are about to change
    arrays: dict[str, np.ndarray] = {}
    n_tok, row = tokens.numel(), 0
    with torch.inference_mode():
        for c0 in range(0, tokens.shape[0], batch_size):
            logits = adapter.logits(tokens[c0:c0 + batch_size])
            flat = logits.reshape(-1, logits.shape[-1]).float().cpu()
            part = teacher_targets(flat, top_k=top_k, tail=tail)
            del logits, flat
            fields = {n: getattr(part, n) for n in ("weights", "indices", "norm", "cross", "pivot", "tail")
                      if getattr(part, n) is not None}
            if not arrays:
                for n, a in fields.items():
                    shape = (n_tok,) + a.shape[1:]
                    arrays[n] = (np.empty(shape, a.dtype) if directory is None else
                                 np.lib.format.open_memmap(_mkdir(directory) / f"{n}.npy", mode="w+",
                                                           dtype=a.dtype, shape=shape))
            for n, a in fields.items():
                arrays[n][row:row + a.shape[0]] = a
            row += part.num_tokens
    V = int(adapter.config.vocab_size)
    if directory is None:
        return Teacher(arrays["weights"], arrays.get("indices"), arrays["norm"], arrays["cross"],
                       arrays["pivot"], V, arrays.get("tail"))
    for a in arrays.values():
        a.flush()
    del arrays
    write_teacher_meta(directory, vocab_size=V, num_tokens=n_tok, info={"key": key}, top_k=top_k, tail=tail)
    return Teacher.load(directory, mmap=True)


def _mkdir(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    return d


def kl_torch(t: Teacher, logits: torch.Tensor) -> torch.Tensor:
    """KL per token [T] (float64, on the logits' device) against ``t`` (numpy arrays, or tensors
    after :meth:`Teacher.to`) with torch's log_softmax (the unfused reference way)."""
    dev = logits.device

    def arr(a: Any) -> torch.Tensor:
        return (a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))).to(dev)

    lq = torch.log_softmax(logits.float(), dim=-1)
    if t.indices is None:
        p = arr(t.weights).float() / arr(t.norm).float()[:, None]
        return arr(t.cross) - (p * lq).sum(-1).double()
    idx = arr(t.indices).long()
    lqk = lq.gather(1, idx).double()
    pk = arr(t.weights).double() / arr(t.norm)[:, None]
    cross = arr(t.cross)
    if t.tail is None:
        return cross - (pk * (lqk - torch.logsumexp(lqk, dim=1, keepdim=True))).sum(-1)
    pt = arr(t.tail)
    # the student's tail from its own entries (1 - sum q_k cancels in float32)
    lqt = lq.scatter(1, idx, -torch.inf).logsumexp(dim=1).double()
    c = (1 - pt) * (cross + torch.log1p(-pt)) + torch.where(pt > 0, pt * torch.log(pt), torch.zeros_like(pt))
    tail_term = torch.where(pt > 0, pt * lqt, torch.zeros_like(pt))
    return c - (1 - pt) * (pk * lqk).sum(-1) - tail_term
