"""A run's ``history.jsonl``, read-only and incrementally, and the per-generation series drawn from it.

The engines append one JSON line per completed generation (:meth:`evoforge.search.Engine._end_generation`).
A reader may see the file at any moment of a write: a last line without its newline is left for the
next read, a complete line that is not a JSON object with a ``generation`` is skipped and counted
(``bad_lines``), and a file replaced (a resumed run rewrites it atomically) or shortened is read again
from the start.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["History", "downsample", "heatmap", "num", "series"]

#: the most points of one series sent to the page (longer runs are thinned evenly, first and last kept)
MAX_SERIES = 2000


def num(x: Any) -> float | None:
    """A finite float, or None (JSON has no NaN or infinity)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def downsample(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` indices of range(n), evenly spread, the first and the last kept."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


class History:
    """The records of one ``history.jsonl``; :meth:`update` reads what was appended since."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict] = []
        self.bad_lines = 0
        self.mtime: float | None = None
        self._offset = 0
        self._ino: int | None = None
        self.resets = 0  # times the file was replaced or shortened (and read again)

    def _reset(self) -> None:
        if self._offset:
            self.resets += 1
        self.records, self.bad_lines, self._offset = [], 0, 0

    def update(self) -> bool:
        """Read the lines completed since the last call; True when the records changed."""
        try:
            st = os.stat(self.path)
        except OSError:
            changed = bool(self.records)
            self._reset()
            self._ino, self.mtime = None, None
            return changed
        changed = False
        if st.st_ino != self._ino or st.st_size < self._offset:
            changed = bool(self.records)
            self._reset()
            self._ino = st.st_ino
        self.mtime = st.st_mtime
        if st.st_size <= self._offset:
            return changed
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read(st.st_size - self._offset)
        except OSError:
            return changed
        end = data.rfind(b"\n")
        if end < 0:  # a half-written line: wait for the rest
            return changed
        self._offset += end + 1
        for line in data[: end + 1].split(b"\n"):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:  # UnicodeDecodeError and JSONDecodeError both are
                rec = None
            if not isinstance(rec, dict) or not isinstance(rec.get("generation"), int):
                self.bad_lines += 1
                continue
            self.records.append(rec)
            changed = True
        return changed


def _column(records: list[dict], key: str) -> list[float | None] | None:
    if not any(key in r for r in records):
        return None
    return [num(r.get(key)) for r in records]


def series(records: list[dict], hypervolume: list | None = None) -> dict:
    """The per-generation columns of the charts (thinned to :data:`MAX_SERIES`): generation,
    evaluations, seconds, cache hit rate, best fitness (one objective), median or mean, each
    selection stage's best, front size and hypervolume (recorded, or ``hypervolume``: computed
    [(generation, value)])."""
    idx = downsample(len(records), MAX_SERIES)
    recs = [records[i] for i in idx]
    out: dict[str, Any] = {"generation": [r["generation"] for r in recs],
                           "evaluations": _column(recs, "evaluations"), "seconds": _column(recs, "seconds")}
    out["hit_rate"] = [num(r.get("cache_hits", 0) / r["requested"]) if num(r.get("requested")) else None
                       for r in recs]
    if recs and not isinstance(recs[-1].get("best_fitness"), list):
        out["best"] = _column(recs, "best_fitness")
    for key, label in (("median_fitness", "median"), ("mean_fitness", "mean")):
        col = _column(recs, key)
        if col is not None:
            out["spread"], out["spread_label"] = col, label
            break
    stages = [r.get("stage_best") for r in recs]
    width = max((len(s) for s in stages if isinstance(s, list)), default=0)
    if width:
        out["stage_best"] = [[num(s[k]) if isinstance(s, list) and k < len(s) else None for s in stages]
                             for k in range(width)]
    out["front_size"] = _column(recs, "front_size")
    hv = _column(recs, "hypervolume")
    if hv is not None:
        out["hypervolume"] = {"generation": out["generation"], "value": hv, "computed": False}
    elif hypervolume:
        keep = downsample(len(hypervolume), MAX_SERIES)
        out["hypervolume"] = {"generation": [hypervolume[i][0] for i in keep],
                              "value": [num(hypervolume[i][1]) for i in keep], "computed": True}
    return out


def heatmap(records: list[dict], labels: list[str] | None, limit: int = 400) -> dict | None:
    """The parent's genome over generations (OnePlusLambda records ``parent`` whenever it changes),
    as a heatmap: ``z[gene][column]``, at most ``limit`` columns; None without such records."""
    if not any(isinstance(r.get("parent"), list) for r in records):
        return None
    current: list | None = None
    cols, gens = [], []
    keep = set(downsample(len(records), limit).tolist())
    for i, r in enumerate(records):
        p = r.get("parent")
        if isinstance(p, list):
            current = p
        if i in keep and current is not None:
            cols.append(current)
            gens.append(r["generation"])
    width = max(len(c) for c in cols)
    z = [[num(c[g]) if g < len(c) else None for c in cols] for g in range(width)]
    names = labels if labels is not None and len(labels) == width else [f"gene {g}" for g in range(width)]
    return {"generation": gens, "labels": names, "z": z}
