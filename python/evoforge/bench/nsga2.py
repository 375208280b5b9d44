"""NSGA-II generation benchmark: one generation's survival and variation (evaluation excluded)
of evoforge.search.NSGA2 against pymoo's NSGA2, both driven by ask/tell on DTLZ2 (M = 3, L = 12).

    evoforge bench nsga2 [--quick] [--pops 100 1000 10000] [--generations 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import evoforge
from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness
from evoforge.search import NSGA2
from evoforge.search.problems import dtlz2

L, M = 12, 3


def time_ours(pop: int, generations: int, seed: int = 0) -> float:
    """Median ms of ask() + tell() per generation after the initial one."""
    e = NSGA2(np.zeros(L), np.ones(L), n_objectives=M, pop_size=pop, seed=seed, progress=False)
    b = e.ask()
    e.tell(b, dtlz2(b.genomes))
    times = []
    for _ in range(generations):
        t0 = time.perf_counter()
        b = e.ask()
        t1 = time.perf_counter()
        F = dtlz2(b.genomes)  # evaluation, not timed
        t2 = time.perf_counter()
        e.tell(b, F)
        times.append((t1 - t0 + time.perf_counter() - t2) * 1e3)
    return statistics.median(times)


def time_pymoo(pop: int, generations: int, seed: int = 0) -> float | None:
    try:
        from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
        from pymoo.core.problem import Problem
    except ImportError:
        return None

    class Dtlz2(Problem):
        def __init__(self):
            super().__init__(n_var=L, n_obj=M, xl=0.0, xu=1.0)

        def _evaluate(self, X, out, *args, **kwargs):
            out["F"] = dtlz2(X)

    problem = Dtlz2()
    alg = PymooNSGA2(pop_size=pop)
    alg.setup(problem, termination=("n_gen", generations + 10), seed=seed, verbose=False)
    infills = alg.ask()
    alg.evaluator.eval(problem, infills)
    alg.tell(infills=infills)
    times = []
    for _ in range(generations):
        t0 = time.perf_counter()
        infills = alg.ask()
        t1 = time.perf_counter()
        alg.evaluator.eval(problem, infills)
        t2 = time.perf_counter()
        alg.tell(infills=infills)
        times.append((t1 - t0 + time.perf_counter() - t2) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench nsga2", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="populations 100 and 1000, 3 generations")
    ap.add_argument("--pops", type=int, nargs="+", default=None)
    ap.add_argument("--generations", type=int, default=None)
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/nsga2.json)")
    args = ap.parse_args(argv)
    pops = args.pops or ([100, 1000] if args.quick else [100, 1000, 10000])
    gens = args.generations or (3 if args.quick else 5)

    meta = _harness.machine()
    try:
        import pymoo

        peer = f"pymoo {pymoo.__version__} NSGA2"
    except ImportError:
        peer = None
    print(f"evoforge {meta['evoforge']} on {meta['cpu']} ({meta['cores']} cores), {meta['date']}", flush=True)
    rows = []
    for pop in pops:
        ours = time_ours(pop, gens)
        theirs = time_pymoo(pop, gens)
        rows.append({"pop": pop, "evoforge_ms": ours, "peer": peer, "peer_ms": theirs,
                     "speedup": theirs / ours if theirs else None, "threads": evoforge.get_num_threads()})
        print(f"  pop {pop}: evoforge {ours:.3g} ms, {peer} {_harness.fmt_ms(theirs)} ms", flush=True)
    print(f"\nNSGA-II generation on DTLZ2 (M={M}, L={L}), survival + variation, median ms per generation")
    _harness.print_table(
        ["pop", "evoforge", peer or "peer", "ratio"],
        [[r["pop"], _harness.fmt_ms(r["evoforge_ms"]), _harness.fmt_ms(r["peer_ms"]),
          f"{r['speedup']:.1f}x" if r["speedup"] else "-"] for r in rows],
    )
    out = Path(args.out) if args.out else Path("bench/results/nsga2.json")
    _harness.write_json(out, {"benchmark": "nsga2", "machine": meta, "generations": gens, "rows": rows})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
