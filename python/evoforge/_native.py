"""The only module that imports the native extensions.

``core`` is always there (a wheel without it is broken and fails at import). ``cuda`` is None
when the package was built without CUDA or the extension failed to load; the reason is kept in
``cuda_import_error`` and raised to anyone who passes a CUDA tensor.
"""

from __future__ import annotations

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


def require_cuda() -> ModuleType:
    """The CUDA extension, or CudaUnavailableError saying why it is missing and how to get it."""
    if cuda is None:
        raise CudaUnavailableError(
            "evoforge was built without CUDA kernels "
            f"({cuda_import_error}); reinstall with nvcc on PATH, e.g. "
            "EVOFORGE_CUDA=ON pip install --no-build-isolation ."
        )
    return cuda


__all__ = ["core", "cuda", "cuda_import_error", "require_cuda"]
