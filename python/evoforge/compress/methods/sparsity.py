"""Unstructured sparsity (:class:`SparsityConfig`): a sparsity database (SparseGPT by default) ->
:class:`SparsityLevels` (one offset per layer, the level sum fixes the non-zeros) -> the uniform
and OWL baselines -> KL search with budget-preserving switches, started from the better of the two
on the calibration objective -> result."""

from __future__ import annotations

import time

import numpy as np

from ...errors import ConfigError
from ..baselines import OWL_LAMBDA, OWL_M, owl_genome
from ..config import SparsityConfig
from ..hessians import collect_hessians
from ..registry import register
from ..result import CompressionResult
from ..run import Run
from .levels import heldout_kls, level_result, level_search, start_note

__all__ = ["sparsity"]


@register(SparsityConfig)
def sparsity(config: SparsityConfig, run: Run) -> CompressionResult:
    target = float(config.target)
    db = run.database("sparsity", sparsity=target, n_levels=int(config.db_levels), step=config.db_step)
    provider = run.provider(db)
    if abs(provider.target - target) > 1e-9:
        raise ConfigError(f"the database {str(db.path)!r} was built for sparsity {provider.target}, "
                          f"not the target {target}")
    initial = provider.uniform()
    t0 = time.perf_counter()
    stats = collect_hessians(run.adapter, run.calibration, batch_size=config.batch_size)
    owl, owl_s = owl_genome(run.adapter, provider, stats, lam=OWL_LAMBDA, m=OWL_M)
    t_owl = time.perf_counter() - t0
    res, best = level_search(config, run, db, provider, np.stack([initial, owl]))
    run.times["search"] += t_owl
    t0 = time.perf_counter()
    kls = heldout_kls(run, provider, [initial, best, owl])
    baselines = {"owl": {"kl": float(kls[2]), "genome": owl.tolist(), "levels": provider.levels(owl),
                         "sparsity": provider.sparsities(owl), "budget": provider.budget(owl),
                         "block_sparsity": owl_s.tolist(), "lambda": OWL_LAMBDA, "M": OWL_M}}
    result = level_result(config, run, db, provider, initial, best, res, kls, baselines, t0)
    start_note(result, res, ["uniform", "OWL"])
    return run.finish(result, provider, initial)
