"""The evaluation cache itself: :class:`EvaluationCache`, its policies (aggregate, forget_every,
remove_probability, capacity) and statistics over a memory or an SQLite store."""

from __future__ import annotations

import math
import os
import random
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import CacheClosedError, ConfigError
from .entries import CacheStats, Entry, Fitness, as_fitness, check_key, genome_json
from .memory import MemoryStore
from .sqlite import FILE_NAME, SQLiteStore

__all__ = ["EvaluationCache"]

#: The longest lock timeout: SQLite's busy timeout is a C int of milliseconds (about 24.8 days).
MAX_TIMEOUT = (2**31 - 1) / 1000


def _opt_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value < 1:
        raise ConfigError(f"{name} must be >= 1 (or None for off), got {value}")
    return int(value)


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def _resolve_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be None (in memory), a str or an os.PathLike, got {type(path).__name__}")
    raw = os.fspath(path)
    if isinstance(raw, bytes):
        raw = os.fsdecode(raw)
    if raw == "":
        raise ConfigError("path must not be empty; use path=None for an in-memory cache")
    if raw == ":memory:":
        raise ConfigError("path ':memory:' is not supported; use path=None (EvaluationCache()) for an "
                          "in-memory cache")
    p = Path(raw).expanduser()
    if p.is_dir() or raw.endswith(("/", os.sep)):
        p.mkdir(parents=True, exist_ok=True)
        return p / FILE_NAME
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _reopen(path: str, kwargs: dict) -> "EvaluationCache":
    return EvaluationCache(path, **kwargs)


