"""Input validation shared by the thin ops: clear Python errors before any native call."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .errors import ConfigError, CudaUnavailableError

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

#: The largest value of a C ``int``: the default upper bound of counts and sizes handed to native code.
INT_MAX = 2**31 - 1


def check_int(value: Any, name: str, lo: int = 1, hi: int | None = None, *, integral_float: bool = False) -> int:
    """``value`` as an int in [lo, hi] (hi None: no upper bound), the one integer check of evoforge.

    TypeError for non-numbers, bools and (unless ``integral_float``) floats; with
    ``integral_float``, a float holding an integer (``4.0``) is taken and a fractional, NaN or
    infinite one raises ConfigError. ConfigError (a ValueError) names the parameter and its range
    when the value lies outside it, before any loop or allocation sized by it.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not isinstance(value, numbers.Integral):
        if not integral_float:
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        f = float(value)
        if not (math.isfinite(f) and f.is_integer()):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        value = f
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        raise ConfigError(f"{name} must lie in [{lo}, {hi if hi is not None else 'inf'}], got {v}")
    return v


def check_real(x: Any, name: str) -> float:
    """``x`` as a float: TypeError for non-real numbers (bools, complex, strings, arrays),
    ConfigError for NaN (infinities are left to the caller's range)."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
    x = float(x)
    if math.isnan(x):
        raise ConfigError(f"{name} is NaN")
    return x


def is_sequence_shape(shape: Any) -> bool:
    """True for a shape given as a sequence of sizes (tuple, list, torch.Size, 1-D array)."""
    return isinstance(shape, (tuple, list)) or (isinstance(shape, np.ndarray) and shape.ndim == 1)


def check_shape(shape: Any, name: str, *, lo: int = 0, max_elements: int = INT_MAX) -> tuple[int, ...]:
    """A shape (an int, or a tuple/list/1-D array of ints each >= ``lo``) as a tuple, whose number
    of elements is at most ``max_elements`` (an absurd size is refused, not allocated)."""
    if is_sequence_shape(shape):
        dims = tuple(check_int(d, f"{name}[{i}]", lo, max_elements) for i, d in enumerate(shape))
    else:
        dims = (check_int(shape, name, lo, max_elements),)
    if math.prod(dims) > max_elements:
        raise ConfigError(f"{name} {dims} holds {math.prod(dims)} elements, more than the {max_elements} allowed")
    return dims


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


#: The devices evoforge's torch code runs on (a ``meta`` tensor holds no data to read).
DEVICES = ("cpu", "cuda")


def check_tensor(x: Any, name: str, *, dtype: str | None = None, devices: tuple[str, ...] = DEVICES) -> Any:
    """``x`` itself, once it is a torch.Tensor on one of ``devices`` whose dtype is of the kind
    ``dtype``: ``"float"`` (floating point), ``"int"`` (integer, not bool) or None (any).

    TypeError for another type or dtype, ValueError for another device; checked before any
    copy, so that a meta tensor or a bool weight fails here rather than deep in torch.
    """
    if not is_torch(x):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.device.type not in devices:
        raise ValueError(f"{name} is on {x.device}; expected a tensor on {' or '.join(devices)}")
    dt = x.dtype
    if dtype == "float" and not dt.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got {dt}")
    if dtype == "int" and (dt.is_floating_point or dt.is_complex or str(dt) == "torch.bool"):
        raise TypeError(f"{name} must be an integer tensor, got {dt}")
    return x


def check_device(device: Any, name: str = "device") -> Any:
    """None, or ``device`` (a torch.device or a name such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``) as a
    torch.device of :data:`DEVICES`: TypeError for another type, ValueError for a name torch does not
    know or another device type, CudaUnavailableError for CUDA without a visible GPU."""
    if device is None:
        return None
    import torch

    if isinstance(device, str):
        try:
            device = torch.device(device)
        except RuntimeError:
            raise ValueError(f"{name} {device!r} is not a device name such as 'cpu', 'cuda' or 'cuda:0'") from None
    if not isinstance(device, torch.device):
        raise TypeError(f"{name} must be a torch.device or a name such as 'cpu' or 'cuda', got {type(device).__name__}")
    if device.type not in DEVICES:
        raise ValueError(f"{name} must be a {' or '.join(DEVICES)} device, got {device}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CudaUnavailableError(f"{name} {str(device)!r}: no CUDA device is visible")
    return device
