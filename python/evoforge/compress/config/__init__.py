"""What a compression run is asked to do: one dataclass per method, on a shared base.

:class:`SparsityConfig`, :class:`QuantConfig`, :class:`DepthConfig` and :class:`DepthQuantConfig`
each carry their method's knobs (``target``, the layer database's ladder); :class:`CompressConfig`
carries what every method shares: calibration (``calib_text``, ``n_calib``, ``n_heldout``,
``seq_len``), the search schedule (``generations``, ``offspring``, ``stages``, ``max_switches``),
``seed``, the run directory (``run_dir``, ``export``), ``compute_dtype``, the torch ``device`` the
whole job runs on, where candidates are evaluated (``backend`` by name and its ``backend_options``),
the KL's ``top_k``, ``batch_size`` and ``progress``. Every knob has one default, here; the command line takes its defaults from these
fields and :func:`evoforge.compress.build.build_database` its ladder defaults.

A config is plain data: :meth:`CompressConfig.to_json` / :meth:`CompressConfig.from_json` round-trip
it, and the run directory keeps it (``compress.json``, read back by
:func:`evoforge.compress.settings.load_config`), so the command line, a resumed run, the benchmarks
and the tests build the same object (the keyword form: :func:`evoforge.compress.settings.config_for`).
:meth:`CompressConfig.validate` checks every knob (and the files it names) before any model loads.
Token tensors, a tokenizer and a backend object are data, not settings: they are arguments of
:func:`evoforge.compress.compress`. This module imports neither torch nor transformers.
"""

from __future__ import annotations

import dataclasses

from .base import (
    CONFIGS,
    DEFAULT_METHOD,
    SETTINGS,
    CompressConfig,
    _no_spell,
    check_device_name,
    check_text_file,
    depth_count,
    field_default,
)
from .levels import DepthConfig, DepthQuantConfig, QuantConfig, SparsityConfig  # first: CONFIGS' order
from .front import FRONT_OBJECTIVES, FRONT_SPACES, FrontConfig, FrontSearchConfig  # noqa: I001
from .subnet import SUBNET_OBJECTIVES, SubnetConfig

__all__ = [
    "CONFIGS",
    "CompressConfig",
    "DepthConfig",
    "DepthQuantConfig",
    "FRONT_OBJECTIVES",
    "FRONT_SPACES",
    "FrontConfig",
    "FrontSearchConfig",
    "QuantConfig",
    "SUBNET_OBJECTIVES",
    "SparsityConfig",
    "SubnetConfig",
    "check_device_name",
    "check_text_file",
    "depth_count",
    "field_default",
]

#: every field of every config (what the keyword form and the command line may set)
_ALL_FIELDS = frozenset(f.name for c in CONFIGS.values() for f in dataclasses.fields(c))
