"""The shared base of every compression config (:class:`CompressConfig`), its checks, its JSON
form and the registry of configs by method name (``CONFIGS``, filled as each subclass with a
``method`` is defined)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError
from ..checks import check_device_name, check_text_file

__all__ = ["CONFIGS", "CompressConfig", "check_device_name", "check_text_file", "depth_count", "field_default"]

#: method name -> config class, filled by ``CompressConfig.__init_subclass__``
CONFIGS: dict[str, type] = {}
# the ladder defaults (the level configs' fields), for the settings of methods without that knob
_BITS = (2, 3, 4, 5, 6, 7, 8)
_GROUP_SIZE = 64
_SYMMETRIC = False
_DB_LEVELS = 4

DEFAULT_METHOD = "sparsity"
SETTINGS = "compress.json"  # the run directory's settings file (``config.json`` there is the result)
_COMPUTE_DTYPES = ("float32", "float16", "bfloat16")
_MAX_OFFSPRING = 2**24 - 1  # evoforge.variation's kernels number offspring in 24 bits
_MAX_TOKENS = 2**31  # calibration + held-out tokens: beyond any use, refused before anything is allocated


def _no_spell(field: str) -> str:
    return field


@dataclasses.dataclass(kw_only=True)
class CompressConfig:
    """The knobs every compression method shares (a base class: use one of its subclasses).

    Calibration
        ``calib_text``: a UTF-8 text file whose distinct windows calibrate the search and give the
        held-out tokens (needs the model's tokenizer); None: sequences sampled from the dense model.
        ``n_calib`` / ``n_heldout`` sequences of ``seq_len`` tokens for the search / the final
        comparison.
    Search
        ``generations``, ``offspring`` of the (1 + lambda) search; ``stages`` as in
        :class:`~evoforge.search.OnePlusLambda` (``((survivors, tokens or None), ...)``; None: keep
        offspring // 4 on a quarter of the calibration tokens, then 1 on all of them);
        ``max_switches`` per mutation; ``seed``.
    Run
        ``run_dir``: checkpoint, cache, tokens, database, report and exported model; a run with the
        same settings resumes there, other settings raise ConfigError. ``export``: write
        ``run_dir/model`` and ``run_dir/config.json``. ``compute_dtype``: None or ``"bfloat16"``
        (the search's candidates, and the calibration forward of a database built by the run, under
        autocast; reported KLs stay in the model's dtype). ``backend``: None (in-process),
        ``"process"`` or ``"ray"`` (:mod:`evoforge.evaluate`), opened with ``backend_options``
        (``workers``, ``timeout``, ``address``, ...). ``device``: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``,
        where the model, teacher forward, KL, database build and baselines run (the database stays
        on the host, levels streamed to a bounded cache on the device); not in the run's identity (a
        run resumes on another device, equal within float32 rounding). ``top_k``: the KL's support (None: the full
        vocabulary; K: the teacher's top K plus a tail bin; ``"auto"``: full while the teacher fits
        in 512 MB of float16, else 256). ``batch_size``: sequences per forward. ``progress``: bars.
    """

    method: ClassVar[str] = ""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.__dict__.get("method"):
            CONFIGS[cls.method] = cls

    calib_text: str | None = None
    n_calib: int = 16
    n_heldout: int = 8
    seq_len: int = 128
    generations: int = 20
    offspring: int = 8
    stages: tuple[tuple[int, int | None], ...] | None = None
    max_switches: int = 3
    seed: int = 0
    run_dir: str | None = None
    export: bool = True
    compute_dtype: str | None = None
    device: str = "cpu"
    backend: str | None = None
    backend_options: dict = dataclasses.field(default_factory=dict)
    top_k: int | str | None = "auto"
    batch_size: int = 8
    progress: bool = False

    def __post_init__(self) -> None:
        if type(self) is CompressConfig:
            raise TypeError("CompressConfig is the shared base; use SparsityConfig, QuantConfig, DepthConfig or "
                            "DepthQuantConfig")
        # plain data: paths as str, sequences as tuples, dtypes by name (so the JSON round trip is exact)
        for name in ("calib_text", "run_dir", "database"):
            v = getattr(self, name, None)
            if isinstance(v, os.PathLike):
                setattr(self, name, os.fspath(v))
            elif v is not None and hasattr(v, "manifest") and hasattr(v, "path"):  # an open LayerDatabase
                setattr(self, name, os.fspath(v.path))
        if isinstance(self.stages, (list, tuple)):
            self.stages = tuple(tuple(s) if isinstance(s, (list, tuple)) else s for s in self.stages)
        bits = getattr(self, "bits", None)
        if bits is not None and not isinstance(bits, (str, tuple)) and hasattr(bits, "__iter__"):
            self.bits = tuple(bits)
        if self.compute_dtype is not None and not isinstance(self.compute_dtype, str):
            self.compute_dtype = str(self.compute_dtype)
        if isinstance(self.compute_dtype, str):
            self.compute_dtype = self.compute_dtype.removeprefix("torch.")
        if self.backend_options is None:
            self.backend_options = {}
        if type(self.device).__name__ == "device" and type(self.device).__module__.startswith("torch"):
            self.device = str(self.device)  # a torch.device, by name (plain data)

    # ---- checks ---------------------------------------------------------------------------------

    def validate(self, *, spell: Callable[[str], str] | None = None) -> CompressConfig:
        """Check every knob, and the files it names (``calib_text``; ``database``: opened, its kind
        checked), before any model loads; returns the config. ``spell(field)`` names a knob in the
        messages (the command line passes its option names). Raises ConfigError (a ValueError),
        TypeError, or FileNotFoundError for a missing file."""
        say = spell or _no_spell
        self._check_target(say)
        for name in ("generations", "offspring", "n_calib", "n_heldout", "seq_len", "batch_size", "max_switches"):
            v = getattr(self, name)
            lo = 0 if name == "generations" else 1
            if not _is_int(v) or v < lo:
                raise ConfigError(f"{say(name)} must be {'an int >= 0' if lo == 0 else 'a positive int'}, got {v!r}")
        if self.offspring > _MAX_OFFSPRING:
            raise ConfigError(f"{say('offspring')} must be at most {_MAX_OFFSPRING} (the mutation kernels' limit), got "
                              f"{self.offspring}")
        if (self.n_calib + self.n_heldout) * self.seq_len > _MAX_TOKENS:
            raise ConfigError(f"{say('n_calib')} + {say('n_heldout')} sequences of {say('seq_len')} tokens must be at "
                              f"most 2**31 tokens, got ({self.n_calib} + {self.n_heldout}) x {self.seq_len}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"{say('seed')} must be an int in [0, 2**63), got {self.seed!r}")
        if self.stages is not None:
            self._check_stages(say)
        if self.top_k != "auto" and self.top_k is not None and (
                not _is_int(self.top_k) or self.top_k < 1):
            raise ConfigError(f"{say('top_k')} must be None, 'auto' or a positive int, got {self.top_k!r}")
        if self.compute_dtype is not None and self.compute_dtype not in _COMPUTE_DTYPES:
            raise ConfigError(f"{say('compute_dtype')} must be None, 'float32', 'float16' or 'bfloat16', got "
                              f"{self.compute_dtype!r}")
        for name in ("export", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{say(name)} must be a bool, got {getattr(self, name)!r}")
        if self.backend is not None and not isinstance(self.backend, str):
            raise TypeError(f"{say('backend')} must be a backend name or None (pass a backend object to compress() "
                            f"as backend=...), got {type(self.backend).__name__}")
        if not isinstance(self.backend_options, Mapping):
            raise TypeError(f"{say('backend_options')} must be a dict, got {type(self.backend_options).__name__}")
        if self.backend_options and self.backend in (None, "inprocess"):
            raise ConfigError(f"{say('backend_options')} {sorted(self.backend_options)} need a backend ('process' or "
                              "'ray'); the in-process backend takes none")
        check_device_name(self.device, say("device"))
        if self.calib_text is not None:
            check_text_file(say("calib_text"), self.calib_text, "calibration text")
        self._check_method(say)
        return self

    def _check_target(self, say: Callable[[str], str]) -> None:
        try:
            t = float(self.target)
        except (TypeError, ValueError):
            raise ConfigError(f"target must be a number, got {self.target!r}") from None
        if not math.isfinite(t):
            raise ConfigError(f"target must be finite, got {self.target!r}")

    def _check_stages(self, say: Callable[[str], str]) -> None:
        try:
            sizes = [int(n) for n, _ in self.stages]
            tokens = [t for _, t in self.stages]
        except (TypeError, ValueError):
            raise ConfigError(f"{say('stages')} must be pairs (survivors, tokens or None), got "
                              f"{self.stages!r}") from None
        if not sizes or min(sizes) < 1 or any(t is not None and (not _is_int(t) or t < 1) for t in tokens):
            raise ConfigError(f"{say('stages')}: survivors must be >= 1 and tokens >= 1 or None, got {self.stages!r}")
        if sizes[-1] != 1 or any(b > a for a, b in zip(sizes, sizes[1:])):
            raise ConfigError(f"{say('stages')}: survivors must not increase and the last stage must keep 1, got "
                              f"{self.stages!r}")
        if sizes[0] > self.offspring:
            raise ConfigError(f"{say('stages')}: the first stage keeps {sizes[0]} survivors, more than "
                              f"{say('offspring')} {self.offspring}")

    def _check_method(self, say: Callable[[str], str]) -> None:
        """The method's own knobs (subclasses)."""

    def check_model(self, adapter: Any) -> None:
        """The checks that need the model (its adapter), run once it is loaded, before any work."""

    def _check_database(self, say: Callable[[str], str], kind: str, methods: tuple[str, ...]) -> None:
        if self.db_method not in methods:
            raise ConfigError(f"{say('db_method')} {self.db_method} does not fit {say('method')} {self.method}; use "
                              f"one of {', '.join(methods)}")
        if self.database is not None:
            from ..database import LayerDatabase

            db = LayerDatabase.open(self.database)  # FileNotFoundError: no such directory or no manifest.json
            if db.kind != kind:
                raise ConfigError(f"{say('database')} {self.database!r} holds {db.kind} levels ({db.method}), not "
                                  f"{self.method}")

    # ---- plain data -----------------------------------------------------------------------------

    def to_json(self) -> dict:
        """The config as a JSON-able dict: ``{"method": ..., <every field>}``."""
        return {"method": self.method, **{f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}}

    @classmethod
    def from_json(cls, d: Mapping | str) -> CompressConfig:
        """The config of :meth:`to_json`'s dict (or its JSON text); the class is chosen by ``"method"``."""
        if isinstance(d, str):
            d = json.loads(d)
        if not isinstance(d, Mapping):
            raise ConfigError(f"a compression config must be a JSON object, got {type(d).__name__}")
        d = dict(d)
        method = d.pop("method", cls.method or None)
        target = CONFIGS.get(method)
        if target is None:
            raise ConfigError(f"method must be one of {tuple(CONFIGS)}, got {method!r}")
        if cls is not CompressConfig and target is not cls:
            raise ConfigError(f"{cls.__name__}.from_json got a {method!r} config")
        names = {f.name for f in dataclasses.fields(target)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown {method} config fields {unknown}")
        return target(**d)

    def identity(self) -> dict:
        """The settings that make a run directory's run (its ``compress.json``, compared on resume):
        what changes the result, not the schedule's length or where it runs. The same keys and
        values as the settings files of earlier versions, so their run directories resume."""
        d = {"method": self.method, "target": float(self.target), "db_method": "none", "db_levels": _DB_LEVELS,
             "db_step": None, "bits": list(_BITS), "group_size": _GROUP_SIZE, "symmetric": _SYMMETRIC,
             "count_metadata": False}
        as_type = {"db_method": str, "db_levels": int, "db_step": int, "group_size": int, "symmetric": bool,
                   "count_metadata": bool}
        for name, typ in as_type.items():
            v = getattr(self, name, d[name])
            d[name] = None if v is None else typ(v)
        if hasattr(self, "bits"):
            d["bits"] = [int(b) for b in self.bits]
        d.update(n_calib=int(self.n_calib), n_heldout=int(self.n_heldout), seq_len=int(self.seq_len),
                 offspring=int(self.offspring),
                 stages=None if self.stages is None else [list(s) for s in self.stages],
                 max_switches=int(self.max_switches), seed=int(self.seed),
                 database=getattr(self, "database", None), calib_text=self.calib_text)
        if self.compute_dtype is not None:  # absent from older run directories' settings
            d["compute_dtype"] = self.compute_dtype
        return d


def depth_count(target: Any, n_blocks: int) -> int:
    """K, the number of attention (and of MLP) sub-blocks to drop, from ``target``.

    ``target`` in (0, 1): a fraction of the N blocks, K = round(target * N); an integer >= 1: K
    itself. K must lie in [1, N - 1] (at least one sub-block of each kind is kept).
    """
    try:
        t = float(target)
    except (TypeError, ValueError):
        raise ConfigError(f"depth target must be a number, got {target!r}") from None
    if not math.isfinite(t) or t <= 0:
        raise ConfigError(f"depth target must be a fraction in (0, 1) or a count in [1, {n_blocks - 1}] of "
                          f"sub-blocks dropped per kind, got {target!r}")
    if t < 1:
        k = math.floor(t * n_blocks + 0.5)
        if not 1 <= k <= n_blocks - 1:
            raise ConfigError(f"depth target {t} of {n_blocks} blocks gives K={k} sub-blocks per kind; K must lie "
                              f"in [1, {n_blocks - 1}]")
        return k
    if t != round(t):
        raise ConfigError(f"depth target >= 1 is a count of sub-blocks per kind and must be an integer, got {t}")
    k = int(t)
    if not 1 <= k <= n_blocks - 1:
        raise ConfigError(f"depth target K={k} is out of range: drop between 1 and {n_blocks - 1} sub-blocks of "
                          f"each kind (the model has {n_blocks} blocks)")
    return k


def field_default(cls: type, name: str) -> Any:
    """The default of a config field (what the command line shows)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default_factory() if f.default is dataclasses.MISSING else f.default
    raise KeyError(name)


def _plain(v: Any) -> Any:
    """JSON data: tuples as lists, numpy scalars as Python numbers."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    return v.item() if isinstance(v, np.generic) else v


def as_tuple(v: Any) -> Any:
    """A comma-separated string or an iterable as a tuple (of stripped strings for a string); any
    other value unchanged, for ``validate()`` to refuse."""
    if isinstance(v, str):
        return tuple(x.strip() for x in v.split(",") if x.strip())
    return tuple(v) if v is not None and hasattr(v, "__iter__") else v


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
