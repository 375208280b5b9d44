"""Independent brute-force references (float64, O(M N^2)) that the kernels are tested against."""

from __future__ import annotations

import numpy as np


def dominance_matrix(F: np.ndarray, cv: np.ndarray | None = None) -> np.ndarray:
    """D[i, j] = point i constrained-dominates point j (minimisation)."""
    F = np.asarray(F, dtype=np.float64)
    le = (F[:, None, :] <= F[None, :, :]).all(axis=2)
    lt = (F[:, None, :] < F[None, :, :]).any(axis=2)
    D = le & lt
    if cv is not None:
        cv = np.asarray(cv, dtype=np.float64)
        feas = cv <= 0
        D = np.where(feas[:, None] & feas[None, :], D, False)
        D |= feas[:, None] & ~feas[None, :]
        D |= (~feas[:, None] & ~feas[None, :]) & (cv[:, None] < cv[None, :])
    return D


def nondominated_rank(F: np.ndarray, cv: np.ndarray | None = None) -> np.ndarray:
    """Front peeling on the full dominance matrix."""
    n = len(F)
    D = dominance_matrix(F, cv) if n else np.zeros((0, 0), bool)
    rank = np.full(n, -1, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    r = 0
    while alive.any():
        dominated = (D & alive[:, None]).any(axis=0)
        front = alive & ~dominated
        rank[front] = r
        alive &= ~front
        r += 1
    return rank


def crowding_distance(F: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Deb et al. (2002) crowding distance; stable order within each objective (ties by index)."""
    F = np.asarray(F, dtype=np.float64)
    out = np.zeros(len(F))
    for r in np.unique(ranks):
        idx = np.flatnonzero(ranks == r)
        if len(idx) <= 2:
            out[idx] = np.inf
            continue
        for j in range(F.shape[1]):
            order = idx[np.argsort(F[idx, j], kind="stable")]
            v = F[order, j]
            out[order[0]] = out[order[-1]] = np.inf
            with np.errstate(invalid="ignore"):  # inf - inf: an unbounded objective adds nothing
                rng = v[-1] - v[0]
            if not rng > 0 or np.isinf(rng):
                continue
            out[order[1:-1]] += (v[2:] - v[:-2]) / rng
    return out


def hypervolume_2d(F: np.ndarray, ref: np.ndarray) -> float:
    """Exact 2-D hypervolume by sweeping the points sorted by the first objective."""
    F = np.asarray(F, dtype=np.float64)
    F = F[(F < ref).all(axis=1)]
    hv, best_y = 0.0, ref[1]
    for x, y in sorted(map(tuple, F)):
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return hv
