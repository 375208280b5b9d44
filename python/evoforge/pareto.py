"""Pareto ranking for multi-objective search (minimisation).

Symbols: N points, M objectives. ``F`` is an objective matrix of shape (N, M); a smaller value is
better in every column. Each function wraps one kernel of ``evoforge._core`` (cpp/pareto.cpp) or,
for CUDA tensors, ``evoforge._cuda`` (cuda/pareto.cu); the CPU kernel is the reference of the GPU one.

All functions are deterministic: the same input gives the same output on any thread count.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import _checks
from ._native import core
from .errors import ConfigError

__all__ = ["nondominated_rank", "crowding_distance", "select", "hypervolume"]


def _prepare(F: Any, constraint_violation: Any) -> tuple[np.ndarray, np.ndarray | None]:
    A = _checks.objectives(F)
    if constraint_violation is None:
        return A, None
    cv = _checks.vector(constraint_violation, A.shape[0], "constraint_violation")
    if cv.dtype != A.dtype:  # widen both rather than round a tiny violation to zero
        A, cv = A.astype(np.float64), cv.astype(np.float64)
    return A, cv


def nondominated_rank(F: Any, *, constraint_violation: Any = None) -> Any:
    """Front index of every point; 0 marks the non-dominated points.

    Parameters
    ----------
    F : array-like or torch.Tensor, float32 or float64, shape (N, M), M >= 1
        Objectives to minimise. Integers and bools are converted to float64, float16 to float32.
        +-inf is allowed; -0.0 equals 0.0; NaN raises. A CUDA tensor is ranked on its device.
    constraint_violation : array-like or torch.Tensor, shape (N,), optional
        Total violation per point; ``cv <= 0`` is feasible. Feasible points are ranked first by
        Pareto dominance; infeasible points follow, ranked by violation alone (equal violation,
        equal rank).

    Returns
    -------
    numpy.ndarray of int32, shape (N,), or a torch int32 tensor on F's device when F is a tensor.
    Equal points share a rank.

    Raises
    ------
    TypeError for a non-numeric dtype; ValueError for a wrong shape or a NaN (naming its row).

    Algorithms: a sort then an O(N log N) sweep for M = 2; for M >= 3 see cpp/pareto.cpp.
    """
    if _checks.is_torch(F) and F.device.type == "cuda":
        from . import _pareto_cuda

        with _pareto_cuda.on_device(F):
            return _rank_tensor(F, constraint_violation, _pareto_cuda.cuda_ranker)
    A, cv = _prepare(F, constraint_violation)
    fn = core.nondominated_rank_f64 if A.dtype == np.float64 else core.nondominated_rank_f32
    ranks = fn(A, cv)
    if _checks.is_torch(F):
        import torch

        return torch.from_numpy(ranks)
    return ranks


def _rank_tensor(F: Any, constraint_violation: Any, make_ranker: Callable[[Any], Any]) -> Any:
    """:func:`nondominated_rank` of a tensor on its device: validated there, then ranked by the
    kernels ``make_ranker(device)`` returns (the CUDA kernels; the tests pass an emulation on CPU
    tensors), or, with more objectives than the kernels take, by the CPU kernel on host copies
    and moved back (the same result)."""
    from . import _pareto_cuda

    X, cv = _pareto_cuda.check_tensor(F, constraint_violation)
    if X.shape[1] > _pareto_cuda.MAX_OBJECTIVES:
        ranks = nondominated_rank(X.cpu(), constraint_violation=None if cv is None else cv.cpu())
        return ranks.to(F.device)
    return _pareto_cuda.rank_checked(X, cv, make_ranker(F.device))


def crowding_distance(F: Any, ranks: Any) -> np.ndarray:
    """NSGA-II crowding distance of every point within its front (Deb et al., 2002).

    For each front and objective the points are ordered by value (ties by index); the two
    extremes get +inf and every other point adds ``(next - previous) / (max - min)``; an
    objective with zero or infinite range adds nothing. Fronts of one or two points are +inf.

    Parameters
    ----------
    F : array-like, float32 or float64, shape (N, M)
    ranks : array-like of int, shape (N,), values >= 0 (e.g. from :func:`nondominated_rank`)

    Returns
    -------
    numpy.ndarray of float64, shape (N,)
    """
    A = _checks.objectives(F)
    r = _checks.to_numpy(ranks, "ranks")
    if r.dtype.kind not in "iu":
        raise TypeError(f"ranks must be integers, got dtype {r.dtype}")
    if r.ndim != 1 or r.shape[0] != A.shape[0]:
        raise ValueError(f"ranks must have shape [{A.shape[0]}], got shape {r.shape}")
    if r.size and (r.min() < 0 or r.max() > np.iinfo(np.int32).max):
        raise ValueError("ranks must lie in [0, 2**31 - 1]")
    r = np.ascontiguousarray(r, dtype=np.int32)
    fn = core.crowding_distance_f64 if A.dtype == np.float64 else core.crowding_distance_f32
    return fn(A, r)


def select(F: Any, k: int, *, constraint_violation: Any = None) -> np.ndarray:
    """NSGA-II survival: the indices of the ``k`` best points.

    Points are ordered by rank (see :func:`nondominated_rank`, constraints included), then by
    crowding distance within the front (larger first), then by index, and the first ``k`` are
    returned in that order. Deterministic.

    Returns
    -------
    numpy.ndarray of int64, shape (k,)
    """
    A, cv = _prepare(F, constraint_violation)
    n = A.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 0 <= k <= n:
        raise ConfigError(f"k must lie in [0, N={n}], got {k}")
    ranks = nondominated_rank(A, constraint_violation=cv)
    crowd = crowding_distance(A, ranks)
    order = np.lexsort((np.arange(n), -crowd, ranks))
    return order[:k].astype(np.int64)


def hypervolume(F: Any, ref: Any) -> float:
    """Hypervolume dominated by the points of F and bounded by the reference point ``ref``.

    Computed by moocore (exact; O(N log N) for M = 2 and 3). Points that do not strictly
    dominate ``ref`` contribute nothing.

    Parameters
    ----------
    F : array-like, shape (N, M) (N = 0 gives 0.0);  ref : array-like, shape (M,)
    """
    import moocore

    A = _checks.objectives(F).astype(np.float64, copy=False)
    r = _checks.vector(ref, A.shape[1], "ref", dtype=np.dtype(np.float64))
    if np.isnan(r).any():
        raise ValueError("ref holds NaN")
    if A.shape[0] == 0:  # before the row scan, which cannot reshape an empty F
        return 0.0
    bad = _checks.first_nan_row(A)
    if bad is not None:
        raise ValueError(f"F holds NaN in row {bad}")
    return float(moocore.hypervolume(A, ref=r))
