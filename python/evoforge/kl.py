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
descending, ties by index) and the teacher's probabilities renormalised over those K (float32);
the student is renormalised over the same K indices, as EvoPress's top-K variant does.

Conventions: ``reduction="mean"`` averages per-token KL over tokens (torch's
``reduction="batchmean"``); ``"none"`` returns it per token. Student ``-inf`` (a masked logit) is
allowed: KL is +inf for a token where the teacher gives that entry positive weight, and the entry
is ignored otherwise. NaN or +inf in the student or the teacher raise ValueError naming the row.
Results do not depend on the thread count (each row is computed by one thread; rows are reduced
in a fixed order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _checks
from ._native import core

__all__ = ["Teacher", "kl_divergence", "teacher_targets"]


@dataclass(frozen=True)
class Teacher:
    """What :func:`kl_divergence` needs of the teacher, computed once by :func:`teacher_targets`.

    Attributes
    ----------
    weights : float16 [T, V] (p * 2^15, full vocabulary) or float32 [T, K] (top K, renormalised)
    indices : int32 [T, K] for top K, else None
    norm : float64 [T], the sum of each weight row (the teacher distribution is weights / norm)
    cross : float64 [T], sum_i p~_i log p_i per token (the teacher's negative entropy)
    pivot : int32 [T], the teacher's argmax per token
    vocab_size : int, V
    """

    weights: np.ndarray
    indices: np.ndarray | None
    norm: np.ndarray
    cross: np.ndarray
    pivot: np.ndarray
    vocab_size: int

    @property
    def num_tokens(self) -> int:
        return int(self.norm.shape[0])

    @property
    def top_k(self) -> int | None:
        return None if self.indices is None else int(self.indices.shape[1])

    @property
    def nbytes(self) -> int:
        arrays = [self.weights, self.norm, self.cross, self.pivot]
        if self.indices is not None:
            arrays.append(self.indices)
        return int(sum(a.nbytes for a in arrays))

    def take(self, rows: Any) -> Teacher:
        """The teacher restricted to some tokens (e.g. a minibatch): rows as indices or a slice."""
        sel = rows if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        return Teacher(
            np.ascontiguousarray(self.weights[sel]),
            None if self.indices is None else np.ascontiguousarray(self.indices[sel]),
            np.ascontiguousarray(self.norm[sel]),
            np.ascontiguousarray(self.cross[sel]),
            np.ascontiguousarray(self.pivot[sel]),
            self.vocab_size,
        )


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


def teacher_targets(teacher_logits: Any, *, top_k: int | None = None) -> Teacher:
    """Prepare the teacher's next-token distributions once, for :func:`kl_divergence`.

    Parameters
    ----------
    teacher_logits : numpy array or CPU torch tensor [T, V], float32, bfloat16 or float16
        (float16 and float64 are converted to float32). ``-inf`` masks an entry; NaN, +inf or a row
        of only ``-inf`` raise ValueError.
    top_k : int in [1, V], optional
        Keep only the K largest logits per token (renormalised), as EvoPress's top-K variant.

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
        raise ValueError(f"top_k must lie in [1, V={V}], got {top_k}")
    fn = core.kl_teacher_topk_bf16 if bf16 else core.kl_teacher_topk_f32
    idx, w, norm, cross = fn(a, int(top_k))
    return Teacher(w, idx, norm, cross, np.ascontiguousarray(idx[:, 0]), V)


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
    reduction : "mean" (average over tokens) or "none" (per token)

    Returns
    -------
    [T, V] input: float ("mean") or float64 array [T] ("none").
    [B, T, V] input: float64 array [B] ("mean") or [B, T] ("none").
    """
    if not isinstance(teacher, Teacher):
        raise TypeError(
            f"teacher must be a Teacher from teacher_targets(), got {type(teacher).__name__}"
        )
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
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
    else:
        fn = core.kl_topk_bf16 if bf16 else core.kl_topk_f32
        out = fn(teacher.indices, teacher.weights, teacher.norm, teacher.cross, flat)
    out = out.reshape(B, T)
    if reduction == "none":
        return out if batched else out[0]
    means = out.mean(axis=1)
    return means if batched else float(means[0])
