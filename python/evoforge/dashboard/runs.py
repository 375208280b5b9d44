"""One run directory as the dashboard sees it: its kind, its state, a row of the runs table, the data
of its views and one candidate's genome; and the only files of it that may be served.

A run directory is any engine's (``history.jsonl``, ``checkpoint.pkl``, ``evaluations.sqlite``) or a
compression run's (also ``compress.json``, then ``report.json`` or, for ``--method front``,
``front.json``). Everything is read, nothing written; the checkpoint is never unpickled.
"""

from __future__ import annotations

import json
import re
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from .evals import CACHE_FILE, Evaluations
from .history import History, heatmap, num, series

__all__ = ["Run", "SERVED_SUFFIXES"]

HISTORY = "history.jsonl"
#: what a run directory's files may be served as (``/run/I/file/NAME``)
SERVED_SUFFIXES = (".md", ".png", ".svg", ".json", ".jsonl", ".csv", ".txt")
_PID = re.compile(r"([pur])(\d{1,12})")


class Run:
    """A run directory; :meth:`refresh` reads what changed, the other methods answer from that."""

    def __init__(self, path: Path, index: int, *, stale_after: float = 60.0) -> None:
        self.path = Path(path).resolve()
        self.id = index
        self.name = self.path.name or str(self.path)
        self.stale_after = float(stale_after)
        self.history = History(self.path / HISTORY)
        self.evals = Evaluations(self.path / CACHE_FILE)
        self.settings: Any = None
        self.report: Any = None
        self.front_file: Any = None
        self._json: dict[str, tuple[tuple, Any]] = {}
        self._hv: list = []
        self._lock = threading.RLock()
        self._version = ""
        self._detail: tuple[str, dict] | None = None

    # ---- reading -----------------------------------------------------------------------------------

    def _read_json(self, name: str) -> Any:
        p = self.path / name
        try:
            st = p.stat()
        except OSError:
            self._json.pop(name, None)
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        hit = self._json.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        try:
            data = json.loads(p.read_bytes())
        except (OSError, ValueError):
            data = None  # being replaced, or not ours: read again when it changes
        self._json[name] = (key, data)
        return data

    def refresh(self) -> str:
        """Read what changed since the last call; returns the data's version (changes with it)."""
        with self._lock:
            resets = self.history.resets
            self.history.update()
            if self.history.resets != resets:
                self.evals.reset_hypervolume()
                self._hv = []
            self.settings = self._read_json("compress.json")
            self.report = self._read_json("report.json")
            self.front_file = self._read_json("front.json")
            m = self.n_objectives
            if m >= 2:
                self.evals.update()
                recs = self.history.records
                if recs and "hypervolume" not in recs[-1]:
                    self._hv = self.evals.hypervolume(recs, m, self.constrained)
            self._version = "|".join(str(x) for x in (
                len(self.history.records), self.history.bad_lines, self.history.resets, len(self.evals.rowid),
                len(self._hv),
                *(f"{name}:{key[0]}:{key[1]}" for name, (key, _) in sorted(self._json.items()))))
            return self._version

    # ---- what the run is -----------------------------------------------------------------------------

    @property
    def n_objectives(self) -> int:
        for src in (self.front_file, self.settings):
            if isinstance(src, dict) and isinstance(src.get("objectives"), list) and src.get("method") == "front":
                return len(src["objectives"])
        recs = self.history.records
        if recs:
            best = recs[-1].get("best_fitness")
            return len(best) if isinstance(best, list) else 1
        return 0

    @property
    def constrained(self) -> bool:
        return self.evals.F.shape[1] == self.n_objectives + 1

    def objective_names(self) -> list[str]:
        m = self.n_objectives
        for src in (self.front_file, self.settings):
            names = src.get("objectives") if isinstance(src, dict) else None
            if isinstance(names, list) and len(names) == m:
                return [str(n) for n in names]
        return ["fitness"] if m == 1 else [f"f{j + 1}" for j in range(m)]

    @property
    def kind(self) -> str:
        if isinstance(self.settings, dict):
            method = str(self.settings.get("method", "sparsity"))
            return f"compress {method}" + (" (NSGA2)" if method == "front" else " (OnePlusLambda)")
        last = self.history.records[-1] if self.history.records else {}
        if "front_size" in last:
            return "NSGA2"
        if "improved" in last:
            return "OnePlusLambda"
        if "mean_fitness" in last:
            return "GA"
        return "run" if last else "-"

    def _layers(self) -> list[str] | None:
        for src in (self.front_file, self.report):
            if isinstance(src, dict) and isinstance(src.get("layers"), list):
                return [str(x) for x in src["layers"]]
        return None

    def state(self, now: float | None = None) -> tuple[str, str]:
        """(state, why): finished (its final files exist), running or starting (updated within the
        stale window: ``stale_after`` seconds, or five generations), or, past it, failed or stale (a
        compression run without its report), stale (the cache is still open: killed?) or stopped."""
        if self.report is not None or self.front_file is not None:
            return "finished", "its final files are written (" + ("report.json" if self.report is not None
                                                                   else "front.json") + ")"
        now = time.time() if now is None else now
        times = []
        for p in (self.history.path, self.evals.path, Path(str(self.evals.path) + "-wal"), self.path):
            try:
                times.append(p.stat().st_mtime)
            except OSError:
                pass
        age = now - max(times) if times else float("inf")
        window = self.stale_after
        secs = [r.get("seconds") for r in self.history.records[-21:]]
        steps = [b - a for a, b in zip(secs, secs[1:]) if num(a) is not None and num(b) is not None and b > a]
        if steps:
            window = max(window, 5 * statistics.median(steps))
        if age <= window:
            return ("running" if self.history.records else "starting"), f"updated {age:.0f} s ago"
        if not self.history.records:
            return "empty", "no generation recorded (history.jsonl is missing or empty)"
        if self.settings is not None:
            return "failed or stale", f"no update for {age:.0f} s and no report.json"
        if Path(str(self.evals.path) + "-wal").exists():
            return "stale", f"no update for {age:.0f} s and its cache is still open (killed, or paused?)"
        return "stopped", f"no update for {age:.0f} s; its cache was closed"

    # ---- views -----------------------------------------------------------------------------------------

    def summary(self, now: float | None = None) -> dict:
        """The run's row of the runs table."""
        with self._lock:
            recs = self.history.records
            last = recs[-1] if recs else {}
            state, why = self.state(now)
            rate = None
            win = [r for r in recs[-10:] if num(r.get("evaluations")) is not None and num(r.get("seconds")) is not None]
            if len(win) >= 2 and win[-1]["seconds"] > win[0]["seconds"]:
                rate = (win[-1]["evaluations"] - win[0]["evaluations"]) / (win[-1]["seconds"] - win[0]["seconds"])
            elif len(win) == 1 and win[0]["seconds"] > 0:
                rate = win[0]["evaluations"] / win[0]["seconds"]
            m = self.n_objectives
            best = num(last.get("best_fitness")) if m == 1 else None
            hv = num(last.get("hypervolume")) if "hypervolume" in last else (num(self._hv[-1][1]) if self._hv else None)
            front = None
            if m >= 2:
                front = len(self.front_file["points"]) if isinstance(self.front_file, dict) else (
                    int(self.evals.front(m, self.constrained).size) if self.evals.F.size else last.get("front_size"))
            return {"id": self.id, "name": self.name, "path": str(self.path), "kind": self.kind,
                    "state": state, "state_note": why, "version": self._version,
                    "generations": last.get("generation", 0), "evaluations": last.get("evaluations"),
                    "evals_per_s": num(rate),
                    "hit_rate": num(last["cache_hits"] / last["requested"]) if num(last.get("requested")) else None,
                    "n_objectives": m, "objectives": self.objective_names(), "best": best,
                    "hypervolume": hv, "hv_computed": "hypervolume" not in last and hv is not None,
                    "front_size": front, "elapsed": num(last.get("seconds")), "bad_lines": self.history.bad_lines}

    def detail(self) -> dict:
        """The data of the run's charts (computed once per version)."""
        with self._lock:
            if self._detail is not None and self._detail[0] == self._version:
                return self._detail[1]
            m = self.n_objectives
            names = self.objective_names()
            recs = self.history.records
            notes = []
            if self.history.bad_lines:
                notes.append(f"{self.history.bad_lines} unreadable line(s) of history.jsonl skipped")
            if self.evals.error:
                notes.append(f"evaluation cache not readable yet: {self.evals.error}")
            d = {"id": self.id, "name": self.name, "version": self._version, "kind": self.kind,
                 "objectives": names, "n_objectives": m,
                 "series": series(recs, self._hv if recs and "hypervolume" not in recs[-1] else None),
                 "hv_reference": self.evals.reference, "front": self._front(m, names),
                 "heatmap": heatmap(recs, self._layers()), "report": self._report_table(),
                 "files": self.files(), "notes": notes}
            self._detail = (self._version, d)
            return d

    def _front(self, m: int, names: list[str]) -> dict | None:
        fr = self.front_file
        if isinstance(fr, dict) and isinstance(fr.get("points"), list):
            def cols(pts: list) -> list:
                return [[num((p.get("heldout") or {}).get(o)) for p in pts] for o in names]
            pts, uni = fr["points"], fr.get("uniform") or []
            return {"source": "front.json (held-out objectives)", "objectives": names, "total": len(pts),
                    "shown": len(pts), "evaluated": fr.get("evaluations"), "ids": [f"p{i}" for i in range(len(pts))],
                    "cols": cols(pts), "uniform": {"ids": [f"u{i}" for i in range(len(uni))], "cols": cols(uni)}}
        if m >= 2 and self.evals.F.size:
            return self.evals.front_json(m, self.constrained, names)
        return None

    def _report_table(self) -> dict | None:
        r = self.report
        if not isinstance(r, dict):
            return None
        ppl = r.get("ppl") if isinstance(r.get("ppl"), dict) else {}
        base = r.get("baselines") if isinstance(r.get("baselines"), dict) else {}
        rows = [("dense", 0.0), ("uniform", r.get("kl_uniform"))]
        rows += [(str(n), b.get("kl")) for n, b in base.items() if isinstance(b, dict)]
        rows.append(("evoforge", r.get("kl_search")))
        return {"title": f"{r.get('method')} {r.get('target')}", "average": num(r.get("average")),
                "columns": ["model", "KL (held-out)"] + (["perplexity"] if ppl else []),
                "rows": [[n, num(kl)] + ([num(ppl.get(n))] if ppl else []) for n, kl in rows],
                "generations": r.get("generations"), "evaluations": r.get("evaluations"),
                "times": {str(k): num(v) for k, v in (r.get("times") or {}).items()}
                if isinstance(r.get("times"), dict) else {}}

    def genomes(self, ids: list[str]) -> dict[str, dict | None]:
        """:meth:`genome` of each id, the cache rows read in one pass."""
        rows = [int(i[1:]) for i in ids if _PID.fullmatch(i) and i[0] == "r"]
        found = self.evals.genomes(rows)
        return {i: self.genome(i, _rows=found) for i in ids}

    def genome(self, pid: str, *, _rows: dict | None = None) -> dict | None:
        """One candidate of the front: ``p<i>`` / ``u<i>`` a point / uniform configuration of
        front.json, ``r<rowid>`` a row of the cache. None if there is no such candidate."""
        match = _PID.fullmatch(pid)
        if match is None:
            return None
        kind, i = match.group(1), int(match.group(2))
        with self._lock:
            names = self.objective_names()
            layers = self._layers()
            if kind in "pu":
                fr = self.front_file
                pts = fr.get("points" if kind == "p" else "uniform") if isinstance(fr, dict) else None
                if not isinstance(pts, list) or i >= len(pts) or not isinstance(pts[i], dict):
                    return None
                pt = pts[i]
                objs = {o: num((pt.get("heldout") or {}).get(o)) for o in names}
                cols = fr.get("columns") if isinstance(fr.get("columns"), list) else ("sparsity", "bits")
                bars = [{"name": str(k), "y": [num(x) for x in pt[k]]} for k in cols
                        if isinstance(pt.get(k), list)]  # per layer (front) or per block (subnet)
                genes = pt.get("genome")
            else:
                got = (_rows if _rows is not None else self.evals.genomes([i])).get(i)
                if got is None:
                    return None
                f, genes = got
                objs = {o: (f[j] if j < len(f) else None) for j, o in enumerate(names)}
                bars = self._bars(genes)
        if not bars:
            bars = [{"name": "value", "y": [num(x) for x in genes]}] if isinstance(genes, list) else []
        n = len(bars[0]["y"]) if bars else 0
        labels = layers if layers is not None and len(layers) == n else [str(j) for j in range(n)]
        return {"id": pid, "objectives": objs, "genome": genes, "bars": bars, "labels": labels}

    def _bars(self, genes: Any) -> list[dict]:
        """A compression front's genome (sparsity level per layer, then bit-width index) as the
        per-layer sparsity and bits, from the run's settings; [] for any other genome."""
        s = self.settings if isinstance(self.settings, dict) else {}
        shares, bits = s.get("sparsities"), s.get("bits")
        if not (isinstance(genes, list) and isinstance(shares, list) and isinstance(bits, list)) or len(genes) % 2:
            return []
        L = len(genes) // 2
        if not all(isinstance(g, int) for g in genes) or not all(0 <= g < len(shares) for g in genes[:L]) \
                or not all(0 <= g < len(bits) for g in genes[L:]):
            return []
        return [{"name": "sparsity", "y": [num(shares[g]) for g in genes[:L]]},
                {"name": "bits", "y": [num(bits[g]) for g in genes[L:]]}]

    # ---- files ---------------------------------------------------------------------------------------

    def files(self) -> list[str]:
        """The run directory's top-level files that may be served."""
        try:
            return sorted(p.name for p in self.path.iterdir() if p.suffix.lower() in SERVED_SUFFIXES and p.is_file()
                          and p.resolve().parent == self.path)
        except OSError:
            return []

    def file(self, rel: str) -> Path:
        """The file ``rel`` (a relative path, already percent-decoded) inside the run directory.
        PermissionError for anything that is not plainly inside it (``..``, an absolute path, a
        backslash, a symbolic link leading out) or not of :data:`SERVED_SUFFIXES`;
        FileNotFoundError when it is not a regular file."""
        if not rel or "\x00" in rel or "\\" in rel or rel.startswith("/") or re.match(r"[A-Za-z]:", rel):
            raise PermissionError(rel)
        if any(part in ("", ".", "..") for part in rel.split("/")):
            raise PermissionError(rel)
        p = (self.path / rel).resolve()
        if not p.is_relative_to(self.path) or p.suffix.lower() not in SERVED_SUFFIXES:
            raise PermissionError(rel)
        if not p.is_file():
            raise FileNotFoundError(rel)
        return p
