"""A generic single-objective genetic algorithm: tournament selection, crossover, mutation and
elitism (the best ``elitism`` genomes always survive)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..cache import EvaluationCache
from .._checks import INT_MAX, check_int
from ..variation.selection import tournament
from .protocol import Batch
from .operators import Crossover, Mutation
from .engine import MAX_POPULATION
from .population import PopulationEngine

__all__ = ["GA"]


class GA(PopulationEngine):
    """Single-objective GA, minimising.

    Parameters
    ----------
    lower, upper : array-like, shape (L,) -- gene bounds (integers: integer genes)
    pop_size : int; elitism : int -- survivors copied unchanged; tournament_size : int
    crossover, mutation : operators (defaults: see PopulationEngine)
    """

    def __init__(self, lower: Any, upper: Any, *, pop_size: int = 100, elitism: int = 1, tournament_size: int = 2,
                 crossover: Crossover | None = None, mutation: Mutation | None = None, initial: Any = None,
                 seed: int = 0, run_dir: str | os.PathLike | None = None, cache: EvaluationCache | None = None,
                 task: str = "", progress: bool = True) -> None:
        pop_size = check_int(pop_size, "pop_size", 2, MAX_POPULATION, integral_float=True)
        elitism = check_int(elitism, "elitism", 0, pop_size - 1, integral_float=True)
        tournament_size = check_int(tournament_size, "tournament_size", 1, INT_MAX, integral_float=True)
        super().__init__(lower, upper, pop_size=pop_size, n_offspring=pop_size - elitism,
                         crossover=crossover, mutation=mutation, initial=initial, seed=seed, run_dir=run_dir,
                         cache=cache, task=task, progress=progress)
        self.elitism = int(elitism)
        self.tournament_size = int(tournament_size)

    def _ask(self) -> Batch:
        if self.X is None:
            return Batch(self._initial_population(), generation=0)
        return Batch(self._offspring(), generation=self.generation)

    def _select_parents(self, n: int, offset: int) -> np.ndarray:
        return tournament(self.F, n, tournament_size=self.tournament_size, seed=self.seed,
                          generation=self.generation, individual_offset=offset)

    def _tell(self, batch: Batch, F: np.ndarray, cv: np.ndarray | None) -> None:
        if self.X is None:
            order = np.argsort(F, kind="stable")[: self.pop_size]
            self.X, self.F = batch.genomes[order], F[order]
        else:
            elite = np.argsort(self.F, kind="stable")[: self.elitism]
            X = np.concatenate([self.X[elite], batch.genomes])
            FF = np.concatenate([self.F[elite], F])
            order = np.argsort(FF, kind="stable")  # keep the population sorted: elites first
            self.X, self.F = X[order], FF[order]
        self._end_generation(best_fitness=float(self.F[0]), mean_fitness=float(self.F.mean()))

    @property
    def best(self) -> tuple[np.ndarray | None, float | None]:
        if self.F is None:  # nothing evaluated yet (run with generations=0)
            return None, None
        return self.X[0].copy(), float(self.F[0])
