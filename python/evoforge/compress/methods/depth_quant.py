"""Dropped sub-blocks and bit-widths together (:class:`DepthQuantConfig`): a quantisation database
with a consecutive ladder -> :class:`JointLevels` (one gene per sub-block: 0 dropped, else its
bits; every move keeps each group's bits exactly) -> uniform (nothing dropped, the target bits) ->
:class:`JointFitness` search -> ShortGPT baseline (as many drops, the freed bits spread) -> result."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from ..baselines import shortgpt_joint, shortgpt_scores
from ..config import DepthQuantConfig
from ..depth import sub_block_names
from ..joint import JointFitness, JointLevels
from ..registry import register
from ..result import CompressionResult
from ..run import Run

__all__ = ["depth_quant"]


@register(DepthQuantConfig)
def depth_quant(config: DepthQuantConfig, run: Run) -> CompressionResult:
    adapter, target = run.adapter, float(config.target)
    db = run.database("quant", bits=config.bits, group_size=int(config.group_size), symmetric=bool(config.symmetric))
    joint = JointLevels(adapter, run.provider(db))
    run.factory = dataclasses.replace(run.factory, database=str(db.path), joint=True, include_metadata=False)
    initial = joint.uniform(target)
    res = run.search(lambda: JointFitness(adapter, joint, run.calibration, batch_size=config.batch_size,
                                          top_k=run.top_k, compute_dtype=config.compute_dtype),
                     initial, joint.mutation(config.max_switches), joint.lower, joint.upper,
                     task=f"compress:{run.fingerprint}:{db.method}:depth+quant:{target}")
    best = np.asarray(res.best_genome, dtype=np.int64)
    t0 = time.perf_counter()
    cands, notes, base = [initial, best], [], None
    if (best == 0).any():  # ShortGPT: as many drops of each kind, the least important sub-blocks
        base = shortgpt_joint(joint, shortgpt_scores(adapter, run.calibration, batch_size=config.batch_size),
                              best, initial)
        if base is None:
            notes.append("ShortGPT baseline skipped: the freed bits do not fit the kept sub-blocks' ladder")
        else:
            cands.append(base)
    else:
        notes.append("ShortGPT baseline not shown: the search dropped no sub-block")
    held = JointFitness(adapter, joint, run.heldout, batch_size=config.batch_size, top_k=run.top_k)
    kls = held.evaluate(np.stack(cands), None)
    del held
    run.times["heldout"] = time.perf_counter() - t0
    baselines = {}
    if base is not None:
        baselines["shortgpt"] = {"kl": float(kls[2]), "genome": base.tolist(), "bits": joint.units(base).tolist(),
                                 "dropped": [list(d) for d in joint.dropped(base)], "budget": joint.budget(base)}
    result = CompressionResult(
        method="depth+quant", target=target, db_method=db.method, layers=sub_block_names(adapter),
        genome=best.tolist(), levels=best.tolist(), sparsity=None, bits=joint.units(best).tolist(),
        budget=joint.budget(best), uniform_budget=joint.budget(initial), total_weights=joint.total_weights,
        kl_uniform=float(kls[0]), kl_search=float(kls[1]),
        kl_calib_search=None if res.best_fitness is None else float(res.best_fitness),
        generations=int(res.generations), evaluations=int(res.evaluations), history=list(res.history),
        run_dir=None if run.run_dir is None else str(run.run_dir), baselines=baselines,
        dropped=[list(d) for d in joint.dropped(best)], db_path=str(Path(db.path).resolve()), times=run.times,
        notes=notes)
    return run.finish(result, joint, initial)
