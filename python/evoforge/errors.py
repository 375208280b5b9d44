"""Exception types raised by evoforge."""

from __future__ import annotations

__all__ = ["EvoforgeError", "CudaUnavailableError", "ConfigError", "CacheError", "CacheClosedError",
           "CorruptCacheError", "EvaluationError", "UnsupportedModelError", "CorruptDatabaseError",
           "DatabaseMismatchError", "CorruptCheckpointError"]


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


class UnsupportedModelError(ConfigError):
    """The model's architecture (or one of its layers) is not one that ``evoforge.compress.adapt`` supports."""


class CorruptDatabaseError(EvoforgeError, ValueError):
    """The layer database directory has no readable manifest, or its files do not match it."""


class DatabaseMismatchError(ConfigError):
    """The layer database was built from another model (fingerprint mismatch) or with other settings."""


class CorruptCheckpointError(EvoforgeError, ValueError):
    """A search checkpoint (``checkpoint.pkl``) cannot be unpickled: truncated, damaged or not a checkpoint."""
