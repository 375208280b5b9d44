"""What every front-search method shares: objectives as named functions of the genomes, NSGA-II
from a first population holding every uniform configuration (resumable from the run directory, its
evaluations cached there), and the final front chosen on held-out tokens from the search's last
front and the uniform configurations (calibration KL ranks close candidates noisily; the user picks
by held-out quality). :mod:`.methods.front` and :mod:`.methods.subnet` are two uses.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .. import pareto
from ..search import NSGA2, Screen
from ..search.protocol import Batch
from .run import Run

__all__ = ["Objectives", "FrontSearch", "front_search", "initial_population"]


class Objectives:
    """Evaluator: genomes [B, G] -> float64 [B, M], one column per named objective.

    ``check``: genomes -> int64 [B, G] (raises on bad genomes); ``columns``: objective name ->
    function of the checked genomes returning [B] (called in ``order``)."""

    def __init__(self, order: list[str], check: Callable[[Any], np.ndarray],
                 columns: Mapping[str, Callable[[np.ndarray], Any]]) -> None:
        self.objectives = list(order)
        self._check, self._columns = check, dict(columns)
        self.seconds = 0.0  # spent in evaluate (the rest of a search is the engine's own work)

    def evaluate(self, genomes: Any, batch: Any = None) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            g = self._check(genomes)
            return np.stack([np.asarray(self._columns[o](g), dtype=np.float64).reshape(len(g))
                             for o in self.objectives], axis=1)
        finally:
            self.seconds += time.perf_counter() - t0


class FrontSearch:
    """What :func:`front_search` returns: the search's ``result`` (its history, generations and
    evaluations), the final front (``genomes`` [P, G], search objectives ``F`` [P, M], held-out
    ``held`` [P, M], sorted by the held-out objectives), and the uniform configurations' search and
    held-out objectives (``uniform_F``, ``uniform_held`` [U, M])."""

    def __init__(self, result: Any, genomes: np.ndarray, F: np.ndarray, held: np.ndarray, uniform_F: np.ndarray,
                 uniform_held: np.ndarray) -> None:
        self.result, self.genomes, self.F, self.held = result, genomes, F, held
        self.uniform_F, self.uniform_held = uniform_F, uniform_held


def initial_population(uniform: np.ndarray, lower: np.ndarray, upper: np.ndarray, pop_size: int,
                       seed: int) -> np.ndarray:
    """Every uniform configuration, then random genomes up to ``pop_size``."""
    if len(uniform) >= pop_size:
        return uniform
    rng = np.random.default_rng([seed, 0x66726F6E74])
    extra = rng.integers(lower, upper.astype(np.int64) + 1, size=(pop_size - len(uniform), len(lower)))
    return np.concatenate([uniform, extra.astype(np.int32)])


def front_search(run: Run, *, lower: np.ndarray, upper: np.ndarray, uniform: np.ndarray, evaluator: Objectives,
                 heldout: Objectives, task: str) -> FrontSearch:
    """NSGA-II of ``run.config`` (a FrontSearchConfig) over genomes in [lower, upper], the first
    population ``uniform`` then random; then the last front and ``uniform`` re-scored by
    ``heldout`` and the points non-dominated there kept. Times ``search``, ``search_evaluate``
    (the rest of ``search`` is the engine's own work) and ``heldout`` into ``run.times``."""
    config, rd = run.config, run.run_dir
    t0 = time.perf_counter()
    if rd is not None and (rd / "checkpoint.pkl").is_file():
        engine = NSGA2.resume(rd, progress=config.progress)
        if config.progress:
            print(f"evoforge: resuming {rd} from generation {engine.generation} (of {int(config.generations)})",
                  file=sys.stderr)
    else:
        engine = NSGA2(lower, upper, n_objectives=len(evaluator.objectives), pop_size=int(config.pop_size),
                       n_offspring=int(config.offspring),
                       initial=initial_population(uniform, lower, upper, int(config.pop_size), int(config.seed)),
                       seed=int(config.seed), run_dir=rd, task=task, progress=config.progress,
                       screen=Screen(int(config.screen), depth=int(config.screen_depth), select="hypervolume")
                       if config.screen > 1 else None)
    try:
        res = engine.run(evaluator, generations=int(config.generations))
        run.times["search"] = time.perf_counter() - t0
        run.times["search_evaluate"] = evaluator.seconds
        # the uniform configurations were the first population: their scores come from the cache
        uni_F = np.asarray(engine.evaluate(Batch(uniform, generation=engine.generation), evaluator)[0]).reshape(
            len(uniform), len(evaluator.objectives))
    finally:
        engine.close()
    genomes, F = engine.best
    genomes, first = np.unique(np.concatenate([genomes, uniform]), axis=0, return_index=True)
    F = np.concatenate([F, uni_F])[first]
    t0 = time.perf_counter()
    held = heldout.evaluate(genomes)
    run.times["heldout"] = time.perf_counter() - t0
    row = {g.tobytes(): i for i, g in enumerate(genomes)}
    uni_held = held[[row[g.tobytes()] for g in uniform.astype(genomes.dtype)]]
    keep = np.flatnonzero(pareto.nondominated_rank(held) == 0)
    keep = keep[np.lexsort(held[keep].T[::-1])]  # by the first held-out objective, ties by the next
    return FrontSearch(res, genomes[keep], F[keep], held[keep], uni_F, uni_held)
