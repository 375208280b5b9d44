"""The SQLite store of :class:`~evoforge.cache.EvaluationCache`: one WAL-mode file shared by
processes, every put its own transaction; hit counts and LRU recency written in batches."""

from __future__ import annotations

import os
import random
import sqlite3
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import CacheError, CorruptCacheError
from .entries import Fitness, Record

__all__ = ["FILE_NAME", "SQLiteStore"]

FILE_NAME = "evaluations.sqlite"
_APPLICATION_ID = 0x45564F46  # "EVOF" in the SQLite header, marks the file as an evoforge cache
_SCHEMA_VERSION = 1


_TOUCH_BATCH = 1000  # hits held in memory before their counts and recency are written
_TOUCH_SECONDS = 1.0  # ... or this long after the last write


def _is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "busy": another process holds the lock (retryable)."""
    msg = str(exc)
    return "locked" in msg or "busy" in msg


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


def _rec_from_row(r: tuple) -> Record:
    return Record(_from_sql(r[0]), _from_sql(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9])


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


_SQLITE_STORES: "weakref.WeakSet[SQLiteStore]" = weakref.WeakSet()
_INHERITED: list = []  # connections inherited through fork: kept alive, never closed, never used


def _after_fork_in_child() -> None:
    for store in list(_SQLITE_STORES):
        store._orphan()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SQLiteStore:
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

    def load(self, key: bytes) -> Record | None:
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

    def rows(self) -> list[tuple[bytes, Record]]:
        self.flush()
        try:
            rows = self._con.execute(f"SELECT key, {_COLUMNS} FROM entries ORDER BY used").fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return [(r[0], _rec_from_row(r[1:])) for r in rows]

    # -- writes --------------------------------------------------------------------------------

    def hit(self, key: bytes, rec: Record) -> None:
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

    def put(self, key, x, seconds, genome, now, capacity) -> Record:
        con = self._con

        def body() -> Record:
            row = con.execute(self._get_sql, (key,)).fetchone()
            used = self._clock()
            if row is None:
                rec = Record.new(x, seconds, genome, now)
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

