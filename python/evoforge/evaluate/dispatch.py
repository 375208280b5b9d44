"""Load-balanced, fault-tolerant dispatch of a batch over worker slots (process pool and Ray).

A batch is cut into chunks of rows in lexicographic genome order (neighbours share prefixes, which
evaluators such as KLFitness reuse). Each slot holds at most ``depth`` chunks, so a fast worker
takes more of them (load balancing) and never waits for the driver between chunks. A slot whose
worker dies, or returns nothing for ``timeout`` seconds while it has work (hung), is killed and
restarted, and its chunks go back to the front of the queue; a chunk lost ``max_attempts`` times
raises :class:`EvaluationError`. Fitness does not depend on which worker computed it, so the
search result is the in-process one.
"""

from __future__ import annotations

import abc
import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import _checks
from ..errors import ConfigError, EvaluationError
from ..search.protocol import Backend, EvaluatorFactory
from .protocol import Task

__all__ = ["DIED", "FAILED", "OK", "WorkerPool"]

log = logging.getLogger("evoforge.evaluate")

OK, DIED, FAILED = "ok", "died", "failed"  # outcomes reported by _poll

#: More worker slots than any machine or Ray cluster runs evaluators on; a larger ``workers`` is a
#: mistake, refused before the per-slot lists are allocated.
MAX_WORKERS = 2**16


