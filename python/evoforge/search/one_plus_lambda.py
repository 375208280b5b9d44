"""(1 + lambda) evolution with multi-step selection, as in EvoPress (Sieberling et al., 2024).

Each generation makes ``n_offspring`` mutants of the parent and runs the selection ``stages``
[(survivors_1, fidelity_1), ..., (1, fidelity_S)]: stage s evaluates the candidates still alive on
a fresh minibatch (``Batch.seed``, the same for all of them) of ``fidelity_s`` (e.g. tokens) and
keeps the best ``survivors_s``. The parent joins at the last stage only, so it is re-evaluated on
that stage's minibatch every generation and replaced when a survivor is at least as good
(offspring win ties). A stage with fidelity None is deterministic (no minibatch seed), and its
results are reused through the cache.

Several starting points (``initial`` of shape (K, L), e.g. the uniform configuration and a
heuristic's): before the first generation they are evaluated together on a minibatch of the last
stage's fidelity, and the best becomes the first parent (ties: the earlier row), so that the search
starts from, and so never ends worse than, the best of them on its own objective.

History records (besides the engine's): ``best_fitness`` (the parent's), ``improved``,
``median_fitness`` (of the last stage's candidates), ``stage_best`` (each stage's best, with several
stages) and ``parent`` (the parent's genome, in the first record and whenever it changed: the
dashboard draws the levels over generations from it).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .._checks import check_int
from ..cache import EvaluationCache
from ..errors import ConfigError
from .engine import MAX_POPULATION, Engine
from .protocol import Batch
from .operators import Mutation
from .screening import Screen

__all__ = ["OnePlusLambda"]


class OnePlusLambda(Engine):
    """(1 + lambda) search, minimising.

    Parameters
    ----------
    initial : array-like, shape (L,) or (K, L), integer or float -- the first parent (e.g. uniform
        levels), or K starting points of which the best on the last stage's fidelity becomes it
    mutation : Mutation -- e.g. LevelSwitch() for budget-preserving level genomes, PointMutation()
    lower, upper : scalar or array-like (L,), optional -- gene bounds passed to the mutation
    n_offspring : int -- lambda, at most :data:`~evoforge.search.engine.MAX_POPULATION`
    stages : sequence of (survivors, fidelity) -- default [(1, None)]: every offspring and the
        parent on one deterministic evaluation. Survivors must decrease and end with 1; the first
        is at most n_offspring.
    screen : Screen, optional -- make ``screen.factor * n_offspring`` mutants each generation and
        pass the ``n_offspring`` of best predicted fitness to the stages (see
        :class:`~evoforge.search.screening.Screen`); the predictor learns the first stage's
        fitness of every offspring, and the history records ``screen_spearman`` (against that
        fitness), ``screen_generated`` and ``screen_evaluated``
    seed, run_dir, cache, task, progress : see :class:`Engine`
    """

    #: Class default: checkpoints written before screening existed resume unscreened.
    screen: Screen | None = None

    def __init__(self, initial: Any, mutation: Mutation, *, lower: Any = None, upper: Any = None,
                 n_offspring: int = 16, stages: Sequence[tuple[int, int | None]] | None = None,
                 seed: int = 0, run_dir: str | os.PathLike | None = None, cache: EvaluationCache | None = None,
                 task: str = "", progress: bool = True, screen: Screen | None = None) -> None:
        if screen is not None and not isinstance(screen, Screen):
            raise TypeError(f"screen must be an evoforge.search.Screen, got {type(screen).__name__}")
        starts = np.asarray(initial)
        if starts.ndim not in (1, 2) or starts.size == 0:
            raise ConfigError(f"initial must be a non-empty genome (L,) or starting points (K, L), got shape "
                              f"{starts.shape}")
        parent = starts if starts.ndim == 1 else starts[0]
        if parent.dtype.kind not in "iuf":
            raise ConfigError(f"initial must hold integers or floats, got dtype {parent.dtype}")
        if not isinstance(mutation, Mutation):
            raise ConfigError(f"mutation must be an evoforge.search.operators.Mutation, got {type(mutation).__name__}")
        n_offspring = check_int(n_offspring, "n_offspring", 1, MAX_POPULATION, integral_float=True)
        stages = [(1, None)] if stages is None else [(int(s), None if f is None else int(f)) for s, f in stages]
        sizes = [s for s, _ in stages]
        if not stages or sizes[-1] != 1 or sizes[0] > n_offspring or any(b > a for a, b in zip(sizes, sizes[1:])) \
                or min(sizes) < 1:
            raise ConfigError(f"stages must have non-increasing survivors ending with 1, the first <= n_offspring="
                              f"{n_offspring}; got {stages}")
        super().__init__(seed=seed, run_dir=run_dir, cache=cache, task=task, progress=progress)
        self.mutation = mutation
        self.lower, self.upper = lower, upper
        self.n_offspring = int(n_offspring)
        self.stages = stages
        self.parent = parent.copy()
        self.parent_fitness: float | None = None
        #: starting points still to be compared (None once the first parent is chosen)
        self._starts: np.ndarray | None = starts.copy() if starts.ndim == 2 and starts.shape[0] > 1 else None
        #: row of ``initial`` that became the first parent (also the first history record's "start")
        self.start_index = 0
        self._start_chosen = False
        self._alive: np.ndarray | None = None
        self._stage = 0
        if screen is not None:
            self.screen = screen.bind(lower=lower, upper=upper, n_genes=parent.size, integer=parent.dtype.kind in "iu",
                                      n_targets=1, n_offspring=self.n_offspring, min_train=self.n_offspring)
            self._screened: dict = {}  # the history fields of this generation's screening

    def _ask(self) -> Batch:
        g = self.generation
        if getattr(self, "_starts", None) is not None:  # getattr: checkpoints written before starts existed
            fidelity = self.stages[-1][1]
            seed = None if fidelity is None else self.stream_seed(g, len(self.stages))
            return Batch(self._starts, fidelity, seed, g, len(self.stages))
        if self._alive is None:
            screen = self.screen
            screening = screen is not None and screen.ready
            n = self.n_offspring * (screen.factor if screening else 1)
            pool = np.asarray(self.mutation.offspring(self.parent, n, self.lower, self.upper, seed=self.seed,
                                                      generation=g))
            if screening:
                pool = pool[screen.choose_best(pool, self.n_offspring, seen=self.parent)]
            elif screen is not None:
                screen.skip(len(pool))
            self._alive = pool
            self._stage = 0
        s = self._stage
        fidelity = self.stages[s][1]
        genomes = self._alive
        if s == len(self.stages) - 1:
            genomes = np.concatenate([genomes, self.parent[None, :].astype(genomes.dtype)])
        seed = None if fidelity is None else self.stream_seed(g, s)
        return Batch(genomes, fidelity, seed, g, s)

    def _tell(self, batch: Batch, F: np.ndarray, cv: np.ndarray | None) -> None:
        order = np.argsort(F, kind="stable")  # ties: the earlier candidate (offspring before parent)
        if getattr(self, "_starts", None) is not None:
            self.start_index = int(order[0])
            self.parent = self._starts[self.start_index].copy()
            self.parent_fitness = float(F[self.start_index])
            self._starts = None
            self._start_chosen = True
            return
        keep = self.stages[self._stage][0]
        if self._stage == 0:
            self._stage_best: list[float] = []
        self._stage_best.append(float(F[order[0]]))
        if self._stage == 0 and self.screen is not None:
            n = len(self._alive)  # the last stage also holds the parent, which is not learnt from
            self.screen.observe(batch.genomes[:n], F[:n])
            self._screened = self.screen.record(F[:n])
        if self._stage < len(self.stages) - 1:
            self._alive = batch.genomes[np.sort(order[:keep])]
            self._stage += 1
            return
        best = int(order[0])
        improved = best < len(batch.genomes) - 1
        first = self.generation == 0
        self.parent = batch.genomes[best].copy()
        self.parent_fitness = float(F[best])
        self._alive = None
        self._stage = 0
        record = {"start": self.start_index} if getattr(self, "_start_chosen", False) else {}
        self._start_chosen = False
        if self.screen is not None:
            record.update(self._screened)
        # for the dashboard: the last stage's median, each stage's best (several stages), and the
        # parent's genome whenever it changed (and in the first record), to draw levels over time
        record["median_fitness"] = float(np.median(F))
        if len(self.stages) > 1:
            record["stage_best"] = list(self._stage_best)
        if improved or first:
            record["parent"] = self.parent.tolist()
        self._end_generation(best_fitness=self.parent_fitness, improved=bool(improved), **record)

    @property
    def best(self) -> tuple[np.ndarray, float | None]:
        """(parent, its fitness); the fitness is None until the first generation completes."""
        return self.parent.copy(), self.parent_fitness
