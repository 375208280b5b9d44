"""Compression of Hugging Face causal LMs (EvoPress-class search over per-layer levels).

``evoforge.compress`` needs torch; ``transformers`` is needed only to build or load the models
(``pip install evoforge[hf]``). ``import evoforge`` does not import this package.
"""

from __future__ import annotations

from .adapters import (
    SUPPORTED_ARCHITECTURES,
    BlockContext,
    LayerRef,
    ModelAdapter,
    SubBlock,
    UnsupportedModelError,
    adapt,
)
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
from .depth import (
    DepthFitness,
    depth_count,
    depth_drops,
    depth_mutation,
    owl_genome,
    owl_sparsities,
    shortgpt_genome,
    shortgpt_scores,
)
from .fitness import KLFitness, LevelProvider
from .joint import JointFitness, JointLevels, JointSwitch
from .pipeline import (
    CompressionResult,
    apply_levels,
    compress,
    export,
    load_model,
    perplexity,
    resolve_model,
)
from .providers import QuantLevels, SparsityLevels, provider_for
from .report import summary_table, write_report

__all__ = [
    "QUANT_METHODS",
    "SPARSITY_METHODS",
    "SUPPORTED_ARCHITECTURES",
    "BlockContext",
    "CompressionResult",
    "CorruptDatabaseError",
    "DatabaseMismatchError",
    "DepthFitness",
    "JointFitness",
    "JointLevels",
    "JointSwitch",
    "KLFitness",
    "LayerDatabase",
    "LayerRef",
    "LayerStats",
    "LevelProvider",
    "ModelAdapter",
    "QuantLevels",
    "SparsityLevels",
    "SubBlock",
    "UnsupportedModelError",
    "adapt",
    "apply_levels",
    "build_database",
    "collect_hessians",
    "compress",
    "depth_count",
    "depth_drops",
    "depth_mutation",
    "export",
    "load_model",
    "owl_genome",
    "owl_sparsities",
    "perplexity",
    "provider_for",
    "resolve_model",
    "sample_sequences",
    "shortgpt_genome",
    "shortgpt_scores",
    "sparsity_ladder",
    "summary_table",
    "tokens_from_text",
    "write_report",
]
