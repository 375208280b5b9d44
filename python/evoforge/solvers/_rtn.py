"""Quantised layers on GPTQ's grid: :class:`QuantizedLayer`, the grid's arguments, and
round-to-nearest (the baseline GPTQ improves on)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import _checks
from .._native import core
from ..errors import ConfigError
from ._args import INT_MAX, check_int, check_weight


class QuantizedLayer(NamedTuple):
    """A quantised weight. R rows, C columns, G groups per row.

    weight : the dequantised weight ``scales[r, g_idx[c]] * (q[r, c] - zeros[r, g_idx[c]])``,
        W's type and dtype, shape (R, C)
    scales : W's dtype, shape (R, G)
    zeros : W's dtype, shape (R, G); integer values (GPTQ's zero points)
    q : uint8, shape (R, C), codes in [0, 2^bits - 1]
    g_idx : int32, shape (C,), the group of each column (``c // group_size`` unless act-order)
    """

    weight: Any
    scales: Any
    zeros: Any
    q: Any
    g_idx: Any


def quant_args(bits: Any, group_size: Any, symmetric: Any, cols: int) -> tuple[int, int, bool]:
    b = check_int(bits, "bits", 2, 8)
    g = check_int(group_size, "group_size", -1, INT_MAX)
    if g == 0:
        raise ConfigError("group_size must be -1 (one group per row) or >= 1, got 0")
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    if g >= cols:
        g = -1 if g > 0 else g
    return b, g, bool(symmetric)


def ngroups(cols: int, g: int) -> int:
    return -(-cols // g) if g > 0 else 1


def quantized_result(like: Any, Wq: np.ndarray, scales, zeros, q, g_idx) -> QuantizedLayer:
    if _checks.is_torch(like):
        import torch

        return QuantizedLayer(*(torch.from_numpy(np.ascontiguousarray(x)) for x in (Wq, scales, zeros, q, g_idx)))
    return QuantizedLayer(Wq, scales, zeros, q, g_idx)


def rtn(W: Any, bits: int, *, group_size: int = 128, symmetric: bool = False) -> QuantizedLayer:
    """Round-to-nearest quantisation on GPTQ's grid (the baseline GPTQ improves on).

    Each group of ``group_size`` consecutive columns of a row (or the whole row with -1) gets the
    min/max grid containing 0: asymmetric ``scale = (max - min) / (2^bits - 1)``,
    ``zero = round(-min / scale)``; symmetric ``scale = 2 max|w| / (2^bits - 1)``,
    ``zero = 2^(bits-1)``. ``q = clamp(round(w / scale) + zero, 0, 2^bits - 1)`` (half to even).
    When C is not a multiple of ``group_size`` the last group holds the remaining columns and
    its grid is computed from them alone; ``group_size >= C`` means one group per row.

    Parameters
    ----------
    W : array-like or CPU torch.Tensor, float32 or float64, shape (R, C)
    bits : int in [2, 8];  group_size : int >= 1 or -1;  symmetric : bool

    Returns
    -------
    QuantizedLayer (weight, scales, zeros, q, g_idx). Deterministic.
    """
    a = check_weight(W)
    b, g, sym = quant_args(bits, group_size, symmetric, a.shape[1])
    rows, cols = a.shape
    Wc = np.array(a, dtype=a.dtype, order="C")
    ng = ngroups(cols, g)
    scales = np.empty((rows, ng), dtype=a.dtype)
    zeros = np.empty((rows, ng), dtype=a.dtype)
    q = np.empty((rows, cols), dtype=np.uint8)
    fn = core.rtn_f64 if a.dtype == np.float64 else core.rtn_f32
    fn(Wc, b, g, sym, scales, zeros, q)
    g_idx = (np.arange(cols) // g if g > 0 else np.zeros(cols, dtype=np.int64)).astype(np.int32)
    return quantized_result(W, Wc, scales, zeros, q, g_idx)
