"""Exception types raised by evoforge."""

from __future__ import annotations

__all__ = ["EvoforgeError", "CudaUnavailableError", "ConfigError"]


class EvoforgeError(Exception):
    """Base class of evoforge's own errors."""


class CudaUnavailableError(EvoforgeError, RuntimeError):
    """A CUDA tensor was given but evoforge was built without CUDA kernels, or they failed to load."""


class ConfigError(EvoforgeError, ValueError):
    """An invalid configuration or hyperparameter."""
