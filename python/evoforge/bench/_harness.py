"""The one timer and reporter of evoforge's benchmarks: warm-up, repeats, median and IQR, a
machine record, a printed table and a JSON file. Peers and evoforge run in the same process."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from evoforge._native import cpu_model


def measure(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1, budget_s: float = 5.0) -> dict:
    """Median wall time of ``fn()`` in ms over up to ``repeats`` runs after ``warmup`` runs.

    Stops repeating once ``budget_s`` seconds were spent (at least one timed run), so that slow
    peers do not dominate a benchmark's wall time; the number of runs is recorded.
    """
    spent = 0.0
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        spent += time.perf_counter() - t0
        if spent > budget_s:
            break
    times: list[float] = []
    while len(times) < max(1, repeats):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt * 1e3)
        spent += dt
        if spent > budget_s:
            break
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {"median_ms": statistics.median(times), "iqr_ms": q[2] - q[0], "runs": len(times)}


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict:
    """Where and when a benchmark ran."""
    import numpy

    import evoforge

    info = evoforge.info()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "evoforge": info["version"],
        "evoforge_threads": info["num_threads"],
        "gpu_visible": info["gpu_visible"],
        "git": _git_sha(),
    }


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def print_table(columns: list[str], rows: list[list[Any]]) -> str:
    """A GitHub-markdown table, printed and returned."""
    cells = [[str(c) for c in columns]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(path: str | os.PathLike, payload: dict) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=1, default=str))
    return p


def shared_data(*parts: str) -> Path:
    """A path under the shared data folder: ``$EVOFORGE_SHARED_DATA`` when set, else
    ``../shared/data`` from the working directory (benchmarks run from the repository root)."""
    root = os.environ.get("EVOFORGE_SHARED_DATA")
    return Path(root if root else Path.cwd().parent / "shared" / "data").joinpath(*parts)


def boxed_hypervolume(F: np.ndarray, uniform: np.ndarray) -> float:
    """Hypervolume of a front's held-out objectives ``F`` [P, 2] in the box of the uniform
    configurations' ``uniform`` [U, 2] (reference point 1.1 x their worst; points beyond it left
    out), normalised to the box: a common reference for fronts of one space that a point beyond the
    uniform ones (an all but empty model) cannot move."""
    from evoforge import pareto

    ref = np.asarray(uniform, dtype=np.float64).max(axis=0) * 1.1
    F = np.asarray(F, dtype=np.float64)
    inside = F[(F < ref).all(axis=1)]
    return float(pareto.hypervolume(inside / ref, np.ones(2))) if len(inside) else 0.0


def screened_half(kw: dict, factor: int, evaluations: int) -> dict:
    """The settings of a screened front search given at most half the ``evaluations`` of the
    unscreened one of ``kw`` (pop_size, offspring, generations; its first population may hold more
    than pop_size: every uniform configuration): a quarter of the offspring per generation,
    ``factor`` times as many generated, as many generations as fit (a smaller batch lets the
    predictor, refitted each generation, lead more often)."""
    off = kw["offspring"]
    first = evaluations - (kw["generations"] - 1) * off
    off_s = max(1, off // 4)
    return {"screen": factor, "offspring": off_s, "generations": 1 + max(0, evaluations // 2 - first) // off_s}
