"""Dropped sub-blocks (:class:`DepthConfig`): no database; K attention and K MLP sub-blocks dropped,
searched from the better of the ShortGPT choice and the evenly spread drop with swaps that keep both counts (:func:`depth_mutation`) on
:class:`DepthFitness` -> the evenly spread drop ("uniform") and ShortGPT as baselines -> result."""

from __future__ import annotations

import time

import numpy as np

from ..baselines import shortgpt_genome, shortgpt_scores, spread_genome
from ..config import DepthConfig
from ..depth import DepthFitness, depth_drops, depth_mutation, sub_block_names
from ..registry import register
from ..result import CompressionResult
from ..run import Run
from .levels import start_note

__all__ = ["depth"]


@register(DepthConfig)
def depth(config: DepthConfig, run: Run) -> CompressionResult:
    adapter, N = run.adapter, run.adapter.n_blocks
    k = config.blocks_to_drop(N)
    run.factory.depth_k = k
    t0 = time.perf_counter()
    scores = shortgpt_scores(adapter, run.calibration, batch_size=config.batch_size)
    initial = shortgpt_genome(scores, k)
    uniform = spread_genome(N, k)
    t_scores = time.perf_counter() - t0
    res = run.search(lambda: DepthFitness(adapter, run.calibration, k=k, batch_size=config.batch_size,
                                          top_k=run.top_k, compute_dtype=config.compute_dtype),
                     np.stack([initial, uniform]), depth_mutation(N, config.max_switches), 0, 1,
                     task=f"compress:{run.fingerprint}:depth:{k}")
    run.times["search"] += t_scores
    best = np.asarray(res.best_genome, dtype=np.int64)
    t0 = time.perf_counter()
    held = DepthFitness(adapter, run.heldout, k=k, batch_size=config.batch_size, top_k=run.top_k)
    kls = held.evaluate(np.stack([uniform, best, initial]), None)
    del held
    run.times["heldout"] = time.perf_counter() - t0
    result = CompressionResult(
        method="depth", target=float(config.target), db_method="none", layers=sub_block_names(adapter),
        genome=best.tolist(), levels=best.tolist(), sparsity=None, bits=None, budget=int(best.sum()),
        uniform_budget=int(uniform.sum()), total_weights=2 * N, kl_uniform=float(kls[0]), kl_search=float(kls[1]),
        kl_calib_search=None if res.best_fitness is None else float(res.best_fitness),
        generations=int(res.generations), evaluations=int(res.evaluations), history=list(res.history),
        run_dir=None if run.run_dir is None else str(run.run_dir),
        baselines={"shortgpt": {"kl": float(kls[2]), "genome": initial.tolist(), "scores": scores.tolist(),
                                "dropped": [list(d) for d in depth_drops(initial, N)]}},
        dropped=[list(d) for d in depth_drops(best, N)], times=run.times)
    start_note(result, res, ["ShortGPT", "uniform"])
    return run.finish(result, None, uniform)
