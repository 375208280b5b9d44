"""Standard benchmark problems as vectorised evaluators (genomes [B, L] -> fitness), minimising.

OneMax and LeadingOnes (bit strings; fitness = -count, so the optimum is -L) for (1 + lambda)
runtime theory; ZDT1-3 (Zitzler, Deb, Thiele 2000) and DTLZ2 (Deb et al. 2002) for NSGA-II.
"""

from __future__ import annotations

import numpy as np

__all__ = ["one_max", "leading_ones", "zdt1", "zdt2", "zdt3", "dtlz2"]


def one_max(X: np.ndarray) -> np.ndarray:
    """-(number of ones) of each row of a {0, 1} matrix [B, L] -> [B]."""
    return -np.asarray(X).sum(axis=1).astype(np.float64)


def leading_ones(X: np.ndarray) -> np.ndarray:
    """-(number of leading ones) of each row of a {0, 1} matrix [B, L] -> [B]."""
    X = np.asarray(X)
    return -np.cumprod(X == 1, axis=1).sum(axis=1).astype(np.float64)


def _zdt_g(X: np.ndarray) -> np.ndarray:
    return 1.0 + 9.0 * X[:, 1:].sum(axis=1) / (X.shape[1] - 1)


def zdt1(X: np.ndarray) -> np.ndarray:
    """ZDT1 on [0, 1]^L (L >= 2) -> [B, 2]; front f2 = 1 - sqrt(f1)."""
    f1 = X[:, 0]
    g = _zdt_g(X)
    return np.column_stack([f1, g * (1.0 - np.sqrt(f1 / g))])


def zdt2(X: np.ndarray) -> np.ndarray:
    """ZDT2 on [0, 1]^L -> [B, 2]; front f2 = 1 - f1^2."""
    f1 = X[:, 0]
    g = _zdt_g(X)
    return np.column_stack([f1, g * (1.0 - (f1 / g) ** 2)])


def zdt3(X: np.ndarray) -> np.ndarray:
    """ZDT3 on [0, 1]^L -> [B, 2]; a disconnected front."""
    f1 = X[:, 0]
    g = _zdt_g(X)
    h = 1.0 - np.sqrt(f1 / g) - (f1 / g) * np.sin(10.0 * np.pi * f1)
    return np.column_stack([f1, g * h])


def dtlz2(X: np.ndarray, n_objectives: int = 3) -> np.ndarray:
    """DTLZ2 on [0, 1]^L (L >= M) -> [B, M]; the front is the unit sphere's positive orthant."""
    M = n_objectives
    g = ((X[:, M - 1:] - 0.5) ** 2).sum(axis=1)
    theta = X[:, : M - 1] * (np.pi / 2)
    F = np.empty((len(X), M))
    for m in range(M):
        f = 1.0 + g
        f = f * np.prod(np.cos(theta[:, : M - 1 - m]), axis=1)
        if m > 0:
            f = f * np.sin(theta[:, M - 1 - m])
        F[:, m] = f
    return F
