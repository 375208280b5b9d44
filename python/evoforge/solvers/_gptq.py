"""GPTQ quantisation (Frantar et al. 2022), one bit width or a ladder from one factorisation
of H."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._native import core
from ..errors import ConfigError
from ._args import INT_MAX, check_int, check_weight
from ._hessian import as_factor
from ._rtn import QuantizedLayer, ngroups, quant_args, quantized_result


def _gptq_one(a, Wc, U, perm, b, g, sym, bs) -> tuple:
    rows, cols = Wc.shape
    ng = ngroups(cols, g)
    scales = np.empty((rows, ng), dtype=a.dtype)
    zeros = np.empty((rows, ng), dtype=a.dtype)
    q = np.empty((rows, cols), dtype=np.uint8)
    eff_bs = bs if g <= 0 else (g if bs < g else bs - bs % g)
    fn = core.gptq_f64 if a.dtype == np.float64 else core.gptq_f32
    fn(Wc, U, eff_bs, b, g, sym, scales, zeros, q)
    g_order = (np.arange(cols) // g if g > 0 else np.zeros(cols, dtype=np.int64)).astype(np.int32)
    if perm is None:
        return Wc, scales, zeros, q, g_order
    inv = np.empty_like(perm)
    inv[perm] = np.arange(cols)
    g_idx = np.empty(cols, dtype=np.int32)
    g_idx[perm] = g_order
    return np.ascontiguousarray(Wc[:, inv]), scales, zeros, np.ascontiguousarray(q[:, inv]), g_idx


def _gptq_setup(W, H, blocksize, percdamp, act_order):
    a = check_weight(W)
    bs = check_int(blocksize, "blocksize", 1, INT_MAX)
    if not isinstance(act_order, (bool, np.bool_)):
        raise TypeError(f"act_order must be a bool, got {type(act_order).__name__}")
    f = as_factor(H, a.shape[1], percdamp, act_order=bool(act_order), dtype=a.dtype)
    if act_order and f.perm is None:
        raise ConfigError("act_order=True needs a HessianFactor made with factor_hessian(H, act_order=True)")
    if not act_order and f.perm is not None:
        raise ConfigError("this HessianFactor has an act-order permutation; pass act_order=True")
    base = np.array(a, dtype=a.dtype, order="C")
    base[:, f.dead] = 0
    if f.perm is not None:
        base = np.ascontiguousarray(base[:, f.perm])
    U = np.ascontiguousarray(f.U, dtype=a.dtype)
    return a, base, U, f.perm, bs


def gptq(
    W: Any,
    H: Any,
    bits: int,
    *,
    group_size: int = 128,
    symmetric: bool = False,
    blocksize: int = 128,
    percdamp: float | None = None,
    act_order: bool = False,
) -> QuantizedLayer:
    """Quantise W with GPTQ.

    Columns are visited left to right (or by decreasing ``H[i, i]`` with ``act_order``); each is
    rounded to its grid (see :func:`rtn` for the grid and the partial last group) and its error
    fed back into the columns not yet visited. A group's grid is computed from the group's
    current, error-updated weights when its first column is reached (with ``group_size = -1``,
    one grid per row from the weights as given). With ``act_order``, groups are runs of
    ``group_size`` columns in the processing order and ``g_idx`` maps each column to its group.
    ``blocksize`` only batches the updates (it is rounded to a multiple of ``group_size``) and
    does not change the result beyond rounding.

    Parameters
    ----------
    W : array-like or CPU torch.Tensor, float32 or float64, shape (R, C)
    H : array-like or CPU torch.Tensor, float32 or float64, shape (C, C); or a HessianFactor
    bits : int in [2, 8]
    group_size : int >= 1, or -1 for one group per row (also when group_size >= C)
    symmetric : bool
    blocksize : int >= 1
    percdamp : float >= 0, default 0.01 (not with a HessianFactor)
    act_order : bool

    Returns
    -------
    QuantizedLayer (weight, scales, zeros, q, g_idx), weight the dequantised W. Deterministic.
    """
    a, base, U, perm, bs = _gptq_setup(W, H, blocksize, percdamp, act_order)
    b, g, sym = quant_args(bits, group_size, symmetric, a.shape[1])
    return quantized_result(W, *_gptq_one(a, base, U, perm, b, g, sym, bs))


def gptq_levels(
    W: Any,
    H: Any,
    bits: Sequence[int],
    *,
    group_size: int = 128,
    symmetric: bool = False,
    blocksize: int = 128,
    percdamp: float | None = None,
    act_order: bool = False,
) -> list[QuantizedLayer]:
    """``[gptq(W, H, b, ...) for b in bits]`` with H damped and factorised once."""
    try:
        blist = list(bits)
    except TypeError:
        raise TypeError(f"bits must be a sequence of ints, got {type(bits).__name__}") from None
    if not blist:
        raise ConfigError("bits is empty")
    a, base, U, perm, bs = _gptq_setup(W, H, blocksize, percdamp, act_order)
    out = []
    for b in blist:
        bb, g, sym = quant_args(b, group_size, symmetric, a.shape[1])
        out.append(quantized_result(W, *_gptq_one(a, base.copy(), U, perm, bb, g, sym, bs)))
    return out
