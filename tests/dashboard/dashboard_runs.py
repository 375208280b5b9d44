"""Run directories for the dashboard's tests: real engine runs (NSGA2 on ZDT1, OnePlusLambda on
OneMax) and compression-like ones (the files `evoforge compress` writes), and a served dashboard."""

from __future__ import annotations

import http.client
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest



from evoforge import pareto  # noqa: E402
from evoforge.search import NSGA2, OnePlusLambda  # noqa: E402
from evoforge.search.operators import PointMutation  # noqa: E402
from evoforge.search.problems import one_max, zdt1  # noqa: E402

L_ZDT = 8


def nsga2_run(run_dir: Path, generations: int = 6, ref_point=None, pop: int = 12) -> Path:
    e = NSGA2(np.zeros(L_ZDT), np.ones(L_ZDT), n_objectives=2, pop_size=pop, seed=1, run_dir=run_dir,
              progress=False, ref_point=ref_point)
    e.run(zdt1, generations=generations)
    e.close()
    return run_dir


def opl_run(run_dir: Path, generations: int = 8) -> tuple[Path, OnePlusLambda]:
    e = OnePlusLambda(np.zeros(12, dtype=np.int32), PointMutation(), lower=0, upper=1, n_offspring=8,
                      stages=[(4, None), (1, None)], seed=3, run_dir=run_dir, progress=False)
    e.run(one_max, generations=generations)
    e.close()
    return run_dir, e


def compress_like_run(run_dir: Path) -> Path:
    """The files of a finished `evoforge compress --method sparsity` run, small and made by hand."""
    run_dir.mkdir(parents=True, exist_ok=True)
    layers = ["model.layers.0.q_proj", "model.layers.0.k_proj", "model.layers.1.q_proj"]
    (run_dir / "compress.json").write_text(json.dumps({"method": "sparsity", "target": 0.5}))
    parent = [2, 2, 2]
    lines = []
    for g in range(1, 7):
        rec = {"generation": g, "evaluations": 8 * g, "requested": 9 * g, "cache_hits": g, "seconds": 0.5 * g,
               "best_fitness": 1.0 / g, "improved": g % 2 == 0, "median_fitness": 1.5 / g,
               "stage_best": [1.2 / g, 1.0 / g]}
        if g == 1 or g % 2 == 0:
            parent = [2 + (g % 3) - 1, 2, 2 - (g % 3) + 1]
            rec["parent"] = parent
        lines.append(json.dumps(rec))
    (run_dir / "history.jsonl").write_text("\n".join(lines) + "\n")
    report = {"method": "sparsity", "target": 0.5, "layers": layers, "kl_uniform": 0.31, "kl_search": 0.22,
              "baselines": {"owl": {"kl": 0.27}}, "ppl": {"dense": 10.0, "uniform": 13.0, "owl": 12.0, "evoforge": 11.5},
              "average": 0.5, "generations": 6, "evaluations": 48, "times": {"search": 3.2}, "history": []}
    (run_dir / "report.json").write_text(json.dumps(report))
    (run_dir / "report.md").write_text("# evoforge compress: sparsity 0.5\n")
    return run_dir


def front_like_run(run_dir: Path, n: int = 7) -> Path:
    """The front.json of a finished `evoforge compress --method front` run (three objectives)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shares, bits = [0.0, 0.3, 0.5], [4, 8, 16]
    (run_dir / "compress.json").write_text(json.dumps({"method": "front", "objectives": ["kl", "bytes", "latency"],
                                                       "sparsities": shares, "bits": bits}))
    layers = ["l0", "l1", "l2", "l3"]
    pts = []
    for i in range(n):
        g = [i % 3, (i + 1) % 3, 0, 2, 2, i % 3, 1, 0]
        pts.append({"genome": g, "sparsity": [shares[x] for x in g[:4]], "bits": [bits[x] for x in g[4:]],
                    "search": {"kl": 0.1 * i, "bytes": 1000.0 - 100 * i, "latency": 0.001 * (i % 3 + 1)},
                    "heldout": {"kl": 0.11 * i, "bytes": 1000.0 - 100 * i, "latency": 0.001 * (i % 3 + 1)}})
    uni = [dict(pts[0], uniform=[0.0, 16])]
    (run_dir / "front.json").write_text(json.dumps({"space": "sparsity+quant", "objectives": ["kl", "bytes", "latency"],
                                                    "layers": layers, "points": pts, "uniform": uni,
                                                    "generations": 3, "evaluations": 40, "history": []}))
    hist = [{"generation": g, "evaluations": 10 * g, "requested": 10 * g, "cache_hits": 0, "seconds": g * 0.1,
             "front_size": 3 + g, "best_fitness": [0.0, 500.0, 0.001]} for g in range(1, 4)]
    (run_dir / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hist))
    return run_dir


def cache_rows(run_dir: Path) -> tuple[np.ndarray, np.ndarray, list]:
    """(rowids, objectives [N, W], genomes) of a run's evaluation cache, read independently."""
    con = sqlite3.connect(f"file:{run_dir / 'evaluations.sqlite'}?mode=ro", uri=True)
    rows = con.execute("SELECT rowid, mean, genome FROM entries ORDER BY rowid").fetchall()
    con.close()
    F = np.array([np.frombuffer(r[1], dtype="<f8") for r in rows])
    return np.array([r[0] for r in rows]), F, [json.loads(r[2]) for r in rows]


def expected_front(run_dir: Path) -> set[str]:
    """Ids of the cache's non-dominated rows (what the dashboard's front must hold)."""
    ids, F, _ = cache_rows(run_dir)
    return {f"r{i}" for i in ids[pareto.nondominated_rank(F[:, :2]) == 0]}


def raw_get(port: int, path: str, host: str | None = None, method: str = "GET") -> tuple[int, bytes]:
    """A request with ``path`` sent exactly as given (no client-side normalisation of ``..``)."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        con.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        con.putheader("Host", host or f"127.0.0.1:{port}")
        con.endheaders()
        r = con.getresponse()
        return r.status, r.read()
    finally:
        con.close()


@pytest.fixture
def serve():
    """serve(run_dirs, **kw) -> port of a dashboard served in a thread (stopped after the test)."""
    from evoforge.dashboard import make_server, serve_in_thread

    servers = []

    def start(run_dirs, **kw):
        s = make_server(run_dirs, port=0, **kw)
        serve_in_thread(s)
        servers.append(s)
        return s.server_address[1]

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def get_json(port: int, path: str):
    status, body = raw_get(port, path)
    assert status == 200, (path, status, body[:200])
    return json.loads(body)
