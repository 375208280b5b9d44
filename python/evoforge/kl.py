"""Fused KL-divergence fitness: KL(teacher || student) of next-token distributions.

EvoPress-style compression search scores a compressed model by the KL divergence from the dense
model's next-token distribution, averaged over calibration tokens. The reference computes two
``log_softmax`` over [T, V] and ``kl_div`` (several passes and two [T, V] temporaries); here the
teacher is prepared once (:func:`teacher_targets`) and each student row is swept once
(:func:`kl_divergence`): a running max and log-sum-exp of the student together with the
teacher-weighted sum of its logits, accumulated in float64 per 512-logit block (cpp/kl.cpp).

Teacher storage (full vocabulary): float16 *probabilities scaled by 2^15* (2 bytes per entry).
Scaled, float16 keeps 11 significant bits (relative error <= 2^-11) for every p >= 2^-39 and has no
``exp`` to undo in the hot loop, while float16 log-probabilities lose relative precision in p as
|log p| grows and cost an extra ``exp`` per entry. The log-probabilities themselves enter only
through the per-token term ``cross = sum p~ log p`` computed in float64 from the logits, so
``KL = cross - sum p~ log q`` needs one pass over the student, and ``KL(teacher || teacher) == 0``
up to rounding. Entries with p < ~2^-39 round to zero weight (their total mass is below V * 2^-39).

Top-K teacher (``top_k=K``): the indices of the K largest teacher logits (int32 [T, K],
descending, ties by index), the teacher's probabilities renormalised over those K (float32) and
its probability mass outside them (``tail``, float64 [T]; 8 bytes per kept logit in all). By
default the KL is over K + 1 bins: the K tokens with their full-vocabulary probabilities, and one
tail bin holding the rest of each distribution (the student's tail is its full softmax mass
outside the teacher's K, summed directly). This is a true KL between distributions (>= 0, 0 for
the teacher itself, a lower bound of the full-vocabulary KL) and penalises a student that moves
mass outside the teacher's top K. With ``tail=False`` both distributions are renormalised over
the K tokens instead, as EvoPress's top-K variant does (such mass then goes unseen).

Conventions: ``reduction="mean"`` averages per-token KL over tokens (torch's
``reduction="batchmean"``); ``"none"`` returns it per token. Student ``-inf`` (a masked logit) is
allowed: KL is +inf for a token where the teacher gives that entry positive weight, and the entry
is ignored otherwise. NaN or +inf in the student or the teacher raise ValueError naming the row.
Results do not depend on the thread count (each row is computed by one thread; rows are reduced
in a fixed order).

Devices: the kernels are CPU code. Student logits on another torch device (CUDA), or a teacher moved
there (:meth:`Teacher.to`), are scored by :func:`kl_divergence_torch`, the same formulas in torch on
that device (float64 accumulation, equal to the kernels within float32 rounding; the same errors),
so the logits never leave the device; it runs on CPU tensors too, which is how it is tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks
from ._native import core
from .errors import ConfigError

__all__ = ["Teacher", "kl_divergence", "kl_divergence_torch", "teacher_targets", "write_teacher_meta"]


@dataclass(frozen=True)
class Teacher:
    """What :func:`kl_divergence` needs of the teacher, computed once by :func:`teacher_targets`.

    Attributes
    ----------
    Arrays are numpy arrays (possibly memory-mapped), or torch tensors on a device after :meth:`to`.

    weights : float16 [T, V] (p * 2^15, full vocabulary) or float32 [T, K] (top K, renormalised)
    indices : int32 [T, K] for top K, else None
    norm : float64 [T], the sum of each weight row (the teacher distribution is weights / norm)
    cross : float64 [T], sum_i p~_i log p_i per token (the teacher's negative entropy)
    pivot : int32 [T], the teacher's argmax per token
    vocab_size : int, V
    tail : float64 [T] for top K with a tail bin: the teacher's mass outside its top K; else None
    """

    weights: np.ndarray
    indices: np.ndarray | None
    norm: np.ndarray
    cross: np.ndarray
    pivot: np.ndarray
    vocab_size: int
    tail: np.ndarray | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.norm.shape[0])

    @property
    def top_k(self) -> int | None:
        return None if self.indices is None else int(self.indices.shape[1])

    @property
    def nbytes(self) -> int:
        arrays = [self.weights, self.norm, self.cross, self.pivot]
        arrays += [a for a in (self.indices, self.tail) if a is not None]
        return int(sum(a.nbytes for a in arrays))

    def take(self, rows: Any) -> Teacher:
        """The teacher restricted to some tokens (e.g. a minibatch): rows as indices or a slice
        (on the arrays' device)."""
        if _checks.is_torch(self.norm):
            import torch

            sel = rows if isinstance(rows, slice) else torch.as_tensor(np.asarray(rows, dtype=np.int64),
                                                                       device=self.norm.device)

            def pick(a: Any) -> Any:
                return a[sel].contiguous()
        else:
            sel = rows if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)

            def pick(a: Any) -> Any:
                return np.ascontiguousarray(a[sel])
        return Teacher(pick(self.weights), None if self.indices is None else pick(self.indices), pick(self.norm),
                       pick(self.cross), pick(self.pivot), self.vocab_size,
                       None if self.tail is None else pick(self.tail))

    def to(self, device: Any) -> Teacher:
        """The teacher on a torch ``device``: itself (numpy, for the CPU kernels) for the CPU, else
        its arrays as torch tensors there (same dtypes), for :func:`kl_divergence_torch`."""
        import torch

        device = torch.device(device)
        if device.type == "cpu" and not _checks.is_torch(self.norm):
            return self
        return _on(self, device)

    def save(self, directory: Any, *, info: dict | None = None) -> None:
        """Write the arrays as ``.npy`` files into ``directory`` (created), for :meth:`load`;
        ``info`` (JSON-serialisable) is stored with them."""
        from pathlib import Path

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for n in _ARRAYS:
            if getattr(self, n) is not None:
                np.save(d / f"{n}.npy", getattr(self, n))
        write_teacher_meta(d, vocab_size=self.vocab_size, num_tokens=self.num_tokens, info=info,
                           top_k=self.top_k, tail=self.tail is not None)

    @classmethod
    def load(cls, directory: Any, *, mmap: bool = True) -> Teacher:
        """A teacher written by :meth:`save`; the arrays memory-mapped read-only when ``mmap``."""
        import json
        from pathlib import Path

        d = Path(directory)
        meta_path = d / "teacher.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no saved teacher in {str(d)!r} (teacher.json missing)")
        meta = json.loads(meta_path.read_text())
        names = [n for n in _ARRAYS if (d / f"{n}.npy").is_file()]
        arrays = {n: np.load(d / f"{n}.npy", mmap_mode="r" if mmap else None) for n in names}
        t = cls(arrays["weights"], arrays.get("indices"), arrays["norm"], arrays["cross"], arrays["pivot"],
                int(meta["vocab_size"]), arrays.get("tail"))
        if t.num_tokens != int(meta["num_tokens"]) or any(a.shape[0] != t.num_tokens for a in arrays.values()):
            raise ValueError(f"the teacher in {str(d)!r} is inconsistent (arrays of different lengths)")
        return t


