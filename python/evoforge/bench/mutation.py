"""Mutation benchmark: offspring per second of evoforge's level switch and Gaussian mutation against
the way peers do it, on the same machine in the same process.

    evoforge bench mutation [--quick] [--sizes 1000 10000 100000] [--genes 224 1000 10000] [--out FILE]
    evoforge bench mutation --quick

Level switch, EvoPress's setting: P distinct offspring of one parent (levels in [0, 8], sum 4 L),
K = 3, each offspring different from the parent and from the others, against
  * ``python loop``: the EvoPress reference's way, one offspring at a time in Python with the
    ``random`` module: a ``copy.deepcopy`` of the parent list, rejection of invalid pairs, of the
    parent and of offspring already in the list. Timed on at most ``--loop-cap`` offspring and
    scaled linearly to P (its duplicate check is quadratic, so this favours the loop).
  * ``numpy``: vectorised, all offspring at once (rejection by masks), then duplicates and copies of
    the parent found with ``np.unique(axis=0)`` and redrawn until none is left: the same contract.
  * ``numpy, no distinctness``: the same without the duplicate check (reported, not compared).
Gaussian: ``x + sigma * z`` on a float32 [P, L] population against ``x.add(torch.randn(P, L),
alpha=sigma)`` with torch on the same number of threads as evoforge.
evoforge is timed on one thread and on all threads; ratios are peer time / evoforge time on all
threads (> 1 means evoforge is faster). Cells with P * L above ``--max-elements`` are skipped, and
numpy's distinct version where its time at the previous P, scaled by (P ratio)^2, exceeds
``--peer-limit`` seconds ('-').
"""

from __future__ import annotations

import argparse
import copy
import random
from pathlib import Path

import numpy as np

import evoforge
from evoforge import mutation
from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness

LOWER, UPPER, K = 0, 8, 3


def make_parent(L: int, seed: int = 0) -> np.ndarray:
    """[L] int32 levels in [0, 8] with sum 4 L: L random +1/-1 switches from all 4s."""
    rng = np.random.default_rng(seed)
    x = np.full(L, 4, dtype=np.int32)
    for _ in range(L):
        i, j = rng.integers(0, L, 2)
        if i != j and x[i] < UPPER and x[j] > LOWER:
            x[i] += 1
            x[j] -= 1
    return x


def evopress_loop(parent: list[int], n: int, rng: random.Random) -> list[list[int]]:
    """n distinct offspring of one parent, the way the EvoPress reference writes its mutation loop."""
    offspring_list: list[list[int]] = []
    L = len(parent)
    while len(offspring_list) < n:
        offspring = copy.deepcopy(parent)
        num_flips = min(rng.randint(1, K), rng.randint(1, K))
        for _ in range(num_flips):
            while True:
                decr_id = rng.randint(0, L - 1)
                if offspring[decr_id] - 1 < LOWER:
                    continue
                incr_id = rng.randint(0, L - 1)
                if incr_id == decr_id or offspring[incr_id] + 1 > UPPER:
                    continue
                offspring[decr_id] -= 1
                offspring[incr_id] += 1
                break
        if offspring == parent or offspring in offspring_list:
            continue
        offspring_list.append(offspring)
    return offspring_list


