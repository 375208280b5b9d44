"""The packed weight format v1 (specified in cpp/include/evoforge/quant.h): its bit-widths, group
sizes and sizes, shared by the CPU modules and the CUDA wrappers (torch-free)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import INT_MAX, check_int
from ..errors import ConfigError

__all__ = ["BITS", "GROUP_SIZES", "check_bits", "check_features", "check_group_size", "num_groups", "packed_bytes",
           "row_bytes", "storage_bits"]

BITS = (2, 3, 4, 8)
GROUP_SIZES = (0, 32, 64, 128, 256)  # 0: one group per row
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}  # dense weights; sparse float values: float32 / float16


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_bits(bits: Any) -> int:
    """``bits`` as an int of :data:`BITS`, else ConfigError (a ValueError)."""
    if not _is_int(bits) or int(bits) not in BITS:
        raise ConfigError(f"bits must be one of {BITS}, got {bits!r}")
    return int(bits)


def check_features(in_features: Any, out_features: Any) -> tuple[int, int]:
    """A layer's sizes as ints in [1, 2**31 - 1]: TypeError for a non-integer (2.5 must not truncate
    to 2, as nn.Linear rejects it too), ValueError below 1, ConfigError (a ValueError) above (the
    kernels index in C ints: an absurd size is refused, not allocated)."""
    for name, v in (("in_features", in_features), ("out_features", out_features)):
        if not _is_int(v):
            raise TypeError(f"{name} must be an int, got {v!r}")
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
        if v > INT_MAX:
            raise ConfigError(f"{name} must be at most {INT_MAX}, got {v}")
    return int(in_features), int(out_features)


def check_group_size(group_size: Any) -> int:
    """``group_size`` as an int of :data:`GROUP_SIZES` (-1 is taken as 0, one group per row)."""
    if not _is_int(group_size):
        raise ConfigError(f"group_size must be an int, got {group_size!r}")
    g = 0 if int(group_size) == -1 else int(group_size)
    if g not in GROUP_SIZES:
        raise ConfigError(f"group_size must be 32, 64, 128, 256 or 0/-1 (one group per row), got {group_size}")
    return g


def row_bytes(columns: int, bits: int) -> int:
    """Bytes of one packed row of ``columns`` codes: ceil(columns / 32) * 4 * bits."""
    return -(-check_int(columns, "columns", 0) // 32) * 4 * check_bits(bits)


def num_groups(columns: int, group_size: int) -> int:
    """G = ceil(columns / group_size), or 1 for one group per row."""
    c, g = check_int(columns, "columns", 0), check_group_size(group_size)
    return -(-c // g) if g else 1


def storage_bits(bits: Any) -> int:
    """The packed bit-width that holds ``bits``-bit codes (2..8): 5, 6 and 7 are stored as 8-bit codes."""
    b = int(bits)
    if b not in (2, 3, 4, 5, 6, 7, 8):
        raise ConfigError(f"bits must lie in 2..8, got {bits}")
    return 8 if b > 4 and b != 8 else b


def _dtype_bytes(values_dtype: Any, allowed: tuple[str, ...]) -> int:
    name = values_dtype if isinstance(values_dtype, str) else str(values_dtype)  # a torch dtype prints "torch.float16"
    name = name.removeprefix("torch.")
    if name not in allowed:
        raise ConfigError(f"values_dtype must be one of {list(allowed)} here, got {values_dtype!r}")
    return _ITEMSIZE[name]


def packed_bytes(out_features: int, in_features: int, *, nnz: int | None = None, bits: int | None = None,
                 group_size: int | None = 128, symmetric: bool = True, values_dtype: Any = "float16",
                 pattern: str = "unstructured") -> int:
    """Exact bytes of the weight buffers (bias excluded: what ``.weight_bytes`` reports) of the module
    :func:`evoforge.layers.apply` builds for a layer [out_features, in_features]; no torch needed.

    * ``nnz`` given (pruned unstructured: the kept weights, 0 <= nnz <= N*K) -> ``SparseLinear``:
      mask ``N*ceil(K/8)`` + row_ptr ``(N+1)*8`` + the kept values, ``nnz * itemsize(values_dtype)``
      or, with ``bits``, their codes as one stream ``ceil(nnz/32)*4*b`` + float16 scales (and zeros
      unless ``symmetric``) ``N*G*2`` over the original columns, ``G = ceil(K/group_size)`` (1 per row).
      ``nnz == N*K`` is still a ``SparseLinear`` (what ``apply`` builds for ``{"sparsity": 0.0}``);
      pass ``nnz=None`` for a layer whose spec has no ``"sparsity"``. ``apply``'s nnz for
      ``{"sparsity": s}`` on a weight without zeros is ``N*K - round(s*N*K)``.
    * ``pattern="2:4"`` -> a 2:4 ``SparseLinear`` (fixed layout, ``nnz`` only range-checked):
      ``Kp = ceil(K/32)*32``, meta ``N*Kp/8`` + values ``N*Kp/2*itemsize``, or codes
      ``N*ceil(Kp/64)*4*b`` + scales (+ zeros) ``N*ceil((Kp/2)/g)*2``.
    * only ``bits`` -> ``QuantLinear``: ``N*ceil(K/32)*4*b`` + scales (+ zeros) ``N*G*2``.
    * neither -> the dense weight in ``values_dtype`` (``"float32"``, ``"float16"`` or ``"bfloat16"``):
      ``N*K*itemsize``.

    ``bits`` in 2..8, stored as :func:`storage_bits` (5-7 as 8-bit codes); ``group_size`` in
    32/64/128/256, or 0 / -1 / None for one group per row (as ``apply`` reads a spec);
    ``values_dtype`` (a name or a torch dtype) only matters for float values: sparse ones are
    ``"float32"`` or ``"float16"`` (note ``apply``'s default is ``"float32"``). Raises ConfigError
    (a ValueError) for a bad setting, TypeError / ValueError for bad sizes (as ``nn.Linear``).
    """
    K, N = check_features(in_features, out_features)
    numel = N * K
    if nnz is not None and (not _is_int(nnz) or not 0 <= int(nnz) <= numel):
        raise ConfigError(f"nnz must be an int in [0, {numel}] (out_features * in_features), got {nnz!r}")
    if pattern not in ("unstructured", "2:4"):
        raise ConfigError(f"pattern must be 'unstructured' or '2:4', got {pattern!r}")
    if bits is not None and not _is_int(bits):
        raise ConfigError(f"bits must be an int in 2..8 or None, got {bits!r}")
    b = None if bits is None else storage_bits(bits)
    g = check_group_size(0 if group_size is None else group_size)
    if not isinstance(symmetric, (bool, np.bool_)):
        raise ConfigError(f"symmetric must be a bool, got {symmetric!r}")
    dense_item = _dtype_bytes(values_dtype, ("float32", "float16", "bfloat16"))
    grid = 1 if symmetric else 2  # float16 scales, and zeros when asymmetric
    if nnz is None and pattern == "unstructured":
        if b is None:
            return numel * dense_item
        return N * (row_bytes(K, b) + num_groups(K, g) * 2 * grid)
    if pattern == "2:4":
        half = -(-K // 32) * 16  # Kp / 2 kept slots per row
        meta = N * half // 4
        if b is None:
            return meta + N * half * _dtype_bytes(values_dtype, ("float32", "float16"))
        return meta + N * (row_bytes(half, b) + num_groups(half, g) * 2 * grid)
    index = N * -(-K // 8) + (N + 1) * 8  # mask + row_ptr
    if b is None:
        return index + int(nnz) * _dtype_bytes(values_dtype, ("float32", "float16"))
    return index + row_bytes(int(nnz), b) + N * num_groups(K, g) * 2 * grid
