"""Numpy emulations of evoforge's CUDA kernels: the executable specifications the tests check
against the CPU kernels on machines without a GPU (and, on a GPU, the kernels against them).

They live here, not in the package: nothing in evoforge runs them.

- :func:`pareto_rank_sorted_unique`: cuda/pareto.cu (``evoforge._pareto_cuda``), step by step:
  the same tiles, groups, block split, skips and update order.
"""

from __future__ import annotations

import numpy as np

from evoforge._pareto_cuda import GROUP, INT_MAX, WARP, kernel_config


def pareto_rank_sorted_unique(
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
