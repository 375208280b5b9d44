"""Compressed linear layers that run on the compressed weights (packed format v1).

``evoforge.layers`` needs torch; ``import evoforge`` does not import this package.
``QuantLinear`` and the thin ops of :mod:`evoforge.layers.quant` (weight-only int2/int3/int4/int8
with group-wise float16 scales) run on the CPU kernels of cpp/quant.cpp and, for CUDA tensors,
on ``evoforge.layers._cuda``.
"""

from __future__ import annotations

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

__all__ = [
    "BITS",
    "GROUP_SIZES",
    "QuantLinear",
    "dequantize",
    "num_groups",
    "pack_codes",
    "quant_matmul",
    "quantize_rtn",
    "row_bytes",
    "unpack_codes",
]
