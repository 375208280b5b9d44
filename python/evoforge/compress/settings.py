"""Configs from what users give: keyword knobs (``compress(model, method=..., **knobs)`` and the
command line: :func:`config_for`) and a run directory's settings file (:func:`load_config`)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .config import _ALL_FIELDS, CONFIGS, DEFAULT_METHOD, SETTINGS, CompressConfig, _no_spell

__all__ = ["config_for", "load_config"]


def config_for(method: Any = None, knobs: Mapping[str, Any] | None = None, *,
               spell: Callable[[str], str] | None = None) -> CompressConfig:
    """The config of ``method`` (default ``"sparsity"``) from keyword knobs, as ``compress(model,
    method=..., **knobs)`` and the command line give them: a knob of another method (``bits`` for
    sparsity, the database for depth, ...) is ignored, as it always was, except ``count_metadata``,
    which only quant takes; a knob of no method is a TypeError."""
    say = spell or _no_spell
    method = DEFAULT_METHOD if method is None else method
    cls = CONFIGS.get(method) if isinstance(method, str) else None
    if cls is None:
        raise ConfigError(f"{say('method')} must be one of {tuple(CONFIGS)}, got {method!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    kw = {}
    for k, v in dict(knobs or {}).items():
        if k in names:
            kw[k] = v
        elif k == "count_metadata":
            if v:
                raise ConfigError(f"{say('count_metadata')} (count_metadata: scales and zero points in the budget) "
                                  f"applies to {say('method')} quant, not {method}")
        elif k not in _ALL_FIELDS:
            raise TypeError(f"compress() got an unexpected keyword argument {k!r}")
    if "target" not in kw and "target" not in {f.name for f in dataclasses.fields(cls)
                                              if f.default is not dataclasses.MISSING}:
        raise ConfigError(f"{say('method')} {method} needs a {say('target')}")
    return cls(**kw)


def load_config(run_dir: str | os.PathLike) -> CompressConfig:
    """The config a run directory was last run with (its ``compress.json``; for a run directory of an
    earlier version, rebuilt from its settings, the fields it did not record at their defaults)."""
    p = Path(run_dir) / SETTINGS
    if not p.is_file():
        raise FileNotFoundError(f"{str(p)!r} not found: not a compression run directory")
    try:
        s = json.loads(p.read_text())
    except ValueError as e:
        raise ConfigError(f"{str(p)!r} is not valid JSON ({e})") from None
    if isinstance(s, dict) and isinstance(s.get("config"), dict):
        return CompressConfig.from_json(s["config"])
    if not isinstance(s, dict) or s.get("method") not in CONFIGS:
        raise ConfigError(f"{str(p)!r} is not a compression run's settings")
    knobs = {k: v for k, v in s.items() if k in _ALL_FIELDS and v is not None}
    if s.get("db_method") == "none":
        knobs.pop("db_method")
    return config_for(s["method"], knobs)
