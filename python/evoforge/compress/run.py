"""A compression run's set-up, shared by every recipe: the run directory (its settings file,
compared on resume; the calibration and held-out tokens, kept so a resumed run uses the same), the
layer database (opened, or built there), the KL's support, the search, and the finish (export and
report). :func:`start_run` prepares a :class:`Run`; the recipe of the config's method
(:mod:`evoforge.compress.methods`) takes it from there.

Run directory: ``compress.json`` (the settings: :meth:`CompressConfig.identity`, the model's
fingerprint and the config; :func:`evoforge.compress.settings.load_config` reads it back),
``tokens.pt``, ``db/`` (a database built by the run), ``teacher/``, the engine's checkpoint,
evaluation cache and ``history.jsonl``, then ``model/`` and ``config.json`` (the export),
``report.md`` / ``report.json`` and the plots.

Devices: the run follows the model, which :func:`evoforge.compress.compress` has moved to
``config.device``; workers of a process or Ray backend move theirs there too (:class:`FitnessFactory`).
The device is not in the settings compared on resume: a run directory resumes on another device
(its teacher, tokens, database and evaluation cache are device-independent data; KLs agree within
float32 rounding).
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .adapters import ModelAdapter
from .build import build_database
from .calibration import sample_sequences, tokens_from_text
from .config import SETTINGS, CompressConfig
from .database import MANIFEST, LayerDatabase
from .export import export
from .providers import provider_for
from .report import write_report
from .result import CompressionResult
from .search import FitnessFactory, search_levels
from .tokens import check_tokens, vocab_size

__all__ = ["Run", "resolve_top_k", "start_run"]

TOKENS = "tokens.pt"


@dataclasses.dataclass
class Run:
    """What a recipe gets: the config, the model (``adapter``) and its ``fingerprint``, the run
    directory (None: nothing kept), the ``calibration`` and ``heldout`` tokens, the ``tokenizer``,
    the KL's ``top_k``, the workers' :class:`FitnessFactory`, a ``backend`` object (or None: the
    config's), and ``times`` (seconds per phase)."""

    config: CompressConfig
    adapter: ModelAdapter
    fingerprint: str
    run_dir: Path | None
    calibration: torch.Tensor
    heldout: torch.Tensor
    tokenizer: Any
    top_k: int | None
    factory: FitnessFactory
    backend: Any = None
    times: dict = dataclasses.field(default_factory=dict)

    @property
    def teacher_dir(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "teacher"

    def database(self, kind: str, **ladder: Any) -> LayerDatabase:
        """The config's layer database, opened (checked against the model), or the run's own:
        ``run_dir/db`` when there (a resumed run), else built there (without a run directory: in a
        temporary directory, removed when the process exits) with the config's ``db_method`` and the
        ``ladder`` (build_database's knobs)."""
        cfg, fp = self.config, self.fingerprint
        t0 = time.perf_counter()
        if cfg.database is not None:
            db = LayerDatabase.open(cfg.database, model_fingerprint=fp)
        else:
            db_dir = self.run_dir / "db" if self.run_dir is not None else None
            if db_dir is not None and (db_dir / MANIFEST).is_file():
                db = LayerDatabase.open(db_dir, model_fingerprint=fp)
            else:
                if db_dir is None:  # the process's own: its results reopen it by path until it exits
                    db_dir = Path(tempfile.mkdtemp(prefix="evoforge-db-"))
                    atexit.register(shutil.rmtree, db_dir, ignore_errors=True)
                db = build_database(self.adapter, self.calibration, db_dir, method=cfg.db_method, overwrite=True,
                                    calibration={"source": "text" if cfg.calib_text else "samples",
                                                 "seed": int(cfg.seed)},
                                    batch_size=cfg.batch_size, progress=cfg.progress,
                                    compute_dtype=cfg.compute_dtype, **ladder)
        self.times["database"] = time.perf_counter() - t0
        if db.kind != kind:
            raise ConfigError(f"the database {str(db.path)!r} holds {db.kind} levels ({db.method}), "
                              f"not {cfg.method}")
        return db

    def provider(self, db: LayerDatabase, *, include_metadata: bool = False) -> Any:
        """The database's LevelProvider, its weights in the model's dtype and on its device."""
        p = next(self.adapter.model.parameters())
        return provider_for(db, include_metadata=include_metadata, device=p.device, dtype=p.dtype)

    def search(self, local: Any, initial: np.ndarray, mutation: Any, lower: Any, upper: Any, task: str) -> Any:
        """The (1 + lambda) search from ``initial`` (:func:`search_levels`), timed as ``"search"``."""
        t0 = time.perf_counter()
        try:
            return search_levels(self.config, local, initial, mutation, lower, upper, run_dir=self.run_dir,
                                 task=task, calibration=self.calibration, backend=self.backend, factory=self.factory)
        finally:
            self.times["search"] = time.perf_counter() - t0

    def finish(self, result: CompressionResult, provider: Any, initial: np.ndarray) -> CompressionResult:
        """Keep what export and perplexity need on the result, export the model (``config.export``)
        and write the report (both with a run directory)."""
        result.bind(self.adapter, provider, initial)
        if self.config.export and self.run_dir is not None:
            t0 = time.perf_counter()
            export(result, self.run_dir, tokenizer=self.tokenizer)
            result.times["export"] = time.perf_counter() - t0
        if self.run_dir is not None:
            write_report(result, self.run_dir)
        return result


def resolve_top_k(top_k: Any, tokens: torch.Tensor, model: Any) -> int | None:
    """The KL's support: ``"auto"`` keeps the full vocabulary while its float16 teacher fits in 512 MB."""
    if top_k == "auto":
        return None if tokens.numel() * int(model.config.vocab_size) * 2 <= 512 << 20 else 256
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ConfigError(f"top_k must be None, 'auto' or a positive int, got {top_k!r}")
    return None if top_k is None else int(top_k)


def _check_settings(rd: Path, config: CompressConfig, fingerprint: str) -> None:
    """Compare the run directory's settings with these (a run with other settings: ConfigError naming
    the differing ones), then (re)write them with this config."""
    settings = {**config.identity(), "model_fingerprint": fingerprint}
    sp = rd / SETTINGS
    if sp.is_file():
        old = json.loads(sp.read_text())
        old.pop("config", None)  # the last run's full config; only the identity must match
        diff = sorted(k for k in set(settings) | set(old) if old.get(k) != settings.get(k))
        if diff:
            raise ConfigError(f"run directory {str(rd)!r} holds a run with other settings ({', '.join(diff)}); "
                              "use another --run-dir")
    tmp = sp.with_suffix(".tmp")
    tmp.write_text(json.dumps({**settings, "config": config.to_json()}, indent=1))
    os.replace(tmp, sp)


def _tokens(model: Any, n: int, length: int, seed: int, text: Any, tokenizer: Any) -> torch.Tensor:
    if text is not None:
        if tokenizer is None:
            raise ConfigError("a calibration text file needs a tokenizer (the model directory has none)")
        return tokens_from_text(tokenizer, text, n, length, seed=seed)
    bos = getattr(model.config, "bos_token_id", None)
    return sample_sequences(model, n, length, seed=seed, bos_token_id=1 if bos is None else int(bos))


def _check_tokens(model: Any, config: CompressConfig, calibration: Any, heldout: Any) -> None:
    """Given token tensors are non-empty integer [N, S] tensors with data and ids within the model's
    vocabulary (:func:`.tokens.check_tokens`); no sequence is longer than
    the model's positions (``seq_len`` for the tokens still to be made)."""
    limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    limit = limit if isinstance(limit, int) else None
    for name, t in (("calibration", calibration), ("heldout", heldout)):
        if t is None:
            continue
        check_tokens(t, name, vocab=vocab_size(model))
        if limit is not None and t.shape[1] > limit:
            raise ConfigError(f"{name} has sequences of {t.shape[1]} tokens, more than the model's {limit} positions")
    if limit is not None and config.seq_len > limit and (calibration is None or heldout is None):
        raise ConfigError(f"seq_len {config.seq_len} is longer than the model's {limit} positions")


def _calibration(model: Any, config: CompressConfig, rd: Path | None, tokenizer: Any, calibration: Any,
                 heldout: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The calibration and held-out tokens: given, kept in the run directory, or made (and kept)."""
    c = config
    tp = rd / TOKENS if rd is not None else None
    if tp is not None and tp.is_file() and calibration is None and heldout is None:
        saved = torch.load(tp)
        return saved["calibration"], saved["heldout"]
    if c.calib_text is not None and calibration is None and heldout is None:
        # one draw of distinct windows, so held-out text never overlaps the calibration text
        both = _tokens(model, c.n_calib + c.n_heldout, c.seq_len, c.seed, c.calib_text, tokenizer)
        calibration, heldout = both[:c.n_calib].clone(), both[c.n_calib:].clone()
    if calibration is None:
        calibration = _tokens(model, c.n_calib, c.seq_len, c.seed, c.calib_text, tokenizer)
    if heldout is None:
        heldout = _tokens(model, c.n_heldout, c.seq_len, c.seed + 1, c.calib_text, tokenizer)
    if tp is not None:
        torch.save({"calibration": calibration, "heldout": heldout}, tp.with_suffix(".tmp"))
        os.replace(tp.with_suffix(".tmp"), tp)
    return calibration, heldout


def start_run(source: Any, model: Any, adapter: ModelAdapter, config: CompressConfig, *, tokenizer: Any = None,
              calibration: torch.Tensor | None = None, heldout: torch.Tensor | None = None,
              backend: Any = None) -> Run:
    """Prepare the run of ``config`` on ``model`` (``adapter``): the run directory's settings (checked
    against an earlier run there), the tokens, the KL's support and the workers' fitness factory
    (``source``: the model's path, which workers load, or the model itself)."""
    _check_tokens(model, config, calibration, heldout)
    t0 = time.perf_counter()
    fp = adapter.fingerprint()
    rd = Path(config.run_dir) if config.run_dir is not None else None
    if rd is not None:
        rd.mkdir(parents=True, exist_ok=True)
        _check_settings(rd, config, fp)
    calibration, heldout = _calibration(model, config, rd, tokenizer, calibration, heldout)
    times = {"calibration": time.perf_counter() - t0}
    top_k = resolve_top_k(config.top_k, calibration, model)
    source = str(source) if isinstance(source, (str, os.PathLike)) else model
    factory = FitnessFactory(source, fp, calibration, None, int(config.batch_size), str(config.device), top_k=top_k,
                             compute_dtype=config.compute_dtype)
    return Run(config=config, adapter=adapter, fingerprint=fp, run_dir=rd, calibration=calibration, heldout=heldout,
               tokenizer=tokenizer, top_k=top_k, factory=factory, backend=backend, times=times)
