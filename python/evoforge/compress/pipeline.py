"""Deprecated home of the compression pipeline, kept so that ``evoforge.compress.pipeline.NAME`` still
works: the pipeline is split by job now (:mod:`.api` ``compress``, :mod:`.config` the configs,
:mod:`.methods` one recipe per method, :mod:`.run` and :mod:`.search` the run directory and the
search, :mod:`.models` loading, :mod:`.metrics` perplexity, :mod:`.result`, :mod:`.export`).
Import from :mod:`evoforge.compress` instead."""

from __future__ import annotations

from .api import compress
from .baselines import OWL_LAMBDA, OWL_M
from .config import CONFIGS
from .export import export
from .metrics import compare_perplexity, perplexity, text_ids
from .models import SMOLLM2, load_model, resolve_model
from .providers import apply_levels, levels_applied
from .result import CompressionResult
from .search import FitnessFactory

__all__ = [
    "METHODS",
    "OWL_LAMBDA",
    "OWL_M",
    "SMOLLM2",
    "CompressionResult",
    "FitnessFactory",
    "apply_levels",
    "compare_perplexity",
    "compress",
    "export",
    "levels_applied",
    "load_model",
    "perplexity",
    "resolve_model",
    "text_ids",
]

METHODS = tuple(CONFIGS)
