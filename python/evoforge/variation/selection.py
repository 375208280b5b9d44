"""Batched selection.

Symbols: N candidates. Selections are individuals of the Philox layout (:mod:`evoforge.random`):
selection s is individual ``individual_offset + s``, so any thread count or split gives the same
indices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from .._native import core
from ..random import check_positive_int, check_seed_args

__all__ = ["tournament"]


def tournament(fitness: Any, n_select: int, *, tournament_size: int = 2, seed: int, generation: int = 0,
               individual_offset: int = 0) -> np.ndarray:
    """Tournament selection, minimising.

    Each of the ``n_select`` selections draws ``tournament_size`` contestants uniformly from
    [0, N) with replacement and keeps the best. With a 2-D ``fitness`` rows are compared
    lexicographically (column 0 first: e.g. ``(rank, -crowding)`` for NSGA-II); ties go to the
    smaller index.

    Parameters
    ----------
    fitness : array-like or CPU torch.Tensor of real numbers, shape (N,) or (N, M), N >= 1, no NaN
    n_select : int >= 0
    tournament_size : int >= 1

    Returns
    -------
    numpy.ndarray of int64, shape (n_select,): indices into fitness.
    """
    f = _checks.to_numpy(fitness, "fitness")
    if f.dtype.kind not in "iuf" or f.dtype == np.bool_:
        raise TypeError(f"fitness must hold real numbers, got dtype {f.dtype}")
    if f.ndim not in (1, 2):
        raise ValueError(f"fitness must have shape (N,) or (N, M), got {f.shape}")
    if f.size == 0:  # checked before the reshape, which cannot infer the width of an empty array
        raise ValueError(f"fitness must hold at least one candidate and one column, got shape {f.shape}")
    keys = np.ascontiguousarray(f.reshape(f.shape[0], -1), dtype=np.float64)
    if np.isnan(keys).any():
        raise ValueError(f"fitness holds NaN in row {_checks.first_nan_row(keys)}")
    n = check_positive_int(n_select, "n_select", 0)
    k = check_positive_int(tournament_size, "tournament_size", 1, 2**31 - 1)
    s, g, o = check_seed_args(seed, generation, individual_offset, n)
    return core.tournament(keys, n, k, s, g, o)
