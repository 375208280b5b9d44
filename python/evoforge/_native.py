"""The only module that imports the native extensions; also the machine they run on (:func:`cpu_model`).

``core`` is always there (a wheel without it is broken and fails at import). ``cuda`` is None
when the package was built without CUDA or the extension failed to load; the reason is kept in
``cuda_import_error`` and raised to anyone who passes a CUDA tensor.
"""

from __future__ import annotations

import numbers
import platform
from functools import lru_cache
from pathlib import Path
from types import ModuleType

from . import _core as core
from .errors import CudaUnavailableError

cuda: ModuleType | None
cuda_import_error: str | None
try:
    from . import _cuda as cuda

    cuda_import_error = None
except ImportError as exc:  # built without nvcc, or the module failed to load
    cuda = None
    from importlib.util import find_spec

    # Without a _cuda file Python's message blames a "partially initialized module"; say what happened.
    cuda_import_error = ("the _cuda extension was not built" if find_spec(f"{__package__}._cuda") is None
                         else f"{type(exc).__name__}: {exc}")


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def get_num_threads() -> int:
    """Threads the native kernels use (set_num_threads, else EVOFORGE_NUM_THREADS, else all cores)."""
    return int(core.get_num_threads())


def set_num_threads(n: int) -> None:
    """Set the threads native kernels use, at most ``info()["max_threads"]`` (1024); ``n <= 0`` restores
    the default. Results never depend on it.

    Raises TypeError for a non-integer, ValueError above the maximum."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads takes an int, got {type(n).__name__}")
    limit = core.build_info()["max_threads"]
    if n > limit:
        raise ValueError(f"set_num_threads: at most {limit} threads, got {n}")
    core.set_num_threads(max(0, int(n)))


def require_cuda() -> ModuleType:
    """The CUDA extension, or CudaUnavailableError saying why it is missing and how to get it."""
    if cuda is None:
        raise CudaUnavailableError(
            "evoforge was built without CUDA kernels "
            f"({cuda_import_error}); reinstall with nvcc on PATH, e.g. "
            "EVOFORGE_CUDA=ON pip install --no-build-isolation ."
        )
    return cuda


__all__ = ["core", "cuda", "cuda_import_error", "get_num_threads", "require_cuda", "set_num_threads"]
