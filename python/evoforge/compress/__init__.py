"""Compression of Hugging Face causal LMs (EvoPress-class search over per-layer levels).

``evoforge.compress`` needs torch; ``transformers`` is needed only to build or load the models
(``pip install evoforge[hf]``). ``import evoforge`` does not import this package.
"""

from __future__ import annotations

from .calibration import sample_sequences, tokens_from_text
from .database import (
    QUANT_METHODS,
    SPARSITY_METHODS,
    CorruptDatabaseError,
    DatabaseMismatchError,
    LayerDatabase,
    LayerStats,
    build_database,
    collect_hessians,
    sparsity_ladder,
)
from .fitness import KLFitness, LevelProvider
from .providers import QuantLevels, SparsityLevels, provider_for
from .pipeline import CompressionResult, apply_levels, compress, export, load_model, perplexity, resolve_model
from .adapters import (
    SUPPORTED_ARCHITECTURES,
    BlockContext,
    LayerRef,
    ModelAdapter,
    SubBlock,
    UnsupportedModelError,
    adapt,
)

__all__ = [
    "sample_sequences",
    "tokens_from_text",
    "QUANT_METHODS",
    "SPARSITY_METHODS",
    "CorruptDatabaseError",
    "DatabaseMismatchError",
    "LayerDatabase",
    "LayerStats",
    "build_database",
    "collect_hessians",
    "sparsity_ladder",
    "KLFitness",
    "LevelProvider",
    "QuantLevels",
    "SparsityLevels",
    "provider_for",
    "CompressionResult",
    "apply_levels",
    "compress",
    "export",
    "load_model",
    "perplexity",
    "resolve_model",
    "SUPPORTED_ARCHITECTURES",
    "BlockContext",
    "LayerRef",
    "ModelAdapter",
    "SubBlock",
    "UnsupportedModelError",
    "adapt",
]
