"""Deep GA (Such et al. 2017): truncation selection, Gaussian mutation, elitism with re-evaluation,
over seed-list genomes.

Symbols: P population size, T parents (truncation), C elite candidates, E episodes, D parameters.

One generation, two batches:

1. *Population* (stage 0): the P genomes, each over E episodes (the same E reset seeds for every
   member). Generation 0 is P random inits ``[s0]``.
2. *Elite* (stage 1): the C best of stage 0, plus the previous elite, each over ``elite_episodes``
   fresh episodes. The best of them (ties: the better in stage 0) is the elite: copied unchanged into
   the next generation and, if it beats every earlier elite, the run's best.

The next population is the elite plus P - 1 children; child i picks its parent uniformly among the
T best of stage 0 and appends one seed, both drawn by :func:`~evoforge.neuro.genome.derive_seed` from
(run seed, generation, i): the run is a pure function of its seed. Genomes reach the evaluators as
seed lists (:func:`~evoforge.neuro.genome.encode`), never as weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import check_int
from ..errors import ConfigError
from ..search.engine import MAX_POPULATION
from ..search.protocol import Batch
from .engine import NeuroEngine
from .genome import ParamCache, decode, derive_seed, encode
from .policy import MLPPolicy

__all__ = ["DeepGA"]


class DeepGA(NeuroEngine):
    """Deep GA over seed-list genomes, minimising minus the mean return.

    Parameters
    ----------
    policy : MLPPolicy
    pop_size : int >= 2 -- P; truncation : int in [1, P] -- T, the parents of the next generation
        (default: min(20, P))
    sigma : float > 0 -- mutation power (the evaluators must use the same)
    episodes : int -- E per member; elite_candidates : int in [1, P] -- C (default: min(10, P));
    elite_episodes : int -- episodes of each elite candidate's re-evaluation
    obs_norm : bool -- a shared observation normalisation (see :mod:`evoforge.neuro.obs_norm`)
    seed, run_dir, cache, task, progress : as for :class:`~evoforge.search.engine.Engine`

    ``run`` (or ask / evaluate / tell) takes a :class:`~evoforge.neuro.evaluator.PolicyEvaluator` with
    ``encoding="seeds"`` and the same ``sigma``, or a backend built from one.
    """

    encoding = "seeds"

    def __init__(self, policy: MLPPolicy, *, pop_size: int = 256, truncation: int | None = None, sigma: float = 0.05,
                 episodes: int = 1, elite_candidates: int | None = None, elite_episodes: int = 10,
                 obs_norm: bool = False, obs_clip: float = 5.0, seed: int = 0, run_dir: Any = None,
                 cache: Any = None, task: str = "", progress: bool = True) -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)) \
                or not np.isfinite(sigma) or sigma <= 0:
            raise ConfigError(f"sigma must be a finite number > 0, got {sigma!r}")
        P = check_int(pop_size, "pop_size", self.min_pop, MAX_POPULATION, integral_float=True)
        truncation = min(20, P) if truncation is None else check_int(truncation, "truncation", 1, P,
                                                                    integral_float=True)
        elite_candidates = min(10, P) if elite_candidates is None else check_int(
            elite_candidates, "elite_candidates", 1, P, integral_float=True)
        elite_episodes = check_int(elite_episodes, "elite_episodes", 1, 1 << 16, integral_float=True)
        super().__init__(policy, pop_size=P, episodes=episodes, obs_norm=obs_norm, obs_clip=obs_clip,
                         hyper={"sigma": float(sigma), "truncation": truncation, "elite_candidates": elite_candidates,
                                "elite_episodes": elite_episodes}, seed=seed, run_dir=run_dir, cache=cache,
                         task=task, progress=progress)
        self.sigma = float(sigma)
        self.truncation, self.elite_candidates, self.elite_episodes = truncation, elite_candidates, elite_episodes
        self.population: list[tuple[int, ...]] = [(derive_seed(self.seed, "init", i),) for i in range(P)]
        self.elite: tuple[int, ...] | None = None
        self._order: np.ndarray | None = None  # stage 0 ranking of the population
        self._stage0: np.ndarray | None = None
        self._candidates: list[tuple[int, ...]] = []
        self._best: tuple[tuple[int, ...] | None, float | None] = (None, None)

    # ---- ask --------------------------------------------------------------------------------------

    def _ask(self) -> Batch:
        if self.stage == 0:
            return self._batch(encode(self.population), self.episodes, 0)
        return self._batch(encode(self._candidates), self.elite_episodes, 1)

    def _genome_key(self, genome: np.ndarray) -> Any:
        n = int(genome[0])
        return np.ascontiguousarray(genome[1:1 + n], dtype=np.uint64)

    # ---- tell -------------------------------------------------------------------------------------

    def _tell_population(self, batch: Batch, f: np.ndarray) -> None:
        order = np.argsort(f, kind="stable")
        self._order, self._stage0 = order, f
        cands = [self.population[i] for i in order[: self.elite_candidates]]
        if self.elite is not None and self.elite not in cands:
            cands.append(self.elite)
        self._candidates = cands

    def _tell_second(self, batch: Batch, f: np.ndarray) -> dict:
        i = int(np.argmin(f))  # ties: the earlier candidate, i.e. the better one in stage 0
        self.elite, elite_f = self._candidates[i], float(f[i])
        new_best = self._best[1] is None or elite_f < self._best[1]
        if new_best:
            self._best = (self.elite, elite_f)
            self._best_norm = self.obs_norm.state() if self.obs_norm is not None else None
        stage0 = self._stage0
        record = {"best_fitness": self._best[1], "elite_fitness": elite_f, "best_return": -self._best[1],
                  "elite_return": -elite_f, "mean_return": -float(stage0.mean()), "max_return": -float(stage0.min()),
                  "genome_seeds": len(self.elite)}
        self.population = self._next_population()
        return record

    def _next_population(self) -> list[tuple[int, ...]]:
        parents = [self.population[j] for j in self._order[: self.truncation]]
        g = self.generation
        children = []
        for i in range(self.pop_size - 1):
            parent = parents[derive_seed(self.seed, "parent", g, i) % self.truncation]
            children.append(parent + (derive_seed(self.seed, "mutation", g, i),))
        return [self.elite] + children

    # ---- results ----------------------------------------------------------------------------------

    @property
    def best(self) -> tuple[np.ndarray | None, float | None]:
        """(the best elite's encoded seed list, uint64 [1 + n], its fitness), or (None, None)."""
        genome, f = self._best
        return (None, None) if genome is None else (encode([genome])[0], f)

    def best_params(self) -> np.ndarray | None:
        genome = self._best[0]
        return None if genome is None else ParamCache(self.policy, self.sigma, max_bytes=0).from_scratch(genome)

    def population_seeds(self) -> list[tuple[int, ...]]:
        """The seed lists of the population about to be evaluated."""
        return list(self.population)

    @staticmethod
    def seed_lists(genomes: Any) -> list[tuple[int, ...]]:
        """The seed lists of an encoded batch (``batch.genomes``)."""
        return decode(genomes)
