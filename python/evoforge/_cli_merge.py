"""``evoforge merge --base PATH --models A B ... --method ties --task NAME=TEXT ... --search cmaes
--evaluations N --out RUN_DIR``: an evolutionary merge into a resumable run directory (the merged
model in Hugging Face format, the recipe as JSON and mergekit YAML, report and plots)."""

from __future__ import annotations

import argparse
from pathlib import Path

from evoforge._cli_parser import int_at_least, positive_float

__all__ = ["add_merge"]


def add_merge(sub: argparse._SubParsersAction) -> None:
    from evoforge.merge.config import COMBINE, SEARCHES
    from evoforge.merge.recipe import METHODS

    p = sub.add_parser("merge", help="evolve a merge of fine-tunes of one base (TIES, DARE, ... or a layer path)")
    p.add_argument("--base", required=True, help="the base model (directory, or smollm2-135m)")
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL", help="fine-tunes of the base to merge")
    p.add_argument("--method", choices=list(METHODS), default="ties")
    p.add_argument("--task", action="append", required=True, metavar="NAME=TEXT_FILE", dest="tasks",
                   help="a task: held-out next-token loss on the text (repeat for several)")
    p.add_argument("--search", choices=SEARCHES, default="cmaes",
                   help="cmaes: per-group weights and densities; nsga2: a front over the tasks; layers: a data-flow path")
    p.add_argument("--evaluations", type=int_at_least(0), default=200, help="candidates the search evaluates")
    p.add_argument("--groups", type=int_at_least(1), default=None, help="layer groups (default one per block, at most 8)")
    p.add_argument("--combine", choices=COMBINE, default="mean", help="the tasks' losses: their mean or objectives")
    p.add_argument("--pop-size", type=int_at_least(2), default=None)
    p.add_argument("--seq-len", type=int_at_least(2), default=128)
    p.add_argument("--n-search", type=int_at_least(1), default=8, help="search windows per task")
    p.add_argument("--n-heldout", type=int_at_least(1), default=16, help="held-out windows per task")
    p.add_argument("--sigma0", type=positive_float, default=0.25, help="CMA-ES's initial step (share of a gene's range)")
    p.add_argument("--backend", choices=("inprocess", "process", "ray"), default="inprocess")
    p.add_argument("--workers", type=int_at_least(1), default=None)
    p.add_argument("--async", dest="asynchronous", action="store_true",
                   help="CMA-ES without a generation barrier (process or ray backend)")
    p.add_argument("--tokenizer", default=None, help="a llama2.c tokenizer .bin or a HF tokenizer directory")
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--out", required=True, help="run directory (an existing one resumes)")
    p.set_defaults(fn=_cmd_merge)


def _cmd_merge(args: argparse.Namespace) -> int:
    from evoforge.errors import ConfigError
    from evoforge.merge import MergeConfig, merge
    from evoforge.merge.tasks import parse_task

    config = MergeConfig(method=args.method, search=args.search, evaluations=args.evaluations, groups=args.groups,
                         combine=args.combine, pop_size=args.pop_size, seq_len=args.seq_len, n_search=args.n_search,
                         n_heldout=args.n_heldout, sigma0=args.sigma0, backend=args.backend, workers=args.workers,
                         asynchronous=args.asynchronous, tokenizer=args.tokenizer, seed=args.seed,
                         run_dir=args.out).validate()
    tasks = [parse_task(t) for t in args.tasks]  # checks the files before any model loads
    for m in [args.base, *args.models]:
        if ("/" in m or Path(m).suffix) and not Path(m).exists():
            raise FileNotFoundError(f"model not found: {m!r}")
    if args.tokenizer and not Path(args.tokenizer).exists():
        raise FileNotFoundError(f"--tokenizer: not found: {args.tokenizer!r}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out {args.out!r} exists and is not a directory")
    res = merge(args.base, list(args.models), tasks, config)
    print(res.table())
    print(f"{res.evaluations} candidates; the merged model, recipe.json / recipe.yaml and report.md are in {args.out}")
    return 0