_ARRAYS = ("weights", "indices", "norm", "cross", "pivot", "tail")


def write_teacher_meta(directory: Any, *, vocab_size: int, num_tokens: int, top_k: int | None, tail: bool,
                       info: dict | None = None) -> None:
    """Write ``teacher.json`` (last, atomically): it marks the ``.npy`` arrays in ``directory`` as a
    complete teacher for :meth:`Teacher.load`. Array files of another kind are removed first."""
    import json
    import os
    from pathlib import Path

    d = Path(directory)
    keep = {"weights", "norm", "cross", "pivot"} | ({"indices"} if top_k is not None else set()) \
        | ({"tail"} if top_k is not None and tail else set())
    for n in _ARRAYS:
        if n not in keep and (d / f"{n}.npy").is_file():
            (d / f"{n}.npy").unlink()
    meta = {"vocab_size": int(vocab_size), "num_tokens": int(num_tokens), "top_k": top_k,
            "tail": bool(tail and top_k is not None), "info": info or {}}
    (d / "teacher.json.tmp").write_text(json.dumps(meta))
    os.replace(d / "teacher.json.tmp", d / "teacher.json")


def _logits(x: Any, name: str, *, allow_f16: bool) -> tuple[np.ndarray, bool]:
    """(C-contiguous array, is_bf16): float32 kept, bfloat16 viewed as uint16, others converted."""
    if _checks.is_torch(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name} is on {x.device}; expected a CPU tensor")
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":
            import torch

            return np.ascontiguousarray(
                x.contiguous().view(torch.int16).numpy().view(np.uint16)
            ), True
        a = x.numpy()
    else:
        try:
            a = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise TypeError(
                f"{name} must be a numeric array, got {type(x).__name__}: {exc}"
            ) from None
    if a.dtype.name == "bfloat16":  # ml_dtypes
        return np.ascontiguousarray(a).view(np.uint16), True
    if a.dtype == np.float32:
        return np.ascontiguousarray(a), False
    if a.dtype == np.float64 or (allow_f16 and a.dtype == np.float16):
        return np.ascontiguousarray(a, dtype=np.float32), False
    raise TypeError(f"{name} must be float32, bfloat16 or float16, got dtype {a.dtype}")


