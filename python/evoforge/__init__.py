"""evoforge: evolutionary search over neural networks with native (C++/CUDA) hot loops."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

from . import cache, evaluate, hashing, kl, pareto, random, search, solvers, variation
from . import crossover, deepga, mutation, selection  # evoforge.variation's modules under their old names
from ._native import core as _core_mod
from ._native import cuda as _cuda_mod
from ._native import cuda_import_error as _cuda_import_error
from ._native import get_num_threads, set_num_threads
from .errors import ConfigError, CudaUnavailableError, EvoforgeError

try:
    __version__ = version("evoforge")
except PackageNotFoundError:  # running from a build tree
    __version__ = _core_mod.build_info()["version"]


def has_cuda() -> bool:
    """True when the CUDA kernels are compiled in *and* a GPU is visible."""
    return _cuda_mod is not None and _cuda_mod.device_count() > 0


def info() -> dict:
    """Build and runtime facts: version, compiler and flags, threads, CUDA compiled / GPU visible."""
    d = dict(_core_mod.build_info())
    d["version"] = __version__
    d["num_threads"] = get_num_threads()
    d["cpu_count"] = os.cpu_count()
    d["cuda_compiled"] = _cuda_mod is not None
    if _cuda_mod is not None:
        d.update({f"cuda_{k}" if not k.startswith("cuda") else k: v for k, v in _cuda_mod.build_info().items()})
        d["gpu_count"] = int(_cuda_mod.device_count())
    else:
        d["cuda_import_error"] = _cuda_import_error
        d["gpu_count"] = 0
    d["gpu_visible"] = d["gpu_count"] > 0
    return d


__all__ = [
    "__version__",
    "info",
    "has_cuda",
    "get_num_threads",
    "set_num_threads",
    "pareto",
    "hashing",
    "cache",
    "random",
    "variation",
    "mutation",
    "crossover",
    "selection",
    "deepga",
    "evaluate",
    "search",
    "solvers",
    "kl",
    "EvoforgeError",
    "CudaUnavailableError",
    "ConfigError",
]
