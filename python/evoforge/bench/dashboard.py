"""Dashboard benchmark: the server's time for a first paint and for each live update of a large run.

The run is written as an engine writes it: ``history.jsonl`` (G generations, no recorded
hypervolume, so the dashboard computes one per generation from the cache) and an
``evaluations.sqlite`` cache of E evaluations of two objectives through ``EvaluationCache``, of
which F lie on a non-dominated front (ZDT1's, spread over the generations) and the rest behind it.

First paint: a fresh server answers everything the page asks for at load (``/``, app.js, app.css,
plotly.min.js, ``/api/runs``, ``/api/run/0``), over HTTP on 127.0.0.1. Live update: one more
generation is appended (untimed), then ``/api/runs`` and ``/api/run/0`` (what a poll fetches when
a run changed). Targets: first paint < 1 s, an update < 200 ms.

    evoforge bench dashboard [--quick] [--evaluations 100000] [--front 2000] [--generations 100] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from evoforge._cli_parser import OneLineParser, int_at_least
from evoforge.bench import _harness
from evoforge.cache import EvaluationCache
from evoforge.hashing import Hasher

L = 30  # genes per genome (stored as JSON in the cache, as the engines store them)


def _generation(rng: np.random.Generator, g: int, n: int, n_front: int, n_gen: int) -> np.ndarray:
    """Objectives of generation g's n evaluations: n_front // n_gen of them on ZDT1's front
    (f2 = 1 - sqrt(f1)), the rest behind it."""
    k = n_front // n_gen + (1 if g < n_front % n_gen else 0)
    f1 = rng.random(n)
    f2 = 1.0 - np.sqrt(f1) + rng.uniform(0.05, 1.0, n)
    f1[:k] = (np.arange(k) * n_gen + g + 0.5) / n_front  # distinct points along the front
    f2[:k] = 1.0 - np.sqrt(f1[:k])
    return np.column_stack([f1, f2])


def append_generation(run_dir: Path, cache: EvaluationCache, rng: np.random.Generator, g: int, state: dict,
                      per_gen: int, n_front: int, n_gen: int) -> None:
    """Evaluations of generation g into the cache, then its history line (as Engine._end_generation)."""
    F = _generation(rng, g, per_gen, n_front, n_gen)
    genomes = rng.random((per_gen, L))
    for i in range(per_gen):
        key = Hasher().update((g, i)).digest()
        cache.put(key, F[i], genome=genomes[i])
    state["evaluations"] += per_gen
    state["front_min"] = np.minimum(state.get("front_min", F.min(axis=0)), F.min(axis=0))
    rec = {"generation": g + 1, "evaluations": state["evaluations"], "requested": state["evaluations"],
           "cache_hits": 0, "seconds": round(0.5 * (g + 1), 6), "front_size": min(n_front, state["evaluations"]),
           "best_fitness": state["front_min"].tolist()}
    with open(run_dir / "history.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def first_paint_ms(run_dir: Path) -> tuple[float, dict]:
    """ms for a fresh server to answer the page's first requests; and the sizes of the answers."""
    from evoforge.dashboard import make_server, serve_in_thread

    server = make_server([run_dir], port=0)
    serve_in_thread(server)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    sizes = {}
    try:
        t0 = time.perf_counter()
        for path in ("", "static/app.js", "static/app.css", "static/plotly.min.js", "api/runs", "api/run/0"):
            sizes[path or "/"] = len(_get(base + path))
        ms = (time.perf_counter() - t0) * 1e3
    finally:
        server.shutdown()
        server.server_close()
    return ms, sizes


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench dashboard", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10,000 evaluations, a 500-point front, 3 repeats")
    ap.add_argument("--evaluations", type=int_at_least(100), default=None)
    ap.add_argument("--front", type=int_at_least(2), default=None)
    ap.add_argument("--generations", type=int_at_least(2), default=100)
    ap.add_argument("--repeats", type=int_at_least(1), default=None)
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/dashboard.json)")
    args = ap.parse_args(argv)
    n_eval = args.evaluations or (10_000 if args.quick else 100_000)
    n_front = args.front or (500 if args.quick else 2000)
    n_gen = args.generations
    repeats = args.repeats or (3 if args.quick else 5)
    per_gen = max(1, n_eval // n_gen)
    from evoforge.dashboard import Dashboard

    meta = _harness.machine()
    print(f"evoforge {meta['evoforge']} on {meta['cpu']} ({meta['cores']} cores), {meta['date']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="evoforge-bench-dashboard-") as tmp:
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        rng = np.random.default_rng(0)
        state = {"evaluations": 0}
        t0 = time.perf_counter()
        cache = EvaluationCache(run_dir)
        for g in range(n_gen):
            append_generation(run_dir, cache, rng, g, state, per_gen, n_front, n_gen)
        cache.flush()
        print(f"  wrote {state['evaluations']} evaluations in {n_gen} generations ({time.perf_counter() - t0:.1f} s)",
              flush=True)
        paints = []
        for _ in range(repeats):
            ms, sizes = first_paint_ms(run_dir)
            paints.append(ms)
        dash = Dashboard([run_dir])
        t0 = time.perf_counter()
        dash.runs_json()
        detail = dash.detail(0)
        cold_ms = (time.perf_counter() - t0) * 1e3
        front = detail["front"]
        updates = []
        for k in range(repeats):
            append_generation(run_dir, cache, rng, n_gen + k, state, per_gen, n_front, n_gen)
            cache.flush()
            t0 = time.perf_counter()
            body = json.dumps(dash.runs_json()) + json.dumps(dash.detail(0))
            updates.append((time.perf_counter() - t0) * 1e3)
        cache.close()
        hv = detail["series"].get("hypervolume") or {}
    row = {"evaluations": n_eval, "generations": n_gen, "front_points": front["total"], "front_shown": front["shown"],
           "hypervolume_points": len(hv.get("value", [])),
           "first_paint_ms": statistics.median(paints), "first_paint_runs": len(paints),
           "cold_api_ms": cold_ms, "update_ms": statistics.median(updates), "update_max_ms": max(updates),
           "update_runs": len(updates), "update_bytes": len(body), "sizes": sizes}
    print(f"\nDashboard of one run: {n_eval} evaluations, {n_gen} generations, a {front['total']}-point front "
          f"(server side, 127.0.0.1)")
    _harness.print_table(
        ["what", "ms (median)", "target"],
        [["first paint (6 requests, fresh server)", _harness.fmt_ms(row["first_paint_ms"]), "< 1000"],
         ["  of which /api/runs + /api/run/0 (fresh Dashboard)", _harness.fmt_ms(cold_ms), ""],
         ["live update (/api/runs + /api/run/0 after a generation)", _harness.fmt_ms(row["update_ms"]), "< 200"],
         ["  slowest update", _harness.fmt_ms(row["update_max_ms"]), ""]])
    out = Path(args.out) if args.out else Path("bench/results/dashboard.json")
    _harness.write_json(out, {"benchmark": "dashboard", "machine": meta, "rows": [row]})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
