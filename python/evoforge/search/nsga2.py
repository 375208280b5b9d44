"""NSGA-II (Deb et al., 2002) on evoforge.pareto: non-dominated sorting and crowding distance for
survival, binary tournaments on (rank, -crowding) for mating, constrained domination."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import pareto
from .._checks import INT_MAX, check_int
from ..cache import EvaluationCache
from ..errors import ConfigError
from .protocol import Batch
from .operators import Crossover, Mutation
from .population import PopulationEngine
from .screening import Screen

__all__ = ["NSGA2", "crowded_tournament"]


class NSGA2(PopulationEngine):
    """Multi-objective search, minimising M objectives.

    Parameters
    ----------
    lower, upper : array-like, shape (L,) -- gene bounds (integers: integer genes)
    n_objectives : int -- M
    pop_size : int; n_offspring : int (default pop_size)
    crossover, mutation : operators (defaults: see PopulationEngine)
    constrained : bool -- the evaluator returns (F, constraint_violation); cv <= 0 is feasible
    ref_point : array-like (M,), optional -- records the first front's hypervolume each generation
    initial : array-like (P, L), optional
    screen : Screen, optional -- make ``screen.factor * n_offspring`` offspring each generation and
        evaluate the ``n_offspring`` whose predicted objectives survive best (see
        :class:`~evoforge.search.screening.Screen`); the history then records ``screen_spearman``
        (a list per objective), ``screen_generated`` and ``screen_evaluated``
    """

    #: Class default: checkpoints written before screening existed resume unscreened.
    screen: Screen | None = None

    def __init__(self, lower: Any, upper: Any, *, n_objectives: int, pop_size: int = 100,
                 n_offspring: int | None = None, crossover: Crossover | None = None,
                 mutation: Mutation | None = None, constrained: bool = False, ref_point: Any = None,
                 initial: Any = None, seed: int = 0, run_dir: str | os.PathLike | None = None,
                 cache: EvaluationCache | None = None, task: str = "", progress: bool = True,
                 screen: Screen | None = None) -> None:
        if screen is not None and not isinstance(screen, Screen):
            raise TypeError(f"screen must be an evoforge.search.Screen, got {type(screen).__name__}")
        n_objectives = check_int(n_objectives, "n_objectives", 1, INT_MAX, integral_float=True)
        super().__init__(lower, upper, pop_size=pop_size, n_offspring=n_offspring, crossover=crossover,
                         mutation=mutation, initial=initial, seed=seed, run_dir=run_dir, cache=cache, task=task,
                         progress=progress)
        self.n_objectives = n_objectives
        self.constrained = bool(constrained)
        self.ref_point = None if ref_point is None else np.asarray(ref_point, dtype=np.float64)
        if self.ref_point is not None and self.ref_point.shape != (self.n_objectives,):
            raise ConfigError(f"ref_point must have shape ({self.n_objectives},), got {self.ref_point.shape}")
        self.rank: np.ndarray | None = None
        self.crowding: np.ndarray | None = None
        if screen is not None:
            self.screen = screen.bind(lower=self.lower, upper=self.upper, n_genes=self.lower.size, integer=self.integer,
                                      n_targets=n_objectives + self.constrained, n_offspring=self.n_offspring,
                                      min_train=self.pop_size)

    def _ask(self) -> Batch:
        screen = self.screen
        if self.X is None:
            genomes, generation = self._initial_population(), 0
        elif screen is not None and screen.ready:
            pool = self._predicted_offspring(screen)
            chosen = screen.choose_survivors(pool, self.n_offspring, self.F, self.CV, seen=self.X)
            return Batch(pool[chosen], generation=self.generation)
        else:
            genomes, generation = self._offspring(), self.generation
        if screen is not None:
            screen.skip(len(genomes))
        return Batch(genomes, generation=generation)

    def _predicted_offspring(self, screen: Screen) -> np.ndarray:
        """``screen.factor * n_offspring`` offspring of the population for each of ``screen.depth``
        generations [depth * factor * n_offspring, L]: after the first, of a population evolved on
        the predictions (NSGA-II survival of the population and the predicted offspring), so that a
        good predictor leads the evaluations more than one generation ahead."""
        n = screen.factor * self.n_offspring
        pools = [self._offspring(n)]
        if screen.depth == 1:
            return pools[0]
        real = self.X, self.F, self.CV, self.rank, self.crowding
        M = self.n_objectives
        try:
            for d in range(1, screen.depth):
                P = screen.predict(pools[-1])
                X = np.concatenate([self.X, pools[-1]])
                F = np.concatenate([self.F, P[:, :M]])
                CV = None if self.CV is None else np.concatenate([self.CV, P[:, M]])
                keep, rank, crowding = _survivors(F, CV, self.pop_size)
                self.X, self.F, self.rank, self.crowding = X[keep], F[keep], rank[keep], crowding[keep]
                self.CV = None if CV is None else CV[keep]
                pools.append(self._offspring(n, stream=d))
        finally:
            self.X, self.F, self.CV, self.rank, self.crowding = real
        return np.concatenate(pools)

    def _select_parents(self, n: int, offset: int) -> np.ndarray:
        """Binary tournaments decided by constraint violation, then Pareto dominance between the
        two contestants, then crowding distance. Contestants are drawn as consecutive random
        permutations of the population, so every genome competes about equally often (as pymoo
        does; drawing with replacement, or comparing ranks, loses the extremes of fronts such as
        ZDT2's)."""
        rng = np.random.default_rng(self.stream_seed(self.generation, offset, 0x7065726D))
        return crowded_tournament(self.F, self.crowding, n, rng, self.CV)

    def _tell(self, batch: Batch, F: np.ndarray, cv: np.ndarray | None) -> None:
        F = F.reshape(len(F), self.n_objectives)
        screened = {}
        if self.screen is not None:
            self.screen.observe(batch.genomes, F if cv is None else np.column_stack([F, cv]))
            screened = self.screen.record(F)
        if self.X is None:
            X, FF, CV = batch.genomes, F, cv
        else:
            X = np.concatenate([self.X, batch.genomes])
            FF = np.concatenate([self.F, F])
            CV = None if cv is None else np.concatenate([self.CV, cv])
        # NSGA-II survival (as pareto.select), keeping the merged set's ranks and crowding for the
        # next tournaments: a truncated front keeps the crowding it was truncated by.
        keep, rank, crowding = _survivors(FF, CV, self.pop_size)
        self.X, self.F, self.rank, self.crowding = X[keep], FF[keep], rank[keep], crowding[keep]
        self.CV = None if CV is None else CV[keep]
        _, front = self.best
        record = {"front_size": int(len(front)), "best_fitness": front.min(axis=0) if len(front) else None}
        if self.ref_point is not None:
            record["hypervolume"] = pareto.hypervolume(front, self.ref_point) if len(front) else 0.0
        self._end_generation(**record, **screened)

    @property
    def best(self) -> tuple[np.ndarray, np.ndarray]:
        """(genomes [K, L], objectives [K, M]) of the feasible first front; K = 0 before anything
        was evaluated (run with generations=0)."""
        if self.F is None:
            return np.empty((0, self.lower.size), dtype=self.lower.dtype), np.empty((0, self.n_objectives))
        mask = self.rank == 0
        if self.CV is not None:
            mask &= self.CV <= 0
        return self.X[mask].copy(), self.F[mask].copy()


def _survivors(F: np.ndarray, CV: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NSGA-II survival of ``F`` [N, M] (and ``CV`` [N]): the indices [<= n] kept (by rank, then
    crowding distance, then index), and the ranks and crowding distances [N] of the whole set."""
    rank = pareto.nondominated_rank(F, constraint_violation=CV)
    crowding = pareto.crowding_distance(F, rank)
    return np.lexsort((np.arange(len(F)), -crowding, rank))[:n], rank, crowding


def crowded_tournament(F: np.ndarray, crowding: np.ndarray, n: int, rng: np.random.Generator,
                       CV: np.ndarray | None = None) -> np.ndarray:
    """Indices [n] of the winners of n binary tournaments over a population with objectives ``F``
    [N, M], crowding distances [N] (and constraint violations ``CV`` [N]): the feasible (or less
    violating) contestant, else the dominating one, else the one with the larger crowding distance.
    Contestants are consecutive random permutations of the population (from ``rng``), so every member
    competes about equally often."""
    N = len(F)
    contestants = np.concatenate([rng.permutation(N) for _ in range(-(-2 * n // N))])[: 2 * n]
    a, b = contestants[0::2], contestants[1::2]
    Fa, Fb = F[a], F[b]
    a_dom = (Fa <= Fb).all(axis=1) & (Fa < Fb).any(axis=1)
    b_dom = (Fb <= Fa).all(axis=1) & (Fb < Fa).any(axis=1)
    pick_a = a_dom | (~b_dom & (crowding[a] >= crowding[b]))
    if CV is not None:
        ca, cb = np.maximum(CV[a], 0.0), np.maximum(CV[b], 0.0)
        pick_a = np.where((ca > 0) | (cb > 0), ca <= cb, pick_a)
    return np.where(pick_a, a, b)