class EvaluationCache:
    """Digest -> fitness cache with running statistics, policies and SQLite persistence.

    Parameters
    ----------
    path : None, str or os.PathLike
        None: in memory, in this process only. A directory (existing, or a path ending in ``/``):
        ``<dir>/evaluations.sqlite``. Otherwise the SQLite file itself (created, with its parent
        directories, if missing).
    capacity : int >= 1, optional
        Keep at most this many entries, evicting the least recently used.
    forget_every : int >= 1, optional
        After this many hits since its latest evaluation, the next lookup of an entry is a miss.
    aggregate : int >= 1, optional
        Lookups of an entry with fewer than this many evaluations are misses (noisy fitness).
    remove_probability : float in [0, 1]
        Probability that a hit removes its entry (after serving it).
    seed : int
        Seed of the ``random.Random`` that draws the removals.
    timeout : float in [0, 2147483.647]
        Seconds to wait for another process's write lock before raising :class:`CacheError`.
    synchronous : "NORMAL" or "FULL"
        SQLite's synchronous setting. NORMAL (default): committed entries survive the death of any
        process; FULL: they also survive a power loss or OS crash, at an fsync per put.

    Raises
    ------
    TypeError or ConfigError (a ValueError) for a bad parameter; CorruptCacheError when the file is
    not an SQLite database, is damaged, or belongs to another application; CacheError when it cannot
    be opened.

    Every method is thread-safe (one lock per cache). Methods of a closed cache raise
    :class:`CacheClosedError`. Keys must be ``bytes`` (TypeError otherwise).
    """

    def __init__(self, path: str | os.PathLike | None = None, *, capacity: int | None = None,
                 forget_every: int | None = None, aggregate: int | None = None,
                 remove_probability: float = 0.0, seed: int = 0, timeout: float = 30.0,
                 synchronous: str = "NORMAL") -> None:
        self._capacity = _opt_int(capacity, "capacity")
        self._forget_every = _opt_int(forget_every, "forget_every")
        self._aggregate = _opt_int(aggregate, "aggregate")
        p = _real(remove_probability, "remove_probability")
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"remove_probability must lie in [0, 1], got {remove_probability}")
        self._remove_p = p
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self._seed = int(seed)
        self._rng = random.Random(self._seed)
        t = _real(timeout, "timeout")
        if not 0.0 <= t <= MAX_TIMEOUT:  # NaN fails too
            raise ConfigError(f"timeout must be a number of seconds in [0, {MAX_TIMEOUT}], got {timeout}")
        if not isinstance(synchronous, str):
            raise TypeError(f"synchronous must be a str, got {type(synchronous).__name__}")
        sync = synchronous.upper()
        if sync not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self._options = {"capacity": self._capacity, "forget_every": self._forget_every,
                         "aggregate": self._aggregate, "remove_probability": p, "seed": self._seed,
                         "timeout": t, "synchronous": sync}
        self._agg_n = self._aggregate or 0
        self._forget_n = self._forget_every or 0
        self._lock = threading.RLock()
        self._hits = self._misses = self._evaluations = 0
        self._seconds_saved = 0.0
        self._store: Any = None
        self._store = MemoryStore() if path is None else SQLiteStore(_resolve_path(path), t, sync)

    # -- properties ----------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for an in-memory cache."""
        return self._store.path if self._store is not None else None

    @property
    def closed(self) -> bool:
        return self._store is None

    @property
    def options(self) -> dict:
        """The policy and connection parameters this cache was opened with."""
        return dict(self._options)

    @property
    def stats(self) -> CacheStats:
        """Lookups and evaluations through this object since it was opened."""
        return CacheStats(self._hits, self._misses, self._evaluations, self._hits, self._seconds_saved)

    def _open_store(self) -> Any:
        s = self._store
        if s is None:
            raise CacheClosedError("the evaluation cache is closed")
        return s

    # -- core API ------------------------------------------------------------------------------

    def get(self, key: bytes) -> Entry | None:
        """The entry of ``key`` on a hit, None on a miss; applies the policies and counts stats.

        A stored entry is a miss when it has fewer than ``aggregate`` evaluations or ``forget_every``
        hits since its latest evaluation; either way it stays, and the next :meth:`put` folds into it.
        On a hit the entry is used (LRU), its hit count grows, and with probability
        ``remove_probability`` it is removed after the returned snapshot was taken.
        """
        if type(key) is not bytes:
            check_key(key)
        with self._lock:
            store = self._store
            if store is None:
                raise CacheClosedError("the evaluation cache is closed")
            rec = store.load(key)
            if rec is None or rec.count < self._agg_n or (self._forget_n and rec.since_eval >= self._forget_n):
                self._misses += 1
                return None
            store.hit(key, rec)
            self._hits += 1
            if rec.sec_n:
                self._seconds_saved += rec.sec_total / rec.sec_n
            entry = rec.entry(key)
            if self._remove_p and self._rng.random() < self._remove_p:
                store.delete(key)
            return entry

    def put(self, key: bytes, fitness: Any, *, genome: Any = None, seconds: float | None = None) -> Entry:
        """Record one evaluation of ``key`` and return the updated entry.

        A new key gets an entry with ``count == 1``; for a stored key the value is folded into the
        running mean and variance (Welford), ``count`` grows, and the hits since evaluation restart
        at 0. With SQLite the change is committed before ``put`` returns.

        Parameters
        ----------
        fitness : float, or array-like of float, shape (M,)
            Finite. A key keeps its kind: a scalar stays a scalar, a vector keeps its length.
        genome : JSON-serialisable, optional
            Kept only if the entry has no genome yet (the first one seen).
        seconds : float >= 0, optional
            Wall time of this evaluation, for ``seconds_saved`` on later hits.

        Raises
        ------
        TypeError for a non-bytes key, a non-numeric fitness or a genome JSON cannot hold;
        ValueError for a non-finite fitness or one whose kind or length differs from the stored one.
        """
        check_key(key)
        x = as_fitness(fitness)
        if seconds is not None:
            seconds = _real(seconds, "seconds")
            if not (seconds >= 0.0 and math.isfinite(seconds)):
                raise ValueError(f"seconds must be finite and >= 0, got {seconds}")
        g = genome_json(genome)
        with self._lock:
            store = self._open_store()
            rec = store.put(key, x, seconds, g, time.time(), self._capacity)
            self._evaluations += 1
            return rec.entry(key)

    def evaluate(self, key: bytes, fn: Callable[[], Any], *, genome: Any = None) -> Fitness:
        """Get-or-compute: the cached fitness on a hit, else ``fn()`` timed and :meth:`put`.

        Returns the entry's running mean after the put (with ``aggregate``, the mean of all the
        evaluations so far). If ``fn`` raises, nothing is stored. ``fn`` runs without the cache's
        lock held, so two threads or processes may evaluate the same key at once; both results are
        folded in.
        """
        e = self.get(key)
        if e is not None:
            return e.fitness
        t0 = time.perf_counter()
        value = fn()
        dt = time.perf_counter() - t0
        return self.put(key, value, genome=genome, seconds=dt).fitness

    def peek(self, key: bytes) -> Entry | None:
        """The entry of ``key`` or None, without policies, statistics or LRU use."""
        check_key(key)
        with self._lock:
            rec = self._open_store().load(key)
            return None if rec is None else rec.entry(key)

    def discard(self, key: bytes) -> bool:
        """Remove ``key``; True if it was there."""
        check_key(key)
        with self._lock:
            return self._open_store().delete(key)

    def clear(self) -> None:
        """Remove every entry (of the file, for every process)."""
        with self._lock:
            self._open_store().clear()

    def flush(self) -> None:
        """Write the hit counts and LRU recency held in memory (entries are always written at put)."""
        with self._lock:
            self._open_store().flush()

    def integrity_check(self) -> list[str]:
        """SQLite's ``PRAGMA integrity_check``: ``['ok']`` for a sound file (and in memory)."""
        with self._lock:
            store = self._open_store()
            return store.integrity_check() if isinstance(store, SQLiteStore) else ["ok"]

    def close(self) -> None:
        """Write pending hits and close the file. Idempotent; later calls of other methods raise."""
        with self._lock:
            store, self._store = self._store, None
            if store is not None:
                store.close()

    # -- container protocol ----------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is stored (policies do not apply)."""
        check_key(key)
        with self._lock:
            return self._open_store().contains(key)

    def __len__(self) -> int:
        with self._lock:
            return self._open_store().count()

    def items(self) -> Iterator[tuple[bytes, Entry]]:
        """(key, entry) for every entry, least recently used first; a snapshot taken at the call."""
        with self._lock:
            entries = [(k, r.entry(k)) for k, r in self._open_store().rows()]
        return iter(entries)

    def keys(self) -> Iterator[bytes]:
        return (k for k, _ in self.items())

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()

    def __enter__(self) -> "EvaluationCache":
        self._open_store()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __reduce__(self):
        if self._store is None or self._store.path is None:
            raise TypeError("only an open SQLite-backed EvaluationCache can be pickled (it reopens its "
                            "file); an in-memory cache cannot be shared with another process")
        return _reopen, (str(self._store.path), self._options)

    def __repr__(self) -> str:
        if self._store is None:
            return "EvaluationCache(closed)"
        where = "in memory" if self._store.path is None else str(self._store.path)
        opts = ", ".join(f"{k}={v!r}" for k, v in self._options.items()
                         if k in ("capacity", "forget_every", "aggregate") and v is not None)
        return f"EvaluationCache({where}{', ' + opts if opts else ''}, entries={len(self)})"

