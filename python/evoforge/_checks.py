"""Input validation shared by the thin ops: clear Python errors before any native call."""

from __future__ import annotations

from typing import Any

import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def is_torch(x: Any) -> bool:
    """True for a torch.Tensor, without importing torch."""
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def to_numpy(x: Any, name: str) -> np.ndarray:
    """A numpy view of a CPU tensor or array-like; TypeError for objects numpy can't hold as numbers."""
    if is_torch(x):
        if x.device.type != "cpu":
            raise ValueError(f"{name} is on {x.device}; expected a CPU tensor here")
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}: {exc}") from None


def float_dtype(a: np.ndarray, name: str) -> np.dtype:
    """float32/float64 kept, float16 -> float32, bool/integers -> float64; anything else TypeError."""
    kind = a.dtype.kind
    if a.dtype in _FLOATS:
        return a.dtype
    if a.dtype == np.float16:
        return np.dtype(np.float32)
    if kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(f"{name} must hold real numbers (float32 or float64), got dtype {a.dtype}")


def objectives(F: Any, name: str = "F") -> np.ndarray:
    """F as a C-contiguous float32/float64 array of shape [N, M], M >= 1."""
    a = to_numpy(F, name)
    dt = float_dtype(a, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D with shape [N, M], got shape {a.shape}")
    if a.shape[1] < 1:
        raise ValueError(f"{name} must have at least one objective (M >= 1), got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=dt)


def vector(x: Any, n: int, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """x as a C-contiguous 1-D array of length n (dtype kept unless given)."""
    a = to_numpy(x, name)
    dt = float_dtype(a, name) if dtype is None else dtype
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} must have shape [{n}], got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=dt)


def first_nan_row(a: np.ndarray) -> int | None:
    bad = np.isnan(a.reshape(a.shape[0], -1)).any(axis=1)
    return int(np.argmax(bad)) if bad.any() else None
