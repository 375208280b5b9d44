"""Evolutionary merging (issue 18): evolved TIES / DARE merges of two experts against a uniform
grid of the same method and against the experts; merging in place against writing each candidate
to disk and loading it; the asynchronous mode's worker occupancy against the generation barrier.

    evoforge bench merge [--quick] [--parts quality,throughput,async,kernel] [--evaluations N] [--work DIR]

SmolLM2-135M and its experts from ``evoforge bench make_experts`` (``--quick``: stories260k), the
tasks the held-out 10% of tinyshakespeare and of WikiText-2 (no expert trained on them).

quality
    ``--methods`` (default ties, dare-ties) searched by CMA-ES (``--evaluations``); held-out loss
    and perplexity per task of the base, each expert, every recipe of the uniform grid (weights x
    densities) and the evolved recipe. Target: evolved mean below every grid recipe's and both
    experts'.
throughput
    The share of a candidate's evaluation spent merging (target: at most 10%), and candidates per
    hour merging in place against merging, writing the model (safetensors) and loading it back
    (``save_pretrained`` / ``from_pretrained``), and against that plus reading the source models'
    tensors from disk for each candidate (as a disk-based merge tool does), on the same candidates
    and the same fitness (target: at least 5x).
async
    CMA-ES on a process pool of 2 workers, with the generation barrier and in the asynchronous
    mode, the same number of evaluations: each worker's busy share of the wall time (target: at
    least 90% asynchronous, where the barrier mode does not reach it).
kernel
    The native merge alone (``evoforge.merging.merge_deltas``) on ``--kernel-n`` random float32
    parameters x 2 models, evoforge's thread count, median of ``--kernel-repeats``: plain weighted
    sum, TIES with precomputed thresholds (as the merger runs it), TIES selecting its thresholds,
    DARE-TIES. Needs no experts.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from evoforge._cli_parser import OneLineParser, int_at_least
from evoforge.bench import _harness, make_experts

PARTS = ("quality", "throughput", "async", "kernel")


def _tasks(out: Path) -> list:
    from evoforge.merge import Task

    return [Task(t, text=str(test)) for t, (_, test) in make_experts.split_texts(out).items()]


def _config(quick: bool, **kw: Any) -> Any:
    from evoforge.merge import MergeConfig

    tok = str(make_experts.TOK) if quick else None
    return MergeConfig(**{"n_search": 8, "n_heldout": 16, "seq_len": 128, "tokenizer": tok, "progress": False, **kw})


def part_quality(base: str, experts: list[str], tasks: list, quick: bool, methods: list[str], evaluations: int,
                 work: Path, groups: int | None = None) -> list[dict]:
    from evoforge.merge import merge

    out = []
    for m in methods:
        rd = work / m
        shutil.rmtree(rd, ignore_errors=True)
        t0 = time.perf_counter()
        res = merge(base, experts, tasks, _config(quick, method=m, evaluations=evaluations, groups=groups,
                                                  run_dir=str(rd)))
        grid = res.baselines["grid"]
        best_grid = min(float(np.mean(g["heldout"])) for g in grid)
        row = {"method": m, "wall_s": time.perf_counter() - t0, "evaluations": res.evaluations, "tasks": res.tasks,
               "evolved": res.heldout, "base": res.baselines["base"], "experts": res.baselines["experts"],
               "grid": grid, "best_grid_heldout_mean": best_grid, "evolved_mean": float(np.mean(res.heldout)),
               "beats_every_grid_recipe": float(np.mean(res.heldout)) < best_grid,
               "beats_both_experts": all(float(np.mean(res.heldout)) < float(np.mean(v))
                                         for v in res.baselines["experts"].values()),
               "apply_share": res.apply_s / (res.apply_s + res.eval_s), "table": res.table()}
        print(f"{m}: {res.evaluations} evaluations in {row['wall_s']:.0f} s; evolved mean held-out "
              f"{row['evolved_mean']:.4f}, best grid recipe {best_grid:.4f}, experts "
              f"{', '.join(f'{float(np.mean(v)):.4f}' for v in res.baselines['experts'].values())}; merging "
              f"{100 * row['apply_share']:.1f}% of evaluation time", flush=True)
        print(res.table(), flush=True)
        out.append(row)
    return out


def part_throughput(base: str, experts: list[str], tasks: list, quick: bool, n: int) -> dict:
    """The same ``n`` random TIES recipes, merged in place and scored, and merged, saved, loaded
    back and scored; seconds per candidate of each phase."""
    from transformers import AutoModelForCausalLM

    from evoforge.merge import Merger
    from evoforge.merge.run import _build, _default_groups
    from evoforge.merge.tasks import task_losses

    config = _config(quick, method="ties")
    b, ex, data = _build(base, experts, tasks, config, None)
    merger = Merger(b, ex, groups=_default_groups(config, b))
    rng = np.random.default_rng(0)
    recipes = [merger.recipe("ties", rng.uniform(0.2, 1, (merger.n_groups, 2)), rng.uniform(0.2, 1, (merger.n_groups, 2)))
               for _ in range(n)]
    merger.apply(recipes[0])  # once before timing: TIES sorts the task vectors' magnitudes on first use
    t = {"apply": 0.0, "score": 0.0, "read_sources": 0.0, "save": 0.0, "load": 0.0, "score_disk": 0.0}
    losses = []
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as src:
        from safetensors.torch import load_file

        merger.restore()
        merger.model.save_pretrained(src)  # the base as safetensors too (SmolLM2 ships a GGUF)
        files = [Path(src) / "model.safetensors"] + [Path(e) / "model.safetensors" for e in experts]
        for r in recipes:
            t0 = time.perf_counter()
            for f in files:  # a disk-based merge tool reads the source tensors for each candidate
                load_file(str(f))
            t["read_sources"] += (time.perf_counter() - t0) / n
            t0 = time.perf_counter()
            merger.apply(r)
            t1 = time.perf_counter()
            a = task_losses(merger.model, data)
            t2 = time.perf_counter()
            merger.model.save_pretrained(tmp)  # the merged model, as a write-to-disk tool writes it
            t3 = time.perf_counter()
            m = AutoModelForCausalLM.from_pretrained(tmp, dtype=merger.model.dtype).eval()
            t4 = time.perf_counter()
            d = task_losses(m, data)
            t5 = time.perf_counter()
            phases = ("apply", "score", "save", "load", "score_disk")
            for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                t[k] += v / n
            losses.append(float(np.abs(a - d).max()))
            del m
    in_place = t["apply"] + t["score"]
    disk = t["apply"] + t["save"] + t["load"] + t["score_disk"]
    disk_sources = disk + t["read_sources"]
    row = {"candidates": n, "seconds_per_candidate": t, "in_place_per_hour": 3600 / in_place,
           "disk_per_hour": 3600 / disk, "ratio": disk / in_place, "disk_sources_per_hour": 3600 / disk_sources,
           "ratio_with_sources": disk_sources / in_place, "apply_share": t["apply"] / in_place,
           "max_loss_difference": max(losses)}
    print(f"throughput: in place {row['in_place_per_hour']:.0f} candidates/h (merge {1e3 * t['apply']:.0f} ms = "
          f"{100 * row['apply_share']:.1f}%, score {1e3 * t['score']:.0f} ms); write + reload "
          f"{row['disk_per_hour']:.0f}/h (save {1e3 * t['save']:.0f} ms, load {1e3 * t['load']:.0f} ms): "
          f"{row['ratio']:.2f}x; also reading the {len(files)} source models per candidate "
          f"({1e3 * t['read_sources']:.0f} ms): {row['ratio_with_sources']:.2f}x", flush=True)
    return row


def part_kernel(n: int, repeats: int) -> dict:
    """Milliseconds (median of ``repeats``) of merge_deltas on n parameters x 2 models."""
    import evoforge
    from evoforge import merging

    rng = np.random.default_rng(0)
    base = (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(np.float32)
    deltas = (rng.standard_normal((2, n), dtype=np.float32) * 1e-3).astype(np.float32)
    out = np.empty(n, np.float32)
    w, rho = np.array([0.7, 0.45]), np.array([0.3, 0.6])
    thr = merging.trim_thresholds(np.sort(np.abs(deltas), axis=1), rho)
    ties = {"trim": True, "sign_election": True, "normalize": True}
    cases = {"plain": (None, {}), "ties_thresholds": (rho, {**ties, "thresholds": thr}), "ties_select": (rho, ties),
             "dare_ties": (rho, {"dare": True, "sign_election": True, "normalize": True, "seed": 1})}
    row: dict[str, Any] = {"n": n, "models": 2, "threads": evoforge.get_num_threads(), "repeats": repeats}
    for name, (dens, kw) in cases.items():
        merging.merge_deltas(out, base, deltas, w, dens, **kw)  # warm: pages, pool
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            merging.merge_deltas(out, base, deltas, w, dens, **kw)
            ts.append(time.perf_counter() - t0)
        row[name + "_ms"] = 1e3 * float(np.median(ts))
    print(f"kernel ({n} parameters x 2 models, {row['threads']} threads, median of {repeats}): plain "
          f"{row['plain_ms']:.1f} ms, TIES with thresholds {row['ties_thresholds_ms']:.1f} ms, TIES selecting "
          f"{row['ties_select_ms']:.1f} ms, DARE-TIES {row['dare_ties_ms']:.1f} ms", flush=True)
    return row


class _Timed:
    """An evaluator that logs (pid, start, end) of each call to ``log`` (for worker occupancy)."""

    def __init__(self, inner: Any, log: str) -> None:
        self.inner, self.log = inner, log

    def evaluate(self, genomes: np.ndarray, batch: Any = None) -> np.ndarray:
        t0 = time.time()
        out = self.inner.evaluate(genomes, batch)
        with open(self.log, "a") as f:
            f.write(json.dumps([os.getpid(), t0, time.time(), len(genomes)]) + "\n")
        return out


def _timed_worker(log: str, *args: Any) -> _Timed:
    from evoforge.merge.run import worker_evaluator

    return _Timed(worker_evaluator(*args), log)


def _busy(log: Path, workers: int) -> dict:
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    start, end = min(r[1] for r in rows), max(r[2] for r in rows)
    busy = {}
    for pid, a, b, _ in rows:
        busy[pid] = busy.get(pid, 0.0) + b - a
    shares = [v / (end - start) for v in busy.values()] + [0.0] * (workers - len(busy))
    return {"wall_s": end - start, "busy_share": shares, "mean_busy": float(np.mean(shares)),
            "evaluations": sum(r[3] for r in rows)}


def part_async(base: str, experts: list[str], tasks: list, quick: bool, evaluations: int, work: Path) -> dict:
    from evoforge.evaluate import ProcessPool
    from evoforge.merge.run import _default_groups, load_models
    from evoforge.merge.merger import Merger
    from evoforge.merge.space import ParamSpace
    from evoforge.search import CMAES

    config = _config(quick, method="ties", backend="process", workers=2)
    b, ex, _ = load_models(base, experts)
    m = Merger(b, ex, groups=_default_groups(config, b))
    L = ParamSpace("ties", m.n_groups, m.n_models, config.weight_range, config.density_range).n_genes
    del b, ex, m
    out = {}
    for mode in ("barrier", "async"):
        log = work / f"async-{mode}.jsonl"
        log.unlink(missing_ok=True)
        factory = functools.partial(_timed_worker, str(log), base, experts, tasks, config.to_json())
        with ProcessPool(factory, workers=2, threads=1, depth=1 if mode == "async" else 2) as pool:
            pool.pids()  # both workers started (their model loads are not part of the measurement)
            e = CMAES(np.full(L, 0.5), config.sigma0, lower=0.0, upper=1.0, seed=0, progress=False)
            if mode == "async":
                e.run_async(pool, max_evaluations=evaluations)
            else:
                e.run(pool, max_evaluations=evaluations, stall_generations=None)
        out[mode] = {**_busy(log, 2), "pop_size": e.pop_size}
        print(f"{mode}: workers busy {', '.join(f'{100 * s:.1f}%' for s in out[mode]['busy_share'])} of "
              f"{out[mode]['wall_s']:.0f} s ({out[mode]['evaluations']} evaluations, lambda {e.pop_size})", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench merge", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="stories260k experts (minutes)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    ap.add_argument("--methods", default="ties,dare-ties")
    ap.add_argument("--evaluations", type=int_at_least(1), default=None,
                    help="CMA-ES evaluations per quality run (default 150; 60 with --quick)")
    ap.add_argument("--groups", type=int_at_least(1), default=None, help="layer groups of the quality runs")
    ap.add_argument("--candidates", type=int_at_least(1), default=5, help="candidates of the throughput part")
    ap.add_argument("--async-evaluations", type=int_at_least(2), default=None,
                    help="evaluations per mode of the async part (default 56; 112 with --quick)")
    ap.add_argument("--kernel-n", type=int_at_least(1), default=20_000_000, help="parameters of the kernel part")
    ap.add_argument("--kernel-repeats", type=int_at_least(1), default=7, help="timed runs per case of the kernel part")
    ap.add_argument("--experts", default=str(make_experts.default_out()), help="make_experts' output directory")
    ap.add_argument("--work", default="/tmp/evoforge-bench-merge")
    ap.add_argument("--out", default=str(Path("bench/results/merge.json")))
    a = ap.parse_args(argv)
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    bad = sorted(set(parts) - set(PARTS))
    if bad:
        ap.error(f"--parts: unknown {bad}; choose from {','.join(PARTS)}")
    name = "stories260k" if a.quick else "smollm2-135m"
    out: dict[str, Any] = {"machine": _harness.machine(), "model": name}
    if set(parts) - {"kernel"}:  # the kernel part needs no experts
        import torch

        torch.set_num_threads(1 if "async" in parts and len(parts) == 1 else max(1, os.cpu_count() or 1))
        experts = list(make_experts.make(name, Path(a.experts)).values())
        base = str(make_experts.STORIES) if a.quick else name
        tasks = _tasks(Path(a.experts))
        work = Path(a.work)
        work.mkdir(parents=True, exist_ok=True)
        out["experts"] = experts
    if "quality" in parts:
        ev = a.evaluations or (60 if a.quick else 150)
        out["quality"] = part_quality(base, experts, tasks, a.quick, a.methods.split(","), ev, work, a.groups)
    if "throughput" in parts:
        out["throughput"] = part_throughput(base, experts, tasks, a.quick, a.candidates)
    if "async" in parts:
        out["async"] = part_async(base, experts, tasks, a.quick, a.async_evaluations or (112 if a.quick else 56), work)
    if "kernel" in parts:
        out["kernel"] = part_kernel(a.kernel_n, a.kernel_repeats)
    out["machine_end"] = _harness.machine()
    print("wrote", _harness.write_json(a.out, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
