"""GPU Pareto ranking benchmark: evoforge.pareto.nondominated_rank on a CUDA tensor against the
CPU kernel (and moocore when importable) on the same points in the same run.

    python -m evoforge.bench.pareto_gpu [--sizes 10000 100000 1000000] [--objectives 2 3 5]
                                        [--out FILE] [--budget 330]

Point sets (evoforge.bench.pareto.point_set): ``uniform`` in [0, 1]^M; ``simplex``, one front;
``correlated``, hundreds to thousands of fronts. Timings are CUDA-event medians after a
warm-up, of the whole call (validation, sort, kernels, scatter) in float64 and float32, and of
the kernels alone (``kernel``: the distinct sorted float64 points already on the device).
CPU times are one call each (its result is the reference). A CPU method is skipped where its
time at the previous size, scaled by the size ratio to the power 2 (evoforge, worst case of
ENS-BS) or 1.5 (moocore), would exceed ``--cpu-limit`` seconds, or once ``--budget`` seconds
have passed (``--budget``); cells not started after ``--deadline`` seconds are skipped. The GPU result must equal every CPU result of the cell; where none ran, the
recurrence rank[i] = 1 + max(rank[j] : j dominates i) (0 if none) is checked on the GPU for a
random sample of points. Results go to bench/results/pareto_gpu.json (and $OUT when set); the
table is printed last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

import evoforge
from evoforge import pareto
from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness
from evoforge.bench.pareto import KINDS, point_set


def _gpu_time(fn, *, repeats: int, budget_s: float) -> tuple[float, object]:
    """Median CUDA-event time (ms) of fn() over up to ``repeats`` runs after one warm-up."""
    import torch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    reps = max(1, min(repeats, int(budget_s / max(warm, 1e-6))))
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        out = fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times), out


def _recurrence_check(F, rank, samples: int, seed: int) -> int:
    """Points of a random sample whose rank breaks rank[i] = 1 + max(rank[dominators]) (0 if
    none); computed on the GPU in chunks. Holding for every point means the ranks are right."""
    import torch

    n = F.shape[0]
    g = torch.Generator(device="cpu").manual_seed(seed)
    idx = torch.randperm(n, generator=g)[: min(samples, n)].to(F.device)
    chunk = max(1, min(64, (1 << 27) // max(1, n * F.shape[1])))
    bad = 0
    for s in range(0, idx.numel(), chunk):
        ii = idx[s : s + chunk]
        P = F[ii][:, None, :]
        dom = (F[None] <= P).all(-1) & (F[None] < P).any(-1)  # [c, N]: j dominates i
        best = torch.where(dom, rank[None].to(torch.int64), -1).max(dim=1).values
        bad += int((best + 1 != rank[ii].to(torch.int64)).sum())
    return bad


def _cpu_methods() -> dict:
    methods = {"evoforge_cpu": (lambda F: pareto.nondominated_rank(F), 2.0)}
    try:
        import moocore

        methods[f"moocore {moocore.__version__}"] = (moocore.pareto_rank, 1.5)
    except ImportError:
        pass
    return methods


def run(sizes, objectives, kinds, *, repeats, cpu_limit_s, budget_s, deadline_s, samples, on_row=None) -> dict:
    import torch

    from evoforge._pareto_cuda import _sorted_unique, cuda_ranker

    t_start = time.perf_counter()
    methods = _cpu_methods()
    last: dict = {}
    rows = []
    for n in sizes:
        for kind in kinds:
            for m in objectives:
                row: dict = {"set": kind, "M": m, "N": n}
                if time.perf_counter() - t_start > deadline_s:
                    print(f"  {kind:10s} M={m} N={n:>8d}: skipped (past the {deadline_s:.0f} s deadline)", flush=True)
                    row["skipped"] = "deadline"
                    rows.append(row)
                    continue
                F = point_set(kind, n, m, seed=n + m)
                cell_budget = 6.0
                F64 = torch.from_numpy(F).cuda()
                F32 = F64.float()
                row["gpu_f64_ms"], r64 = _gpu_time(lambda: pareto.nondominated_rank(F64), repeats=repeats,
                                                   budget_s=cell_budget)
                row["gpu_f32_ms"], r32 = _gpu_time(lambda: pareto.nondominated_rank(F32), repeats=repeats,
                                                   budget_s=cell_budget)
                P = _sorted_unique(F64 + 0.0)[0]
                ranker = cuda_ranker(F64.device)
                row["kernel_f64_ms"], _ = _gpu_time(lambda: ranker(P), repeats=repeats, budget_s=cell_budget)
                row["distinct"] = int(P.shape[0])
                ours = r64.cpu().numpy()
                row["fronts"] = int(ours.max()) + 1 if n else 0
                checked = []
                for name, (fn, power) in methods.items():
                    prev = last.get((name, kind, m))
                    over_budget = time.perf_counter() - t_start > budget_s
                    if over_budget or (prev is not None and prev[1] * (n / prev[0]) ** power > cpu_limit_s):
                        row[name + "_ms"] = None
                        continue
                    t0 = time.perf_counter()
                    theirs = fn(F)
                    dt = time.perf_counter() - t0
                    row[name + "_ms"] = dt * 1e3
                    last[(name, kind, m)] = (n, dt)
                    if not np.array_equal(np.asarray(theirs), ours):
                        raise AssertionError(f"GPU ranks differ from {name} on {kind} M={m} N={n}")
                    checked.append(name)
                # float32: against the CPU kernel on the same float32 points when it ran for float64
                if row.get("evoforge_cpu_ms") is not None:
                    if not np.array_equal(r32.cpu().numpy(), pareto.nondominated_rank(F.astype(np.float32))):
                        raise AssertionError(f"GPU float32 ranks differ from the CPU on {kind} M={m} N={n}")
                elif _recurrence_check(F32, r32, samples, seed=n + m + 1):
                    raise AssertionError(f"sampled GPU float32 ranks break the recurrence on {kind} M={m} N={n}")
                if not checked:
                    bad = _recurrence_check(F64, r64, samples, seed=n + m)
                    if bad:
                        raise AssertionError(f"{bad} sampled GPU ranks break the recurrence on {kind} M={m} N={n}")
                    checked.append(f"recurrence on {min(samples, n)} points")
                row["checked_against"] = checked
                cpu_times = [row[k + "_ms"] for k in methods if row.get(k + "_ms") is not None]
                row["speedup_vs_best_cpu"] = min(cpu_times) / row["gpu_f64_ms"] if cpu_times else None
                rows.append(row)
                print(
                    f"  {kind:10s} M={m} N={n:>8d}: GPU f64 {_harness.fmt_ms(row['gpu_f64_ms'])} ms"
                    f" (kernels {_harness.fmt_ms(row['kernel_f64_ms'])}), f32 {_harness.fmt_ms(row['gpu_f32_ms'])} ms,"
                    f" CPU {_harness.fmt_ms(row.get('evoforge_cpu_ms'))} ms, fronts {row['fronts']},"
                    f" checked: {', '.join(checked)}",
                    flush=True,
                )
                if on_row is not None:
                    on_row(rows, list(methods))
                del F64, F32, P
    return {"cpu_methods": list(methods), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="python -m evoforge.bench.pareto_gpu", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--objectives", type=int, nargs="+", default=[2, 3, 5])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cpu-limit", type=float, default=10.0, help="skip a CPU method predicted slower (s)")
    ap.add_argument("--budget", type=float, default=150.0, help="no CPU runs after this many seconds")
    ap.add_argument("--deadline", type=float, default=240.0, help="no new cells after this many seconds")
    ap.add_argument("--samples", type=int, default=2048, help="points of the recurrence check")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/pareto_gpu.json)")
    args = ap.parse_args(argv)

    import torch

    if not (evoforge.has_cuda() and torch.cuda.is_available()):
        print("pareto_gpu: no GPU (evoforge.has_cuda() or torch.cuda.is_available() is False)")
        return 1
    meta = _harness.machine()
    meta["gpu"] = torch.cuda.get_device_name()
    meta["torch"] = torch.__version__
    meta["torch_cuda"] = torch.version.cuda
    info = evoforge.info()
    meta["evoforge_cuda"] = {k: v for k, v in info.items() if k.startswith("cuda")}
    print(f"evoforge {meta['evoforge']} on {meta['gpu']} + {meta['cpu']} ({meta['cores']} cores), {meta['date']}",
          flush=True)

    outs = [Path(args.out) if args.out else Path("bench/results/pareto_gpu.json")]
    if os.environ.get("OUT"):
        outs.append(Path(os.environ["OUT"]) / "pareto_gpu.json")

    def save(rows, methods):
        for p in outs:
            _harness.write_json(p, {"benchmark": "pareto_gpu", "machine": meta, "cpu_methods": methods,
                                    "rows": rows})

    res = run(args.sizes, args.objectives, args.kinds, repeats=args.repeats, cpu_limit_s=args.cpu_limit,
              budget_s=args.budget, deadline_s=args.deadline, samples=args.samples, on_row=save)
    save(res["rows"], res["cpu_methods"])
    print("wrote " + ", ".join(map(str, outs)))

    print(f"\nnondominated_rank on {meta['gpu']}, median ms (speedup = fastest CPU method / GPU f64;"
          " '-' = not run)")
    cols = ["set", "M", "N", "fronts", "GPU f64", "GPU f32", "kernels f64"]
    cols += [c.replace("_ms", "") for c in (k + "_ms" for k in res["cpu_methods"])] + ["speedup", "checked"]
    table = []
    for r in res["rows"]:
        if r.get("skipped"):
            table.append([r["set"], r["M"], r["N"]] + ["-"] * (len(cols) - 4) + ["skipped"])
            continue
        line = [r["set"], r["M"], r["N"], r["fronts"], _harness.fmt_ms(r["gpu_f64_ms"]),
                _harness.fmt_ms(r["gpu_f32_ms"]), _harness.fmt_ms(r["kernel_f64_ms"])]
        line += [_harness.fmt_ms(r.get(k + "_ms")) for k in res["cpu_methods"]]
        s = r["speedup_vs_best_cpu"]
        line += [f"{s:.1f}x" if s else "-", "cpu" if "evoforge_cpu" in r["checked_against"]
                 else ("moocore" if any(c.startswith("moocore") for c in r["checked_against"]) else "recurrence")]
        table.append(line)
    _harness.print_table(cols, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
