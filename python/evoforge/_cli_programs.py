"""``evoforge programs NAME [--engine regularized|nsga2] [--generations G] ... --out RUN_DIR``: a
program search (AutoML-Zero, AutoNumerics-Zero, Lion) into a resumable run directory."""

from __future__ import annotations

import argparse
import json

from evoforge._cli_parser import int_at_least, positive_float

__all__ = ["add_programs"]

_TASKS = ("exp2", "log2", "linear", "logistic", "optimizer")


def add_programs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("programs", help="search programs: elementary functions, learning algorithms, update rules")
    p.add_argument("name", choices=_TASKS, help="exp2 / log2: float32 approximations (error vs ops); linear / "
                   "logistic: learners from empty programs; optimizer: update rules from AdamW")
    p.add_argument("--engine", choices=("regularized", "nsga2"), default=None, help="default: the task's")
    p.add_argument("--generations", type=int_at_least(0), default=100)
    p.add_argument("--population", type=int_at_least(2), default=None)
    p.add_argument("--tournament", type=int_at_least(1), default=None, help="regularized evolution's tournament")
    p.add_argument("--batch", type=int_at_least(1), default=None, help="children per generation (regularized)")
    p.add_argument("--restart-stall", type=int_at_least(1), default=None,
                   help="regularized: start again from the initial programs after this many generations without "
                        "progress (linear's default: 10000)")
    p.add_argument("--max-length", type=int_at_least(1), default=None, help="instructions per component")
    p.add_argument("--imm-sigma", type=positive_float, default=None, help="relative step of a constant's mutation")
    p.add_argument("--fit-iterations", type=int_at_least(0), default=None,
                   help="exp2/log2: CMA-ES iterations fitting each child's constants")
    p.add_argument("--start", choices=("task", "empty"), default="task",
                   help="task: the task's start (Taylor polynomials, AdamW); empty: the empty program")
    p.add_argument("--no-cache", action="store_true", help="evaluate every child (no structural or functional hits)")
    p.add_argument("--backend", choices=("inprocess", "process", "ray"), default="inprocess")
    p.add_argument("--workers", type=int_at_least(1), default=None)
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--out", default=None, help="run directory (an existing one resumes)")
    p.set_defaults(fn=_cmd_programs)


def _cmd_programs(args: argparse.Namespace) -> int:
    from evoforge.errors import ConfigError
    from evoforge.programs.run import search_programs

    options = {k: v for k, v in (("population_size", args.population), ("tournament_size", args.tournament),
                                 ("batch_size", args.batch), ("max_length", args.max_length),
                                 ("imm_sigma", args.imm_sigma), ("restart_stall", args.restart_stall))
               if v is not None}
    engine = args.engine
    if engine == "nsga2" and {"tournament_size", "batch_size", "restart_stall"} & set(options):
        raise ConfigError("--tournament, --batch and --restart-stall are options of --engine regularized")
    if args.no_cache:
        options["cache"] = False
    task_options = {}
    if args.fit_iterations is not None:
        if args.name not in ("exp2", "log2"):
            raise ConfigError("--fit-iterations is an option of exp2 and log2")
        task_options["fit_iterations"] = args.fit_iterations
    run = search_programs(args.name, engine=engine, generations=args.generations, seed=args.seed, run_dir=args.out,
                          initial="empty" if args.start == "empty" else None, backend=args.backend,
                          workers=args.workers, task_options=task_options, **options)
    rep = run.report
    summary = {k: rep[k] for k in ("engine", "generations", "requested", "evaluations", "savings")}
    summary["cache"] = {k: rep["cache"][k] for k in ("rate_structural", "rate_functional")}
    if "best" in rep:
        summary["best_fitness"] = rep["best_fitness"]
        summary.update({k: v for k, v in rep["best"].items() if k != "source"})
        print(rep["best"].get("source", ""))
    else:
        summary["front"] = [r["objectives"] | ({"max_ulp": r["max_ulp"]} if "max_ulp" in r else {})
                            for r in rep["front"]]
    print(json.dumps(summary, indent=1, default=float))
    if run.run_dir is not None:
        print(f"run directory: {run.run_dir}")
    return 0
