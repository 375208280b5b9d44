"""The evaluation backend protocol: a batch of candidates -> fitness, on one or many workers.

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

import abc
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import EvoforgeError

__all__ = ["Backend", "EvaluationError", "EvaluatorFactory", "Replica", "Task", "call_evaluator"]

EvaluatorFactory = Callable[[], Any]


class EvaluationError(EvoforgeError, RuntimeError):
    """Workers could not be started, or a candidate was lost more often than allowed."""


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


def call_evaluator(evaluator: Any, genomes: np.ndarray, batch: Any) -> Any:
    """``evaluator.evaluate(genomes, batch)``, or ``evaluator(genomes)`` for a plain callable."""
    if callable(getattr(evaluator, "evaluate", None)):
        return evaluator.evaluate(genomes, batch)
    return evaluator(genomes)


def _set_threads(threads: int) -> None:
    from .. import set_num_threads

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
        from ..search.engine import Batch

        for version, method, args in task.calls:
            if version > self.version:
                getattr(self.evaluator, method)(*args)
                self.version = version
        batch = Batch(task.genomes, task.fidelity, task.seed, task.generation, task.stage)
        out = call_evaluator(self.evaluator, task.genomes, batch)
        if isinstance(out, tuple):
            return tuple(np.asarray(o) for o in out)
        return np.asarray(out)


class Backend(abc.ABC):
    """Evaluates batches of candidates; see the module docstring. Close it (or use ``with``)."""

    n_workers: int = 1

    def __init__(self) -> None:
        self._calls: list[tuple[int, str, tuple]] = []
        self._version = 0

    @abc.abstractmethod
    def evaluate_chunks(self, genomes: np.ndarray, batch: Any = None) -> Iterator[tuple[np.ndarray, Any]]:
        """Yield ``(rows, fitness)`` until every row of ``genomes`` [B, L] was evaluated exactly once:
        ``rows`` int64 [b] indexes ``genomes``, ``fitness`` is the evaluator's output for them ([b],
        [b, M], or a pair (fitness, constraint_violation [b]))."""

    def evaluate(self, genomes: np.ndarray, batch: Any = None) -> Any:
        """Fitness of all of ``genomes`` [B, L], row by row as the evaluator would return it."""
        genomes = np.asarray(genomes)
        B = len(genomes)
        F = cv = None
        for rows, out in self.evaluate_chunks(genomes, batch):
            f, c = out if isinstance(out, tuple) else (out, None)
            f = np.asarray(f, dtype=np.float64)
            if F is None:
                F = np.empty((B,) + f.shape[1:])
            F[rows] = f
            if c is not None:
                if cv is None:
                    cv = np.empty(B)
                cv[rows] = np.asarray(c, dtype=np.float64).reshape(-1)
        if F is None:
            F = np.empty(0)
        return F if cv is None else (F, cv)

    def broadcast(self, method: str, *args: Any) -> None:
        """Call ``evaluator.method(*args)`` on every worker before its next chunk, in the order of
        the broadcasts (and on workers started or restarted later)."""
        if not isinstance(method, str) or not method.isidentifier():
            raise ValueError(f"method must be a method name, got {method!r}")
        self._version += 1
        # Only the latest call of each method is replayed to a fresh worker: they set state.
        self._calls = [c for c in self._calls if c[1] != method] + [(self._version, method, args)]

    def _pending_calls(self, seen: int) -> list[tuple[int, str, tuple]]:
        return [c for c in self._calls if c[0] > seen]

    def pids(self) -> list[int]:
        """Process id of each worker (the driver's for in-process)."""
        return [os.getpid()]

    def close(self) -> None:
        """Stop the workers (idempotent)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