def teacher_targets(teacher_logits: Any, *, top_k: int | None = None, tail: bool = True) -> Teacher:
    """Prepare the teacher's next-token distributions once, for :func:`kl_divergence`.

    Parameters
    ----------
    teacher_logits : numpy array or CPU torch tensor [T, V], float32, bfloat16 or float16
        (float16 and float64 are converted to float32). ``-inf`` masks an entry; NaN, +inf or a row
        of only ``-inf`` raise ValueError.
    top_k : int in [1, V], optional
        Keep only the K largest logits per token.
    tail : bool
        With ``top_k``: KL over the K tokens plus one bin for the rest (default), or, when False,
        over the K tokens renormalised (EvoPress's variant). Ignored without ``top_k``.

    Returns
    -------
    Teacher (2 bytes per logit for the full vocabulary; 8 bytes per kept logit for top K).
    """
    a, bf16 = _logits(teacher_logits, "teacher_logits", allow_f16=True)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(
            f"teacher_logits must be 2-D [T, V] with T, V >= 1, got shape {a.shape}"
        )
    V = int(a.shape[1])
    if top_k is None:
        fn = core.kl_teacher_full_bf16 if bf16 else core.kl_teacher_full_f32
        w, norm, cross, pivot = fn(a)
        return Teacher(w.view(np.float16), None, norm, cross, pivot, V)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise TypeError(f"top_k must be an int or None, got {type(top_k).__name__}")
    if not 1 <= top_k <= V:
        raise ConfigError(f"top_k must lie in [1, V={V}], got {top_k}")
    fn = core.kl_teacher_topk_bf16 if bf16 else core.kl_teacher_topk_f32
    idx, w, norm, cross, rest = fn(a, int(top_k))
    return Teacher(w, idx, norm, cross, np.ascontiguousarray(idx[:, 0]), V, rest if tail else None)


def _reject_nonfinite(flat: np.ndarray, bf16: bool, rows: np.ndarray, T: int) -> None:
    """ValueError, worded as the kernels', for the first NaN or +inf in ``rows`` of the student
    logits [R, V]."""
    sub = flat[rows]
    # One cheap pass finds the candidate rows: a float row's max is NaN or +inf exactly when it holds
    # one; bfloat16 bits reach the all-ones exponent in magnitude (-inf too, sorted out below).
    cand = (sub & 0x7FFF).max(axis=1) >= 0x7F80 if bf16 else ~(sub.max(axis=1) < np.inf)
    for j in np.flatnonzero(cand):
        x = (sub[j].astype(np.uint32) << 16).view(np.float32) if bf16 else sub[j]
        bad = np.isnan(x) | (x == np.inf)
        if bad.any():
            r, col = int(rows[j]), int(np.argmax(bad))
            what = "NaN" if np.isnan(x[col]) else "+inf"
            raise ValueError(f"student logits hold {what} at row {r} (candidate {r // T}, token {r % T}), "
                             f"column {col}")


