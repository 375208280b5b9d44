"""The packed weight format v1 (specified in cpp/include/evoforge/quant.h): its bit-widths, group
sizes and sizes, shared by the CPU modules and the CUDA wrappers (torch-free)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._checks import INT_MAX, check_int
from ..errors import ConfigError

__all__ = ["BITS", "GROUP_SIZES", "check_bits", "check_features", "check_group_size", "num_groups", "row_bytes",
           "storage_bits"]

BITS = (2, 3, 4, 8)
GROUP_SIZES = (0, 32, 64, 128, 256)  # 0: one group per row


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
