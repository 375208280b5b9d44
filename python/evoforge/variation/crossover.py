"""Batched crossover: uniform, one-point, two-point and simulated binary (SBX).

Symbols: P mating pairs, L genes. Row r of ``a`` mates with row r of ``b`` (both shape (P, L), or
(L,) for one pair) and gives row r of each child; the pair is individual ``individual_offset + r``
of the Philox layout (:mod:`evoforge.random`), so the result is the same on any thread count and
for any split of the rows. A pair crosses with probability ``prob`` and is copied otherwise.
Inputs are never modified; outputs have the inputs' kind (numpy, or CPU torch tensors).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from .._native import core
from ..random import check_prob, check_seed_args
from .validation import bounds, check_eta, check_finite_bounds, check_within, like

__all__ = ["uniform", "one_point", "two_point", "sbx"]

_KINDS = {"uniform": 0, "one_point": 1, "two_point": 2}


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    x = _checks.to_numpy(a, "a")
    y = _checks.to_numpy(b, "b")
    if x.dtype != y.dtype:
        raise TypeError(f"a and b must have one dtype, got {x.dtype} and {y.dtype}")
    if x.dtype.itemsize not in (4, 8) or x.dtype.kind not in "iuf":
        raise TypeError(f"genes must be 4- or 8-byte integers or floats, got dtype {x.dtype}")
    if x.shape != y.shape or x.ndim not in (1, 2):
        raise ValueError(f"a and b must share a shape (P, L) or (L,), got {x.shape} and {y.shape}")
    one = x.ndim == 1
    if one:
        x, y = x.reshape(1, -1), y.reshape(1, -1)
    return np.ascontiguousarray(x), np.ascontiguousarray(y), one


def _points(kind: str, a: Any, b: Any, prob: float, seed: int, generation: int, individual_offset: int):
    x, y, one = _pair(a, b)
    p = check_prob(prob, "prob")
    s, g, o = check_seed_args(seed, generation, individual_offset, x.shape[0])
    c1, c2 = core.crossover(_KINDS[kind], x, y, p, s, g, o)
    return like(c1, a, one), like(c2, a, one)


def uniform(a: Any, b: Any, *, prob: float = 1.0, seed: int, generation: int = 0, individual_offset: int = 0):
    """Uniform crossover: each gene is exchanged between the children with probability 1/2.

    Parameters
    ----------
    a, b : array-like or CPU torch.Tensor, shape (P, L) or (L,), one dtype of 4 or 8 bytes
    prob : float in [0, 1], probability that a pair crosses at all

    Returns
    -------
    (c1, c2), each of a's shape and dtype.
    """
    return _points("uniform", a, b, prob, seed, generation, individual_offset)


def one_point(a: Any, b: Any, *, prob: float = 1.0, seed: int, generation: int = 0, individual_offset: int = 0):
    """One-point crossover: a cut k uniform in [1, L - 1]; genes k.. are exchanged. See :func:`uniform`."""
    return _points("one_point", a, b, prob, seed, generation, individual_offset)


def two_point(a: Any, b: Any, *, prob: float = 1.0, seed: int, generation: int = 0, individual_offset: int = 0):
    """Two-point crossover: distinct cuts k1 < k2 uniform in [1, L - 1]; genes k1 .. k2 - 1 are
    exchanged (L = 2: one point). See :func:`uniform`."""
    return _points("two_point", a, b, prob, seed, generation, individual_offset)


def sbx(a: Any, b: Any, lower: Any, upper: Any, *, eta: float = 15.0, prob: float = 1.0, prob_var: float = 0.5,
        seed: int, generation: int = 0, individual_offset: int = 0):
    """Simulated binary crossover (Deb and Agrawal 1995), bounded form of Deb's NSGA-II code and pymoo.

    Each gene of a crossing pair is crossed with probability ``prob_var`` when the parents differ
    (by more than 1e-14) and lower < upper. With u uniform in [0, 1), ``y1 = min``, ``y2 = max``,
    ``d = y2 - y1``, and for each side ``beta = 1 + 2 (y1 - xl) / d`` (resp. ``1 + 2 (xu - y2) / d``),
    ``alpha = 2 - beta^-(eta + 1)``, ``betaq = (u alpha)^(1 / (eta + 1))`` if ``u <= 1 / alpha`` else
    ``(1 / (2 - u alpha))^(1 / (eta + 1))``, the children are ``(y1 + y2 -/+ betaq d) / 2`` clipped to
    the bounds, the lower one to c1 unless a fair coin exchanges them. Float64 arithmetic
    (cpp/crossover.cpp); block g of the "sbx" stream: word 0 decides, words 1-2 give u, word 3 the coin.

    Parameters
    ----------
    a, b : array-like or CPU torch.Tensor, float32 or float64, shape (P, L) or (L,), within bounds
    lower, upper : float or array-like of shape (L,), finite, lower <= upper (rounded to float32
        first for float32 genes)
    eta : float >= 0, distribution index
    prob, prob_var : float in [0, 1]

    Returns
    -------
    (c1, c2), each of a's shape and dtype.
    """
    x, y, one = _pair(a, b)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"sbx needs float32 or float64 genes, got dtype {x.dtype}")
    P, L = x.shape
    p, pv = check_prob(prob, "prob"), check_prob(prob_var, "prob_var")
    eta = check_eta(eta)
    s, g, o = check_seed_args(seed, generation, individual_offset, P)
    lo, hi = bounds(lower, upper, L, x.dtype)  # float32 genes: float32 bounds, exactly representable
    check_finite_bounds(lo, hi)
    lo, hi = lo.astype(np.float64), hi.astype(np.float64)
    for arr, name in ((x, "a"), (y, "b")):
        if np.isnan(arr).any():
            raise ValueError(f"{name} holds NaN in row {_checks.first_nan_row(arr)}")
        check_within(arr, lo, hi, name)
    fn = core.sbx_f32 if x.dtype == np.float32 else core.sbx_f64
    c1, c2 = fn(x, y, lo, hi, float(eta), p, pv, s, g, o)
    return like(c1, a, one), like(c2, a, one)