def kl_divergence(
    teacher: Teacher,
    student_logits: Any,
    *,
    reduction: str = "mean",
    _force_scalar: bool = False,
) -> Any:
    """KL(teacher || student) per token, one fused pass over each student row.

    Parameters
    ----------
    teacher : Teacher from :func:`teacher_targets` (T tokens, V vocabulary)
    student_logits : numpy array or CPU torch tensor, float32 or bfloat16 (float16/float64 are
        converted to float32, a copy), shape [T, V], or [B, T, V] for B candidates against one teacher.
        A tensor on another device (or a teacher moved with :meth:`Teacher.to`) goes to
        :func:`kl_divergence_torch`, on that device.
    reduction : "mean" (average over tokens) or "none" (per token)

    Returns
    -------
    [T, V] input: float ("mean") or float64 array [T] ("none").
    [B, T, V] input: float64 array [B] ("mean") or [B, T] ("none").

    Raises
    ------
    ValueError for NaN or +inf in the student logits that the KL reads (naming the row and column):
    every logit with a full-vocabulary teacher or a top-K teacher with its tail bin, the top K
    alone without it; ``-inf`` is allowed (see the module docstring).
    """
    if not isinstance(teacher, Teacher):
        raise TypeError(
            f"teacher must be a Teacher from teacher_targets(), got {type(teacher).__name__}"
        )
    if reduction not in ("mean", "none"):
        raise ConfigError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if _checks.is_torch(teacher.norm) or (_checks.is_torch(student_logits) and student_logits.device.type != "cpu"):
        return kl_divergence_torch(teacher, student_logits, reduction=reduction)
    s, bf16 = _logits(student_logits, "student_logits", allow_f16=True)
    T, V = teacher.num_tokens, teacher.vocab_size
    if s.ndim not in (2, 3) or s.shape[-2:] != (T, V):
        raise ValueError(
            f"student_logits must have shape [T={T}, V={V}] or [B, {T}, {V}], got {s.shape}"
        )
    batched = s.ndim == 3
    B = s.shape[0] if batched else 1
    flat = s.reshape(B * T, V)
    if teacher.indices is None:
        fn = core.kl_full_bf16 if bf16 else core.kl_full_f32
        out = fn(
            teacher.weights.view(np.uint16),
            teacher.norm,
            teacher.cross,
            teacher.pivot,
            flat,
            force_scalar=_force_scalar,
        )
    elif teacher.tail is not None:
        fn = core.kl_topk_tail_bf16 if bf16 else core.kl_topk_tail_f32
        out = fn(teacher.indices, teacher.weights, teacher.norm, teacher.cross, teacher.tail, flat,
                 force_scalar=_force_scalar)
    else:
        fn = core.kl_topk_bf16 if bf16 else core.kl_topk_f32
        out = fn(teacher.indices, teacher.weights, teacher.norm, teacher.cross, flat)
    # The kernels raise for a row whose KL comes out NaN; with a top-K teacher a +inf logit that
    # is read gives KL = +inf instead, so only those rows are scanned (no full pass in the hot
    # path). Without a tail bin, logits outside the teacher's top K are never read.
    if teacher.indices is not None:
        _reject_nonfinite(flat, bf16, np.flatnonzero(out == np.inf), T)
    out = out.reshape(B, T)
    if reduction == "none":
        return out if batched else out[0]
    means = out.mean(axis=1)
    return means if batched else float(means[0])


# ---- torch, on any device ----------------------------------------------------------------------

_CHUNK = 1 << 23  # logits per float64 pass of kl_divergence_torch (64 MiB temporaries)


def _tensor(a: Any, device: Any) -> Any:
    import torch

    if _checks.is_torch(a):
        return a.to(device)
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def _on(t: Teacher, device: Any) -> Teacher:
    """``t`` with its arrays as torch tensors on ``device``."""
    return Teacher(*(None if a is None else _tensor(a, device) for a in (t.weights, t.indices, t.norm, t.cross,
                                                                          t.pivot)),
                   t.vocab_size, None if t.tail is None else _tensor(t.tail, device))