def _numpy_switch_rows(child: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> None:
    L = child.shape[1]
    n = np.minimum(rng.integers(1, K + 1, rows.size), rng.integers(1, K + 1, rows.size))
    for s in range(K):
        todo = rows[n > s]
        while todo.size:
            i, j = rng.integers(0, L, todo.size), rng.integers(0, L, todo.size)
            ok = (i != j) & (child[todo, i] < UPPER) & (child[todo, j] > LOWER)
            r = todo[ok]
            child[r, i[ok]] += 1
            child[r, j[ok]] -= 1
            todo = todo[~ok]


def numpy_level_switch(parent: np.ndarray, P: int, rng: np.random.Generator, distinct: bool = True) -> np.ndarray:
    """P offspring of one parent at once; with ``distinct``, copies are redrawn until none is left."""
    child = np.tile(parent, (P, 1))
    _numpy_switch_rows(child, np.arange(P), rng)
    while distinct:
        _, first = np.unique(child, axis=0, return_index=True)
        bad = np.ones(P, dtype=bool)
        bad[first] = False
        bad |= (child == parent).all(axis=1)
        redo = np.nonzero(bad)[0]
        if redo.size == 0:
            break
        child[redo] = parent
        _numpy_switch_rows(child, redo, rng)
    return child


def _ours(fn, threads: int, repeats: int, budget_s: float) -> float:
    evoforge.set_num_threads(threads)
    try:
        return _harness.measure(fn, repeats=repeats, budget_s=budget_s)["median_ms"]
    finally:
        evoforge.set_num_threads(0)


def run_level_switch(sizes, genes, *, repeats, loop_cap, max_elements, budget_s, peer_limit_s) -> list[dict]:
    threads = evoforge.get_num_threads()
    rows = []
    for L in genes:
        parent = make_parent(L)
        last_numpy = None  # (P, ms): numpy's distinctness loop grows about quadratically in P
        for P in sizes:
            if P * L > max_elements:
                continue
            row = {"op": "level_switch", "P": P, "L": L}
            for t in sorted({1, threads}):
                row[f"evoforge_{t}t_ms"] = _ours(
                    lambda: mutation.level_switch(parent, LOWER, UPPER, n_offspring=P, seed=1), t, repeats, budget_s)
            out = mutation.level_switch(parent, LOWER, UPPER, n_offspring=P, seed=1)
            assert (out.sum(axis=1) == parent.sum()).all() and len(np.unique(out, axis=0)) == P
            rng = np.random.default_rng(2)
            if last_numpy is not None and last_numpy[1] / 1e3 * (P / last_numpy[0]) ** 2 > peer_limit_s:
                row["numpy_ms"] = None
            else:
                row["numpy_ms"] = _harness.measure(lambda: numpy_level_switch(parent, P, rng), repeats=repeats,
                                                   warmup=0, budget_s=budget_s)["median_ms"]
                last_numpy = (P, row["numpy_ms"])
            row["numpy_no_distinct_ms"] = _harness.measure(lambda: numpy_level_switch(parent, P, rng, False),
                                                           repeats=repeats, budget_s=budget_s)["median_ms"]
            n_loop = min(P, loop_cap)
            plist = parent.tolist()
            prng = random.Random(3)
            t_loop = _harness.measure(lambda: evopress_loop(plist, n_loop, prng), repeats=max(1, repeats // 2),
                                      warmup=0, budget_s=budget_s)["median_ms"]
            row["python_loop_ms"] = t_loop * P / n_loop
            row["python_loop_timed_offspring"] = n_loop
            best = row[f"evoforge_{threads}t_ms"]
            row["offspring_per_s"] = P / (best / 1e3)
            row["vs_python_loop"] = row["python_loop_ms"] / best
            row["vs_numpy"] = row["numpy_ms"] / best if row["numpy_ms"] else None
            row["vs_numpy_no_distinct"] = row["numpy_no_distinct_ms"] / best
            rows.append(row)
            print(f"  level_switch P={P:>6d} L={L:>5d}: evoforge {_harness.fmt_ms(best)} ms, numpy "
                  f"{_harness.fmt_ms(row['numpy_ms'])} ms, python loop {_harness.fmt_ms(row['python_loop_ms'])} ms",
                  flush=True)
    return rows


def run_gaussian(sizes, genes, *, repeats, max_elements, budget_s) -> list[dict]:
    import torch

    threads = evoforge.get_num_threads()
    rows = []
    old = torch.get_num_threads()
    for L in genes:
        for P in sizes:
            if P * L > max_elements:
                continue
            x = np.random.default_rng(0).random((P, L), dtype=np.float32)
            xt = torch.from_numpy(x)
            row = {"op": "gaussian", "P": P, "L": L}
            for t in sorted({1, threads}):
                row[f"evoforge_{t}t_ms"] = _ours(lambda: mutation.gaussian(x, 0.1, seed=1), t, repeats, budget_s)
                torch.set_num_threads(t)
                try:
                    row[f"torch_{t}t_ms"] = _harness.measure(lambda: xt.add(torch.randn(P, L), alpha=0.1),
                                                             repeats=repeats, budget_s=budget_s)["median_ms"]
                finally:
                    torch.set_num_threads(old)
                row[f"vs_torch_{t}t"] = row[f"torch_{t}t_ms"] / row[f"evoforge_{t}t_ms"]
            row["offspring_per_s"] = P / (row[f"evoforge_{threads}t_ms"] / 1e3)
            rows.append(row)
            print(f"  gaussian     P={P:>6d} L={L:>5d}: evoforge {_harness.fmt_ms(row[f'evoforge_{threads}t_ms'])} ms,"
                  f" torch {_harness.fmt_ms(row[f'torch_{threads}t_ms'])} ms", flush=True)
    return rows


def run_cuda(sizes, genes, *, repeats, max_elements, budget_s) -> list[dict]:
    """On the GPU: Gaussian mutation against torch.randn + add, level switch (one parent, P offspring)
    and Deep GA seeds_to_params (P genomes of 10 seeds); each call timed to its end (synchronised)."""
    import torch

    from evoforge import deepga

    def timed(fn):
        def run():
            fn()
            torch.cuda.synchronize()

        return _harness.measure(run, repeats=repeats, budget_s=budget_s)["median_ms"]

    rows = []
    for L in genes:
        for P in sizes:
            if P * L > max_elements:
                continue
            x = torch.rand((P, L), device="cuda")
            row = {"P": P, "L": L, "gpu": torch.cuda.get_device_name()}
            row["gaussian_ms"] = timed(lambda: mutation.gaussian(x, 0.1, seed=1))
            row["torch_randn_add_ms"] = timed(lambda: x.add(torch.randn(P, L, device="cuda"), alpha=0.1))
            row["gaussian_vs_torch"] = row["torch_randn_add_ms"] / row["gaussian_ms"]
            parent = torch.from_numpy(make_parent(L)).cuda()
            row["level_switch_ms"] = timed(lambda: mutation.level_switch(parent, LOWER, UPPER, n_offspring=P, seed=1))
            theta0 = torch.zeros(L, device="cuda")
            lists = np.arange(10 * P, dtype=np.uint64).reshape(P, 10)  # an array: no Python-list parsing
            row["seeds_to_params_10_ms"] = timed(lambda: deepga.seeds_to_params(theta0, lists, 0.002))
            rows.append(row)
            print(f"  cuda P={P:>6d} L={L:>5d}: gaussian {_harness.fmt_ms(row['gaussian_ms'])} ms, torch "
                  f"{_harness.fmt_ms(row['torch_randn_add_ms'])} ms, level_switch {_harness.fmt_ms(row['level_switch_ms'])}"
                  f" ms, seeds_to_params x10 {_harness.fmt_ms(row['seeds_to_params_10_ms'])} ms", flush=True)
    return rows


def _print_cpu(ls, ga, ts, threads) -> None:
    print(f"\nlevel_switch (K=3, P distinct offspring of one parent), median ms; ratio = peer / evoforge {threads}t")
    cols = ["P", "L"] + [f"evoforge {t}t" for t in ts] + ["offspring/s", "numpy", "numpy no-distinct",
                                                          "python loop", "vs numpy", "vs numpy no-distinct",
                                                          "vs python loop"]
    _harness.print_table(cols, [
        [r["P"], r["L"]] + [_harness.fmt_ms(r[f"evoforge_{t}t_ms"]) for t in ts]
        + [f"{r['offspring_per_s']:.3g}", _harness.fmt_ms(r["numpy_ms"]), _harness.fmt_ms(r["numpy_no_distinct_ms"]),
           _harness.fmt_ms(r["python_loop_ms"]), f"{r['vs_numpy']:.0f}x" if r["vs_numpy"] else "-",
           f"{r['vs_numpy_no_distinct']:.1f}x", f"{r['vs_python_loop']:.0f}x"] for r in ls])
    print("\ngaussian (float32, sigma 0.1, all genes), median ms; ratio = torch.randn + add / evoforge, same threads")
    cols = ["P", "L"] + [c for t in ts for c in (f"evoforge {t}t", f"torch {t}t", f"ratio {t}t")]
    _harness.print_table(cols, [
        [r["P"], r["L"]] + [c for t in ts for c in (_harness.fmt_ms(r[f"evoforge_{t}t_ms"]),
                                                    _harness.fmt_ms(r[f"torch_{t}t_ms"]), f"{r[f'vs_torch_{t}t']:.2f}x")]
        for r in ga])


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench mutation", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="P in {1e3, 1e4}, L in {224, 1000}, 3 repeats")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="population sizes P")
    ap.add_argument("--genes", type=int, nargs="+", default=None, help="genome lengths L")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--loop-cap", type=int, default=None, help="offspring timed for the Python loop (default 2000)")
    ap.add_argument("--max-elements", type=float, default=1e8, help="skip cells with P * L above this")
    ap.add_argument("--peer-limit", type=float, default=20.0,
                    help="skip numpy's distinct version where predicted slower than this (s)")
    ap.add_argument("--cuda", action="store_true", help="also time the CUDA kernels (needs a GPU)")
    ap.add_argument("--cuda-only", action="store_true", help="time only the CUDA kernels")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/mutation.json)")
    args = ap.parse_args(argv)
    sizes = args.sizes or ([1_000, 10_000] if args.quick else [1_000, 10_000, 100_000])
    genes = args.genes or ([224, 1_000] if args.quick else [224, 1_000, 10_000])
    repeats = args.repeats or (3 if args.quick else 5)
    loop_cap = args.loop_cap or (500 if args.quick else 2000)
    budget_s = 2.0 if args.quick else 5.0
    import torch

    meta = _harness.machine()
    meta["torch"] = torch.__version__
    threads = evoforge.get_num_threads()
    print(f"evoforge {meta['evoforge']} on {meta['cpu']} ({meta['cores']} cores, {threads} threads), {meta['date']}",
          flush=True)
    ls, ga, cu = [], [], []
    if not args.cuda_only:
        ls = run_level_switch(sizes, genes, repeats=repeats, loop_cap=loop_cap, max_elements=args.max_elements,
                              budget_s=budget_s,
                              peer_limit_s=min(args.peer_limit, 5.0) if args.quick else args.peer_limit)
        ga = run_gaussian(sizes, genes, repeats=repeats, max_elements=args.max_elements, budget_s=budget_s)
    if args.cuda or args.cuda_only:
        if not evoforge.has_cuda():
            raise SystemExit("--cuda: no GPU visible or evoforge built without CUDA")
        cu = run_cuda(sizes, genes, repeats=repeats, max_elements=args.max_elements, budget_s=budget_s)

    ts = sorted({1, threads})
    if ls:
        _print_cpu(ls, ga, ts, threads)
    if cu:
        print("\nCUDA, median ms (synchronised); ratio = torch.randn + add / evoforge gaussian")
        _harness.print_table(["P", "L", "gaussian", "torch randn+add", "ratio", "level_switch", "seeds_to_params x10"], [
            [r["P"], r["L"], _harness.fmt_ms(r["gaussian_ms"]), _harness.fmt_ms(r["torch_randn_add_ms"]),
             f"{r['gaussian_vs_torch']:.2f}x", _harness.fmt_ms(r["level_switch_ms"]),
             _harness.fmt_ms(r["seeds_to_params_10_ms"])] for r in cu])
    out = Path(args.out) if args.out else Path("bench/results/mutation.json")
    peers = {"python_loop": "EvoPress-style Python loop (random, copy.deepcopy)", "numpy": f"numpy {np.__version__}",
             "torch": f"torch {torch.__version__} randn + add"}
    _harness.write_json(out, {"benchmark": "mutation", "machine": meta, "threads": threads, "peers": peers,
                              "level_switch": ls, "gaussian": ga, "cuda": cu})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
