"""The front of an additive model, exactly: when every gene has a few levels and each target adds up
over the genes (a linear predictor over one-hot genes), the genome that minimises the first target
within a budget on the others is a knapsack, solved for all budgets at once by dynamic programming
over the budget. A screen adds these genomes to its pool (:class:`~evoforge.search.Screen` ``front``):
they are the predictor's own optimum at each budget, which no number of random offspring reliably
contains.

Symbols: L genes, V_i levels of gene i, T targets, B budget bins, K budgets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["additive_front"]


def additive_front(costs: Sequence[np.ndarray], n_points: int, *, bins: int = 2048) -> np.ndarray:
    """Level indices int64 [k, L] (k <= ``n_points``, distinct rows) of the additive front.

    ``costs[i]``: float64 [V_i, T], what gene i at each level adds to each target (all minimised).
    The budget measure of a genome is the sum over targets 1..T-1 of the target divided by its
    achievable range (the sum over genes of max - min), rounded per gene to ``bins`` steps of that
    range; for each of ``n_points`` budgets spread evenly from the least to the greatest measure, the
    row is a genome minimising target 0 among those within the budget (T = 1: the unconstrained
    minimum). Exact for the rounded measure: with integer measures and ``bins`` equal to their range,
    exact outright."""
    C = [np.asarray(c, dtype=np.float64) for c in costs]
    if not C or any(c.ndim != 2 or len(c) == 0 or c.shape[1] != C[0].shape[1] for c in C):
        raise ValueError("costs must be a non-empty list of [V_i, T] arrays with V_i >= 1 and one T")
    if not all(np.isfinite(c).all() for c in C):
        raise ValueError("costs must be finite")
    n_points, bins = int(n_points), int(bins)
    if n_points < 1 or bins < 1:
        raise ValueError(f"n_points and bins must be >= 1, got {n_points} and {bins}")
    L, T = len(C), C[0].shape[1]
    if T == 1:
        return np.array([[int(np.argmin(c[:, 0])) for c in C]], dtype=np.int64)
    rest = [c[:, 1:] - c[:, 1:].min(axis=0) for c in C]
    span = np.sum([r.max(axis=0) for r in rest], axis=0)
    span[~(span > 0)] = 1.0  # a target no gene changes constrains nothing
    Q = [np.rint((r / span).sum(axis=1) * bins).astype(np.int64) for r in rest]
    n_bins = int(sum(int(q.max()) for q in Q)) + 1
    best = np.full(n_bins, np.inf)
    best[0] = 0.0  # best[b]: least target 0 of the genes so far with measure exactly b
    choice = np.zeros((L, n_bins), dtype=np.int32)
    for i in range(L):
        new = np.full(n_bins, np.inf)
        for j, (q, c) in enumerate(zip(Q[i], C[i][:, 0])):
            cand = np.full(n_bins, np.inf)
            cand[q:] = best[:n_bins - q] + c
            better = cand < new
            new[better] = cand[better]
            choice[i, better] = j
        best = new
    reachable = np.flatnonzero(np.isfinite(best))
    lo, hi = int(reachable[0]), int(reachable[-1])
    prefix_best = np.minimum.accumulate(best)  # least target 0 within each budget
    rows = []
    for budget in np.unique(np.rint(np.linspace(lo, hi, n_points)).astype(np.int64)):
        b = int(np.flatnonzero(best[:budget + 1] == prefix_best[budget])[0])
        g = np.empty(L, dtype=np.int64)
        for i in range(L - 1, -1, -1):
            g[i] = choice[i, b]
            b -= int(Q[i][g[i]])
        rows.append(g)
    return np.unique(np.array(rows), axis=0)
