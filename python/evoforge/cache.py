"""A persistent cache of fitness evaluations, keyed by a digest of the candidate.

Symbols: a *key* is a digest (``bytes``, e.g. the 16 bytes of :mod:`evoforge.hashing`); a *fitness*
is a float, or a float64 vector of M components for multi-objective search. An :class:`Entry` holds
the running mean (the fitness that is served) and variance of every evaluation folded into a key,
the number of evaluations, the first genome seen, timestamps and the number of hits.

Storage:

* ``EvaluationCache(path)`` stores the entries in an SQLite file (the standard library's sqlite3;
  WAL journal, busy timeout). A directory ``path`` means ``<dir>/evaluations.sqlite``, one file per
  run directory. Several processes may read and write the same file at once; each process opens its
  own ``EvaluationCache`` (pickling a cache reopens its file in the receiving process; a cache
  inherited through ``fork`` raises :class:`CacheError` in the child, as SQLite forbids it). Every
  ``put`` is its own transaction, committed before ``put`` returns, so every entry that ``put``
  returned survives kill -9 of the process (and, with ``synchronous="FULL"``, a power loss too).
* ``EvaluationCache()`` (``path=None``) is the in-memory cache: a dict in this process, gone at
  ``close``. It has the same API and policies.

Policies (each ``None``/``0`` by default, i.e. off), applied by :meth:`EvaluationCache.get`:

* ``aggregate=n`` (noisy fitness): a lookup of an entry with fewer than ``n`` evaluations is a
  miss, so the caller evaluates it again; ``put`` folds the new value into the running mean, which
  is what ``get`` and ``evaluate`` return.
* ``forget_every=n``: after ``n`` hits since its last evaluation, the next lookup of an entry is a
  miss (it is re-evaluated; the new value is folded in and the count of hits since evaluation
  restarts at 0).
* ``remove_probability=p``: a hit is served and then removes the entry with probability ``p``,
  drawn from ``random.Random(seed)``: the same sequence of calls gives the same removals.
* ``capacity=n``: at most ``n`` entries; a ``put`` of a new key beyond it evicts the least recently
  used ones (a hit or a put uses an entry).

With SQLite, hits are counted and LRU recency is recorded in memory and written in batches (at the
next ``put``, at ``flush()``, at ``close()``, and by a lookup every 1,000 hits or 1 s if no other
process holds the write lock then), so a lookup costs one read and never waits for a writer. A
kill -9 loses at most the hit counts and recency not yet written, never an entry. The policies of
another process see this process's hits once they are written.

Fitness values must be finite: NaN or +-inf raises ``ValueError`` (record a failed evaluation as a
large finite penalty). Genomes are stored as JSON text (numpy arrays and scalars become lists and
numbers, tuples become lists): the file is a durable record shared by processes and read by other
tools, and JSON is readable anywhere, unlike pickle, which runs code on load and breaks when a class
moves. A genome that JSON cannot hold raises ``TypeError``.
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Union

import numpy as np

from . import _checks
from .errors import CacheClosedError, CacheError, ConfigError, CorruptCacheError

__all__ = ["EvaluationCache", "Entry", "CacheStats", "CacheError", "CacheClosedError", "CorruptCacheError"]

Fitness = Union[float, np.ndarray]

FILE_NAME = "evaluations.sqlite"
_APPLICATION_ID = 0x45564F46  # "EVOF" in the SQLite header, marks the file as an evoforge cache
_SCHEMA_VERSION = 1


def _is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "busy": another process holds the lock (retryable)."""
    msg = str(exc)
    return "locked" in msg or "busy" in msg
_TOUCH_BATCH = 1000  # hits held in memory before their counts and recency are written
_TOUCH_SECONDS = 1.0  # ... or this long after the last write


