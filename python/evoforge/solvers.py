"""Layer-wise solvers for post-training compression: SparseGPT pruning and GPTQ quantisation.

Symbols: a linear layer's weight ``W`` has shape (R, C) = (out_features, in_features), as in
``torch.nn.Linear.weight``; ``H`` is the (C, C) Hessian of the layer-wise loss
``||W X - W' X||^2``, i.e. ``H = 2 X^T X / n`` over n calibration inputs X of shape (n, C)
(see :func:`hessian`). Both solvers minimise that loss one column at a time, feeding the error
of every compressed column back into the columns not yet compressed (Frantar & Alistarh 2023,
"SparseGPT"; Frantar et al. 2022, "GPTQ"). The column loops run in C++ (cpp/solvers.cpp) on
``evoforge.get_num_threads()`` threads with the GIL released; the output does not depend on the
thread count.

Preparing H (shared by all solvers, see :func:`factor_hessian`): H is taken in float64; an input
whose diagonal entry is 0 ("dead", never active in the calibration data) gets ``H[i, i] = 1``
and its column of W is set to 0; then ``percdamp * mean(diag(H))`` is added to the diagonal
(dampening); finally U, the upper Cholesky factor of ``H^-1`` (``H^-1 = U^T U``), is computed
in W's dtype (torch's LAPACK when torch is installed, else numpy's). One
:class:`HessianFactor` can serve several layers that share their inputs (q/k/v projections)
and every level of a ladder.

Arrays: numpy arrays or CPU torch tensors; torch in gives torch out (sharing no memory with the
input). The computation runs in W's dtype (float32 or float64). Inputs are never modified.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from . import _checks
from ._native import core

__all__ = [
    "HessianFactor",
    "QuantizedLayer",
    "factor_hessian",
    "gptq",
    "gptq_levels",
    "hessian",
    "prune_counts",
    "rtn",
    "sparsegpt",
    "sparsegpt_levels",
]

_W_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ------------------------------------------------------------------------------------------------
# Argument checks


def _int(x: Any, name: str, lo: int, hi: int | None = None) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    x = int(x)
    if x < lo or (hi is not None and x > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {rng}, got {x}")
    return x


def _real(x: Any, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    x = float(x)
    if math.isnan(x):
        raise ValueError(f"{name} is NaN")
    return x


def _sparsity(x: Any, name: str = "sparsity") -> float:
    s = _real(x, name)
    if not 0.0 <= s < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {s}")
    return s


def _weight(W: Any) -> np.ndarray:
    a = _checks.to_numpy(W, "W")
    if a.dtype not in _W_DTYPES:
        raise TypeError(f"W must be float32 or float64, got dtype {a.dtype} (convert it, e.g. W.float())")
    if a.ndim != 2:
        raise ValueError(f"W must be 2-D with shape (out_features, in_features), got shape {a.shape}")
    if a.shape[1] < 1:
        raise ValueError(f"W must have at least one column, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"W holds NaN or inf in row {int(np.argmax(bad.any(axis=1)))}")
    return a


def _wrap(like: Any, *arrays: np.ndarray) -> Any:
    """Torch tensors when ``like`` is a tensor, else the arrays as they are."""
    if _checks.is_torch(like):
        import torch

        out = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    else:
        out = arrays
    return out[0] if len(out) == 1 else out


# ------------------------------------------------------------------------------------------------
# Hessian


def hessian(X: Any) -> Any:
    """``2 X^T X / n``, the Hessian of the layer-wise squared error, in float64.

    Parameters
    ----------
    X : array-like or CPU torch.Tensor, float, shape (..., C)
        Calibration inputs of the layer; all leading dimensions count as samples (n of them).

    Returns
    -------
    numpy.ndarray or torch.Tensor (as X), float64, shape (C, C).

    Raises
    ------
    TypeError for non-float X; ValueError for NaN or inf in X (naming the row).
    """
    if _checks.is_torch(X):
        import torch

        if X.device.type != "cpu":
            raise ValueError(f"X is on {X.device}; expected a CPU tensor")
        if not X.is_floating_point():
            raise TypeError(f"X must be floating point, got {X.dtype}")
        X2 = X.detach().reshape(-1, X.shape[-1]).to(torch.float64)
        H = (X2.T @ X2) * (2.0 / max(1, X2.shape[0]))
        _check_hessian(H.numpy(), X2.numpy())
        return H
    a = _checks.to_numpy(X, "X")
    if a.dtype.kind != "f":
        raise TypeError(f"X must be floating point, got dtype {a.dtype}")
    if a.ndim < 1:
        raise ValueError("X must have at least one dimension (..., C)")
    a = a.reshape(-1, a.shape[-1]).astype(np.float64, copy=False)
    H = (a.T @ a) * (2.0 / max(1, a.shape[0]))
    _check_hessian(H, a)
    return H


def _check_hessian(H: np.ndarray, X2: np.ndarray) -> None:
    """ValueError for a non-finite H, which every solver would turn into NaN weights. A NaN or inf
    in X always makes H non-finite, so the small [C, C] H is checked and X scanned only to name the row."""
    if not np.isfinite(H).all():
        bad = ~np.isfinite(X2).all(axis=1)
        where = f"in row {int(np.argmax(bad))} (of X reshaped to (n, C))" if bad.any() else "(X^T X overflows float64)"
        raise ValueError(f"X holds NaN or inf {where}")


@dataclass(frozen=True)
class HessianFactor:
    """What the solvers need from H, computed once by :func:`factor_hessian`.

    Attributes
    ----------
    U : numpy.ndarray, float64 or float32 (the factorisation's precision), shape (C, C)
        Upper Cholesky factor of the damped inverse Hessian, ``H^-1 = U^T U`` (in the processing
        order when ``perm`` is set).
    dead : numpy.ndarray of bool, shape (C,)
        Inputs with ``H[i, i] == 0`` in the given order; their weights are set to 0.
    percdamp : float
    perm : numpy.ndarray of int64, shape (C,), or None
        GPTQ's act-order processing order (decreasing ``H[i, i]``), when requested.
    """

    U: np.ndarray
    dead: np.ndarray
    percdamp: float
    perm: np.ndarray | None = None

    @property
    def cols(self) -> int:
        return int(self.U.shape[0])


def factor_hessian(
    H: Any, *, percdamp: float = 0.01, act_order: bool = False, dtype: Any = np.float64
) -> HessianFactor:
    """Dead inputs, dampening and the upper Cholesky factor of ``H^-1`` (see the module docstring).

    Parameters
    ----------
    H : array-like or CPU torch.Tensor, float32 or float64, shape (C, C)
        Symmetric positive semi-definite (e.g. from :func:`hessian`); used in float64.
    percdamp : float >= 0
        Dampening as a fraction of the mean diagonal (after dead inputs are set to 1).
    act_order : bool
        Also record GPTQ's act-order permutation (columns by decreasing ``H[i, i]``, stable) and
        factorise H in that order. Only :func:`gptq` accepts such a factor.
    dtype : numpy.float64 (default) or numpy.float32
        Precision of the Cholesky factorisation and the triangular inverse (dead inputs and
        dampening are always done in float64). float32 is about twice as fast and is what the
        reference implementations use; when it fails, float64 is tried before giving up. The
        solvers given a raw H use W's dtype.

    Raises
    ------
    TypeError for a non-float H; ValueError for a wrong shape, NaN/inf, an asymmetric H, a
    negative diagonal, or an H that is not positive definite after dampening.
    """
    a = _checks.to_numpy(H, "H")
    if a.dtype not in _W_DTYPES:
        raise TypeError(f"H must be float32 or float64, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"H must be a square (C, C) matrix with C >= 1, got shape {a.shape}")
    damp_frac = _real(percdamp, "percdamp")
    if damp_frac < 0:
        raise ValueError(f"percdamp must be >= 0, got {damp_frac}")
    if not isinstance(act_order, (bool, np.bool_)):
        raise TypeError(f"act_order must be a bool, got {type(act_order).__name__}")
    Hd = np.array(a, dtype=np.float64)  # a copy we may modify
    if not np.isfinite(Hd).all():
        raise ValueError("H holds NaN or inf")
    asym = Hd - Hd.T
    np.abs(asym, out=asym)
    if float(asym.max()) > 1e-5 * float(np.abs(np.diagonal(Hd)).max()):
        raise ValueError("H must be symmetric (max |H - H^T| exceeds 1e-5 max |H[i, i]|)")
    del asym  # the factorisation reads one triangle only
    diag = np.diagonal(Hd).copy()
    if (diag < 0).any():
        i = int(np.argmax(diag < 0))
        raise ValueError(f"H is not positive semi-definite: H[{i}, {i}] = {diag[i]:g} < 0")
    dead = diag == 0
    idx = np.arange(Hd.shape[0])
    Hd[idx[dead], idx[dead]] = 1.0
    Hd[idx, idx] += damp_frac * float(np.mean(np.diagonal(Hd)))
    perm = None
    if act_order:
        perm = np.argsort(-np.diagonal(Hd), kind="stable").astype(np.int64)
        Hd = Hd[np.ix_(perm, perm)]
    dt = np.dtype(dtype)
    if dt not in _W_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    try:
        U = _upper_cholesky_of_inverse(Hd.astype(dt), damp_frac)
    except ValueError:
        if dt == np.float64:
            raise
        U = _upper_cholesky_of_inverse(Hd, damp_frac)
    return HessianFactor(U=U, dead=dead, percdamp=damp_frac, perm=perm)


def _upper_cholesky_of_inverse(H: np.ndarray, percdamp: float) -> np.ndarray:
    """U upper with H^-1 = U^T U. With P the order reversal, P H P = L L^T gives H = V V^T for the
    upper triangular V = P L P, so H^-1 = V^-T V^-1 and U = V^-1."""
    msg = (
        f"H is not positive definite after dampening (percdamp={percdamp:g}); "
        "use more calibration data or a larger percdamp"
    )
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        Ht = torch.from_numpy(H).flip(0, 1)
        L, info = torch.linalg.cholesky_ex(Ht)
        if int(info) != 0:
            raise ValueError(msg)
        V = L.flip(0, 1)
        eye = torch.eye(V.shape[0], dtype=V.dtype)
        U = torch.linalg.solve_triangular(V, eye, upper=True).triu_().numpy()
    else:
        try:
            L = np.linalg.cholesky(np.ascontiguousarray(H[::-1, ::-1]))
        except np.linalg.LinAlgError:
            raise ValueError(msg) from None
        U = np.triu(np.linalg.inv(L[::-1, ::-1]))  # the kernels need an exactly zero lower triangle
    if not np.isfinite(U).all():
        raise ValueError(msg)
    return np.ascontiguousarray(U)


def _factor(
    H: Any, cols: int, percdamp: float | None, act_order: bool = False, dtype: Any = np.float64
) -> HessianFactor:
    if isinstance(H, HessianFactor):
        if H.cols != cols:
            raise ValueError(f"the HessianFactor is for {H.cols} inputs but W has {cols} columns")
        if percdamp is not None and float(percdamp) != H.percdamp:
            raise ValueError(f"percdamp={percdamp} differs from the factor's ({H.percdamp}); omit it")
        return H
    a = _checks.to_numpy(H, "H")
    if a.ndim == 2 and a.shape != (cols, cols):
        raise ValueError(f"H must have shape ({cols}, {cols}) for W with {cols} columns, got {a.shape}")
    return factor_hessian(
        H, percdamp=0.01 if percdamp is None else percdamp, act_order=act_order, dtype=dtype
    )


# ------------------------------------------------------------------------------------------------
# SparseGPT


def prune_counts(rows: int, cols: int, blocksize: int, sparsity: float) -> np.ndarray:
    """How many weights each row prunes in each block of columns, shape (rows, ceil(cols/blocksize)), int32.

    Cumulative rounding over the row-major order: with ``c(x) = floor(sparsity * x + 1/2)``, row r
    prunes ``c(r*C + end) - c(r*C + start)`` weights of the block [start, end). So every block of
    every row prunes its share to within one weight, and the layer prunes exactly
    ``c(R*C) = round(sparsity * R * C)`` weights.
    """
    nb = -(-cols // blocksize)
    ends = np.minimum(np.arange(nb + 1, dtype=np.int64) * blocksize, cols)
    x = np.arange(rows, dtype=np.int64)[:, None] * cols + ends[None, :]
    c = np.floor(sparsity * x.astype(np.float64) + 0.5).astype(np.int64)
    return np.ascontiguousarray(np.diff(c, axis=1), dtype=np.int32)


def _sparse_setup(W: Any, H: Any, blocksize: Any, percdamp: Any):
    a = _weight(W)
    bs = _int(blocksize, "blocksize", 1)
    f = _factor(H, a.shape[1], percdamp, dtype=a.dtype)
    if f.perm is not None:
        raise ValueError("this HessianFactor has an act-order permutation, which only gptq() uses")
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
        pn = _int(prune_n, "prune_n", 1)
        pm = _int(prune_m, "prune_m", 2)
        if pn >= pm:
            raise ValueError(f"prune_n must be < prune_m, got {pn}:{pm}")
        if sparsity is not None:
            raise ValueError("give either sparsity or prune_n/prune_m, not both")
        s = 0.0
    else:
        if sparsity is None:
            raise ValueError("sparsity is required (or prune_n and prune_m for n:m pruning)")
        s, pn, pm = _sparsity(sparsity), 0, 0
    _a, Wc, U, bs = _sparse_setup(W, H, blocksize, percdamp)
    rows, cols = Wc.shape
    if nm and (cols % pm or bs % pm):
        raise ValueError(f"n:m pruning needs in_features ({cols}) and blocksize ({bs}) to be multiples of prune_m={pm}")
    counts = None if nm else prune_counts(rows, cols, bs, s)
    mask = np.zeros((rows, cols), dtype=np.uint8) if return_mask else None
    _sparse_fn(Wc.dtype)(Wc, U, bs, counts, pn, pm, mask)
    if return_mask:
        return _wrap(W, Wc, mask.astype(bool))
    return _wrap(W, Wc)


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
        levels = [_sparsity(s, f"sparsities[{i}]") for i, s in enumerate(sparsities)]
    except TypeError:
        if not isinstance(sparsities, (Sequence, np.ndarray)) and not _checks.is_torch(sparsities):
            raise TypeError(f"sparsities must be a sequence of floats, got {type(sparsities).__name__}") from None
        raise
    if not levels:
        raise ValueError("sparsities is empty")
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
        return _wrap(W, out, mask.reshape(L, rows, cols).astype(bool))
    return _wrap(W, out)


# ------------------------------------------------------------------------------------------------
# GPTQ and round-to-nearest


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


def _quant_args(bits: Any, group_size: Any, symmetric: Any, cols: int) -> tuple[int, int, bool]:
    b = _int(bits, "bits", 2, 8)
    g = _int(group_size, "group_size", -1)
    if g == 0:
        raise ValueError("group_size must be -1 (one group per row) or >= 1, got 0")
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
    if g >= cols:
        g = -1 if g > 0 else g
    return b, g, bool(symmetric)


def _ngroups(cols: int, g: int) -> int:
    return -(-cols // g) if g > 0 else 1


def _result(like: Any, Wq: np.ndarray, scales, zeros, q, g_idx) -> QuantizedLayer:
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
    a = _weight(W)
    b, g, sym = _quant_args(bits, group_size, symmetric, a.shape[1])
    rows, cols = a.shape
    Wc = np.array(a, dtype=a.dtype, order="C")
    ng = _ngroups(cols, g)
    scales = np.empty((rows, ng), dtype=a.dtype)
    zeros = np.empty((rows, ng), dtype=a.dtype)
    q = np.empty((rows, cols), dtype=np.uint8)
    fn = core.rtn_f64 if a.dtype == np.float64 else core.rtn_f32
    fn(Wc, b, g, sym, scales, zeros, q)
    g_idx = (np.arange(cols) // g if g > 0 else np.zeros(cols, dtype=np.int64)).astype(np.int32)
    return _result(W, Wc, scales, zeros, q, g_idx)


def _gptq_one(a, Wc, U, perm, b, g, sym, bs) -> tuple:
    rows, cols = Wc.shape
    ng = _ngroups(cols, g)
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
    a = _weight(W)
    bs = _int(blocksize, "blocksize", 1)
    if not isinstance(act_order, (bool, np.bool_)):
        raise TypeError(f"act_order must be a bool, got {type(act_order).__name__}")
    f = _factor(H, a.shape[1], percdamp, act_order=bool(act_order), dtype=a.dtype)
    if act_order and f.perm is None:
        raise ValueError("act_order=True needs a HessianFactor made with factor_hessian(H, act_order=True)")
    if not act_order and f.perm is not None:
        raise ValueError("this HessianFactor has an act-order permutation; pass act_order=True")
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
    b, g, sym = _quant_args(bits, group_size, symmetric, a.shape[1])
    return _result(W, *_gptq_one(a, base, U, perm, b, g, sym, bs))


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
        raise ValueError("bits is empty")
    a, base, U, perm, bs = _gptq_setup(W, H, blocksize, percdamp, act_order)
    out = []
    for b in blist:
        bb, g, sym = _quant_args(b, group_size, symmetric, a.shape[1])
        out.append(_result(W, *_gptq_one(a, base.copy(), U, perm, bb, g, sym, bs)))
    return out
