"""Regularized evolution (Real et al., 2019; AutoML-Zero's engine) over programs, one objective.

A population of ``population_size`` programs in order of age. Each child: ``tournament_size``
members drawn at random (with replacement), the fittest of them (the youngest on a tie) mutated;
the child joins as the youngest and the oldest member dies, whatever its fitness (aging keeps the
search from resting on one lucky program). Children are made ``batch_size`` at a time from the
same population (a batch is one generation: evaluated in one call, so a backend runs it in
parallel); ``batch_size=1`` is the sequential algorithm. The best program ever evaluated is kept
apart, since aging removes it from the population.

Restarts (``restart_stall``): a search from empty programs drifts on a plateau of programs that all
compute the same trivial function until a rare mutation leaves it, and the time that takes is
heavy-tailed across seeds; starting again from the initial programs after a stall turns the tail
into a geometric wait (the restart strategies of heavy-tailed search). A stall is ``restart_stall``
generations in which the best fitness since the last start fell by less than a relative
:data:`RESTART_TOLERANCE`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .._checks import check_int
from ..cache import EvaluationCache
from ..errors import ConfigError
from ..search.engine import MAX_POPULATION
from ..search.protocol import Batch
from .cache import DEFAULT_QUANTISE
from .engine import ProgramEngine, ProgramTask
from .mutation import MUTATION_KINDS
from .program import Program

__all__ = ["RegularizedEvolution"]

#: The relative fall of the best fitness since the last start that counts as progress for restarts.
RESTART_TOLERANCE = 1e-3


class RegularizedEvolution(ProgramEngine):
    """Regularized evolution of programs, minimising the task's one objective.

    Parameters
    ----------
    task : a :class:`~evoforge.programs.ProgramTask` with one objective
    population_size : int >= 2; tournament_size : int in [1, population_size]
    batch_size : children per generation (int in [1, population_size])
    restart_stall : generations without progress after which the population starts again from the
        initial programs (None: never; see the module's doc); the best ever and the cache are kept
    Other options: see :class:`~evoforge.programs.engine.ProgramEngine` (initial programs, mutation,
    caching) and :class:`evoforge.search.Engine` (seed, run_dir, progress).

    ``population`` (list of Programs, oldest first) and ``fitness`` (float64 [population_size]) hold
    the state; ``best`` is the best ``(program, fitness)`` ever evaluated.
    """

    def __init__(self, task: ProgramTask, *, population_size: int = 100, tournament_size: int = 10,
                 batch_size: int = 10, restart_stall: int | None = None, initial: Program | Sequence[Program] | None = None, max_length: int = 32,
                 kinds: Sequence[str] = MUTATION_KINDS, imm_sigma: float = 0.1, cache: bool | EvaluationCache = True,
                 functional_cache: bool = True, quantise: float | int = DEFAULT_QUANTISE, seed: int = 0,
                 run_dir: str | os.PathLike | None = None, progress: bool = True) -> None:
        pop = check_int(population_size, "population_size", 2, MAX_POPULATION)
        self.population_size = pop
        self.tournament_size = check_int(tournament_size, "tournament_size", 1, pop)
        self.batch_size = check_int(batch_size, "batch_size", 1, pop)
        self.restart_stall = None if restart_stall is None else check_int(restart_stall, "restart_stall", 1, 1 << 40)
        self.restarts = 0
        self._progress: tuple[int, float] | None = None  # (generation, best fitness) at the last progress
        super().__init__(task, initial=initial, max_length=max_length, kinds=kinds, imm_sigma=imm_sigma, cache=cache,
                         functional_cache=functional_cache, quantise=quantise, seed=seed, run_dir=run_dir,
                         progress=progress)
        if self.n_objectives != 1:
            raise ConfigError(f"RegularizedEvolution minimises one objective; the task has {self.n_objectives} "
                              f"({', '.join(self.objectives)}): use ProgramNSGA2")
        self.population: list[Program] = []
        self.fitness: np.ndarray | None = None
        self._best: tuple[Program | None, float | None] = (None, None)

    def _ask(self) -> Batch:
        if self.fitness is not None and self._stalled():
            self.fitness, self._progress = None, None
            self.restarts += 1
        if self.fitness is None:
            return Batch(self._start(self.population_size), generation=self.generation)
        rng = np.random.default_rng(self.stream_seed(self.generation, 1))
        contestants = rng.integers(0, self.population_size, size=(self.batch_size, self.tournament_size))
        F = self.fitness[contestants]
        # The fittest contestant; on a tie the youngest (the highest index: the population is oldest first).
        best = F.min(axis=1, keepdims=True)
        winners = np.where(F == best, contestants, -1).max(axis=1)
        return Batch(self._children([self.population[w] for w in winners]), generation=self.generation)

    def _tell(self, batch: Batch, F: np.ndarray, cv: np.ndarray | None) -> None:
        programs = list(batch.genomes)
        if self.fitness is None:
            self.population, self.fitness = programs, F.astype(np.float64)
        else:
            self.population = (self.population + programs)[len(programs):]
            self.fitness = np.concatenate([self.fitness, F])[len(programs):]
        i = int(np.argmin(F))
        if self._best[1] is None or F[i] < self._best[1]:
            self._best = (programs[i], float(F[i]))
        f = float(F[i])
        if self._progress is None or f < self._progress[1] - RESTART_TOLERANCE * abs(self._progress[1]):
            self._progress = (self.generation, f)
        self._end_generation(best_fitness=self._best[1], population_best=float(self.fitness.min()),
                             population_median=float(np.median(self.fitness)), restarts=self.restarts,
                             **self._cache_record())

    def _stalled(self) -> bool:
        return (self.restart_stall is not None and self._progress is not None
                and self.generation - self._progress[0] >= self.restart_stall)

    @property
    def best(self) -> tuple[Program | None, float | None]:
        return self._best