@dataclass(frozen=True, eq=False, slots=True)
class CacheStats:
    """Counts of one :class:`EvaluationCache` object since it was opened (not shared by processes).

    ``evaluations`` counts puts (an ``evaluate`` miss is one); ``evaluations_saved`` counts hits, each
    of which saved one evaluation; ``seconds_saved`` adds, per hit, the entry's mean evaluation time
    (0 when it was never timed).
    """

    hits: int
    misses: int
    evaluations: int
    evaluations_saved: int
    seconds_saved: float

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), 0.0 before the first lookup."""
        n = self.hits + self.misses
        return self.hits / n if n else 0.0


@dataclass(frozen=True, eq=False, slots=True)
class Entry:
    """A snapshot of one cached key.

    Attributes
    ----------
    key : bytes
    fitness : float, or numpy.ndarray of float64, shape (M,), read-only
        Running mean of every evaluation folded into the key (the value served on a hit).
    count : int
        Evaluations folded in (>= 1).
    m2 : float or numpy.ndarray
        Welford's sum of squared deviations from the mean; see :attr:`variance`.
    hits : int
        Lookups served from this entry, over its lifetime and all processes (those of other
        processes once written; see the module docstring).
    created, updated : float
        Unix time of the first and the latest evaluation.
    seconds : float or None
        Mean wall time of one evaluation, over the evaluations that were timed; None if none was.
    genome : Any
        The first genome given for the key (decoded from JSON on access), or None.
    """

    key: bytes
    fitness: Fitness
    count: int
    m2: Fitness
    hits: int
    created: float
    updated: float
    seconds: float | None
    genome_json: str | None = field(default=None, repr=False)

    @property
    def mean(self) -> Fitness:
        """Same as :attr:`fitness`."""
        return self.fitness

    @property
    def variance(self) -> Fitness:
        """Population variance of the evaluations, ``m2 / count`` (numpy's ``var`` with ddof=0)."""
        return self.m2 / self.count

    @property
    def sample_variance(self) -> Fitness:
        """Unbiased variance, ``m2 / (count - 1)`` (ddof=1); NaN for a single evaluation."""
        if self.count < 2:
            return math.nan if isinstance(self.m2, float) else np.full_like(self.m2, np.nan)
        return self.m2 / (self.count - 1)

    @property
    def genome(self) -> Any:
        return None if self.genome_json is None else json.loads(self.genome_json)


# ---------------------------------------------------------------------------------------------
# values


def _check_key(key: Any) -> None:
    if type(key) is not bytes:
        raise TypeError(f"cache keys must be bytes (a digest), got {type(key).__name__}")


def _fitness(x: Any) -> Fitness:
    """A finite Python float, or a read-only float64 vector of shape (M,), M >= 1."""
    if type(x) is float or type(x) is int:
        f = float(x)
        if not math.isfinite(f):
            raise ValueError(f"fitness must be finite, got {f} (record a failure as a large finite penalty)")
        return f
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"fitness must be a real number or a vector of them, got {type(x).__name__}")
    a = _checks.to_numpy(x, "fitness")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"fitness must be a real number or a vector of them, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 0:
        return _fitness(float(a))
    if a.ndim != 1 or a.shape[0] == 0:
        raise ValueError(f"a fitness vector must have shape (M,) with M >= 1, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"fitness must be finite, got {a[i]} in component {i} "
                         "(record a failure as a large finite penalty)")
    a.flags.writeable = False
    return a


def _dims(x: Fitness) -> int:
    """0 for a scalar, M for a vector."""
    return 0 if isinstance(x, float) else x.shape[0]


def _describe(d: int) -> str:
    return "a scalar" if d == 0 else f"a vector of {d} component{'s' if d > 1 else ''}"


def _fold(key: bytes, count: int, mean: Fitness, m2: Fitness, x: Fitness) -> tuple[Fitness, Fitness]:
    """Welford's update of (mean, m2) over ``count`` values with one more value ``x``."""
    if _dims(mean) != _dims(x):
        raise ValueError(f"fitness for key {key.hex()} is {_describe(_dims(x))}, "
                         f"but the cache holds {_describe(_dims(mean))} for it")
    n = count + 1
    delta = x - mean
    mean = mean + delta / n
    m2 = m2 + delta * (x - mean)
    if not isinstance(mean, float):
        mean.flags.writeable = False
        m2.flags.writeable = False
    return mean, m2


