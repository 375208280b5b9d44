"""What engines and evaluation backends share: the batch, the evaluator protocol, chunked
evaluation, and the backend registry.

An *evaluator* is an object with ``evaluate(genomes, batch)`` or a plain callable ``f(genomes)``;
it returns fitness [B] or [B, M] (smaller is better), or a pair ``(fitness, constraint_violation
[B])``. A *backend* (:class:`Backend`) is an evaluator that also yields ``evaluate_chunks(genomes,
batch)``: ``(rows, fitness)`` pairs as its workers finish them, which the engines cache one chunk
at a time. Backends live on a higher floor (:mod:`evoforge.evaluate`) and register themselves here
by name, so that applications can open one by name without importing them.

Symbols: B candidates in a batch, L genes, M objectives.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, Union, runtime_checkable

import numpy as np

from ..errors import ConfigError

__all__ = ["Batch", "Evaluator", "EvaluatorLike", "EvaluatorFactory", "Backend", "call_evaluator",
           "evaluate_in_chunks", "register_backend", "open_backend", "backend_names"]


@dataclass
class Batch:
    """Candidates to evaluate now.

    genomes : numpy.ndarray, shape (B, L)
    fidelity : int or None -- e.g. the number of calibration tokens of this selection stage
    seed : int or None -- the minibatch seed, shared by every candidate of the batch (None:
        the evaluation is deterministic)
    generation, stage : where the engine is (a selection stage within the generation)
    """

    genomes: np.ndarray
    fidelity: int | None = None
    seed: int | None = None
    generation: int = 0
    stage: int = 0

    def subset(self, rows: Any) -> Batch:
        """The same batch restricted to ``rows`` of its genomes."""
        return Batch(self.genomes[rows], self.fidelity, self.seed, self.generation, self.stage)


@runtime_checkable
class Evaluator(Protocol):
    def evaluate(self, genomes: np.ndarray, batch: Batch) -> Any: ...


EvaluatorLike = Union[Evaluator, Callable[[np.ndarray], Any]]
EvaluatorFactory = Callable[[], Any]  # picklable, no arguments; runs once per worker


def call_evaluator(evaluator: Any, genomes: np.ndarray, batch: Any) -> Any:
    """``evaluator.evaluate(genomes, batch)``, or ``evaluator(genomes)`` for a plain callable."""
    if callable(getattr(evaluator, "evaluate", None)):
        return evaluator.evaluate(genomes, batch)
    return evaluator(genomes)


def evaluate_in_chunks(evaluator: Any, batch: Batch) -> Iterator[tuple[np.ndarray, Any]]:
    """``(rows, fitness)`` pairs covering ``batch.genomes``: a backend's chunks as they finish, or one
    chunk of everything for a plain evaluator. Close the iterator to abandon unfinished chunks."""
    chunks = getattr(evaluator, "evaluate_chunks", None)
    if callable(chunks):
        return chunks(batch.genomes, batch)
    return iter([(np.arange(len(batch.genomes)), call_evaluator(evaluator, batch.genomes, batch))])


class Backend(abc.ABC):
    """Evaluates batches of candidates, on one or many workers; close it (or use ``with``).

    ``broadcast("set_base", genome)`` calls ``evaluator.set_base(genome)`` on every worker before its
    next chunk (and on workers started later): cheap per-generation state."""

    n_workers: int = 1

    def __init__(self) -> None:
        self._calls: list[tuple[int, str, tuple]] = []
        self._version = 0

    @abc.abstractmethod
    def evaluate_chunks(self, genomes: np.ndarray, batch: Any = None) -> Iterator[tuple[np.ndarray, Any]]:
        """Yield ``(rows, fitness)`` until every row of ``genomes`` [B, L] was evaluated exactly once:
        ``rows`` int64 [b] indexes ``genomes``, ``fitness`` is the evaluator's output for them ([b],
        [b, M], or a pair (fitness, constraint_violation [b]))."""

    def evaluate_stream(self, next_genomes: Callable[[], np.ndarray | None],
                        batch: Any = None) -> Iterator[tuple[np.ndarray, Any]]:
        """``(genomes [b, L], fitness)`` pairs, where ``next_genomes()`` gives the next candidates
        [b, L] (None: no more) the moment a worker is free, so that no worker waits for a batch to
        finish (the asynchronous mode of :class:`~evoforge.search.cmaes.CMAES`). This default
        evaluates them one call at a time; the multi-worker backends override it."""
        while (X := next_genomes()) is not None:
            X = np.asarray(X)
            for rows, out in self.evaluate_chunks(X, batch):
                yield X[rows], out

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


BackendOpener = Callable[..., Backend]  # (factory, **options) -> Backend
_BACKENDS: dict[str, BackendOpener] = {}


def register_backend(name: str, opener: BackendOpener) -> None:
    """Make ``open_backend(name, factory, **options)`` call ``opener(factory, **options)``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a backend name must be a non-empty string, got {name!r}")
    _BACKENDS[name] = opener


def backend_names() -> tuple[str, ...]:
    """The registered backends (``import evoforge`` registers inprocess, process and ray)."""
    return tuple(_BACKENDS)


def open_backend(name: str, factory: EvaluatorFactory, **options: Any) -> Backend:
    """A backend by name whose workers build evaluators with ``factory``; ``options`` go to it
    (``workers``, ``timeout``, ``address``, ...)."""
    opener = _BACKENDS.get(name) if isinstance(name, str) else None
    if opener is None:
        raise ConfigError(f"backend must be one of {backend_names()}, got {name!r}")
    return opener(factory, **options)
