"""Pareto ranking of CUDA tensors: the torch side of cuda/pareto.cu.

``nondominated_rank_cuda`` validates on the device, then, in torch on the same device and stream:
maps -0.0 to 0.0, sorts the rows lexicographically (M stable sorts, last key first), collapses
duplicates, splits feasible from infeasible points, lets the kernel rank the distinct feasible
points, ranks infeasible points by their violation alone, and scatters the ranks back. The
result equals ``nondominated_rank(F.cpu())`` exactly.

The native module never links libtorch: it gets raw device pointers, sizes, the stream and
the device index as ints, and a workspace allocated here with torch.

``_emulate_rank_sorted_unique`` is the kernels' algorithm in numpy, step by step (same tiles,
groups, block split, skips and update order). It is the executable specification of
cuda/pareto.cu and is tested against the CPU kernel on machines without a GPU.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import _checks
from ._native import require_cuda

__all__ = ["nondominated_rank_cuda"]

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


def _emulate_rank_sorted_unique(
    P: np.ndarray,
    *,
    tile: int | None = None,
    group: int = GROUP,
    cross_points: int | None = None,
    warp: int = WARP,
    target_blocks: int = 8 * 132,
    rng: np.random.Generator | None = None,
    stats: dict | None = None,
) -> np.ndarray:
    """Ranks of distinct lexicographically sorted rows P [U, M], computed exactly as the CUDA
    kernels do. ``tile``/``group``/``cross_points``/``warp`` default to the kernels' geometry;
    smaller ones exercise many tiles on small inputs. ``target_blocks`` is the cross kernel's
    block budget (8 per SM). With ``rng`` the cross blocks run in a random order, each reading
    the atomics that have landed so far, as on a GPU. ``stats``, when given, counts the groups
    a cross block skipped (``block_skips``), skipped by every warp (``warp_skips``) or folded."""
    P = np.asarray(P)
    U, M = P.shape
    if U == 0:
        return np.zeros(0, dtype=np.int32)
    if M == 1:  # iota_kernel
        return np.arange(U, dtype=np.int32)
    cfg = kernel_config(M)
    tile = cfg["tile"] if tile is None else tile
    pts = cfg["cross_points"] if cross_points is None else cross_points
    block = group  # a cross block stages one group point per thread
    assert tile % group == 0 and tile % (block * pts) == 0 and block % warp == 0

    Q = P[:, 1:]  # objective 0 is ordered by the sort
    ngroups = -(-U // group)
    gmin = np.stack([Q[g * group : (g + 1) * group].min(axis=0) for g in range(ngroups)])
    gmax = np.stack([Q[g * group : (g + 1) * group].max(axis=0) for g in range(ngroups)])
    gmaxr = np.zeros(ngroups, dtype=np.int64)  # written by intra for each finished group
    rank = np.zeros(U, dtype=np.int64)  # cudaMemsetAsync
    counts = {"block_skips": 0, "warp_skips": 0, "folds": 0, "warp_folds": 0, "warps_idle": 0}

    for t in range(-(-U // tile)):
        a = t * tile
        n = min(tile, U - a)
        b = a + n
        if t > 0:  # cross_kernel
            span = block * pts
            gx = -(-n // span)
            earlier = a // group
            per_seg = max(1, -(-(earlier * gx) // target_blocks))
            gy = -(-earlier // per_seg)
            blocks = [(x, y) for x in range(gx) for y in range(gy)]
            if rng is not None:
                rng.shuffle(blocks)
            for x, y in blocks:
                first = a + x * span
                idx = first + np.arange(pts)[:, None] * block + np.arange(block)[None, :]  # [pts, block]
                valid = idx < b
                safe = np.minimum(idx, U - 1)
                own = np.where(valid[..., None], Q[safe], 0)  # [pts, block, D]
                init = np.where(valid, rank[safe], INT_MAX)
                best = init.copy()
                last = min(first + span, b)
                bmax = gmax[first // group : (last - 1) // group + 1].max(axis=0)
                g_lo = y * per_seg
                g_hi = min(g_lo + per_seg, earlier)
                for g in range(g_hi - 1, g_lo - 1, -1):
                    gm = gmin[g]
                    if (gm > bmax).any():  # block skip: no point of the group dominates the block
                        counts["block_skips"] += 1
                        continue
                    sq = Q[g * group : (g + 1) * group]
                    sr = rank[g * group : (g + 1) * group]
                    need = (best <= gmaxr[g]) & ~(gm > own).any(axis=-1)  # [pts, block]
                    warp_runs = need.any(axis=0).reshape(-1, warp).any(axis=1)  # __any_sync
                    lanes = np.repeat(warp_runs, warp)  # [block]
                    if not lanes.any():
                        counts["warp_skips"] += 1
                        continue
                    counts["folds"] += 1
                    counts["warp_folds"] += int(warp_runs.sum())
                    counts["warps_idle"] += int((~warp_runs).sum())
                    dom = (sq[None, None, :, :] <= own[:, :, None, :]).all(axis=-1)  # [pts, block, G]
                    cand = np.where(dom, sr[None, None, :] + 1, 0).max(axis=-1)
                    best = np.where(lanes[None, :], np.maximum(best, cand), best)
                upd = valid & (best > init)  # atomicMax
                rank[idx[upd]] = np.maximum(rank[idx[upd]], best[upd])
        # intra_kernel: step j publishes the final rank of point a + j to the later points.
        for j in range(n - 1):
            r1 = rank[a + j] + 1
            later = rank[a + j + 1 : b]
            dom = (Q[a + j] <= Q[a + j + 1 : b]).all(axis=-1)
            rank[a + j + 1 : b] = np.where(dom & (r1 > later), r1, later)
        for g in range(a // group, -(-b // group)):
            gmaxr[g] = rank[g * group : min((g + 1) * group, b)].max()
    if stats is not None:
        stats.update(counts)
    return rank.astype(np.int32)


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


def nondominated_rank_cuda(F: Any, constraint_violation: Any = None):
    """``evoforge.pareto.nondominated_rank`` of a CUDA tensor, computed on its device.

    Returns an int32 tensor on F's device, equal to ``nondominated_rank(F.cpu())``. The
    constraint violation, when given, must be a tensor on the same device. NaN raises
    ValueError naming the first bad row; CudaUnavailableError when evoforge has no CUDA kernels.
    With more than 16 objectives the ranking runs on the CPU kernel (a copy to the host and
    back), with the same result.
    """
    import torch

    if not (_checks.is_torch(F) and F.device.type == "cuda"):
        raise ValueError("nondominated_rank_cuda takes a CUDA tensor")
    require_cuda()
    with torch.cuda.device(F.device):
        return _rank_tensor(F, constraint_violation, cuda_ranker)


def _rank_tensor(F: Any, constraint_violation: Any, make_ranker: Callable[[Any], Ranker]):
    """Validation, then the pipeline on F's device with the ranker ``make_ranker(device)``.
    Device-agnostic: the tests run it on CPU tensors with the emulated kernels."""
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
    if m > MAX_OBJECTIVES:  # documented fallback: the CPU kernel, same result
        from .pareto import nondominated_rank

        r = nondominated_rank(X.cpu(), constraint_violation=None if cv is None else cv.cpu())
        return r.to(device)
    X = X.contiguous() + 0.0  # a fresh contiguous copy with -0.0 -> 0.0
    return _rank_pipeline(X, cv, make_ranker(device))
