"""Distributed evaluation benchmark: candidates/s of evoforge.evaluate's Ray backend with 1 and 2
actors and the local process pool with 1 and 2 workers, against in-process evaluation, on a
CPU-bound fitness; and the dispatch overhead per candidate.

    python -m evoforge.bench.distributed [--quick] [--ms 20] [--candidates 64] [--out FILE]

Workload: ``--candidates`` genomes per batch, each costing ``--ms`` milliseconds of single-threaded
numpy work (a fixed number of iterations, calibrated once in the driver, so every worker does the
same work). Each backend evaluates the same batch (``backend.evaluate``) after a warm-up; workers
are started before timing (their start-up is a one-off cost of a search, reported separately).
"CPU per worker" is the share of a core each worker process got while timed (from /proc): on a
shared machine it falls below 100 %, and the speed-up with it. "CPU ms/candidate" is the workers'
CPU time per candidate: equal for 1 and 2 workers means no parallel overhead, so the speed-up is
bounded by the cores the machine gives, not by the backend.
Overhead: an empty fitness on ``--overhead-candidates`` genomes, (backend time - in-process time) /
candidates, with the default chunking (a batch is cut into 4 chunks per worker) and with one
candidate per chunk (the worst case: one round trip each).

Targets (issue 7): overhead at most 5 ms per candidate; 2 actors at least 1.7x one on this
CPU-bound fitness. The machine may be shared: the load average is recorded with the timings.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness
from evoforge.evaluate import InProcess, ProcessPool, RayBackend
from evoforge.search import Batch

TARGET_OVERHEAD_MS = 5.0
TARGET_SPEEDUP = 1.7


class Burn:
    """CPU-bound evaluator: ``reps`` passes of elementwise numpy work (single-threaded) per
    candidate, seeded by the genome; fitness float64 [B]."""

    def __init__(self, reps: int, n: int = 4096) -> None:
        self.reps, self.n = int(reps), int(n)

    def evaluate(self, genomes: np.ndarray, batch: object = None) -> np.ndarray:
        out = np.empty(len(genomes))
        base = np.linspace(0.0, 1.0, self.n)
        for i, g in enumerate(np.asarray(genomes, dtype=np.float64)):
            v = base * (1.0 + 1e-3 * g.sum())
            for _ in range(self.reps):
                v = np.sin(v) + 0.5 * v
            out[i] = v.sum()
        return out


def calibrate(ms: float) -> int:
    """Iterations of Burn that take about ``ms`` milliseconds here (0 for ms == 0)."""
    if ms <= 0:
        return 0
    g = np.zeros((1, 8))
    reps = 16
    while True:
        t0 = time.perf_counter()
        Burn(reps).evaluate(g)
        dt = (time.perf_counter() - t0) * 1e3
        if dt > 20 or reps > 1 << 20:
            return max(1, round(reps * ms / dt))
        reps *= 2


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU time of processes (Linux /proc), None where unavailable."""
    total = 0.0
    try:
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench distributed", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="32 candidates, 2 repeats")
    ap.add_argument("--ms", type=float, default=20.0, help="work per candidate in ms (default 20)")
    ap.add_argument("--candidates", type=int, default=None, help="candidates per batch (default 64)")
    ap.add_argument("--overhead-candidates", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-ray", action="store_true", help="skip Ray (process pool only)")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/distributed.json)")
    args = ap.parse_args(argv)
    B = args.candidates or (32 if args.quick else 64)
    repeats = args.repeats or (2 if args.quick else 3)
    if B < 1 or args.ms < 0 or repeats < 1 or args.overhead_candidates < 1:
        ap.error("--candidates, --repeats, --overhead-candidates must be >= 1 and --ms >= 0")
    out = Path(args.out) if args.out else Path("bench/results/distributed.json")

    meta = _harness.machine()
    print(f"evoforge {meta['evoforge']} on {meta['cpu']} ({meta['cores']} cores), {meta['date']}, "
          f"load {load()}", flush=True)
    reps = calibrate(args.ms)
    rng = np.random.default_rng(0)
    genomes = rng.integers(0, 7, size=(B, 8)).astype(np.int32)
    small = rng.integers(0, 7, size=(args.overhead_candidates, 8)).astype(np.int32)

    def timed(backend, X) -> dict:
        """Median batch time, and the share of a core each worker got while timed (a shared machine
        gives less than 100 %: then the speed-up is the machine's limit, not the backend's)."""
        batch = Batch(X)
        pids = backend.pids()
        c0, t0 = cpu_seconds(pids), time.perf_counter()
        t = _harness.measure(lambda: backend.evaluate(X, batch), repeats=repeats, warmup=1, budget_s=60.0)
        c1, wall = cpu_seconds(pids), time.perf_counter() - t0
        ok = c0 is not None and c1 is not None
        t["worker_cpu_share"] = (c1 - c0) / (wall * len(pids)) if ok else None
        t["worker_cpu_ms_per_candidate"] = (c1 - c0) * 1e3 / (len(X) * (t["runs"] + 1)) if ok else None
        return t

    backends = [("process pool", lambda f, n, **kw: ProcessPool(f, n, threads=1, **kw))]
    tmp = None
    if not args.no_ray:
        try:
            import ray
        except ImportError:
            ap.error("Ray is not installed: pip install 'evoforge[ray]', or pass --no-ray")

        tmp = tempfile.mkdtemp(prefix="evoray-", dir="/tmp")  # short: Ray's socket paths must stay short
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", _temp_dir=tmp,
                 log_to_driver=False)
        print(f"ray.init: {time.perf_counter() - t0:.1f} s", flush=True)
        backends.append(("ray", lambda f, n, **kw: RayBackend(f, n, threads=1, **kw)))

    rows = []
    try:
        inproc = timed(InProcess(Burn(reps)), genomes)
        rows.append({"backend": "in-process", "workers": 1, **inproc, "load": load()})
        empty_in = timed(InProcess(Burn(0)), small)
        overhead = []
        for name, make in backends:
            for n in (1, 2):
                t0 = time.perf_counter()
                with make(functools.partial(Burn, reps), n) as b:
                    start_s = time.perf_counter() - t0
                    rows.append({"backend": name, "workers": n, **timed(b, genomes), "start_s": start_s,
                                 "load": load()})
            for chunk in (None, 1):
                with make(functools.partial(Burn, 0), 1, chunk_size=chunk) as b:
                    t = timed(b, small)
                overhead.append({"backend": name, "chunk_size": chunk or "default", **t,
                                 "overhead_ms": (t["median_ms"] - empty_in["median_ms"]) / len(small),
                                 "load": load()})
    finally:
        if tmp is not None:
            import ray

            ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)

    one = {r["backend"]: r["median_ms"] for r in rows if r["workers"] == 1}
    print(f"\nCPU-bound fitness, {args.ms:g} ms per candidate (numpy, one thread), {B} candidates per batch")
    table = []
    for r in rows:
        r["candidates_per_s"] = B / (r["median_ms"] / 1e3)
        r["speedup_vs_one"] = one[r["backend"]] / r["median_ms"]
        r["vs_in_process"] = inproc["median_ms"] / r["median_ms"]
        r["overhead_ms_per_candidate"] = (r["median_ms"] - inproc["median_ms"]) / B if r["workers"] == 1 else None
        table.append([r["backend"], r["workers"], _harness.fmt_ms(r["median_ms"]), f"{r['candidates_per_s']:.1f}",
                      f"{r['speedup_vs_one']:.2f}x", f"{r['vs_in_process']:.2f}x",
                      "-" if r["worker_cpu_share"] is None else f"{100 * r['worker_cpu_share']:.0f}%",
                      "-" if r["worker_cpu_ms_per_candidate"] is None else f"{r['worker_cpu_ms_per_candidate']:.1f}",
                      f"{r['start_s']:.1f}" if "start_s" in r else "-", r["load"]])
    _harness.print_table(["backend", "workers", "batch ms", "candidates/s", "vs 1 worker", "vs in-process",
                          "CPU per worker", "CPU ms/candidate", "start s", "load (1/5/15 min)"], table)
    print(f"\nDispatch overhead: empty fitness, {len(small)} candidates, 1 worker "
          f"(in-process {_harness.fmt_ms(empty_in['median_ms'])} ms per batch)")
    _harness.print_table(["backend", "chunk size", "batch ms", "overhead ms/candidate", "target", "met", "load"],
                         [[o["backend"], o["chunk_size"], _harness.fmt_ms(o["median_ms"]),
                           f"{o['overhead_ms']:.3f}", f"<= {TARGET_OVERHEAD_MS:g}",
                           "yes" if o["overhead_ms"] <= TARGET_OVERHEAD_MS else "NO", o["load"]] for o in overhead])
    summary = {f"{r['backend'].replace(' ', '_')}_{r['workers']}_candidates_per_s": r["candidates_per_s"] for r in rows}
    summary.update({f"{r['backend'].replace(' ', '_')}_speedup_2_vs_1": r["speedup_vs_one"]
                    for r in rows if r["workers"] == 2})
    summary.update({f"{o['backend'].replace(' ', '_')}_overhead_ms_chunk_{o['chunk_size']}": o["overhead_ms"]
                    for o in overhead})
    _harness.write_json(out, {"benchmark": "distributed", "machine": meta, "ms_per_candidate": args.ms,
                              "reps": reps, "candidates": B, "rows": rows, "overhead": overhead,
                              "summary": summary, "uptime": os.popen("uptime").read().strip()})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