def kl_divergence_torch(teacher: Teacher, student_logits: Any, *, reduction: str = "mean") -> Any:
    """:func:`kl_divergence` in torch, on the student's device (CPU or CUDA): the same formulas
    with float64 accumulation, rows in chunks of at most ``2**23`` logits; the teacher's arrays
    are moved there (a no-op after :meth:`Teacher.to`). Equal to the CPU kernels within float32
    rounding of the logits; the same shapes, conventions and errors (NaN or +inf in a logit the KL
    reads: ValueError naming the row and column).

    Parameters
    ----------
    teacher : Teacher (numpy arrays or torch tensors)
    student_logits : torch.Tensor [T, V] or [B, T, V], float32, bfloat16, float16 or float64 (used
        as float32, as the kernels do), on any device
    reduction : "mean" or "none"

    Returns
    -------
    As :func:`kl_divergence`: float or float64 numpy array [T] / [B] / [B, T] (on the host).
    """
    import torch

    if not isinstance(teacher, Teacher):
        raise TypeError(f"teacher must be a Teacher from teacher_targets(), got {type(teacher).__name__}")
    if reduction not in ("mean", "none"):
        raise ConfigError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    _checks.check_tensor(student_logits, "student_logits", dtype="float")  # a torch.Tensor on the CPU or CUDA
    T, V = teacher.num_tokens, teacher.vocab_size
    x = student_logits.detach()
    if x.dim() not in (2, 3) or tuple(x.shape[-2:]) != (T, V):
        raise ValueError(f"student_logits must have shape [T={T}, V={V}] or [B, {T}, {V}], got {tuple(x.shape)}")
    batched = x.dim() == 3
    B = x.shape[0] if batched else 1
    flat = x.reshape(B * T, V)
    dev = flat.device
    t = teacher if _checks.is_torch(teacher.norm) and teacher.norm.device == dev else _on(teacher, dev)
    out = torch.empty(B * T, dtype=torch.float64, device=dev)
    step = max(1, _CHUNK // max(1, V))
    for r0 in range(0, B * T, step):
        r1 = min(B * T, r0 + step)
        rows = torch.arange(r0, r1, device=dev) % T
        out[r0:r1] = _kl_rows(t, flat[r0:r1].float(), rows)
    bad = torch.nonzero(torch.isnan(out) | (out == torch.inf)).reshape(-1)
    if bad.numel():
        _reject_nonfinite_torch(t, flat, bad, T)
    res = out.reshape(B, T).cpu().numpy()
    if reduction == "none":
        return res if batched else res[0]
    means = res.mean(axis=1)
    return means if batched else float(means[0])


def _kl_rows(t: Teacher, x: Any, rows: Any) -> Any:
    """KL per row [n] (float64) of float32 student logits ``x`` [n, V] against teacher rows ``rows``."""
    import torch

    cross = t.cross[rows]
    # a row of only -inf puts no mass where the teacher has some: KL +inf, as the kernels give
    dead = torch.isneginf(x.amax(dim=1))
    if dead.any():
        x = torch.where(dead[:, None], torch.zeros((), dtype=x.dtype, device=x.device), x)
        return torch.where(dead, torch.inf, _kl_rows(t, x, rows))
    if t.indices is None:  # KL = cross - sum_i p~_i (x_i - m) + log sum_i exp(x_i - m)
        w = t.weights[rows].double()
        d = (x - x.amax(dim=1, keepdim=True)).double()
        s = torch.where(w > 0, w * d, torch.zeros((), dtype=d.dtype, device=d.device)).sum(1)
        return cross - s / t.norm[rows] + d.exp().sum(1).log()
    idx = t.indices[rows].long()
    pk = t.weights[rows].double() / t.norm[rows][:, None]
    zero = torch.zeros((), dtype=torch.float64, device=x.device)
    if t.tail is None:  # both renormalised over the teacher's K tokens: only those logits are read
        xk = x.gather(1, idx).double()
        # all K logits -inf: no student mass where the teacher has some, KL +inf (not -inf - -inf = NaN)
        dead_k = torch.isneginf(xk.amax(dim=1))
        xk = torch.where(dead_k[:, None], zero, xk)
        lqk = xk - torch.logsumexp(xk, dim=1, keepdim=True)
        return torch.where(dead_k, torch.inf, cross - torch.where(pk > 0, pk * lqk, zero).sum(1))
    d = (x - x.amax(dim=1, keepdim=True)).double()
    lq = d - d.exp().sum(1, keepdim=True).log()
    lqk = lq.gather(1, idx)
    lqt = lq.scatter(1, idx, -torch.inf).logsumexp(dim=1)  # the student's mass outside the teacher's K
    pt = t.tail[rows]
    c = (1 - pt) * (cross + torch.log1p(-pt)) + torch.where(pt > 0, pt * torch.log(pt), zero)
    return c - (1 - pt) * torch.where(pk > 0, pk * lqk, zero).sum(1) - torch.where(pt > 0, pt * lqt, zero)


def _reject_nonfinite_torch(t: Teacher, flat: Any, bad: Any, T: int) -> None:
    """ValueError, worded as the kernels', for the first NaN or +inf the KL reads in the rows
    ``bad`` (whose KL is NaN or +inf) of the student logits [R, V]; a row that holds none (a
    ``-inf`` logit where the teacher has weight) keeps its +inf."""
    import torch

    for r in bad.tolist():
        x = flat[r].float()
        if t.indices is not None and t.tail is None:
            cols = t.indices[r % T].long()
            hit = torch.isnan(x[cols]) | (x[cols] == torch.inf)
            cols = cols[hit]
        else:
            cols = torch.nonzero(torch.isnan(x) | (x == torch.inf)).reshape(-1)
        if cols.numel():
            col = int(cols.min()) if t.indices is None or t.tail is not None else int(cols[0])
            what = "NaN" if bool(torch.isnan(x[col])) else "+inf"
            raise ValueError(f"student logits hold {what} at row {r} (candidate {r // T}, token {r % T}), "
                             f"column {col}")
