"""Variation operators as small objects: hyperparameters checked once, the kernels of
:mod:`evoforge.mutation`, :mod:`evoforge.crossover` and :mod:`evoforge.selection` called with the
engine's bounds and random stream (seed, generation, individual offset)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import check_int
from ..variation import crossover as _cx
from ..variation import mutation as _mut
from ..errors import ConfigError

__all__ = ["Mutation", "PointMutation", "GaussianMutation", "PolynomialMutation", "LevelSwitch",
           "Crossover", "SBX", "UniformCrossover", "OnePointCrossover", "TwoPointCrossover"]


def _prob(p: float | None, name: str) -> float | None:
    if p is not None and not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"{name} must lie in [0, 1], got {p}")
    return None if p is None else float(p)


def _positive(x: float, name: str) -> float:
    if not float(x) > 0:
        raise ConfigError(f"{name} must be > 0, got {x}")
    return float(x)


class Mutation:
    """``op(X, lower, upper, seed=, generation=, offset=)`` -> mutated copy of X [P, L]."""

    def __call__(self, X: np.ndarray, lower: Any, upper: Any, *, seed: int, generation: int, offset: int = 0):
        raise NotImplementedError

    def offspring(self, parent: np.ndarray, n: int, lower: Any, upper: Any, *, seed: int, generation: int):
        """``n`` mutants of one parent [L] -> [n, L] (the default mutates n copies)."""
        return self(np.repeat(parent[None, :], n, axis=0), lower, upper, seed=seed, generation=generation)


class PointMutation(Mutation):
    """Random-resetting integer mutation, each gene with probability ``prob`` (default 1/L); on
    {0, 1} genes it is the standard bit-flip mutation."""

    def __init__(self, prob: float | None = None) -> None:
        self.prob = _prob(prob, "prob")

    def __call__(self, X, lower, upper, *, seed, generation, offset=0):
        p = 1.0 / X.shape[1] if self.prob is None else self.prob
        return _mut.point(X, lower, upper, prob=p, seed=seed, generation=generation, individual_offset=offset)


class GaussianMutation(Mutation):
    """x + sigma * N(0, 1) per gene with probability ``prob``, clipped to the bounds if any."""

    def __init__(self, sigma: float, prob: float = 1.0) -> None:
        self.sigma = _positive(sigma, "sigma")
        self.prob = _prob(prob, "prob")

    def __call__(self, X, lower, upper, *, seed, generation, offset=0):
        return _mut.gaussian(X, self.sigma, prob=self.prob, lower=lower, upper=upper, seed=seed,
                             generation=generation, individual_offset=offset)


class PolynomialMutation(Mutation):
    """Deb's bounded polynomial mutation (distribution index ``eta``; ``prob`` default 1/L)."""

    def __init__(self, eta: float = 20.0, prob: float | None = None) -> None:
        self.eta = _positive(eta, "eta")
        self.prob = _prob(prob, "prob")

    def __call__(self, X, lower, upper, *, seed, generation, offset=0):
        return _mut.polynomial(X, lower, upper, eta=self.eta, prob=self.prob, seed=seed, generation=generation,
                               individual_offset=offset)


class LevelSwitch(Mutation):
    """EvoPress's budget-preserving level-switch mutation (see :func:`evoforge.mutation.level_switch`).

    Offspring are distinct from each other and from their parent; the sum of levels per group
    (or the budget given by ``costs``) is preserved.
    """

    def __init__(self, max_switches: int = 3, groups: Any = None, costs: Any = None,
                 budget_tol: float | None = None) -> None:
        self.max_switches = check_int(max_switches, "max_switches", 1, 16, integral_float=True)
        self.groups = None if groups is None else np.asarray(groups)
        self.costs = costs
        self.budget_tol = budget_tol

    def _kw(self) -> dict:
        return {"max_switches": self.max_switches, "groups": self.groups, "costs": self.costs,
                "budget_tol": self.budget_tol}

    def __call__(self, X, lower, upper, *, seed, generation, offset=0):
        out = _mut.level_switch(X, lower, upper, n_offspring=1, seed=seed, generation=generation,
                                individual_offset=offset, **self._kw())
        return out[:, 0, :]

    def offspring(self, parent, n, lower, upper, *, seed, generation):
        return _mut.level_switch(parent, lower, upper, n_offspring=n, seed=seed, generation=generation, **self._kw())


class Crossover:
    """``op(A, B, lower, upper, seed=, generation=, offset=)`` -> (C1, C2), each [P, L]."""

    def __call__(self, A, B, lower, upper, *, seed, generation, offset=0):
        raise NotImplementedError


class SBX(Crossover):
    """Simulated binary crossover (distribution index ``eta``; a pair crosses with ``prob``, each
    gene with ``prob_var``)."""

    def __init__(self, eta: float = 15.0, prob: float = 0.9, prob_var: float = 0.5) -> None:
        self.eta = _positive(eta, "eta")
        self.prob = _prob(prob, "prob")
        self.prob_var = _prob(prob_var, "prob_var")

    def __call__(self, A, B, lower, upper, *, seed, generation, offset=0):
        return _cx.sbx(A, B, lower, upper, eta=self.eta, prob=self.prob, prob_var=self.prob_var, seed=seed,
                       generation=generation, individual_offset=offset)


class _PointsCrossover(Crossover):
    _fn = staticmethod(_cx.uniform)

    def __init__(self, prob: float = 0.9) -> None:
        self.prob = _prob(prob, "prob")

    def __call__(self, A, B, lower, upper, *, seed, generation, offset=0):
        return type(self)._fn(A, B, prob=self.prob, seed=seed, generation=generation, individual_offset=offset)


class UniformCrossover(_PointsCrossover):
    """Each gene exchanged with probability 1/2 (a pair crosses with ``prob``)."""

    _fn = staticmethod(_cx.uniform)


class OnePointCrossover(_PointsCrossover):
    _fn = staticmethod(_cx.one_point)


class TwoPointCrossover(_PointsCrossover):
    _fn = staticmethod(_cx.two_point)
