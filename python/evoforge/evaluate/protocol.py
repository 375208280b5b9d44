"""What a backend's workers run: a Task (one chunk of a batch) through a Replica (the worker's evaluator).

The Backend base class, Batch and the evaluator protocol are :mod:`evoforge.search.protocol`'s.

A *backend* is an evaluator for the engines of :mod:`evoforge.search`: ``engine.run(backend)``.
Besides ``evaluate(genomes, batch)`` it has ``evaluate_chunks(genomes, batch)``, which yields
``(rows, fitness)`` pairs as the workers finish them (in any order); the engine stores each chunk
in its :class:`~evoforge.cache.EvaluationCache` at once, so a driver killed mid-batch loses only
the candidates still being computed, and fills its fitness array by row, so the search sees the
same numbers in the same order whichever worker computed them.

Workers build their own evaluator from a *factory*: a picklable callable with no arguments (a
module-level function or class, a ``functools.partial`` of one, or an object with ``__call__``)
returning an evaluator (``evaluate(genomes, batch)`` or ``f(genomes)``, as for the engines). It
runs once per worker, so a model replica and its layer database are loaded once per worker, not
once per batch. ``backend.broadcast("set_base", genome)`` calls ``evaluator.set_base(genome)`` on
every worker before its next chunk (and on workers started later): cheap per-generation state.

Symbols: B candidates in a batch, L genes, M objectives.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from .._native import set_num_threads
from ..errors import EvaluationError
from ..search.protocol import Backend, Batch, EvaluatorFactory, call_evaluator

__all__ = ["Backend", "EvaluationError", "EvaluatorFactory", "Replica", "Task", "call_evaluator"]


class Task:
    """What a worker gets: one chunk of a batch, plus the broadcast calls it has not yet applied.

    genomes : numpy.ndarray [b, L]; fidelity, seed, generation, stage : as in Batch;
    calls : list of (version, method, args), applied in order before evaluating.
    """

    __slots__ = ("calls", "fidelity", "generation", "genomes", "seed", "stage")

    def __init__(self, genomes: np.ndarray, batch: Any, calls: list[tuple[int, str, tuple]]) -> None:
        self.genomes = genomes
        self.fidelity = getattr(batch, "fidelity", None)
        self.seed = getattr(batch, "seed", None)
        self.generation = getattr(batch, "generation", 0)
        self.stage = getattr(batch, "stage", 0)
        self.calls = calls


def _set_threads(threads: int) -> None:
    set_num_threads(threads)
    torch = sys.modules.get("torch")  # only when the evaluator uses torch: importing it costs seconds
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class Replica:
    """A worker's evaluator: built once from the factory, then fed :class:`Task` chunks.

    ``threads`` caps evoforge's and torch's threads in this worker, so that workers sharing a
    machine do not each start one thread per core.
    """

    def __init__(self, factory: EvaluatorFactory, threads: int | None = None) -> None:
        if threads is not None:
            os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(int(threads))
            _set_threads(int(threads))
        self.evaluator = factory()
        if threads is not None:
            _set_threads(int(threads))  # the factory may have imported torch
        self.threads = threads
        self.version = 0

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: Task) -> Any:
        """Fitness of ``task.genomes``: what the evaluator returns, as numpy arrays."""
        for version, method, args in task.calls:
            if version > self.version:
                getattr(self.evaluator, method)(*args)
                self.version = version
        batch = Batch(task.genomes, task.fidelity, task.seed, task.generation, task.stage)
        out = call_evaluator(self.evaluator, task.genomes, batch)
        if isinstance(out, tuple):
            return tuple(np.asarray(o) for o in out)
        return np.asarray(out)
