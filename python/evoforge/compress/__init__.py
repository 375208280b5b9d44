"""Compression of Hugging Face causal LMs (EvoPress-class search over per-layer levels).

``compress(model, SparsityConfig(target=0.5, ...))`` (or the keyword form ``compress(model,
method="sparsity", target=0.5, ...)``): one config dataclass per method (:mod:`.config`), one recipe
per method registered by config type (:mod:`.methods`), the run directory and search plumbing
(:mod:`.run`, :mod:`.search`), the result (:mod:`.result`), its export as a Hugging Face model or as
packed layers (:mod:`.export`: :func:`export`, :func:`pack`), the baselines (:mod:`.baselines`), and
the building blocks: model adapters, layer databases, level providers, fitness.

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
from .api import compress
from .baselines import owl_genome, owl_sparsities, shortgpt_genome, shortgpt_scores
from .build import build_database, sparsity_ladder
from .calibration import sample_sequences, tokens_from_text
from .config import (
    CompressConfig,
    DepthConfig,
    DepthQuantConfig,
    FrontConfig,
    QuantConfig,
    SparsityConfig,
    SubnetConfig,
)
from .database import (
    QUANT_METHODS,
    SPARSITY_METHODS,
    CorruptDatabaseError,
    DatabaseMismatchError,
    LayerDatabase,
)
from .depth import DepthFitness, depth_count, depth_drops, depth_mutation
from .export import export, pack
from .fitness import KLFitness, LevelProvider
from .front_result import FrontResult, load_front
from .front_space import FrontSpace
from .hessians import LayerStats, collect_hessians
from .joint import JointFitness, JointLevels, JointSwitch
from .metrics import compare_perplexity, perplexity, text_ids
from .llama2c import Llama2cTokenizer, load_tokenizer
from .models import load_model, resolve_model
from .providers import QuantLevels, SparsityLevels, apply_levels, levels_applied, provider_for
from .registry import register
from .report import summary_table, write_report
from .result import CompressionResult
from .settings import load_config
from .subnet_model import load_subnet, save_subnet, slice_model
from .subnet_space import Importance, SubnetSpace, importance

__all__ = [
    "QUANT_METHODS",
    "SPARSITY_METHODS",
    "SUPPORTED_ARCHITECTURES",
    "BlockContext",
    "CompressConfig",
    "CompressionResult",
    "CorruptDatabaseError",
    "DatabaseMismatchError",
    "DepthConfig",
    "DepthFitness",
    "DepthQuantConfig",
    "FrontConfig",
    "Importance",
    "FrontResult",
    "FrontSpace",
    "JointFitness",
    "JointLevels",
    "JointSwitch",
    "KLFitness",
    "LayerDatabase",
    "LayerRef",
    "LayerStats",
    "LevelProvider",
    "ModelAdapter",
    "QuantConfig",
    "QuantLevels",
    "SparsityConfig",
    "SparsityLevels",
    "SubBlock",
    "UnsupportedModelError",
    "adapt",
    "apply_levels",
    "build_database",
    "collect_hessians",
    "compare_perplexity",
    "compress",
    "depth_count",
    "depth_drops",
    "depth_mutation",
    "export",
    "levels_applied",
    "load_config",
    "load_front",
    "load_subnet",
    "importance",
    "save_subnet",
    "slice_model",
    "SubnetConfig",
    "SubnetSpace",
    "Llama2cTokenizer",
    "load_model",
    "load_tokenizer",
    "owl_genome",
    "owl_sparsities",
    "pack",
    "perplexity",
    "provider_for",
    "register",
    "resolve_model",
    "sample_sequences",
    "shortgpt_genome",
    "shortgpt_scores",
    "sparsity_ladder",
    "summary_table",
    "text_ids",
    "tokens_from_text",
    "write_report",
]
