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

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "BlockContext",
    "LayerRef",
    "ModelAdapter",
    "SubBlock",
    "UnsupportedModelError",
    "adapt",
]
