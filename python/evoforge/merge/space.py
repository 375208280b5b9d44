"""The parameter space of a merge: a genome of genes in [0, 1], per layer group a weight per model
and (for TIES / DARE) a density per model, mapped linearly onto ``weight_range`` and
``density_range``; and the evaluator that applies a genome in place and scores it on the tasks.

Symbols: B candidates, G groups, K models (1 for slerp: its t), T tasks.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .merger import Merger
from .recipe import METHODS, Recipe
from .tasks import TaskData, task_losses

__all__ = ["ParamSpace", "MergeEvaluator"]


class ParamSpace:
    """Genome float64 [L] in [0, 1]: weights [G, k] row-major, then densities [G, K] if the method
    has them (L = G k or 2 G K)."""

    def __init__(self, method: str, n_groups: int, n_models: int, weight_range: tuple, density_range: tuple,
                 seed: int = 0, group_names: list[str] | None = None) -> None:
        self.method = method
        self.shape = (n_groups, 1 if method == "slerp" else n_models)
        self.densities = METHODS[method][0]
        self.w_lo, self.w_hi = map(float, weight_range)
        self.d_lo, self.d_hi = map(float, density_range)
        self.seed = int(seed)
        self.group_names = list(group_names or [])
        self.n_genes = int(np.prod(self.shape)) * (2 if self.densities else 1)

    def decode(self, genome: Any) -> Recipe:
        g = np.clip(np.asarray(genome, dtype=np.float64).reshape(-1), 0.0, 1.0)
        n = int(np.prod(self.shape))
        w = self.w_lo + g[:n].reshape(self.shape) * (self.w_hi - self.w_lo)
        d = (self.d_lo + g[n:].reshape(self.shape) * (self.d_hi - self.d_lo)) if self.densities else np.ones(self.shape)
        return Recipe(self.method, w, d, self.seed, self.group_names)

    def encode(self, recipe: Recipe) -> np.ndarray:
        w = (recipe.weights - self.w_lo) / (self.w_hi - self.w_lo)
        parts = [w.reshape(-1)]
        if self.densities:
            parts.append(((recipe.densities - self.d_lo) / (self.d_hi - self.d_lo)).reshape(-1))
        return np.clip(np.concatenate(parts), 0.0, 1.0)


class MergeEvaluator:
    """``evaluate(genomes [B, L], batch) -> [B]`` (mean task loss) or ``[B, T]`` (``objectives``):
    each genome merged into the resident model in place, then scored on the search windows.
    ``apply_s`` / ``eval_s`` accumulate the seconds spent merging and scoring."""

    def __init__(self, merger: Merger, space: ParamSpace, data: list[TaskData], *, objectives: bool = False) -> None:
        self.merger, self.space, self.data, self.objectives = merger, space, data, bool(objectives)
        self.apply_s = self.eval_s = 0.0
        self.count = 0

    def losses(self, recipe: Recipe, split: str = "search") -> np.ndarray:
        """float64 [T]: the task losses of ``recipe`` (left applied in the model)."""
        t0 = time.perf_counter()
        self.merger.apply(recipe)
        t1 = time.perf_counter()
        out = task_losses(self.merger.model, self.data, split)
        self.apply_s += t1 - t0
        self.eval_s += time.perf_counter() - t1
        self.count += 1
        return out

    def evaluate(self, genomes: np.ndarray, batch: Any = None) -> np.ndarray:
        rows = [self.losses(self.space.decode(g)) for g in np.asarray(genomes)]
        F = np.array(rows).reshape(len(rows), -1)
        return F if self.objectives else F.mean(axis=1)

    def __call__(self, genomes: np.ndarray) -> np.ndarray:
        return self.evaluate(genomes)
