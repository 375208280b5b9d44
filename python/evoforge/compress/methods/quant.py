"""Per-layer bit-widths (:class:`QuantConfig`): a quantisation database (GPTQ by default) ->
:class:`QuantLevels` (groups of equal cost step, with or without the grids' metadata) -> uniform
(floor / ceil bits spread within groups) -> KL search with switches that keep the bit budget ->
result (uniform is the baseline)."""

from __future__ import annotations

import time

from ...errors import ConfigError
from ..config import QuantConfig
from ..registry import register
from ..result import CompressionResult
from ..run import Run
from .levels import heldout_kls, level_result, level_search

__all__ = ["quant"]


@register(QuantConfig)
def quant(config: QuantConfig, run: Run) -> CompressionResult:
    target = float(config.target)
    db = run.database("quant", bits=config.bits, group_size=int(config.group_size), symmetric=bool(config.symmetric))
    provider = run.provider(db, include_metadata=config.count_metadata)
    if not provider.bits[0] <= target <= provider.bits[-1]:
        raise ConfigError(f"target {target} bits is outside the database's bit-widths {provider.bits}")
    initial = provider.uniform(target)
    res, best = level_search(config, run, db, provider, initial)
    t0 = time.perf_counter()
    kls = heldout_kls(run, provider, [initial, best])
    result = level_result(config, run, db, provider, initial, best, res, kls, {}, t0)
    return run.finish(result, provider, initial)
