"""Checks of what a config names outside itself, before any model loads: a text file that must
exist and hold text, a torch device that must exist on this machine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import _native
from ..errors import ConfigError, CudaUnavailableError

__all__ = ["check_device_name", "check_text_file"]

_DEVICE = re.compile(r"(cpu|cuda)(?::(\d+))?")


def check_text_file(label: str, path: Any, what: str = "text") -> None:
    """``path`` is an existing text file that is not empty (whitespace only counts as empty; an empty
    file would fail only after the model loads)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{label}: {what} file not found: {str(path)!r}")
    with open(p, "rb") as f:
        empty = not f.read(1 << 20).strip() and not f.read(1)  # whitespace only (the first MiB decides)
    if empty:
        raise ConfigError(f"{label}: {what} file {str(path)!r} is empty")


def check_device_name(device: Any, label: str = "device") -> str:
    """``device`` (``"cpu"``, ``"cuda"`` or ``"cuda:N"``) checked against this machine before any work:
    TypeError for a non-string; ConfigError for another name, CUDA when torch sees no GPU or evoforge
    lacks its CUDA kernels (fingerprints are hashed on the device), N beyond the visible GPUs."""
    if not isinstance(device, str):
        raise TypeError(f"{label} must be a device name ('cpu', 'cuda' or 'cuda:N'), got {type(device).__name__}")
    m = _DEVICE.fullmatch(device)
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise ConfigError(f"{label} must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if m.group(1) == "cpu":
        return device
    from .._checks import check_device

    try:
        check_device(device, label)
    except CudaUnavailableError:
        raise ConfigError(f"{label} {device!r}: torch sees no CUDA GPU on this machine (or torch was built "
                          "without CUDA); use --device cpu") from None
    import torch

    n = torch.cuda.device_count()
    if m.group(2) is not None and int(m.group(2)) >= n:
        raise ConfigError(f"{label} {device!r}: GPU index {m.group(2)} is out of range; this machine has {n} "
                          f"visible GPU{'s' if n != 1 else ''} (cuda:0..cuda:{n - 1})")
    if _native.cuda is None:
        raise ConfigError(f"{label} {device!r}: evoforge was built without its CUDA kernels, which hash the model "
                          "on the device; reinstall with EVOFORGE_CUDA=ON, or use --device cpu")
    return device
