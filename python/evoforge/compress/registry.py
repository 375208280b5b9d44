"""Recipes by config type: ``@register(SparsityConfig)`` makes a function the recipe that
:func:`evoforge.compress.compress` runs for that config (the way torchao maps a config type to its
handler). A recipe is ``recipe(config, run) -> CompressionResult``, ``run`` being the prepared
:class:`~evoforge.compress.run.Run` (model, tokens, run directory, search plumbing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

__all__ = ["recipe_for", "recipes", "register"]

Recipe = Callable[[Any, Any], Any]
_RECIPES: dict[type, Recipe] = {}


def register(config_type: type) -> Callable[[Recipe], Recipe]:
    """Decorator: the recipe for configs of ``config_type`` (a subclass of CompressConfig)."""
    if not isinstance(config_type, type):
        raise TypeError(f"register takes a config class, got {config_type!r}")

    def deco(fn: Recipe) -> Recipe:
        old = _RECIPES.get(config_type)
        if old is not None and old is not fn:
            raise ConfigError(f"{config_type.__name__} already has the recipe {old.__module__}.{old.__qualname__}")
        _RECIPES[config_type] = fn
        return fn

    return deco


def recipe_for(config: Any) -> Recipe:
    """The recipe registered for ``type(config)`` (or its nearest registered base class)."""
    for cls in type(config).__mro__:
        fn = _RECIPES.get(cls)
        if fn is not None:
            return fn
    raise ConfigError(f"no compression recipe is registered for {type(config).__name__}; registered: "
                      f"{sorted(c.__name__ for c in _RECIPES)}")


def recipes() -> dict[type, Recipe]:
    """Config type -> recipe, as registered."""
    return dict(_RECIPES)
