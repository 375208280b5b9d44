"""The Hessian of the layer-wise loss and its preparation for the solvers: dead inputs,
dampening, the upper Cholesky factor of its inverse (:class:`HessianFactor`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _checks
from ..errors import ConfigError
from ._args import W_DTYPES, check_real


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
        if X.dim() < 1:
            raise ValueError("X must have at least one dimension (..., C)")
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
    if a.dtype not in W_DTYPES:
        raise TypeError(f"H must be float32 or float64, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
        raise ValueError(f"H must be a square (C, C) matrix with C >= 1, got shape {a.shape}")
    damp_frac = check_real(percdamp, "percdamp")
    if damp_frac < 0:
        raise ConfigError(f"percdamp must be >= 0, got {damp_frac}")
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
    if dt not in W_DTYPES:
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


def as_factor(
    H: Any, cols: int, percdamp: float | None, act_order: bool = False, dtype: Any = np.float64
) -> HessianFactor:
    if isinstance(H, HessianFactor):
        if H.cols != cols:
            raise ValueError(f"the HessianFactor is for {H.cols} inputs but W has {cols} columns")
        if percdamp is not None and float(percdamp) != H.percdamp:
            raise ConfigError(f"percdamp={percdamp} differs from the factor's ({H.percdamp}); omit it")
        return H
    a = _checks.to_numpy(H, "H")
    if a.ndim == 2 and a.shape != (cols, cols):
        raise ValueError(f"H must have shape ({cols}, {cols}) for W with {cols} columns, got {a.shape}")
    return factor_hessian(
        H, percdamp=0.01 if percdamp is None else percdamp, act_order=act_order, dtype=dtype
    )
