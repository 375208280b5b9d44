"""What the per-layer level recipes (sparsity, quant) share: the search over a database provider's
levels with the KL fitness, the held-out KL of the candidates, and the result."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..fitness import KLFitness
from ..providers import QuantLevels, SparsityLevels
from ..result import CompressionResult

__all__ = ["heldout_kls", "level_result", "level_search", "start_note"]


def level_search(config: Any, run: Any, db: Any, provider: Any, initial: np.ndarray) -> tuple[Any, np.ndarray]:
    """(the engine's result, the best genome) of the search from ``initial`` over ``provider``'s levels
    (``initial`` [K, L]: starting points, the best on the last stage's tokens is the first parent)."""
    run.factory.database = str(db.path)
    run.factory.include_metadata = bool(provider.include_metadata) if isinstance(provider, QuantLevels) else False
    target = float(config.target)
    res = run.search(lambda: KLFitness(run.adapter, provider, run.calibration, batch_size=config.batch_size,
                                       top_k=run.top_k, teacher_dir=run.teacher_dir,
                                       compute_dtype=config.compute_dtype),
                     initial, provider.mutation(config.max_switches), provider.lower, provider.upper,
                     task=f"compress:{run.fingerprint}:{db.method}:{config.method}:{target}")
    return res, np.asarray(res.best_genome, dtype=np.int64)


def heldout_kls(run: Any, provider: Any, genomes: list) -> np.ndarray:
    """KL(dense || genome) of each genome on the held-out tokens (the model's dtype, full teacher)."""
    held = KLFitness(run.adapter, provider, run.heldout, batch_size=run.config.batch_size, top_k=run.top_k)
    try:
        return held.evaluate(np.stack(genomes), None)
    finally:
        del held


def level_result(config: Any, run: Any, db: Any, provider: Any, initial: np.ndarray, best: np.ndarray, res: Any,
                 kls: np.ndarray, baselines: dict, t_heldout: float) -> CompressionResult:
    """The result of a level search (``kls``: uniform, searched, then the baselines')."""
    run.times["heldout"] = time.perf_counter() - t_heldout
    sparse = isinstance(provider, SparsityLevels)
    return CompressionResult(
        method=config.method, target=float(config.target), db_method=db.method, layers=list(db.layers),
        genome=best.tolist(), levels=provider.levels(best),
        sparsity=provider.sparsities(best) if sparse else None,
        bits=provider.bit_widths(best) if isinstance(provider, QuantLevels) else None,
        budget=provider.budget(best), uniform_budget=provider.budget(initial),
        total_weights=int(provider.numel.sum()), kl_uniform=float(kls[0]), kl_search=float(kls[1]),
        kl_calib_search=None if res.best_fitness is None else float(res.best_fitness),
        generations=int(res.generations), evaluations=int(res.evaluations), history=list(res.history),
        run_dir=None if run.run_dir is None else str(run.run_dir), baselines=baselines,
        count_metadata=bool(getattr(config, "count_metadata", False)), db_path=str(Path(db.path).resolve()),
        times=run.times)


def start_note(result: Any, res: Any, names: list[str]) -> None:
    """Say on ``result`` which of the starting points ``names`` (rows of the search's ``initial``)
    the search started from (the engine's first history record)."""
    start = next((int(h["start"]) for h in res.history if "start" in h), None)
    if start is not None:
        result.notes.append(f"the search started from {names[start]}, the best of {', '.join(names)} on the "
                            f"calibration tokens")
