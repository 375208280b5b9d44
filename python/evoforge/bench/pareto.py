"""Pareto ranking benchmark: evoforge.pareto.nondominated_rank against moocore.pareto_rank and
pymoo's compiled best-order sort, on the same points in the same run; plus crowding distance
against pymoo's.

    evoforge bench pareto [--quick] [--sizes 1000 100000] [--objectives 2 3 5] [--out FILE]

Point sets: ``uniform`` in [0, 1]^M; ``simplex``, all on the unit simplex (one front);
``correlated``, t * (1, ..., 1) + N(0, 0.02^2) noise with t ~ U(0, 1) (hundreds of fronts).
Peers run single-threaded (they have no threads); evoforge is timed on one thread and on all.
A peer is skipped at a size where its time at the previous size, scaled by (N ratio)^2, would
exceed ``--peer-limit`` seconds; skipped cells print '-'.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

import evoforge
from evoforge import pareto
from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness

KINDS = ("uniform", "simplex", "correlated")


def point_set(kind: str, n: int, m: int, seed: int = 0) -> np.ndarray:
    """[n, m] float64 points of one of KINDS, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.random((n, m))
    if kind == "simplex":
        x = rng.exponential(size=(n, m))
        return x / x.sum(axis=1, keepdims=True)
    if kind == "correlated":
        return rng.random((n, 1)) + 0.02 * rng.standard_normal((n, m))
    raise ValueError(f"unknown point set {kind!r}; expected one of {KINDS}")


def _peers() -> dict:
    peers = {}
    try:
        import moocore

        peers[f"moocore {moocore.__version__}"] = moocore.pareto_rank
    except ImportError:
        pass
    try:
        import pymoo
        from pymoo.functions import load_function

        bos = load_function("fast_best_order_sort")

        def pymoo_bos(F: np.ndarray) -> np.ndarray:
            ranks = np.empty(len(F), dtype=np.int64)
            for r, front in enumerate(bos(F)):
                ranks[np.asarray(front, dtype=np.int64)] = r
            return ranks

        peers[f"pymoo {pymoo.__version__} BOS"] = pymoo_bos
    except ImportError:
        pass
    return peers


def _crowding_peer():
    try:
        import pymoo
        from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
    except ImportError:
        return None, None
    return f"pymoo {pymoo.__version__}", calc_crowding_distance


def run(sizes, objectives, kinds=KINDS, *, repeats=5, peer_limit_s=20.0, budget_s=5.0) -> dict:
    peers = _peers()
    threads = evoforge.get_num_threads()
    rows, last_peer_time = [], {}
    for kind in kinds:
        for m in objectives:
            for n in sizes:
                F = point_set(kind, n, m, seed=n + m)
                row = {"set": kind, "M": m, "N": n}
                ours = None
                for t in sorted({1, threads}):
                    evoforge.set_num_threads(t)
                    ours = pareto.nondominated_rank(F)
                    row[f"evoforge_{t}t_ms"] = _harness.measure(
                        lambda: pareto.nondominated_rank(F), repeats=repeats, budget_s=budget_s
                    )["median_ms"]
                evoforge.set_num_threads(0)
                row["fronts"] = int(ours.max()) + 1 if n else 0
                for name, fn in peers.items():
                    key = (name, kind, m)
                    prev = last_peer_time.get(key)
                    if prev is not None and prev[1] / 1e3 * (n / prev[0]) ** 2 > peer_limit_s:
                        row[name] = None
                        continue
                    theirs = fn(F)
                    if not np.array_equal(theirs, ours):
                        raise AssertionError(f"evoforge disagrees with {name} on {kind} M={m} N={n}")
                    t_ms = _harness.measure(lambda: fn(F), repeats=repeats, budget_s=budget_s)["median_ms"]
                    row[name] = t_ms
                    last_peer_time[key] = (n, t_ms)
                peer_times = [row[p] for p in peers if row.get(p) is not None]
                best = min(peer_times) if peer_times else None
                row["best_peer_ms"] = best
                row["speedup_1t"] = best / row["evoforge_1t_ms"] if best else None
                row[f"speedup_{threads}t"] = best / row[f"evoforge_{threads}t_ms"] if best else None
                rows.append(row)
                print(
                    f"  {kind:10s} M={m} N={n:>8d}: evoforge {_harness.fmt_ms(row[f'evoforge_{threads}t_ms'])} ms,"
                    f" best peer {_harness.fmt_ms(best)} ms",
                    flush=True,
                )
    return {"peers": list(peers), "threads": threads, "rows": rows}


