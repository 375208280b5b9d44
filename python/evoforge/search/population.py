"""What the population engines (NSGA2, GA) share: bounds, the initial population, variation."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..cache import EvaluationCache
from ..errors import ConfigError
from .._checks import check_int
from .engine import MAX_POPULATION, Engine
from .operators import SBX, Crossover, Mutation, PointMutation, PolynomialMutation, UniformCrossover


class PopulationEngine(Engine):
    """A population of ``pop_size`` genomes within [lower, upper] (integer genes when both bounds
    are integers). ``pop_size`` and ``n_offspring`` are at most
    :data:`~evoforge.search.engine.MAX_POPULATION`; ``crossover`` and ``mutation`` must be
    :class:`Crossover` and :class:`Mutation` instances (TypeError otherwise: they are pickled into
    the checkpoint with the engine). Defaults: SBX(15, 0.9) + PolynomialMutation(20, 1/L) for real
    genes, uniform crossover + PointMutation(1/L) for integer genes."""

    def __init__(self, lower: Any, upper: Any, *, pop_size: int, n_offspring: int | None,
                 crossover: Crossover | None, mutation: Mutation | None, initial: Any,
                 seed: int, run_dir: str | os.PathLike | None, cache: EvaluationCache | None, task: str,
                 progress: bool) -> None:
        lo, hi = np.asarray(lower), np.asarray(upper)
        if lo.ndim != 1 or lo.shape != hi.shape or lo.size == 0:
            raise ConfigError(f"lower and upper must be 1-D of one length L >= 1, got {lo.shape} and {hi.shape}")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            raise ConfigError("lower and upper must be finite")
        if (lo > hi).any():
            i = int(np.argmax(lo > hi))
            raise ConfigError(f"lower > upper at gene {i}: {lo[i]} > {hi[i]}")
        integer = lo.dtype.kind in "iu" and hi.dtype.kind in "iu"
        pop_size = check_int(pop_size, "pop_size", 2, MAX_POPULATION, integral_float=True)
        n_off = pop_size if n_offspring is None else check_int(n_offspring, "n_offspring", 1, MAX_POPULATION,
                                                               integral_float=True)
        if crossover is not None and not isinstance(crossover, Crossover):
            raise TypeError(f"crossover must be an evoforge.search.operators.Crossover (e.g. SBX()), got "
                            f"{type(crossover).__name__}; wrap a function in a Crossover subclass")
        if mutation is not None and not isinstance(mutation, Mutation):
            raise TypeError(f"mutation must be an evoforge.search.operators.Mutation (e.g. PointMutation()), got "
                            f"{type(mutation).__name__}; wrap a function in a Mutation subclass")
        super().__init__(seed=seed, run_dir=run_dir, cache=cache, task=task, progress=progress)
        self.integer = integer
        self.lower = lo.astype(np.int32 if integer else np.float64)
        self.upper = hi.astype(np.int32 if integer else np.float64)
        self.pop_size, self.n_offspring = int(pop_size), int(n_off)
        self.crossover = crossover if crossover is not None else (UniformCrossover() if integer else SBX())
        self.mutation = mutation if mutation is not None else (PointMutation() if integer else PolynomialMutation())
        self.initial = None if initial is None else self._check_population(initial, "initial")
        self.X: np.ndarray | None = None
        self.F: np.ndarray | None = None
        self.CV: np.ndarray | None = None

    def _check_population(self, X: Any, name: str) -> np.ndarray:
        X = np.asarray(X, dtype=self.lower.dtype)
        if X.ndim != 2 or X.shape[1] != self.lower.size or len(X) < 1:
            raise ConfigError(f"{name} must have shape (P, {self.lower.size}), got {X.shape}")
        if ((X < self.lower) | (X > self.upper)).any():
            raise ConfigError(f"{name} has genes outside [lower, upper]")
        return X

    def _initial_population(self) -> np.ndarray:
        if self.initial is not None:
            return self.initial
        rng = np.random.default_rng(self.stream_seed(0, 0))
        if self.integer:
            return rng.integers(self.lower, self.upper.astype(np.int64) + 1, size=(self.pop_size, self.lower.size)
                                ).astype(np.int32)
        return self.lower + rng.random((self.pop_size, self.lower.size)) * (self.upper - self.lower)

    def _select_parents(self, n: int, offset: int) -> np.ndarray:
        """Indices [n] of mating parents (subclasses: tournaments on their own keys)."""
        raise NotImplementedError

    def _offspring(self, n: int | None = None, stream: int = 0) -> np.ndarray:
        """``n`` (default ``n_offspring``) new genomes [n, L], none equal to a population member or
        to each other (as pymoo does: duplicates waste evaluations and crowd out diversity). Each
        retry draws from fresh individuals of this generation's streams, so it is deterministic;
        ``stream`` k > 0 draws from individuals no call with another ``stream`` uses."""
        n = self.n_offspring if n is None else int(n)
        g, n_pairs = self.generation, (n + 1) // 2
        seen = {x.tobytes() for x in self.X}
        out: list[np.ndarray] = []
        for attempt in range(_MAX_ATTEMPTS):
            offset = (stream * _MAX_ATTEMPTS + attempt) * 2 * n_pairs
            parents = self._select_parents(2 * n_pairs, offset)
            A, B = self.X[parents[0::2]], self.X[parents[1::2]]
            C1, C2 = self.crossover(A, B, self.lower, self.upper, seed=self.seed, generation=g, offset=offset // 2)
            children = np.empty((2 * n_pairs, A.shape[1]), dtype=A.dtype)
            children[0::2], children[1::2] = np.asarray(C1), np.asarray(C2)
            children = np.asarray(self.mutation(children, self.lower, self.upper, seed=self.seed, generation=g,
                                                offset=offset))
            for c in children:
                b = c.tobytes()
                if b not in seen:
                    seen.add(b)
                    out.append(c)
                    if len(out) == n:
                        return np.stack(out)
        # A converged population may admit too few new genomes: fill up with duplicates.
        return np.stack(out + list(children[: n - len(out)]))


_MAX_ATTEMPTS = 20
