"""Argument checks shared by the variation operators: populations, per-gene parameters, bounds,
and the output in the input's kind. Bad parameters raise :class:`~evoforge.errors.ConfigError` (a
``ValueError``), bad genes a plain ``ValueError``, wrong types ``TypeError``."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import _checks
from ..errors import ConfigError

I32 = np.iinfo(np.int32)


def is_cuda(x: Any) -> bool:
    return _checks.is_torch(x) and x.device.type == "cuda"


def int_population(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """x as C-contiguous int32 [P, L]; also whether it was 1-D."""
    a = _checks.to_numpy(x, name)
    if a.dtype.kind not in "iu" or a.dtype == np.bool_:
        raise TypeError(f"{name} must hold integers (int32 levels), got dtype {a.dtype}")
    if a.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (P, L) or (L,), got {a.shape}")
    one = a.ndim == 1
    a2 = a.reshape(1, -1) if one else a
    narrow = a.dtype.itemsize < 4 or (a.dtype.itemsize == 4 and a.dtype.kind == "i")
    if not narrow and a2.size and (a2.min() < I32.min or a2.max() > I32.max):
        raise ValueError(f"{name} values must fit in int32")
    return np.ascontiguousarray(a2, dtype=np.int32), one


def float_population(x: Any, name: str) -> tuple[np.ndarray, bool]:
    a = _checks.to_numpy(x, name)
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got dtype {a.dtype}")
    if a.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (P, L) or (L,), got {a.shape}")
    one = a.ndim == 1
    return np.ascontiguousarray(a.reshape(1, -1) if one else a), one


def per_gene(value: Any, L: int, name: str, dtype: Any, *, integer: bool = False) -> np.ndarray:
    """A scalar or an (L,) array as a C-contiguous (L,) array of dtype; NaN -> ConfigError (it is a
    parameter: sigma, lower, upper)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or an array of shape ({L},), got bool")
    a = _checks.to_numpy(value, name)
    if a.dtype.kind not in ("iu" if integer else "iuf") or a.dtype == np.bool_:
        kind = "integers" if integer else "real numbers"
        raise TypeError(f"{name} must hold {kind}, got dtype {a.dtype}")
    if a.ndim == 0:
        a = np.full(L, a)
    if a.shape != (L,):
        raise ConfigError(f"{name} must be a scalar or have shape ({L},), got {a.shape}")
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise ConfigError(f"{name} holds NaN at gene {int(np.argmax(np.isnan(a)))}")
    if integer and a.size and (a.min() < I32.min or a.max() > I32.max):
        raise ConfigError(f"{name} values must fit in int32")
    return np.ascontiguousarray(a, dtype=dtype)


def bounds(lower: Any, upper: Any, L: int, dtype: Any, *, integer: bool = False) -> tuple[np.ndarray, np.ndarray]:
    lo = per_gene(lower, L, "lower", dtype, integer=integer)
    hi = per_gene(upper, L, "upper", dtype, integer=integer)
    bad = lo > hi
    if bad.any():
        g = int(np.argmax(bad))
        raise ConfigError(f"lower > upper at gene {g}: {lo[g]} > {hi[g]}")
    return lo, hi


def check_within(pop: np.ndarray, lo: np.ndarray, hi: np.ndarray, name: str) -> None:
    bad = (pop < lo) | (pop > hi)
    if bad.any():
        r, g = np.argwhere(bad)[0]
        raise ValueError(f"{name}[{r}, {g}] = {pop[r, g]} lies outside [lower, upper] = [{lo[g]}, {hi[g]}]")


def check_finite(pop: np.ndarray, name: str) -> None:
    """NaN or inf genes would pass through a mutation (or be clipped to a bound) silently."""
    bad = ~np.isfinite(pop)
    if bad.any():
        r, g = np.argwhere(bad)[0]
        v = pop[r, g]
        raise ValueError(f"{name} holds {'NaN' if np.isnan(v) else v} at row {r}, gene {g} (genes must be finite)")


def like(out: np.ndarray, x: Any, one: bool) -> Any:
    if one:
        out = out[0]
    if _checks.is_torch(x):
        import torch

        return torch.from_numpy(out)
    return out


def check_eta(eta: Any) -> float:
    """A distribution index (SBX, polynomial mutation): a finite real >= 0."""
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not float(eta) >= 0 or not np.isfinite(eta):
        raise ConfigError(f"eta must be a finite real >= 0, got {eta!r}")
    return float(eta)


def check_finite_bounds(lo: np.ndarray, hi: np.ndarray) -> None:
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ConfigError("lower and upper must be finite")
