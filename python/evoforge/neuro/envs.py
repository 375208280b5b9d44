"""Environments for neuroevolution: an id, an object or a factory, turned into fresh Gymnasium envs.

Accepted ``env`` values:

* a Gymnasium id string (``"CartPole-v1"``, ``"LunarLander-v3"``, ``"MinAtar/Breakout-v1"``): each copy is
  ``gymnasium.make(id, **env_kwargs)``; ids of the ``MinAtar/`` and ``ALE/`` namespaces register their
  package first (``minatar``, ``ale_py``) if it is installed, and so do Atari's ids without a namespace
  (``BreakoutNoFrameskip-v4``) when Gymnasium does not know them yet. Atari from RAM: ``"ALE/Breakout-v5"``
  with ``env_kwargs={"obs_type": "ram"}``, or the RAM ids of older Gym (``"ALE/Breakout-ram-v5"``,
  ``"Breakout-ramNoFrameskip-v4"``), which ale-py no longer registers and which are made as the id without
  ``-ram`` with ``obs_type="ram"``. An id Gymnasium does not know raises ConfigError naming it (with
  Gymnasium's suggestion).
* a callable with no arguments returning a ``gymnasium.Env`` (a factory; for the process and Ray
  backends it must be picklable, e.g. a module-level function or ``functools.partial``).
* a ``gymnasium.Env`` object: copies are ``copy.deepcopy(env)`` (its state at the time of the call).

Vector environments are not accepted: the rollout steps its own copies in lockstep (see
:mod:`evoforge.neuro.rollout`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import re
import warnings
from collections.abc import Iterator
from typing import Any, Callable

from ..errors import ConfigError

__all__ = ["make_env", "env_name", "ram_alias"]

# namespaces whose package registers its ids on import (package, registration hook)
_NAMESPACES: dict[str, tuple[str, Callable[[Any], None]]] = {
    "MinAtar": ("minatar.gym", lambda m: m.register_envs()),
    "ALE": ("ale_py", lambda m: _register_ale(m)),
}


def _register_ale(ale_py: Any) -> None:
    """Atari's ids, and the emulator's banner (two stderr lines per environment made) silenced."""
    _gym().register_envs(ale_py)
    with contextlib.suppress(AttributeError):
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)


def _gym() -> Any:
    try:
        import gymnasium
    except ImportError as e:  # an optional dependency
        raise ImportError("evoforge.neuro needs gymnasium: pip install gymnasium (or evoforge[neuro])") from e
    return gymnasium


@contextlib.contextmanager
def _quiet_swig() -> Iterator[None]:
    """Box2D's SWIG module warns (DeprecationWarning) while it is imported, and crashes the
    interpreter when warnings are errors (``-W error``, pytest's ``filterwarnings = error``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"builtin type .* has no __module__ attribute",
                                category=DeprecationWarning)
        yield


def _registered() -> set[str]:
    """The namespaces Gymnasium knows now."""
    return {k.split("/", 1)[0] for k in _gym().envs.registry if "/" in k}


def _register_namespace(env_id: str) -> None:
    ns = env_id.split("/", 1)[0] if "/" in env_id else None
    if ns not in _NAMESPACES:
        return
    gym = _gym()
    if any(k.startswith(ns + "/") for k in gym.envs.registry):
        return
    module, hook = _NAMESPACES[ns]
    try:
        hook(importlib.import_module(module))
    except ImportError:
        return  # make() then names the missing namespace


_RAM = re.compile(r"^(?P<head>(?:ALE/)?[A-Za-z0-9]+)-ram(?P<tail>(?:NoFrameskip|Deterministic)?-v\d+)$")


def ram_alias(env_id: str) -> tuple[str, dict] | None:
    """``(id, {"obs_type": "ram"})`` for an older Gym RAM id (``Breakout-ram-v4``, ``ALE/Breakout-ram-v5``),
    else None."""
    m = _RAM.match(env_id)
    return (m["head"] + m["tail"], {"obs_type": "ram"}) if m else None


def _make_from_id(env_id: str, env_kwargs: dict) -> Any:
    gym = _gym()
    if not env_id or not env_id.strip():
        raise ConfigError("env must be a Gymnasium environment id such as 'CartPole-v1', got an empty string")
    _register_namespace(env_id)
    try:
        with _quiet_swig():
            return gym.make(env_id, **env_kwargs)
    except gym.error.Error as e:
        alias = ram_alias(env_id)
        if "/" not in env_id and "ALE" not in _registered():  # Atari's v0 / v4 ids come with ale_py
            _register_namespace("ALE/")
            if env_id in gym.envs.registry:
                return _make_from_id(env_id, env_kwargs)
        if alias is not None and alias[0] != env_id:
            _register_namespace(alias[0] if "/" in alias[0] else "ALE/")
            if alias[0] in gym.envs.registry:
                return _make_from_id(alias[0], {**alias[1], **env_kwargs})
        raise ConfigError(f"unknown Gymnasium environment id {env_id!r}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"environment {env_id!r} does not take env_kwargs {sorted(env_kwargs)}: {e}") from None


def _check_env(env: Any, what: str) -> Any:
    gym = _gym()
    if isinstance(env, gym.vector.VectorEnv):
        raise ConfigError(f"{what} is a vector environment ({type(env).__name__}); give a single environment, its "
                          "id or a factory: the rollout makes its own copies")
    if not isinstance(env, gym.Env):
        raise TypeError(f"{what} must be a gymnasium.Env, got {type(env).__name__}")
    return env


def make_env(env: Any, env_kwargs: dict | None = None) -> Any:
    """One fresh environment from ``env`` (an id, a factory or an Env object; see the module doc).

    Raises ConfigError for an unknown id (naming it) or a vector environment, TypeError for
    anything that is not an id, a factory or a ``gymnasium.Env``."""
    if env_kwargs is not None and not isinstance(env_kwargs, dict):
        raise TypeError(f"env_kwargs must be a dict, got {type(env_kwargs).__name__}")
    kw = dict(env_kwargs or {})
    if isinstance(env, str):
        return _check_env(_make_from_id(env, kw), f"gymnasium.make({env!r})")
    if kw:
        raise ConfigError("env_kwargs apply to an environment id only; bind them in your factory instead")
    gym = _gym()
    if isinstance(env, (gym.Env, gym.vector.VectorEnv)):
        _check_env(env, "env")
        try:
            with _quiet_swig():
                return copy.deepcopy(env)
        except Exception as e:
            raise TypeError(f"env {type(env).__name__} cannot be copied ({type(e).__name__}: {e}); pass a factory "
                            "(a function returning a fresh environment) instead") from None
    if isinstance(env, type) and not issubclass(env, gym.Env):
        raise TypeError(f"env must be an id, a factory or a gymnasium.Env, got the class {env.__name__}")
    if callable(env):
        with _quiet_swig():
            made = env()
        return _check_env(made, f"env() (the factory {getattr(env, '__name__', type(env).__name__)})")
    raise TypeError(f"env must be a Gymnasium id (str), a factory (callable returning a gymnasium.Env) or a "
                    f"gymnasium.Env, got {type(env).__name__}")


def env_name(env: Any) -> str:
    """A short name of ``env`` for records: the id, the factory's name, or the Env's spec id / class."""
    if isinstance(env, str):
        return env
    spec = getattr(env, "spec", None)
    if getattr(spec, "id", None):
        return str(spec.id)
    return getattr(env, "__qualname__", None) or type(env).__name__
