"""SparseGPT pruning (Frantar & Alistarh 2023): unstructured or n:m, one level or a ladder
of levels from one factorisation of H."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _checks
from .._native import core
from ..errors import ConfigError
from ._args import INT_MAX, check_int, check_real, check_sparsity, check_weight, wrap
from ._hessian import as_factor


def prune_counts(rows: int, cols: int, blocksize: int, sparsity: float) -> np.ndarray:
    """How many weights each row prunes in each block of columns, shape (rows, ceil(cols/blocksize)), int32.

    Cumulative rounding over the row-major order: with ``c(x) = floor(sparsity * x + 1/2)``, row r
    prunes ``c(r*C + end) - c(r*C + start)`` weights of the block [start, end). So every block of
    every row prunes its share to within one weight, and the layer prunes exactly
    ``c(R*C) = round(sparsity * R * C)`` weights.

    ``rows`` and ``cols`` are ints >= 0, ``blocksize`` an int >= 1 (all at most 2**31 - 1, the
    kernels' C int), ``sparsity`` in [0, 1]; ConfigError (a ValueError) otherwise.
    """
    rows = check_int(rows, "rows", 0, INT_MAX)
    cols = check_int(cols, "cols", 0, INT_MAX)
    blocksize = check_int(blocksize, "blocksize", 1, INT_MAX)
    sparsity = check_real(sparsity, "sparsity")
    if not 0.0 <= sparsity <= 1.0:
        raise ConfigError(f"sparsity must lie in [0, 1], got {sparsity}")
    nb = -(-cols // blocksize)
    if rows * (nb + 1) > INT_MAX:
        raise ConfigError(f"prune_counts of {rows} rows x {nb} blocks is too large (more than {INT_MAX} counts)")
    ends = np.minimum(np.arange(nb + 1, dtype=np.int64) * blocksize, cols)
    x = np.arange(rows, dtype=np.int64)[:, None] * cols + ends[None, :]
    c = np.floor(sparsity * x.astype(np.float64) + 0.5).astype(np.int64)
    return np.ascontiguousarray(np.diff(c, axis=1), dtype=np.int32)


def _sparse_setup(W: Any, H: Any, blocksize: Any, percdamp: Any):
    a = check_weight(W)
    bs = check_int(blocksize, "blocksize", 1, INT_MAX)
    f = as_factor(H, a.shape[1], percdamp, dtype=a.dtype)
    if f.perm is not None:
        raise ConfigError("this HessianFactor has an act-order permutation, which only gptq() uses")
    Wc = np.array(a, dtype=a.dtype, order="C")  # our copy, modified in place
    Wc[:, f.dead] = 0
    U = np.ascontiguousarray(f.U, dtype=a.dtype)
    return a, Wc, U, bs


def _sparse_fn(dtype: np.dtype):
    return core.sparsegpt_f64 if dtype == np.float64 else core.sparsegpt_f32


def sparsegpt(
    W: Any,
    H: Any,
    sparsity: float | None = None,
    *,
    blocksize: int = 128,
    percdamp: float | None = None,
    prune_n: int = 0,
    prune_m: int = 0,
    return_mask: bool = False,
) -> Any:
    """Prune W with SparseGPT: unstructured at ``sparsity``, or n:m.

    Columns are visited left to right in blocks of ``blocksize``. Unstructured: at the start of
    a block, each row prunes the weights of the block with the smallest ``w^2 / U[j, j]^2``, as
    many as :func:`prune_counts` says (the ``sparsity`` share of the block, and exactly
    ``round(sparsity * R * C)`` in the layer). n:m: in every group of ``prune_m`` consecutive
    columns each row prunes the ``prune_n`` smallest by the same score, chosen when the group is
    reached. Every pruned weight's error is fed back into the later columns of its row.

    Parameters
    ----------
    W : array-like or CPU torch.Tensor, float32 or float64, shape (R, C)
    H : array-like or CPU torch.Tensor, float32 or float64, shape (C, C); or a HessianFactor
    sparsity : float in [0, 1), or None with n:m
    blocksize : int >= 1
    percdamp : float >= 0, default 0.01 (not with a HessianFactor, which has its own)
    prune_n, prune_m : int, 0 < prune_n < prune_m for n:m (C and blocksize multiples of prune_m)
    return_mask : bool
        Also return the pruning mask.

    Returns
    -------
    W_pruned, same type and dtype as W, shape (R, C); with ``return_mask``, also a bool mask of
    shape (R, C), True where a weight was pruned. Deterministic.

    Raises
    ------
    TypeError / ValueError naming the bad argument; ValueError when H is not positive definite
    after dampening.
    """
    nm = prune_n != 0 or prune_m != 0
    if nm:
        pn = check_int(prune_n, "prune_n", 1, INT_MAX)
        pm = check_int(prune_m, "prune_m", 2, INT_MAX)
        if pn >= pm:
            raise ConfigError(f"prune_n must be < prune_m, got {pn}:{pm}")
        if sparsity is not None:
            raise ConfigError("give either sparsity or prune_n/prune_m, not both")
        s = 0.0
    else:
        if sparsity is None:
            raise ConfigError("sparsity is required (or prune_n and prune_m for n:m pruning)")
        s, pn, pm = check_sparsity(sparsity), 0, 0
    _a, Wc, U, bs = _sparse_setup(W, H, blocksize, percdamp)
    rows, cols = Wc.shape
    if nm and (cols % pm or bs % pm):
        raise ConfigError(f"n:m pruning needs in_features ({cols}) and blocksize ({bs}) to be multiples of "
                          f"prune_m={pm}")
    counts = None if nm else prune_counts(rows, cols, bs, s)
    mask = np.zeros((rows, cols), dtype=np.uint8) if return_mask else None
    _sparse_fn(Wc.dtype)(Wc, U, bs, counts, pn, pm, mask)
    if return_mask:
        return wrap(W, Wc, mask.astype(bool))
    return wrap(W, Wc)


def sparsegpt_levels(
    W: Any,
    H: Any,
    sparsities: Sequence[float],
    *,
    blocksize: int = 128,
    percdamp: float | None = None,
    return_mask: bool = False,
) -> Any:
    """A ladder of unstructured SparseGPT solutions from one factorisation of H.

    Equal to ``[sparsegpt(W, H, s, ...) for s in sparsities]`` (bit for bit), but H is damped and
    factorised once and all levels are solved in one pass (the levels' rows share every read of U).

    Parameters
    ----------
    W, H, blocksize, percdamp : as in :func:`sparsegpt`
    sparsities : sequence of L floats in [0, 1)

    Returns
    -------
    Same type and dtype as W, shape (L, R, C); with ``return_mask``, also a bool mask (L, R, C).
    """
    try:
        levels = [check_sparsity(s, f"sparsities[{i}]") for i, s in enumerate(sparsities)]
    except TypeError:
        if not isinstance(sparsities, (Sequence, np.ndarray)) and not _checks.is_torch(sparsities):
            raise TypeError(f"sparsities must be a sequence of floats, got {type(sparsities).__name__}") from None
        raise
    if not levels:
        raise ConfigError("sparsities is empty")
    _a, Wc, U, bs = _sparse_setup(W, H, blocksize, percdamp)
    rows, cols = Wc.shape
    L = len(levels)
    Wall = np.empty((L * rows, cols), dtype=Wc.dtype)
    Wall.reshape(L, rows, cols)[:] = Wc
    counts = np.concatenate([prune_counts(rows, cols, bs, s) for s in levels], axis=0)
    mask = np.zeros((L * rows, cols), dtype=np.uint8) if return_mask else None
    _sparse_fn(Wc.dtype)(Wall, U, bs, counts, 0, 0, mask)
    out = Wall.reshape(L, rows, cols)
    if return_mask:
        return wrap(W, out, mask.reshape(L, rows, cols).astype(bool))
    return wrap(W, out)
