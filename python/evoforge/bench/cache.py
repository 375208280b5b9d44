"""Evaluation cache benchmark: lookups/s and puts/s of evoforge.cache.EvaluationCache from Python,
in memory and in SQLite (WAL, synchronous=NORMAL, a commit per put), one process, one thread.

    python -m evoforge.bench.cache [--quick] [--entries 100000] [--batch 20000] [--dir DIR] [--out FILE]

The cache is warmed with ``--entries`` random 16-byte keys (scalar fitness, a small JSON genome), then
each timed run does ``--batch`` operations:

* ``get hit``: ``get`` of warm keys in random order (each hit also counts a hit and an LRU use);
* ``get miss``: ``get`` of absent keys;
* ``evaluate hit``: ``evaluate(key, fn)`` of warm keys (``fn`` never runs);
* ``put new``: ``put`` of new keys (an insert and, with SQLite, a committed transaction each);
* ``put fold``: ``put`` of warm keys (folds into the running mean and variance).

Targets (issue 3): at least 100,000 lookups/s in memory and 20,000/s with SQLite. The SQLite file
lies in a temporary directory next to the JSON output (``--dir`` to choose another disk).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from pathlib import Path

from evoforge._cli_parser import OneLineParser, int_at_least
from evoforge.bench import _harness
from evoforge.cache import EvaluationCache

TARGETS = {"memory": 100_000, "sqlite": 20_000}  # lookups/s
LOOKUPS = ("get hit", "get miss", "evaluate hit")


def _keys(n: int, rng: random.Random) -> list[bytes]:
    return [rng.randbytes(16) for _ in range(n)]


def run_one(kind: str, cache: EvaluationCache, entries: int, batch: int, repeats: int,
            seed: int = 0) -> list[dict]:
    """Warm ``cache`` with ``entries`` keys, then time each operation over ``batch`` calls."""
    rng = random.Random(seed)
    warm = _keys(entries, rng)
    for i, k in enumerate(warm):
        cache.put(k, float(i), genome={"i": i}, seconds=0.01)
    cache.flush()
    absent = _keys(batch, rng)
    fresh = iter([_keys(batch, rng) for _ in range(repeats + 1)])  # one new batch per run (warm-up too)

    def sample() -> list[bytes]:
        return rng.sample(warm, min(batch, len(warm)))

    hits, fold = sample(), sample()
    get, put, evaluate = cache.get, cache.put, cache.evaluate

    def get_hits():
        for k in hits:
            get(k)

    def get_misses():
        for k in absent:
            get(k)

    def evaluate_hits():
        for k in hits:
            evaluate(k, float)

    def put_new():
        for k in next(fresh):
            put(k, 1.0)

    def put_fold():
        for k in fold:
            put(k, 2.0)

    ops = {"get hit": get_hits, "get miss": get_misses, "evaluate hit": evaluate_hits,
           "put new": put_new, "put fold": put_fold}
    rows = []
    for name, fn in ops.items():
        n = len(hits) if name in ("get hit", "evaluate hit") else len(fold) if name == "put fold" else batch
        t = _harness.measure(fn, repeats=repeats, warmup=1, budget_s=10.0)
        rows.append({"cache": kind, "op": name, "entries": entries, "ops_per_run": n, **t,
                     "ops_per_s": n / (t["median_ms"] / 1e3)})
        print(f"  {kind:6s} {name:12s}: {rows[-1]['ops_per_s']:>12,.0f} /s", flush=True)
    return rows


def run(entries: int, batch: int, repeats: int, directory: Path) -> list[dict]:
    rows = []
    with EvaluationCache() as mem:
        rows += run_one("memory", mem, entries, batch, repeats)
    with tempfile.TemporaryDirectory(prefix="evoforge-cache-bench-", dir=directory) as d:
        with EvaluationCache(d) as db:
            rows += run_one("sqlite", db, entries, batch, repeats)
            rows[-1]["file_mb"] = os.path.getsize(db.path) / 2**20
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench cache", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20,000 entries, batches of 5,000, 3 repeats")
    ap.add_argument("--entries", type=int_at_least(1), default=None, help="warm keys (default 100,000)")
    ap.add_argument("--batch", type=int_at_least(1), default=None, help="operations per timed run (default 20,000)")
    ap.add_argument("--repeats", type=int_at_least(1), default=None)
    ap.add_argument("--dir", default=None, help="where the SQLite file goes (default: next to --out)")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/cache.json)")
    args = ap.parse_args(argv)
    entries = args.entries or (20_000 if args.quick else 100_000)
    batch = args.batch or (5_000 if args.quick else 20_000)
    repeats = args.repeats or (3 if args.quick else 5)
    if entries < 1 or batch < 1 or repeats < 1:
        ap.error("--entries, --batch and --repeats must be >= 1")
    out = Path(args.out) if args.out else Path("bench/results/cache.json")
    directory = Path(args.dir) if args.dir else out.parent
    directory.mkdir(parents=True, exist_ok=True)

    meta = _harness.machine()
    print(f"evoforge {meta['evoforge']} on {meta['cpu']} ({meta['cores']} cores), {meta['date']}", flush=True)
    rows = run(entries, batch, repeats, directory)

    print(f"\nEvaluationCache, {entries:,} warm 16-byte keys, {batch:,} operations per run, one thread")
    table = []
    for r in rows:
        target = TARGETS[r["cache"]] if r["op"] in LOOKUPS else None
        r["target_per_s"] = target
        r["meets_target"] = None if target is None else r["ops_per_s"] >= target
        us_per_op = _harness.fmt_ms(r["median_ms"] / r["ops_per_run"] * 1e3)
        met = {None: "-", True: "yes", False: "NO"}[r["meets_target"]]
        table.append([r["cache"], r["op"], f"{r['ops_per_s']:,.0f}", us_per_op, f"{target:,}" if target else "-", met])
    _harness.print_table(["cache", "operation", "ops/s", "us/op", "target ops/s", "met"], table)
    summary = {f"{r['cache']}_{r['op'].replace(' ', '_')}_per_s": r["ops_per_s"] for r in rows}
    _harness.write_json(out, {"benchmark": "cache", "machine": meta, "entries": entries, "batch": batch,
                              "sqlite_dir": str(directory.resolve()), "rows": rows, "summary": summary})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
