"""Argument checks shared by the solvers: ints, reals and sparsities (bad values raise
:class:`~evoforge.errors.ConfigError`), the weight W, and torch-in torch-out."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _checks
from ..errors import ConfigError

W_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


check_int = _checks.check_int  # the shared integer check
INT_MAX = _checks.INT_MAX  # the upper bound of sizes handed to the kernels (a C int)
check_real = _checks.check_real  # the shared real-number check


def check_sparsity(x: Any, name: str = "sparsity") -> float:
    s = check_real(x, name)
    if not 0.0 <= s < 1.0:
        raise ConfigError(f"{name} must lie in [0, 1), got {s}")
    return s


def check_weight(W: Any) -> np.ndarray:
    a = _checks.to_numpy(W, "W")
    if a.dtype not in W_DTYPES:
        raise TypeError(f"W must be float32 or float64, got dtype {a.dtype} (convert it, e.g. W.float())")
    if a.ndim != 2:
        raise ValueError(f"W must be 2-D with shape (out_features, in_features), got shape {a.shape}")
    if a.shape[1] < 1:
        raise ValueError(f"W must have at least one column, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"W holds NaN or inf in row {int(np.argmax(bad.any(axis=1)))}")
    return a


def wrap(like: Any, *arrays: np.ndarray) -> Any:
    """Torch tensors when ``like`` is a tensor, else the arrays as they are."""
    if _checks.is_torch(like):
        import torch

        out = tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)
    else:
        out = arrays
    return out[0] if len(out) == 1 else out
