"""Pareto ranking of CUDA tensors: the torch side of cuda/pareto.cu.

:func:`check_tensor` validates on the device; :func:`rank_checked` then, in torch on the same
device and stream: maps -0.0 to 0.0, sorts the rows lexicographically (M stable sorts, last key
first), collapses duplicates, splits feasible from infeasible points, lets the kernel rank the
distinct feasible points, ranks infeasible points by their violation alone, and scatters the
ranks back. The result equals ``nondominated_rank(F.cpu())`` exactly. Whether a tensor goes to
the kernels or (more than :data:`MAX_OBJECTIVES` objectives) to the CPU kernel is decided by
:func:`evoforge.pareto.nondominated_rank`; this module never imports it.

The native module never links libtorch: it gets raw device pointers, sizes, the stream and
the device index as ints, and a workspace allocated here with torch.

The kernels' algorithm in numpy, step by step, is in the tests (tests/cuda_emulation.py): the
executable specification of cuda/pareto.cu, tested against the CPU kernel without a GPU.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from . import _checks
from ._native import require_cuda

__all__ = ["MAX_OBJECTIVES", "check_tensor", "rank_checked", "cuda_ranker", "on_device"]

# Mirrors of cuda/pareto.cu (checked against _cuda.pareto_config by the CUDA tests).
MAX_OBJECTIVES = 16
GROUP = 256  # points per group: staging unit of the cross kernel, bounding boxes
CROSS_BLOCK = 256  # threads per cross block (one staged point each)
WARP = 32
INT_MAX = 2**31 - 1


def _bucket(d: int) -> int:
    """Compile-time bound MAXD of the kernels for D = M - 1 compared objectives."""
    if d <= 4:
        return max(d, 1)
    return 8 if d <= 8 else 16


def kernel_config(m: int) -> dict:
    """Launch geometry of the CUDA kernels for ``m`` objectives (as ``_cuda.pareto_config``)."""
    if not 1 <= m <= MAX_OBJECTIVES:
        raise ValueError(f"the CUDA Pareto kernels take 1 <= M <= {MAX_OBJECTIVES} objectives, got M = {m}")
    maxd = _bucket(m - 1)
    tile = 1024 if maxd <= 4 else (512 if maxd <= 8 else 256)
    return {"tile": tile, "group": GROUP, "cross_block": CROSS_BLOCK, "cross_points": 2 if maxd <= 8 else 1}


# ---------------------------------------------------------------------------------------------
# torch pipeline (device-agnostic; the ranker of distinct sorted points is a parameter)

Ranker = Callable[[Any], Any]  # P [U, M] (distinct, sorted, contiguous) -> int32 [U]


def _sorted_unique(X):
    """Distinct rows of X [n, M] (n >= 1) in lexicographic order: (P [U, M], perm, gid) with
    X[perm] sorted and gid[k] = index in P of X[perm[k]]."""
    import torch

    n, m = X.shape
    perm = torch.arange(n, device=X.device)
    for k in range(m - 1, -1, -1):  # LSD: stable sorts from the last key to the first
        _, order = torch.sort(X[perm, k], stable=True)
        perm = perm[order]
    S = X[perm]
    new = torch.ones(n, dtype=torch.bool, device=X.device)
    if n > 1:
        new[1:] = (S[1:] != S[:-1]).any(dim=1)
    gid = torch.cumsum(new, 0) - 1
    return S[new].contiguous(), perm, gid


def _rank_rows(X, ranker: Ranker):
    """(ranks of the rows of X [n >= 1, M], number of fronts as a 0-dim device tensor)."""
    import torch

    P, perm, gid = _sorted_unique(X)
    r = ranker(P)
    out = torch.empty(X.shape[0], dtype=torch.int32, device=X.device)
    out[perm] = r[gid]
    return out, r.max() + 1


def _rank_pipeline(X, cv, ranker: Ranker):
    """Ranks of X [N, M] (float, contiguous, no NaN, no -0.0) with optional violations cv [N]."""
    import torch

    n = X.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int32, device=X.device)
    if cv is None:
        return _rank_rows(X, ranker)[0]
    feasible = cv <= 0
    fi = torch.nonzero(feasible).squeeze(1)
    ii = torch.nonzero(~feasible).squeeze(1)
    if ii.numel() == 0:
        return _rank_rows(X, ranker)[0]
    out = torch.empty(n, dtype=torch.int32, device=X.device)
    fronts = torch.zeros((), dtype=torch.int64, device=X.device)
    if fi.numel():
        r, fronts = _rank_rows(X[fi], ranker)
        out[fi] = r
    # Infeasible: ranked by violation alone, equal violations share a rank, after the fronts.
    _, inverse = torch.unique(cv[ii], sorted=True, return_inverse=True)
    out[ii] = (inverse + fronts).to(torch.int32)
    return out


def _as_float(x, name: str):
    """float32/float64 kept, float16/bfloat16 -> float32, bool/integers -> float64 (as the CPU path)."""
    import torch

    if x.dtype in (torch.float32, torch.float64):
        return x
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    if x.dtype == torch.bool or not (x.dtype.is_floating_point or x.dtype.is_complex):
        return x.double()
    raise TypeError(f"{name} must hold real numbers (float32 or float64), got dtype {x.dtype}")


def _first_nan_row(x) -> int | None:
    """Index of the first row of x holding a NaN (one device sync), or None."""
    import torch

    if x.numel() == 0:
        return None
    bad = torch.isnan(x.reshape(x.shape[0], -1)).any(dim=1)
    first = torch.where(bad.any(), torch.argmax(bad.to(torch.uint8)), -1).item()
    return None if first < 0 else int(first)


def cuda_ranker(device) -> Ranker:
    """The CUDA kernels as a ranker of distinct sorted points on ``device`` (current stream)."""
    import torch

    mod = require_cuda()
    index = torch.device(device).index
    if index is None:
        index = torch.cuda.current_device()
    stream = torch.cuda.current_stream(index).cuda_stream

    def rank(P):
        U, M = P.shape
        out = torch.empty(U, dtype=torch.int32, device=P.device)
        nbytes = int(mod.rank_sorted_unique_workspace_bytes(U, M, P.element_size()))
        ws = torch.empty(max(nbytes, 1), dtype=torch.uint8, device=P.device)
        fn = mod.rank_sorted_unique_f64 if P.dtype == torch.float64 else mod.rank_sorted_unique_f32
        fn(P.data_ptr(), U, M, out.data_ptr(), ws.data_ptr(), nbytes, stream, index)
        return out

    return rank


@contextlib.contextmanager
def on_device(F: Any) -> Iterator[None]:
    """F's CUDA device made current; CudaUnavailableError when evoforge has no CUDA kernels."""
    import torch

    if not (_checks.is_torch(F) and F.device.type == "cuda"):
        raise ValueError("the CUDA Pareto ranking takes a CUDA tensor")
    require_cuda()
    with torch.cuda.device(F.device):
        yield


