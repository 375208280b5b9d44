"""Compressed linear layers that run on the compressed weights (packed format v1).

``evoforge.layers`` needs torch; ``import evoforge`` does not import this package.
``QuantLinear`` and the thin ops of :mod:`evoforge.layers.quant` (weight-only int2/int3/int4/int8
with group-wise float16 scales) run on the CPU kernels of cpp/quant.cpp and, for CUDA tensors,
on ``evoforge.layers._cuda``. ``SparseLinear`` and :mod:`evoforge.layers.sparse` (unstructured
bitmask and 2:4 sparsity, float or quantised kept values) run on cpp/sparse.cpp. :func:`apply`,
:func:`save` and :func:`load` (:mod:`evoforge.layers.model`) turn whole models into packed ones from
explicit specs (a compression result: :func:`evoforge.compress.pack`); :func:`packed_bytes` is the
size of the packed weight ``apply`` builds for a layer, without building it. This package imports neither
transformers nor :mod:`evoforge.compress` (the ops floor, ARCHITECTURE.md).
"""

from __future__ import annotations

from .format import packed_bytes
from .model import apply, linear_layers, load, packed_layers, save
from .quant import (
    BITS,
    GROUP_SIZES,
    QuantLinear,
    dequantize,
    num_groups,
    pack_codes,
    quant_matmul,
    quantize_rtn,
    row_bytes,
    unpack_codes,
)
from .sparse import SparseLinear, pack_sparse, sparse_matmul, unpack_sparse

__all__ = [
    "BITS",
    "GROUP_SIZES",
    "QuantLinear",
    "SparseLinear",
    "apply",
    "dequantize",
    "linear_layers",
    "load",
    "num_groups",
    "pack_codes",
    "pack_sparse",
    "packed_bytes",
    "packed_layers",
    "quant_matmul",
    "quantize_rtn",
    "row_bytes",
    "save",
    "sparse_matmul",
    "unpack_codes",
    "unpack_sparse",
]