class WorkerPool(Backend):
    """Base of the multi-worker backends. Subclasses implement the hooks ``_start(slots)``,
    ``_submit(slot, task) -> token``, ``_poll(tokens, wait_s) -> [(token, outcome, value)]``,
    ``_kill(slot)`` and ``_pid(slot)``."""

    def __init__(self, factory: EvaluatorFactory, n_workers: int, *, timeout: float | None = None,
                 max_attempts: int = 3, chunk_size: int | None = None, depth: int = 2) -> None:
        super().__init__()
        if not callable(factory):
            raise ConfigError(f"factory must be a picklable callable returning an evaluator, got "
                              f"{type(factory).__name__}")
        n_workers = _checks.check_int(n_workers, "workers", 1, MAX_WORKERS)
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0 and math.isfinite(timeout)):
            raise ConfigError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        max_attempts = _checks.check_int(max_attempts, "max_attempts", 1, _checks.INT_MAX)
        if chunk_size is not None:
            chunk_size = _checks.check_int(chunk_size, "chunk_size", 1, _checks.INT_MAX)
        depth = _checks.check_int(depth, "depth", 1, 1024)
        self.factory = factory
        self.n_workers = int(n_workers)
        self.timeout = None if timeout is None else float(timeout)
        self.max_attempts = max_attempts
        self.chunk_size = chunk_size
        self.depth = int(depth)
        self._seen = [0] * self.n_workers  # latest broadcast version sent to each slot
        self._alive = [False] * self.n_workers
        self._retired = [False] * self.n_workers
        self._closed = False
        self.stats = {"chunks": 0, "candidates": 0, "restarts": 0, "redispatched": 0, "timeouts": 0}

    # ---- hooks ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def _start(self, slots: list[int]) -> None:
        """Start workers in ``slots`` and wait until each has built its evaluator (raise
        EvaluationError naming the cause if one cannot)."""

    @abc.abstractmethod
    def _submit(self, slot: int, task: Task) -> Any:
        """Send ``task`` to ``slot``'s worker; a hashable token for _poll."""

    @abc.abstractmethod
    def _poll(self, tokens: list[Any], wait_s: float | None) -> list[tuple[Any, str, Any]]:
        """Finished tokens (waiting up to ``wait_s``, None = until one finishes): (token, OK, fitness),
        (token, DIED, reason) or (token, FAILED, exception raised by the evaluator)."""

    @abc.abstractmethod
    def _kill(self, slot: int) -> None:
        """Stop ``slot``'s worker now, whatever it is doing."""

    @abc.abstractmethod
    def _pid(self, slot: int) -> int: ...

    # ---- dispatch -------------------------------------------------------------------------------

    def _ensure(self, slots: list[int]) -> None:
        todo = [s for s in slots if not self._alive[s]]
        if todo:
            if self._closed:
                raise EvaluationError("the backend is closed")
            self._start(todo)
            for s in todo:
                self._alive[s] = True
                self._seen[s] = 0

    def _replace(self, slot: int) -> None:
        """Start ``slot``'s worker if it is down; if that fails while other slots can still work
        (e.g. its node is gone), retire the slot instead of stopping the search."""
        try:
            self._ensure([slot])
        except EvaluationError as e:
            if all(self._retired[t] for t in range(self.n_workers) if t != slot):
                raise
            log.warning("evaluation worker %d could not be restarted, going on without it: %s", slot, e)
            self._retired[slot] = True

    def _restart(self, slot: int, reason: str) -> None:
        log.warning("evaluation worker %d (pid %s) %s: restarting it", slot, self._safe_pid(slot), reason)
        self._drop(slot)
        self.stats["restarts"] += 1

    def _drop(self, slot: int) -> None:
        if self._alive[slot]:
            self._alive[slot] = False
            try:
                self._kill(slot)
            except Exception:
                log.debug("killing worker %d failed", slot, exc_info=True)

    def _safe_pid(self, slot: int) -> Any:
        try:
            return self._pid(slot)
        except Exception:  # noqa: BLE001
            return "?"

    def pids(self) -> list[int]:
        slots = [s for s in range(self.n_workers) if not self._retired[s]]
        self._ensure(slots)
        return [self._pid(s) for s in slots]

    def _chunks(self, genomes: np.ndarray) -> list[np.ndarray]:
        B = len(genomes)
        if B == 0:
            return []
        order = np.lexsort(genomes.reshape(B, -1).T[::-1]) if genomes.ndim > 1 else np.arange(B)
        size = self.chunk_size or max(1, math.ceil(B / (self.n_workers * 4)))
        return [order[i:i + size].astype(np.int64) for i in range(0, B, size)]

    def evaluate_chunks(self, genomes: np.ndarray, batch: Any = None) -> Iterator[tuple[np.ndarray, Any]]:
        genomes = np.asarray(genomes)
        chunks = self._chunks(genomes)
        for c, value in self._dispatch([genomes[rows] for rows in chunks], None, batch):
            yield chunks[c], value

    def evaluate_stream(self, next_genomes: Any, batch: Any = None) -> Iterator[tuple[np.ndarray, Any]]:
        """``(genomes, fitness)`` as workers finish, where a worker with room takes the next
        ``next_genomes()`` at once (no batch barrier); ends when it returns None and all are back."""
        store: list[np.ndarray] = []
        for c, value in self._dispatch(store, next_genomes, batch):
            yield store[c], value

    def _dispatch(self, chunks: list[np.ndarray], refill: Any, batch: Any) -> Iterator[tuple[int, Any]]:
        """``(chunk index, fitness)`` as they finish; ``refill()`` (if given) appends a chunk to
        ``chunks`` whenever a slot has room and the queue is empty, until it returns None."""
        queue = deque(range(len(chunks)))
        lost: list[int] = [0] * len(chunks)
        inflight: dict[Any, tuple[int, int]] = {}  # token -> (slot, chunk)
        held: list[list[Any]] = [[] for _ in range(self.n_workers)]  # tokens per slot, oldest first
        progress = [0.0] * self.n_workers  # when each slot last started work or returned a result
        done = 0

        def fail(slot: int, reason: str) -> None:
            for token in held[slot]:
                _, c = inflight.pop(token)
                lost[c] += 1
                if lost[c] >= self.max_attempts:
                    raise EvaluationError(f"a chunk of {len(chunks[c])} candidates was lost {lost[c]} times (last: worker "
                                          f"{slot} {reason}); not retrying (max_attempts={self.max_attempts})")
                queue.appendleft(c)
                self.stats["redispatched"] += 1
            held[slot] = []
            self._restart(slot, reason)

        def more() -> bool:
            nonlocal refill
            if refill is None:
                return False
            g = refill()
            if g is None:
                refill = None
                return False
            chunks.append(np.asarray(g))
            lost.append(0)
            queue.append(len(chunks) - 1)
            return True

        try:
            while done < len(chunks) or refill is not None:
                for s in range(self.n_workers):
                    while len(held[s]) < self.depth and not self._retired[s] and (queue or more()):
                        self._replace(s)
                        if self._retired[s]:
                            break
                        c = queue.popleft()
                        calls = self._pending_calls(self._seen[s])
                        token = self._submit(s, Task(chunks[c], batch, calls))
                        if calls:
                            self._seen[s] = calls[-1][0]
                        if not held[s]:
                            progress[s] = time.monotonic()
                        held[s].append(token)
                        inflight[token] = (s, c)
                if not inflight:
                    if queue or more():
                        continue
                    break
                wait_s = None
                if self.timeout is not None:
                    now = time.monotonic()
                    wait_s = max(0.0, min(progress[s] + self.timeout - now for s in range(self.n_workers) if held[s]))
                for token, outcome, value in self._poll(list(inflight), wait_s):
                    if token not in inflight:
                        continue  # its slot failed in this same round
                    s, c = inflight[token]
                    if outcome == DIED:
                        fail(s, f"died ({value})")
                        continue
                    if outcome == FAILED:
                        raise value
                    del inflight[token]
                    held[s].remove(token)
                    progress[s] = time.monotonic()
                    done += 1
                    self.stats["chunks"] += 1
                    self.stats["candidates"] += len(chunks[c])
                    yield c, value
                if self.timeout is not None:
                    now = time.monotonic()
                    for s in range(self.n_workers):
                        if held[s] and now - progress[s] > self.timeout:
                            self.stats["timeouts"] += 1
                            fail(s, f"returned nothing for {self.timeout:g} s (hung)")
        finally:
            # An abandoned batch (an evaluator error, or the caller stopped): its chunks would
            # still run and answer later, so those workers are replaced when next needed.
            for s in range(self.n_workers):
                if held[s]:
                    self._drop(s)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for s in range(self.n_workers):
            self._drop(s)
