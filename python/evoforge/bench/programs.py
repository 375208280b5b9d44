"""Program search (issue 19): functional caching, rediscovering linear regression, the native
interpreter against the numpy one, exp2 against minimax polynomials, update rules against AdamW and
Lion.

    evoforge bench programs [--quick] [--parts cache,rediscover,interpreter,exp2,optimizer,logistic]

cache
    Regularized evolution on the linear-regression task (``evoforge programs linear``'s settings)
    for the same seed and generations with the two-level cache and without any: evaluations saved
    (target: at least 3x), hits per level, the probe's cost per lookup against an evaluation's, and
    whether the two runs took the same path (the best fitness of every generation equal).
rediscover
    The same search from the empty learner until a program's held-out R^2 (100 fresh tasks) reaches
    0.999, per seed (target: under 10 minutes on 2 cores).
interpreter
    Programs x examples per second of :mod:`evoforge.interpreter` against the numpy interpreter of
    the tests (tests/programs/numpy_interpreter.py: vectorised over examples for functions, over
    tasks for learners), same programs, inputs and dtype (target: at least 50x).
exp2
    NSGA-II over (max ULP error, op count) of float32 programs for exp2 on [0, 1) (constants fitted
    by CMA-ES; started from the Taylor polynomials, and from the empty program): the best error at
    each op count against the minimax polynomial of that op count (target: at least as good at
    every op count).
optimizer
    Regularized evolution of update rules from AdamW on digits (logistic regression and an MLP):
    the best rule's held-out loss against AdamW's and Lion's.
logistic
    Learners for projected binary digits tasks from the empty program: held-out accuracy.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from evoforge._cli_parser import OneLineParser, int_at_least
from evoforge.bench import _harness

PARTS = ("cache", "rediscover", "interpreter", "exp2", "optimizer", "logistic")


def _engine(task: Any, seed: int, cache: bool = True) -> Any:
    from evoforge.programs import RegularizedEvolution, TASKS

    opts = dict(TASKS["linear"][2])
    return RegularizedEvolution(task, seed=seed, cache=cache, progress=False, **opts)


def part_cache(generations: int, seed: int) -> dict:
    from evoforge.programs import TASKS

    task = TASKS["linear"][0]()
    runs = {}
    for cache in (True, False):
        e = _engine(task, seed, cache)
        t0 = time.perf_counter()
        r = e.run(generations=generations, stall_generations=None)
        runs[cache] = {"seconds": time.perf_counter() - t0, "requested": r.requested, "evaluations": r.evaluations,
                       "hits_structural": e.hits_structural, "hits_functional": e.hits_functional,
                       "probe_seconds": e.probe_seconds, "evaluation_seconds": e.evaluation_seconds,
                       "curve": [h["best_fitness"] for h in r.history], "best": r.best_fitness}
    c, n = runs[True], runs[False]
    same = c["curve"] == n["curve"]
    diverge = None if same else next(i for i, (a, b) in enumerate(zip(c["curve"], n["curve"])) if a != b)
    lookups = max(1, c["requested"] - c["hits_structural"])  # the probe runs on structural misses
    out = {"generations": generations, "seed": seed, "cached": {k: v for k, v in c.items() if k != "curve"},
           "uncached": {k: v for k, v in n.items() if k != "curve"},
           "savings": n["evaluations"] / max(1, c["evaluations"]), "same_trajectory": same,
           "first_divergence_generation": diverge,
           "probe_ms_per_lookup": 1e3 * c["probe_seconds"] / lookups,
           "evaluation_ms_per_program": 1e3 * n["evaluation_seconds"] / max(1, n["evaluations"])}
    _harness.print_table(
        ["run", "children", "evaluated", "structural hits", "functional hits", "wall s", "best"],
        [[name, r["requested"], r["evaluations"], r["hits_structural"], r["hits_functional"], f"{r['seconds']:.1f}",
          f"{r['best']:.4g}"] for name, r in (("two-level cache", c), ("no cache", n))])
    print(f"savings {out['savings']:.2f}x; same trajectory: {same}"
          + ("" if same else f" (first difference at generation {diverge})")
          + f"; probe {out['probe_ms_per_lookup']:.3f} ms per lookup vs evaluation "
            f"{out['evaluation_ms_per_program']:.3f} ms per program", flush=True)
    return out


def part_rediscover(seeds: list[int], limit_s: float) -> dict:
    from evoforge.programs import TASKS

    task = TASKS["linear"][0]()
    rows, out = [], []
    for seed in seeds:
        e = _engine(task, seed)
        t0 = time.perf_counter()
        found = None
        while time.perf_counter() - t0 < limit_s:
            r = e.run(generations=e.generation + 100, stall_generations=None)
            if r.best_fitness < 1e-3 and task.report(r.best_genome)["heldout_r2"] >= 0.999:
                found = time.perf_counter() - t0
                break
        rep = task.report(e.best[0])
        out.append({"seed": seed, "seconds": found, "children": e.requested, "evaluations": e.evaluations,
                    "heldout_r2": rep["heldout_r2"], "source": rep["source"]})
        rows.append([seed, "-" if found is None else f"{found:.0f}", e.requested, e.evaluations,
                     f"{rep['heldout_r2']:.6f}"])
        print(rep["source"], flush=True)
    _harness.print_table(["seed", "seconds to R^2>=0.999", "children", "evaluated", "held-out R^2"], rows)
    return {"limit_s": limit_s, "runs": out}


def _numpy_interpreter() -> Any:
    root = Path(__file__).resolve().parents[3] / "tests" / "programs"
    if not (root / "numpy_interpreter.py").is_file():
        raise FileNotFoundError("the interpreter part needs a source checkout (tests/programs/numpy_interpreter.py)")
    sys.path.insert(0, str(root))
    import numpy_interpreter

    return numpy_interpreter


def part_interpreter(quick: bool) -> dict:
    from evoforge import interpreter
    from evoforge.programs import LEARNER_OPS, LearnerTask, random_program
    from evoforge.programs.function_task import ARITHMETIC
    from evoforge.programs import pack

    ref = _numpy_interpreter()
    rows, out = [], []
    # Functions: exp2-like scalar programs, every example alone (numpy: vectorised over the examples);
    # many examples, and the exp2 search's own call (a generation's 50 children x 16 CMA-ES candidates
    # on the fit's 513 points).
    kw = dict(n_scalar=4, n_vector=0, n_matrix=0, dim=1)
    for form, P, E in (("function (12 scalar ops)", *((20, 4096) if quick else (50, 16384))),
                       ("function (12 scalar ops), the exp2 fit's call", 800, 513)):
        progs = [random_program("function", length=12, n_scalar=4, n_vector=0, n_matrix=0, dim=1, seed=s,
                                ops=ARITHMETIC) for s in range(P)]
        code, imm = pack(progs)
        x = np.linspace(0, 1, E, dtype=np.float32)
        native = _harness.measure(lambda: interpreter.run_function(code, imm, x, **kw))["median_ms"]
        numpy_ms = _harness.measure(lambda: ref.run_function(code, imm, x, **kw), repeats=2)["median_ms"]
        out.append({"form": form, "programs": P, "examples": E, "native_ms": native, "numpy_ms": numpy_ms})
    # Learners: AutoML-Zero's protocol on linear-regression tasks (numpy: vectorised over the tasks).
    task = LearnerTask("regression", n_tasks=8 if quick else 16)
    P = 20 if quick else 50
    progs = [random_program("learner", length=6, n_scalar=5, n_vector=4, n_matrix=0, dim=4, seed=s, ops=LEARNER_OPS)
             for s in range(P)]
    comps = [pack(progs, c) for c in ("setup", "predict", "learn")]
    tx, ty, vx, _ = task.data
    lk = dict(n_scalar=5, n_vector=4, n_matrix=0)
    native = _harness.measure(lambda: interpreter.run_learner(*comps, tx, ty, vx, **lk))["median_ms"]
    numpy_ms = _harness.measure(lambda: ref.run_learner(*comps, tx, ty, vx, **lk), repeats=1, warmup=0)["median_ms"]
    out.append({"form": "learner (6+6+6 ops, dim 4)", "programs": P, "examples": tx.shape[0] * (tx.shape[1] + vx.shape[1]),
                "native_ms": native, "numpy_ms": numpy_ms})
    for r in out:
        r["native_per_s"] = r["programs"] * r["examples"] / (r["native_ms"] / 1e3)
        r["numpy_per_s"] = r["programs"] * r["examples"] / (r["numpy_ms"] / 1e3)
        r["speedup"] = r["numpy_ms"] / r["native_ms"]
        rows.append([r["form"], r["programs"], r["examples"], f"{r['native_per_s']:.3g}", f"{r['numpy_per_s']:.3g}",
                     f"{r['speedup']:.0f}x"])
    _harness.print_table(["form", "programs", "examples", "native prog*ex/s", "numpy prog*ex/s", "native/numpy"], rows)
    return {"rows": out}


def part_exp2(generations: int, seed: int, work: Path) -> dict:
    from evoforge.programs import FunctionTask, search_programs

    base = {r["ops"]: r["max_ulp"] for r in FunctionTask("exp2").baseline()}
    out: dict[str, Any] = {"minimax": base}
    rows = []
    for start in ("taylor", "empty"):
        t0 = time.perf_counter()
        run = search_programs("exp2", generations=generations, seed=seed, run_dir=work / f"exp2-{start}",
                              initial="empty" if start == "empty" else None, progress=False)
        front = {int(r["ops"]): r["max_ulp"] for r in run.report["front"]}
        best_at = {k: min([u for o, u in front.items() if o <= k], default=float("inf")) for k in base}
        out[start] = {"seconds": time.perf_counter() - t0, "front": front, "best_at_minimax_ops": best_at,
                      "evaluations": run.report["evaluations"], "requested": run.report["requested"],
                      "matches_every_op_count": all(best_at[k] <= base[k] for k in base)}
    for k in sorted(base):
        rows.append([k, f"{base[k]:.4g}", f"{out['taylor']['best_at_minimax_ops'][k]:.4g}",
                     f"{out['empty']['best_at_minimax_ops'][k]:.4g}"])
    _harness.print_table(["ops", "minimax max ULP", "evolved (Taylor start)", "evolved (empty start)"], rows)
    print({s: out[s]["matches_every_op_count"] for s in ("taylor", "empty")}, flush=True)
    return out


def part_optimizer(generations: int, seed: int, work: Path) -> dict:
    from evoforge.programs import search_programs

    t0 = time.perf_counter()
    run = search_programs("optimizer", generations=generations, seed=seed, run_dir=work / "optimizer", progress=False)
    rep = run.report["best"]
    print(rep.get("source", ""), flush=True)
    rows = [[k, v] for k, v in rep.items() if k != "source" and not isinstance(v, (dict, list))]
    _harness.print_table(["quantity", "value"], rows)
    return {"seconds": time.perf_counter() - t0, "report": rep, "evaluations": run.report["evaluations"],
            "requested": run.report["requested"]}


def part_logistic(generations: int, seed: int, work: Path) -> dict:
    from evoforge.programs import search_programs

    t0 = time.perf_counter()
    run = search_programs("logistic", generations=generations, seed=seed, run_dir=work / "logistic", progress=False)
    rep = run.report["best"]
    print(rep["source"], flush=True)
    _harness.print_table(["quantity", "value"], [["held-out accuracy", f"{rep['heldout_accuracy']:.4f}"],
                                                 ["children", run.report["requested"]],
                                                 ["evaluated", run.report["evaluations"]]])
    return {"seconds": time.perf_counter() - t0, "report": rep}


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench programs", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small budgets (about a minute)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the rediscover part")
    ap.add_argument("--seed", type=int_at_least(0), default=0)
    ap.add_argument("--work", default="/tmp/evoforge-bench-programs")
    ap.add_argument("--out", default=str(Path("bench/results/programs.json")))
    a = ap.parse_args(argv)
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    bad = sorted(set(parts) - set(PARTS))
    if bad:
        ap.error(f"--parts: unknown {bad}; choose from {','.join(PARTS)}")
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)  # a run directory left there would be resumed, not rerun
    work.mkdir(parents=True, exist_ok=True)
    q = a.quick
    out: dict[str, Any] = {"machine": _harness.machine()}
    if "cache" in parts:
        out["cache"] = part_cache(200 if q else 2000, a.seed)
    if "rediscover" in parts:
        out["rediscover"] = part_rediscover([int(s) for s in a.seeds.split(",")], 30.0 if q else 600.0)
    if "interpreter" in parts:
        out["interpreter"] = part_interpreter(q)
    if "exp2" in parts:
        out["exp2"] = part_exp2(3 if q else 60, a.seed, work)
    if "optimizer" in parts:
        out["optimizer"] = part_optimizer(2 if q else 40, a.seed, work)
    if "logistic" in parts:
        out["logistic"] = part_logistic(20 if q else 1000, a.seed, work)
    out["machine_end"] = _harness.machine()
    print("wrote", _harness.write_json(a.out, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