def run_crowding(sizes, m=3, repeats=5) -> list[dict]:
    name, fn = _crowding_peer()
    out = []
    for n in sizes:
        F = point_set("uniform", n, m, seed=7)
        zeros = np.zeros(n, dtype=np.int32)  # one front: pymoo's function works on one front
        ours = _harness.measure(lambda: pareto.crowding_distance(F, zeros), repeats=repeats)["median_ms"]
        theirs = _harness.measure(lambda: fn(F), repeats=repeats)["median_ms"] if fn else None
        out.append({"N": n, "M": m, "evoforge_ms": ours, "peer": name, "peer_ms": theirs,
                    "speedup": theirs / ours if theirs else None})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench pareto", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N in {1e4, 1e5}, 3 repeats (about a minute)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--objectives", type=int, nargs="+", default=[2, 3, 5])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--peer-limit", type=float, default=20.0, help="skip a peer predicted slower than this (s)")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/pareto.json)")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000])
    repeats = args.repeats or (3 if args.quick else 5)
    peer_limit = min(args.peer_limit, 5.0) if args.quick else args.peer_limit

    meta = _harness.machine()
    print(f"evoforge {meta['evoforge']} on {meta['cpu']} ({meta['cores']} cores), {meta['date']}", flush=True)
    res = run(sizes, args.objectives, args.kinds, repeats=repeats, peer_limit_s=peer_limit)
    crowd = run_crowding([n for n in sizes if n <= 1_000_000], repeats=repeats)
    threads = res["threads"]

    print("\nnondominated_rank, median ms (ratio = best peer / evoforge; > 1 means evoforge is faster)")
    cols = ["set", "M", "N", "fronts", "evoforge 1t"] + ([f"evoforge {threads}t"] if threads > 1 else [])
    cols += res["peers"] + ["ratio 1t"] + ([f"ratio {threads}t"] if threads > 1 else [])
    table = []
    for r in res["rows"]:
        line = [r["set"], r["M"], r["N"], r["fronts"], _harness.fmt_ms(r["evoforge_1t_ms"])]
        if threads > 1:
            line.append(_harness.fmt_ms(r[f"evoforge_{threads}t_ms"]))
        line += [_harness.fmt_ms(r.get(p)) for p in res["peers"]]
        line.append(f"{r['speedup_1t']:.2f}x" if r["speedup_1t"] else "-")
        if threads > 1:
            s = r[f"speedup_{threads}t"]
            line.append(f"{s:.2f}x" if s else "-")
        table.append(line)
    _harness.print_table(cols, table)

    summary = {}
    for n in sizes:
        for t in sorted({1, threads}):
            s = [r[f"speedup_{t}t"] for r in res["rows"] if r["N"] == n and r[f"speedup_{t}t"]]
            if s:
                summary[f"geomean_speedup_N{n}_{t}t"] = math.exp(sum(map(math.log, s)) / len(s))
    print("\ncrowding_distance, one front, M=3, median ms")
    _harness.print_table(
        ["N", "evoforge", "peer", "peer ms", "ratio"],
        [[c["N"], _harness.fmt_ms(c["evoforge_ms"]), c["peer"] or "-", _harness.fmt_ms(c["peer_ms"]),
          f"{c['speedup']:.2f}x" if c["speedup"] else "-"] for c in crowd],
    )
    print("\ngeometric mean of the ratios over the cells of each size:")
    for k, v in summary.items():
        print(f"  {k}: {v:.2f}x")
    out = Path(args.out) if args.out else Path("bench/results/pareto.json")
    _harness.write_json(out, {"benchmark": "pareto", "machine": meta, **res, "crowding": crowd,
                              "summary": summary})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