def _zero_like(x: Fitness) -> Fitness:
    if isinstance(x, float):
        return 0.0
    z = np.zeros_like(x)
    z.flags.writeable = False
    return z


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if _checks.is_torch(o):
        return o.detach().cpu().tolist()
    raise TypeError(f"a genome must be JSON-serialisable (dicts, lists, str, numbers, numpy arrays); "
                    f"got {type(o).__name__}")


def _genome_json(genome: Any) -> str | None:
    if genome is None:
        return None
    return json.dumps(genome, default=_json_default, separators=(",", ":"))


class _Rec:
    """The mutable state of one entry inside a store."""

    __slots__ = ("mean", "m2", "count", "hits", "since_eval", "sec_total", "sec_n", "genome", "created",
                 "updated")

    def __init__(self, mean, m2, count, hits, since_eval, sec_total, sec_n, genome, created, updated):
        self.mean, self.m2, self.count = mean, m2, count
        self.hits, self.since_eval = hits, since_eval
        self.sec_total, self.sec_n = sec_total, sec_n
        self.genome, self.created, self.updated = genome, created, updated

    def entry(self, key: bytes) -> Entry:
        return Entry(key, self.mean, self.count, self.m2, self.hits, self.created, self.updated,
                     self.sec_total / self.sec_n if self.sec_n else None, self.genome)

    def seconds(self) -> float:
        return self.sec_total / self.sec_n if self.sec_n else 0.0

    def fold(self, key: bytes, x: Fitness, seconds: float | None, genome: str | None, now: float) -> None:
        self.mean, self.m2 = _fold(key, self.count, self.mean, self.m2, x)
        self.count += 1
        self.since_eval = 0
        if seconds is not None:
            self.sec_total += seconds
            self.sec_n += 1
        if self.genome is None:
            self.genome = genome
        self.updated = now

    @classmethod
    def new(cls, x: Fitness, seconds: float | None, genome: str | None, now: float) -> "_Rec":
        return cls(x, _zero_like(x), 1, 0, 0, seconds or 0.0, 0 if seconds is None else 1, genome, now, now)


# ---------------------------------------------------------------------------------------------
# stores: the in-memory dict and the SQLite file; EvaluationCache holds the policies


