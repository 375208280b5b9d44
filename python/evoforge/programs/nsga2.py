"""NSGA-II (Deb et al., 2002) over programs, for tasks with several objectives (AutoNumerics-Zero's
search: error against op count).

Each generation makes ``n_offspring`` mutants of parents chosen by binary tournaments (Pareto
dominance, then crowding distance), and the population and its children compete for
``population_size`` places by non-dominated rank and crowding (:mod:`evoforge.pareto`). Of candidates
whose objectives are equal (functionally equal programs, or equal on every objective; to within
``resolution`` per objective) only the lowest survives, and ranks are of the survivors (the population
holds fewer than ``population_size`` programs while too few are distinct): a front of copies carries
no choice, NSGA-II's crowding cannot tell them apart, and a staircase of near-copies (the same
structure with slightly different constants) would crowd out the larger structures that are worse
at first but lead somewhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import pareto
from .._checks import check_int
from ..cache import EvaluationCache
from ..errors import ConfigError
from ..search.engine import MAX_POPULATION
from ..search.nsga2 import crowded_tournament
from ..search.protocol import Batch
from .cache import DEFAULT_QUANTISE
from .engine import ProgramEngine, ProgramTask
from .mutation import MUTATION_KINDS
from .program import Program

__all__ = ["ProgramNSGA2"]


class ProgramNSGA2(ProgramEngine):
    """NSGA-II over programs, minimising every objective of the task.

    Parameters
    ----------
    task : a :class:`~evoforge.programs.ProgramTask` (any number of objectives)
    population_size : int >= 2; n_offspring : children per generation (default population_size)
    ref_point : float [M], optional: the history records the front's hypervolume against it
    resolution : float or float [M] >= 0: objectives closer than this (on a grid of that step) count as
        equal when duplicates are pushed back (0: exactly equal)
    Other options: see :class:`~evoforge.programs.engine.ProgramEngine` and :class:`evoforge.search.Engine`.

    ``population`` (list of Programs, at most ``population_size``, distinct in their objectives) and ``F``
    (float64 [len(population), M]) hold the state;
    ``best`` is ``(programs, objectives [K, M])`` of the first front, sorted by the first objective.
    """

    def __init__(self, task: ProgramTask, *, population_size: int = 100, n_offspring: int | None = None,
                 ref_point: Any = None, resolution: Any = 0.0, initial: Program | Sequence[Program] | None = None, max_length: int = 32,
                 kinds: Sequence[str] = MUTATION_KINDS, imm_sigma: float = 0.1, cache: bool | EvaluationCache = True,
                 functional_cache: bool = True, quantise: float | int = DEFAULT_QUANTISE, seed: int = 0,
                 run_dir: str | os.PathLike | None = None, progress: bool = True) -> None:
        self.population_size = check_int(population_size, "population_size", 2, MAX_POPULATION)
        self.n_offspring = self.population_size if n_offspring is None else check_int(
            n_offspring, "n_offspring", 1, MAX_POPULATION)
        super().__init__(task, initial=initial, max_length=max_length, kinds=kinds, imm_sigma=imm_sigma, cache=cache,
                         functional_cache=functional_cache, quantise=quantise, seed=seed, run_dir=run_dir,
                         progress=progress)
        self.ref_point = None
        if ref_point is not None:
            a = np.asarray(ref_point)
            if a.dtype.kind not in "iuf" or a.shape != (self.n_objectives,):
                raise ConfigError(f"ref_point must be {self.n_objectives} real numbers, got {ref_point!r}")
            r = a.astype(np.float64)
            if not np.isfinite(r).all():
                raise ConfigError(f"ref_point must be {self.n_objectives} finite numbers, got {ref_point!r}")
            self.ref_point = r
        res = np.broadcast_to(np.asarray(resolution, dtype=np.float64), (self.n_objectives,)).copy() \
            if np.ndim(resolution) <= 1 else None
        if res is None or not np.isfinite(res).all() or (res < 0).any():
            raise ConfigError(f"resolution must be a float >= 0 or {self.n_objectives} of them, got {resolution!r}")
        self.resolution = res
        self.population: list[Program] = []
        self.F: np.ndarray | None = None
        self.rank: np.ndarray | None = None
        self.crowding: np.ndarray | None = None

    def _ask(self) -> Batch:
        if self.F is None:
            return Batch(self._start(self.population_size), generation=0)
        rng = np.random.default_rng(self.stream_seed(self.generation, 2))
        parents = crowded_tournament(self.F, self.crowding, self.n_offspring, rng)
        return Batch(self._children([self.population[p] for p in parents]), generation=self.generation)

    def _tell(self, batch: Batch, F: np.ndarray, cv: np.ndarray | None) -> None:
        F = F.reshape(len(F), self.n_objectives)
        programs = self.population + list(batch.genomes)
        FF = F if self.F is None else np.concatenate([self.F, F])
        # Of the candidates in one cell of the grid, the lowest objectives (then the oldest) stays; the
        # ranks are of the distinct ones, so a dropped copy never leaves a front point marked dominated.
        by_value = np.lexsort(FF.T[::-1])
        _, first = np.unique(self._grid(FF)[by_value], axis=0, return_index=True)
        distinct = np.sort(by_value[first])
        FD = FF[distinct]
        rank = pareto.nondominated_rank(FD)
        crowding = pareto.crowding_distance(FD, rank)
        keep = np.lexsort((np.arange(len(FD)), -crowding, rank))[: self.population_size]
        self.population = [programs[i] for i in distinct[keep]]
        self.F, self.rank, self.crowding = FD[keep], rank[keep], crowding[keep]
        _, front = self.best
        record: dict[str, Any] = {"front_size": int(len(front)), "best_fitness": front.min(axis=0)}
        if self.ref_point is not None:
            record["hypervolume"] = pareto.hypervolume(front, self.ref_point)
        self._end_generation(**record, **self._cache_record())

    def _grid(self, F: np.ndarray) -> np.ndarray:
        step = np.where(self.resolution > 0, self.resolution, 1.0)
        return np.where(self.resolution > 0, np.floor(F / step), F)

    @property
    def best(self) -> tuple[list[Program], np.ndarray]:
        if self.F is None:
            return [], np.empty((0, self.n_objectives))
        idx = sorted(np.flatnonzero(self.rank == 0).tolist(), key=lambda i: tuple(self.F[i]))
        return [self.population[i] for i in idx], self.F[idx].copy()
