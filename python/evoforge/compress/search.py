"""The search plumbing every recipe shares: the (1 + lambda) search over genomes (:func:`search_levels`,
resumed from the run directory's checkpoint), the backend its candidates are evaluated on, and
:class:`FitnessFactory`, which builds the fitness in an evaluation worker."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..search import OnePlusLambda
from ..search.protocol import open_backend
from .adapters import adapt
from .database import LayerDatabase
from .depth import DepthFitness
from .fitness import KLFitness
from .joint import JointFitness, JointLevels
from .models import load_model
from .providers import provider_for

__all__ = ["FitnessFactory", "default_stages", "search_levels"]


class _BaseSetter:
    """Evaluator wrapper: hints the engine's parent to KLFitness (prefix reuse) every generation,
    on every worker of the backend."""

    def __init__(self, backend: Any, engine: OnePlusLambda) -> None:
        self.backend, self.engine, self._gen = backend, engine, None

    def evaluate_chunks(self, genomes: np.ndarray, batch: Any) -> Any:
        if batch.generation != self._gen:
            self._gen = batch.generation
            self.backend.broadcast("set_base", self.engine.parent)
        return self.backend.evaluate_chunks(genomes, batch)


@dataclasses.dataclass
class FitnessFactory:
    """Builds the search's fitness in an evaluation worker (:mod:`evoforge.evaluate`), once: loads
    the model (``model``: a path, loaded there from shared storage, or the module itself, pickled),
    checks it is the driver's (``fingerprint``), opens the layer database (``database``, memory-
    mapped) and returns KLFitness, DepthFitness when ``depth_k`` is set, or JointFitness when ``joint``."""

    model: Any
    fingerprint: str
    calibration: torch.Tensor
    database: str | None
    batch_size: int
    device: str = "cpu"
    depth_k: int | None = None
    joint: bool = False
    include_metadata: bool = False
    top_k: int | None = None
    compute_dtype: str | None = None

    def __call__(self) -> Any:
        model = load_model(self.model)[0] if isinstance(self.model, (str, os.PathLike)) else self.model
        adapter = adapt(model.to(self.device).eval())
        if adapter.fingerprint() != self.fingerprint:
            raise ConfigError(f"the worker's model {str(self.model)[:80]!r} is not the driver's (fingerprint "
                              f"{adapter.fingerprint()} != {self.fingerprint})")
        if self.depth_k is not None:
            return DepthFitness(adapter, self.calibration, k=self.depth_k, batch_size=self.batch_size,
                                top_k=self.top_k, compute_dtype=self.compute_dtype)
        p = next(model.parameters())
        provider = provider_for(LayerDatabase.open(self.database, model_fingerprint=self.fingerprint),
                                include_metadata=self.include_metadata, device=p.device, dtype=p.dtype)
        if self.joint:
            return JointFitness(adapter, JointLevels(adapter, provider), self.calibration, batch_size=self.batch_size,
                                top_k=self.top_k, compute_dtype=self.compute_dtype)
        return KLFitness(adapter, provider, self.calibration, batch_size=self.batch_size, top_k=self.top_k,
                         compute_dtype=self.compute_dtype)


def default_stages(offspring: int, tokens: int) -> list[tuple[int, int | None]]:
    """Keep offspring // 4 on a quarter of the calibration tokens, then 1 on all of them."""
    first = max(1, offspring // 4)
    if first == 1:
        return [(1, None)]
    return [(first, max(1, tokens // 4)), (1, None)]


def _backend(config: Any, backend: Any, factory: FitnessFactory | None, local: Any) -> Any:
    """The evaluation backend of the search: in-process on ``local()`` (default), else ``backend``
    (a callable taking the factory, e.g. ``partial(RayBackend, address=...)``) or the config's
    backend by name with its options."""
    if backend is not None:
        return backend(factory)
    if config.backend is None or config.backend == "inprocess":
        return open_backend("inprocess", local)
    return open_backend(config.backend, factory, **dict(config.backend_options))


def search_levels(config: Any, local: Any, initial: np.ndarray, mutation: Any, lower: Any, upper: Any, *,
                  run_dir: Path | None, task: str, calibration: torch.Tensor, backend: Any = None,
                  factory: FitnessFactory | None = None) -> Any:
    """Run (or resume from ``run_dir``) the (1 + lambda) search from ``initial`` with ``config``'s
    schedule; the engine's Result. Candidates are evaluated by ``local()`` in-process, or on the
    backend's workers built from ``factory``."""
    stages = config.stages
    if stages is None:
        stages = default_stages(int(config.offspring), int(calibration.numel()))
    else:
        stages = [tuple(s) for s in stages]
    engine = None
    if run_dir is not None and (run_dir / "checkpoint.pkl").is_file():
        engine = OnePlusLambda.resume(run_dir, progress=config.progress)
        if config.progress:  # else a resumed run looks like a fresh one that skipped its first generations
            print(f"evoforge: resuming {run_dir} from generation {engine.generation} (of {int(config.generations)})",
                  file=sys.stderr)
    if engine is None:
        engine = OnePlusLambda(initial, mutation, lower=lower, upper=upper, n_offspring=int(config.offspring),
                               stages=stages, seed=int(config.seed), run_dir=run_dir, task=task,
                               progress=config.progress)
    try:
        with _backend(config, backend, factory, local) as evaluator:
            return engine.run(_BaseSetter(evaluator, engine), generations=int(config.generations))
    finally:
        engine.close()