class _MemoryStore:
    path = None

    def __init__(self) -> None:
        self._d: dict[bytes, _Rec] = {}  # insertion order = LRU order, least recently used first

    def load(self, key: bytes) -> _Rec | None:
        return self._d.get(key)

    def hit(self, key: bytes, rec: _Rec) -> None:
        rec.hits += 1
        rec.since_eval += 1
        d = self._d
        del d[key]
        d[key] = rec

    def put(self, key, x, seconds, genome, now, capacity) -> _Rec:
        d = self._d
        rec = d.pop(key, None)
        if rec is None:
            rec = _Rec.new(x, seconds, genome, now)
        else:
            try:
                rec.fold(key, x, seconds, genome, now)
            except ValueError:
                d[key] = rec
                raise
        d[key] = rec
        if capacity is not None:
            while len(d) > capacity:
                del d[next(iter(d))]
        return rec

    def delete(self, key: bytes) -> bool:
        return self._d.pop(key, None) is not None

    def contains(self, key: bytes) -> bool:
        return key in self._d

    def count(self) -> int:
        return len(self._d)

    def rows(self) -> list[tuple[bytes, _Rec]]:
        return list(self._d.items())

    def clear(self) -> None:
        self._d.clear()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._d = {}


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS entries (
        key BLOB NOT NULL UNIQUE,
        mean NOT NULL,                 -- REAL for a scalar fitness, BLOB of M little-endian float64
        m2 NOT NULL,                   -- the same type as mean
        count INTEGER NOT NULL,
        hits INTEGER NOT NULL,
        since_eval INTEGER NOT NULL,   -- hits since the latest evaluation (forget_every)
        seconds_total REAL NOT NULL,
        seconds_n INTEGER NOT NULL,
        genome TEXT,                   -- JSON
        created REAL NOT NULL,
        updated REAL NOT NULL,
        used INTEGER NOT NULL          -- LRU clock: time.time_ns() of the latest use
    )""",
    "CREATE INDEX IF NOT EXISTS entries_used ON entries(used)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value)",
    "INSERT OR IGNORE INTO meta VALUES ('count', 0)",
    """CREATE TRIGGER IF NOT EXISTS entries_ins AFTER INSERT ON entries
        BEGIN UPDATE meta SET value = value + 1 WHERE name = 'count'; END""",
    """CREATE TRIGGER IF NOT EXISTS entries_del AFTER DELETE ON entries
        BEGIN UPDATE meta SET value = value - 1 WHERE name = 'count'; END""",
    f"PRAGMA application_id = {_APPLICATION_ID}",
    f"PRAGMA user_version = {_SCHEMA_VERSION}",
]

_COLUMNS = "mean, m2, count, hits, since_eval, seconds_total, seconds_n, genome, created, updated"


def _to_sql(x: Fitness) -> float | bytes:
    return x if isinstance(x, float) else x.astype("<f8", copy=False).tobytes()


def _from_sql(v: float | bytes) -> Fitness:
    if type(v) is float:
        return v
    if type(v) is int:  # SQLite may hand back an integral REAL as int
        return float(v)
    return np.frombuffer(v, dtype="<f8").astype(np.float64, copy=False)  # read-only: the bytes own it


def _rec_from_row(r: tuple) -> _Rec:
    return _Rec(_from_sql(r[0]), _from_sql(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9])


class _ForkedConnection:
    """Stands in for the connection of a cache inherited through ``fork``: SQLite forbids using it."""

    in_transaction = False

    def __init__(self, path: Path, pid: int) -> None:
        self._msg = (f"the evaluation cache {path} was opened in process {pid}, before a fork; open a new "
                     "EvaluationCache in this process (a pickled cache reopens its file)")

    def execute(self, *args: Any) -> Any:
        raise CacheError(self._msg)

    executemany = execute

    def close(self) -> None:
        pass


_SQLITE_STORES: "weakref.WeakSet[_SQLiteStore]" = weakref.WeakSet()
_INHERITED: list = []  # connections inherited through fork: kept alive, never closed, never used


def _after_fork_in_child() -> None:
    for store in list(_SQLITE_STORES):
        store._orphan()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _SQLiteStore:
    def __init__(self, path: Path, timeout: float, synchronous: str) -> None:
        self.path = path
        self._pid = os.getpid()
        self._last_used = 0
        self._pending: dict[bytes, list[int]] = {}  # key -> [hits not yet written, latest use]
        self._pending_hits = 0
        self._last_write = time.monotonic()
        try:
            con = sqlite3.connect(str(path), timeout=timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise CacheError(f"cannot open the evaluation cache {path}: {exc}") from exc
        self._con = con
        self._timeout = timeout
        self._busy_ms = int(timeout * 1000)
        try:
            con.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            # Switching a new file to WAL takes an exclusive lock without calling the busy handler,
            # so processes creating the same cache at once retry here until the timeout.
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self._prepare(synchronous)
                    break
                except sqlite3.OperationalError as exc:
                    if not _is_locked(exc) or time.monotonic() >= deadline:
                        raise
                    time.sleep(0.01 + 0.04 * random.random())
        except sqlite3.DatabaseError as exc:
            con.close()
            raise self._error(exc) from exc
        except BaseException:
            con.close()
            raise
        self._get_sql = f"SELECT {_COLUMNS} FROM entries WHERE key = ?"
        _SQLITE_STORES.add(self)

    def _prepare(self, synchronous: str) -> None:
        """WAL mode, synchronous level, schema: idempotent, so a locked attempt can be retried."""
        con, path = self._con, self.path
        mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise CacheError(f"{path}: SQLite could not switch the cache to WAL mode (journal_mode={mode})")
        con.execute(f"PRAGMA synchronous = {synchronous}")
        if con.execute("PRAGMA application_id").fetchone()[0] != _APPLICATION_ID:
            self._init_schema()
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version != _SCHEMA_VERSION:
            raise CorruptCacheError(f"{path} is an evoforge cache of schema version {version}; "
                                    f"this evoforge reads version {_SCHEMA_VERSION}")
        con.execute("SELECT key FROM entries LIMIT 1").fetchall()

    def _orphan(self) -> None:
        if not isinstance(self._con, _ForkedConnection):
            _INHERITED.append(self._con)
            self._con = _ForkedConnection(self.path, self._pid)
            self._pending.clear()

    def _init_schema(self) -> None:
        con = self._con
        con.execute("BEGIN IMMEDIATE")
        try:
            app = con.execute("PRAGMA application_id").fetchone()[0]
            if app == 0:
                tables = con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
                if tables:
                    raise CorruptCacheError(f"{self.path} is an SQLite database but not an evoforge "
                                            "evaluation cache (it has other tables)")
                for statement in _SCHEMA:
                    con.execute(statement)
            elif app != _APPLICATION_ID:
                raise CorruptCacheError(f"{self.path} is an SQLite database of another application "
                                        f"(application_id {app:#x}), not an evoforge evaluation cache")
            if con.in_transaction:
                con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    def _error(self, exc: sqlite3.Error) -> CacheError:
        msg = str(exc)
        if _is_locked(exc):
            return CacheError(f"the evaluation cache {self.path} stayed locked by another process for more "
                              f"than the timeout of {self._timeout:g} s: {msg}")
        if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in msg or "malformed" in msg
                                                       or "corrupt" in msg):
            return CorruptCacheError(f"{self.path} is not a readable evoforge evaluation cache "
                                     f"(SQLite says: {msg})")
        return CacheError(f"evaluation cache {self.path}: {msg}")

    def _clock(self) -> int:
        t = time.time_ns()
        if t <= self._last_used:
            t = self._last_used + 1
        self._last_used = t
        return t

    # -- reads ---------------------------------------------------------------------------------

    def load(self, key: bytes) -> _Rec | None:
        try:
            row = self._con.execute(self._get_sql, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        if row is None:
            return None
        rec = _rec_from_row(row)
        p = self._pending.get(key)
        if p is not None:
            rec.hits += p[0]
            rec.since_eval += p[0]
        return rec

    def contains(self, key: bytes) -> bool:
        try:
            return self._con.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone() is not None
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def count(self) -> int:
        try:
            return int(self._con.execute("SELECT value FROM meta WHERE name = 'count'").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def rows(self) -> list[tuple[bytes, _Rec]]:
        self.flush()
        try:
            rows = self._con.execute(f"SELECT key, {_COLUMNS} FROM entries ORDER BY used").fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return [(r[0], _rec_from_row(r[1:])) for r in rows]

    # -- writes --------------------------------------------------------------------------------

    def hit(self, key: bytes, rec: _Rec) -> None:
        rec.hits += 1
        rec.since_eval += 1
        p = self._pending.get(key)
        if p is None:
            self._pending[key] = [1, self._clock()]
        else:
            p[0] += 1
            p[1] = self._clock()
        self._pending_hits += 1
        if self._pending_hits >= _TOUCH_BATCH or time.monotonic() - self._last_write > _TOUCH_SECONDS:
            self._try_flush()

    def _try_flush(self) -> None:
        """Write the pending hits if no other process holds the write lock; else retry a batch later.

        A lookup never waits for another process's writes; put, flush and close do (up to timeout).
        """
        con = self._con
        con.execute("PRAGMA busy_timeout = 0")
        try:
            self.flush()
        except CacheError as exc:
            if "locked" not in str(exc):
                raise
            self._pending_hits = 0  # hits since the latest attempt
            self._last_write = time.monotonic()
        finally:
            con.execute(f"PRAGMA busy_timeout = {self._busy_ms}")

    def _write_pending(self) -> None:
        if self._pending:
            self._con.executemany(
                "UPDATE entries SET hits = hits + ?, since_eval = since_eval + ?, used = max(used, ?) "
                "WHERE key = ?", [(h, h, u, k) for k, (h, u) in self._pending.items()])

    def _pending_written(self) -> None:
        self._pending.clear()
        self._pending_hits = 0
        self._last_write = time.monotonic()

    def _transaction(self, body: Callable[[], Any]) -> Any:
        """Run body() in one write transaction that also writes the pending hits."""
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                self._write_pending()
                out = body()
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        self._pending_written()
        return out

    def flush(self) -> None:
        if self._pending:
            self._transaction(lambda: None)

    def put(self, key, x, seconds, genome, now, capacity) -> _Rec:
        con = self._con

        def body() -> _Rec:
            row = con.execute(self._get_sql, (key,)).fetchone()
            used = self._clock()
            if row is None:
                rec = _Rec.new(x, seconds, genome, now)
                con.execute(f"INSERT INTO entries (key, {_COLUMNS}, used) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                            (key, _to_sql(rec.mean), _to_sql(rec.m2), 1, 0, 0, rec.sec_total, rec.sec_n,
                             genome, now, now, used))
                if capacity is not None:
                    n = con.execute("SELECT value FROM meta WHERE name = 'count'").fetchone()[0]
                    if n > capacity:
                        con.execute("DELETE FROM entries WHERE rowid IN "
                                    "(SELECT rowid FROM entries ORDER BY used LIMIT ?)", (n - capacity,))
            else:
                rec = _rec_from_row(row)
                rec.fold(key, x, seconds, genome, now)
                con.execute("UPDATE entries SET mean = ?, m2 = ?, count = ?, since_eval = 0, seconds_total = ?, "
                            "seconds_n = ?, genome = ?, updated = ?, used = ? WHERE key = ?",
                            (_to_sql(rec.mean), _to_sql(rec.m2), rec.count, rec.sec_total, rec.sec_n,
                             rec.genome, now, used, key))
            return rec

        return self._transaction(body)

    def delete(self, key: bytes) -> bool:
        self._pending.pop(key, None)
        return self._transaction(
            lambda: self._con.execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount > 0)

    def clear(self) -> None:
        self._pending.clear()
        self._transaction(lambda: self._con.execute("DELETE FROM entries"))

    def integrity_check(self) -> list[str]:
        try:
            return [r[0] for r in self._con.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._con.close()


# ---------------------------------------------------------------------------------------------


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
    timeout : float >= 0
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
        if not t >= 0.0 or math.isinf(t):
            raise ConfigError(f"timeout must be a finite number of seconds >= 0, got {timeout}")
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
        self._store = _MemoryStore() if path is None else _SQLiteStore(_resolve_path(path), t, sync)

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
            _check_key(key)
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
        _check_key(key)
        x = _fitness(fitness)
        if seconds is not None:
            seconds = _real(seconds, "seconds")
            if not (seconds >= 0.0 and math.isfinite(seconds)):
                raise ValueError(f"seconds must be finite and >= 0, got {seconds}")
        g = _genome_json(genome)
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
        _check_key(key)
        with self._lock:
            rec = self._open_store().load(key)
            return None if rec is None else rec.entry(key)

    def discard(self, key: bytes) -> bool:
        """Remove ``key``; True if it was there."""
        _check_key(key)
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
            return store.integrity_check() if isinstance(store, _SQLiteStore) else ["ok"]

    def close(self) -> None:
        """Write pending hits and close the file. Idempotent; later calls of other methods raise."""
        with self._lock:
            store, self._store = self._store, None
            if store is not None:
                store.close()

    # -- container protocol ----------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is stored (policies do not apply)."""
        _check_key(key)
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
