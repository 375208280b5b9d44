"""Observation normalisation shared by the whole population, frozen within a generation.

Symbols: O observation size, B candidates.

Every member sees ``clip((obs - mean) / std, -clip, clip)`` with one ``mean`` and ``std`` (float32
[O]) for the whole population. They change only between generations: the engine freezes them
before asking for a generation, the rollouts of that generation report per candidate the count,
the sum and the sum of squares of their observations (taken about the frozen mean, in float64, so
that the subtraction keeps the precision), and the engine merges those reports in the rows' order
(Chan et al.'s parallel update of a running mean and M2) once the generation is told. The
statistics are therefore a pure function of the run's evaluated rows: the same seed gives the same
normalisation, a resumed run (whose rows come back from the evaluation cache bit for bit) gives the
same as an uninterrupted one, and how the rows were split over workers does not matter.

Until some observations were counted the normaliser is the identity (mean 0, std 1). ``std`` is
floored at ``eps`` (a constant feature would otherwise divide by zero).
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int, check_real, float_dtype, to_numpy
from ..errors import ConfigError
from ..hashing import Hasher

__all__ = ["ObsNorm"]


def _real(x, name: str) -> np.ndarray:
    a = to_numpy(x, name)
    return a.astype(float_dtype(a, name)).astype(np.float64)


class ObsNorm:
    """A running mean / standard deviation of observations [O] (float64 state, float32 frozen view).

    clip : float > 0 -- normalised values are clipped to [-clip, clip] (inf: no clipping)
    eps : float > 0 -- the floor of the standard deviation
    """

    def __init__(self, obs_dim: int, *, clip: float = 5.0, eps: float = 1e-2) -> None:
        self.obs_dim = check_int(obs_dim, "obs_dim", 1, 1 << 24)
        self.clip = check_real(clip, "clip")
        self.eps = check_real(eps, "eps")
        if not self.clip > 0:
            raise ConfigError(f"clip must be > 0, got {clip}")
        if not (self.eps > 0 and np.isfinite(self.eps)):
            raise ConfigError(f"eps must be a finite number > 0, got {eps}")
        self.count = 0.0
        self.mean64 = np.zeros(self.obs_dim)
        self.m2 = np.zeros(self.obs_dim)
        self.freeze()

    # ---- the frozen view (what the rollouts use) ---------------------------------------------

    def freeze(self) -> None:
        """Take the current statistics as the frozen ``mean`` and ``std`` (float32)."""
        if self.count > 0:
            var = self.m2 / self.count
            std = np.maximum(np.sqrt(np.maximum(var, 0.0)), self.eps)
            self.mean, self.std = self.mean64.astype(np.float32), std.astype(np.float32)
        else:
            self.mean, self.std = np.zeros(self.obs_dim, np.float32), np.ones(self.obs_dim, np.float32)

    def state(self) -> tuple[np.ndarray, np.ndarray, float]:
        """``(mean, std, clip)`` as the evaluators take them (``PolicyEvaluator.set_obs_norm``)."""
        return self.mean.copy(), self.std.copy(), self.clip

    def digest(self) -> bytes:
        """The frozen view's identity (part of the evaluation cache's key)."""
        return Hasher().update((self.mean, self.std, self.clip)).digest()

    # ---- merging the rollouts' reports ---------------------------------------------------------

    def update(self, counts: np.ndarray, sums: np.ndarray, sumsq: np.ndarray) -> None:
        """Merge per-candidate reports: ``counts`` [B] observations, ``sums`` [B, O] and ``sumsq``
        [B, O] of ``obs - mean`` (the frozen mean the candidates ran with), float64. Rows are summed in
        their order; the running statistics then take the batch's in one Chan update."""
        counts = _real(counts, "counts").reshape(-1)
        B, O = len(counts), self.obs_dim
        sums, sumsq = _real(sums, "sums"), _real(sumsq, "sumsq")
        if sums.shape != (B, O) or sumsq.shape != (B, O):
            raise ValueError(f"sums and sumsq must have shape ({B}, {O}), got {sums.shape} and {sumsq.shape}")
        if not (np.isfinite(counts).all() and (counts >= 0).all()):
            raise ValueError("counts must be finite and >= 0")
        n = float(counts.sum())
        if n <= 0:
            return
        s, q = sums.sum(axis=0), sumsq.sum(axis=0)
        ref = self.mean.astype(np.float64)
        mean_b = ref + s / n
        m2_b = np.maximum(q - s * s / n, 0.0)
        if not (np.isfinite(mean_b).all() and np.isfinite(m2_b).all()):
            return  # an environment returned inf/NaN observations: keep the statistics as they were
        total = self.count + n
        delta = mean_b - self.mean64
        self.mean64 = self.mean64 + delta * (n / total)
        self.m2 = self.m2 + m2_b + delta * delta * (self.count * n / total)
        self.count = total

    def describe(self) -> dict:
        return {"count": self.count, "mean": self.mean.tolist(), "std": self.std.tolist(), "clip": self.clip}
