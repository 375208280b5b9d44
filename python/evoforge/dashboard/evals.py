"""A run's evaluation cache (``evaluations.sqlite``) read-only: every evaluated candidate's objectives,
read incrementally (rows after the last one seen), the Pareto front of them all (by evoforge's
:func:`~evoforge.pareto.nondominated_rank`, merged as rows arrive), a hypervolume per generation for
runs that did not record one, and one candidate's genome on request.

The file is opened as a read-only URI (``file:...?mode=ro``) for each read and closed at once, so a
reader never writes, never holds a lock past its query and never blocks the search that writes it
(SQLite's WAL mode lets a reader and a writer run together). A cache whose WAL files are gone (its
writer closed it) is read as ``immutable``, which needs no WAL index.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from .. import pareto
from .history import downsample, num

__all__ = ["CACHE_FILE", "Evaluations", "connect_ro"]

CACHE_FILE = "evaluations.sqlite"
#: the most front points and evaluated points (the grey cloud) sent to the page
MAX_FRONT = 3000
MAX_CLOUD = 2000
#: the most generations whose hypervolume is computed (longer runs: evenly spread)
MAX_HV = 1000


def connect_ro(path: Path) -> sqlite3.Connection:
    """A read-only connection to the SQLite file ``path`` (never creates or changes a file)."""
    uri = path.resolve().as_uri() + "?mode=ro"
    if not Path(str(path) + "-wal").exists():
        uri += "&immutable=1"  # no writer in WAL mode: nothing to coordinate with, no -shm needed
    con = sqlite3.connect(uri, uri=True, timeout=0.2, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA query_only = 1")
    return con


class Evaluations:
    """The vector-valued rows of one cache file (multi-objective runs), as they are written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rowid = np.empty(0, dtype=np.int64)
        self.F = np.empty((0, 0))
        self.error: str | None = None
        self._front = np.empty(0, dtype=np.int64)  # indices into rowid/F
        self._front_m: tuple[int, bool] | None = None  # (objectives, constrained) the front was ranked with
        self._seen = 0  # rows merged into _front
        self._hv: list[tuple[int, float]] = []
        self._hv_front = np.empty(0, dtype=np.int64)
        self._hv_rows = 0
        self._hv_next = 0
        self._ref: np.ndarray | None = None

    # ---- reading ---------------------------------------------------------------------------------

    def update(self) -> bool:
        """Read the rows added since the last call; True when there were any."""
        if not self.path.is_file():
            return False
        last = int(self.rowid[-1]) if self.rowid.size else 0
        try:
            con = connect_ro(self.path)
            try:
                rows = con.execute("SELECT rowid, mean FROM entries WHERE rowid > ? ORDER BY rowid", (last,)).fetchall()
            finally:
                con.close()
        except sqlite3.Error as e:  # locked, half-created, or not an evoforge cache: try again at the next poll
            self.error = f"{type(e).__name__}: {e}"
            return False
        self.error = None
        rows = [r for r in rows if isinstance(r[1], bytes) and r[1] and len(r[1]) % 8 == 0]
        if not rows:
            return False
        width = self.F.shape[1] if self.F.size else len(rows[0][1]) // 8
        rows = [r for r in rows if len(r[1]) == 8 * width]
        if not rows:
            return False
        F = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f8").reshape(len(rows), width).astype(np.float64)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        self.rowid = np.concatenate([self.rowid, ids])
        self.F = F if not self.F.size else np.concatenate([self.F, F])
        return True

    # ---- the front --------------------------------------------------------------------------------

    def _merge(self, front: np.ndarray, new: np.ndarray, m: int, constrained: bool) -> np.ndarray:
        """The first front of ``front`` (a first front) and the rows ``new``: indices into F."""
        cand = np.concatenate([front, new])
        if cand.size == 0:
            return cand
        F = self.F[cand, :m]
        ok = np.isfinite(F).all(axis=1)
        if constrained:
            ok &= self.F[cand, m] <= 0
        cand, F = cand[ok], F[ok]
        if cand.size == 0:
            return cand
        return cand[pareto.nondominated_rank(F) == 0]

    def front(self, m: int, constrained: bool = False) -> np.ndarray:
        """Indices (into ``rowid`` / ``F``) of the non-dominated feasible rows, over ``m`` objectives."""
        if self.F.shape[1] < m + constrained:
            return np.empty(0, dtype=np.int64)
        if self._front_m != (m, constrained):
            self._front_m, self._front, self._seen = (m, constrained), np.empty(0, dtype=np.int64), 0
        n = len(self.rowid)
        if self._seen < n:
            self._front = self._merge(self._front, np.arange(self._seen, n), m, constrained)
            self._seen = n
        return self._front

    def front_json(self, m: int, constrained: bool, names: list[str]) -> dict:
        """The front (thinned to :data:`MAX_FRONT` evenly along the first objective) and a thinned
        cloud of the other evaluated rows, as columns; ids ``r<rowid>``."""
        idx = self.front(m, constrained)
        total = int(idx.size)
        if total > MAX_FRONT:
            order = idx[np.lexsort(self.F[idx, :m].T[::-1])]
            idx = order[downsample(total, MAX_FRONT)]
        rest = np.setdiff1d(np.arange(len(self.rowid)), idx, assume_unique=False)
        cloud = rest[downsample(rest.size, MAX_CLOUD)] if rest.size else rest
        return {"source": "cache", "objectives": names, "total": total, "shown": int(idx.size),
                "evaluated": int(len(self.rowid)),
                "ids": [f"r{int(i)}" for i in self.rowid[idx]], "cols": _cols(self.F[idx, :m]),
                "cloud": _cols(self.F[cloud, :m])}

    # ---- hypervolume per generation ----------------------------------------------------------------

    def reset_hypervolume(self) -> None:
        """Forget the hypervolume history (the history file was rewritten: a resumed run)."""
        self._hv, self._hv_front, self._hv_rows, self._hv_next = [], np.empty(0, dtype=np.int64), 0, 0

    def hypervolume(self, records: list[dict], m: int, constrained: bool = False) -> list[tuple[int, float]]:
        """[(generation, hypervolume of the front of the rows evaluated by then)], the rows of a
        generation being the next ``evaluations`` rows of the cache in the order they were written,
        with a fixed reference point: the worst value of each objective in the first generation
        plus a tenth of its range. At most :data:`MAX_HV` generations, evenly spread."""
        if self.F.shape[1] < m + constrained or m < 2:
            return []
        stride = max(1, math.ceil(len(records) / MAX_HV))
        n = len(self.rowid)
        while self._hv_next < len(records):
            i = self._hv_next
            r = records[i]
            e = r.get("evaluations")
            if not isinstance(e, int) or e > n:
                break  # its rows are not visible yet
            if self._ref is None:
                first = self.F[:max(1, e), :m]
                first = first[np.isfinite(first).all(axis=1)]
                if not first.size:
                    break
                hi, lo = first.max(axis=0), first.min(axis=0)
                span = hi - lo
                self._ref = hi + 0.1 * np.where(span > 0, span, np.maximum(np.abs(hi), 1.0))
            if i % stride == 0 or i == len(records) - 1:
                new = np.arange(self._hv_rows, max(self._hv_rows, e))
                self._hv_front = self._merge(self._hv_front, new, m, constrained)
                self._hv_rows = max(self._hv_rows, e)
                pts = self.F[self._hv_front, :m]
                pts = pts[(pts < self._ref).all(axis=1)]
                self._hv.append((int(r["generation"]), pareto.hypervolume(pts, self._ref) if len(pts) else 0.0))
            self._hv_next += 1
        return self._hv

    @property
    def reference(self) -> list[float] | None:
        return None if self._ref is None else [float(x) for x in self._ref]

    # ---- one candidate -------------------------------------------------------------------------------

    def genomes(self, rowids: list[int]) -> dict[int, tuple[Any, Any]]:
        """rowid -> (objectives, genome) of the given rows (read now, in chunks)."""
        out: dict[int, tuple[Any, Any]] = {}
        if not rowids or not self.path.is_file():
            return out
        con = connect_ro(self.path)
        try:
            for k in range(0, len(rowids), 500):
                part = [int(r) for r in rowids[k:k + 500]]
                q = f"SELECT rowid, mean, genome FROM entries WHERE rowid IN ({','.join('?' * len(part))})"
                for rid, mean, genome in con.execute(q, part):
                    f = np.frombuffer(mean, dtype="<f8").tolist() if isinstance(mean, bytes) else [num(mean)]
                    try:
                        g = json.loads(genome) if genome else None
                    except ValueError:
                        g = None
                    out[int(rid)] = ([num(x) for x in f], g)
        finally:
            con.close()
        return out


def _cols(F: np.ndarray) -> list[list[float | None]]:
    return [[num(x) for x in F[:, j].tolist()] for j in range(F.shape[1])]