def check_tensor(F: Any, constraint_violation: Any) -> tuple[Any, Any]:
    """(X, cv): F and the violations as float tensors on F's device, validated there (NaN raises
    ValueError naming the first bad row). Device-agnostic: the tests run it on CPU tensors."""
    device = F.device
    X = _as_float(F.detach(), "F")
    if X.ndim != 2:
        raise ValueError(f"F must be 2-D with shape [N, M], got shape {tuple(F.shape)}")
    n, m = X.shape
    if m < 1:
        raise ValueError(f"F must have at least one objective (M >= 1), got shape {tuple(F.shape)}")
    if n > INT_MAX:
        raise ValueError(f"F has {n} rows; at most 2**31 - 1 are supported")
    cv = None
    if constraint_violation is not None:
        c = constraint_violation
        if not _checks.is_torch(c):
            raise ValueError(
                f"constraint_violation must be a torch tensor on {device} like F, got {type(c).__name__}"
            )
        if c.device != device:
            raise ValueError(f"constraint_violation is on {c.device}, F is on {device}; put both on one device")
        c = _as_float(c.detach(), "constraint_violation")
        if c.ndim != 1 or c.shape[0] != n:
            raise ValueError(f"constraint_violation must have shape [{n}], got shape {tuple(c.shape)}")
        if c.dtype != X.dtype:  # as the CPU path: widen rather than round a tiny violation to 0
            c = c.double()
        cv = c.contiguous()

    bad = _first_nan_row(X)
    if bad is not None:
        raise ValueError(f"F holds NaN in row {bad}")
    if cv is not None:
        bad = _first_nan_row(cv)
        if bad is not None:
            raise ValueError(f"constraint_violation holds NaN in row {bad}")
    return X, cv


def rank_checked(X: Any, cv: Any, ranker: Ranker):
    """Ranks of X (from :func:`check_tensor`, at most MAX_OBJECTIVES columns) by the pipeline
    around ``ranker`` (:func:`cuda_ranker`, or the tests' emulation), on X's device."""
    if X.shape[1] > MAX_OBJECTIVES:
        raise ValueError(f"the CUDA Pareto kernels take at most {MAX_OBJECTIVES} objectives, got {X.shape[1]}")
    X = X.contiguous() + 0.0  # a fresh contiguous copy with -0.0 -> 0.0
    return _rank_pipeline(X, cv, ranker)
