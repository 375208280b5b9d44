"""Exception types raised by evoforge."""

from __future__ import annotations

__all__ = ["EvoforgeError", "CudaUnavailableError", "ConfigError", "CacheError", "CacheClosedError", "CorruptCacheError",
           "EvaluationError"]


class EvoforgeError(Exception):
    """Base class of evoforge's own errors."""


class CudaUnavailableError(EvoforgeError, RuntimeError):
    """A CUDA tensor was given but evoforge was built without CUDA kernels, or they failed to load."""


class ConfigError(EvoforgeError, ValueError):
    """An invalid configuration or hyperparameter."""


class CacheError(EvoforgeError, RuntimeError):
    """An evaluation cache could not be opened, read or written."""


class CacheClosedError(CacheError):
    """The cache was used after ``EvaluationCache.close()``."""


class CorruptCacheError(CacheError):
    """The cache file is not an SQLite database, is damaged, or is not an evoforge cache."""


class EvaluationError(EvoforgeError, RuntimeError):
    """Workers could not be started, or a candidate was lost more often than allowed."""
