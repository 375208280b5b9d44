"""SmolLM2-135M compression benchmark (not CI; about an hour on 2 cores): WikiText-2 perplexity of
the dense model, uniform levels, the per-layer baselines (OWL for sparsity, ShortGPT for depth) and
the evoforge search, all at the same exact budget, plus database build time and size and search
time per generation.

    evoforge bench compress [--search-seconds 390] [--rows s50,s60,s70,q3,q2.5,d25] [--windows 8]

Data: ``../shared/data/text/wikitext2-test.raw`` (or ``--text``), tokenised whole; calibration from
the first half of the tokens (``--calib-seqs`` windows of ``--seq-len``), perplexity on
non-overlapping windows of ``--window`` tokens from the second half (``--windows`` of them).
Rows: unstructured sparsity 50/60/70% (SparseGPT database, 3 levels each side of the target,
20,000 weights per level step, as the EvoPress reference), 3 and 2.5 bits average (GPTQ database,
2/3/4 bits, group 64, asymmetric), 25% depth (7 of 30 attention and 7 of 30 MLP sub-blocks).
Search (defaults sized for a shared 2-core machine): (1 + 8), stages 2 <- 512 tokens, 1 <- 2048
tokens, a time budget per row (``--search-seconds``, at most ``--generations``), fitness KL over
the teacher's top 256 tokens plus the tail bin; EvoPress's schedule is ``--offspring 16 --survivors
4 --stage-tokens 1024 4096`` and hundreds of generations. One teacher (memory-mapped) and one set
of Hessians serve every row.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness

ROWS = {"s50": ("sparsity", 0.5), "s60": ("sparsity", 0.6), "s70": ("sparsity", 0.7),
        "q3": ("quant", 3.0), "q2.5": ("quant", 2.5), "d25": ("depth", 7)}
TEXT = _harness.shared_data("text", "wikitext2-test.raw")


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _load(args):
    import torch

    from evoforge.compress import load_model, text_ids

    t0 = time.perf_counter()
    model, tok = load_model(args.model)
    load_s = time.perf_counter() - t0
    text = Path(args.text)
    if not text.is_file():
        raise SystemExit(f"text file not found: {text} (see ../shared/data/README.md)")
    ids = text_ids(tok, text)
    half = ids.numel() // 2
    first, second = ids[:half], ids[half:]
    n = min(args.calib_seqs, first.numel() // args.seq_len)
    calib = first[: n * args.seq_len].reshape(n, args.seq_len).contiguous()
    return model, tok, calib, second.contiguous(), load_s, int(ids.numel()), torch


class _ParentHint:
    """Evaluator wrapper: tells KLFitness the engine's parent each generation (prefix reuse)."""

    def __init__(self, fitness, engine) -> None:
        self.fitness, self.engine, self._gen = fitness, engine, None

    def evaluate(self, genomes, batch):
        if batch.generation != self._gen:
            self._gen = batch.generation
            self.fitness.set_base(self.engine.parent)
        return self.fitness.evaluate(genomes, batch)


def _search(fitness, initial, mutation, lower, upper, args, *, offspring, stages):
    """(1 + lambda) from ``initial``: up to ``args.generations`` generations, stopping before one
    that would end after ``args.search_seconds`` (the machine is shared; the count is recorded)."""
    import numpy as np

    from evoforge.search import OnePlusLambda

    eng = OnePlusLambda(initial, mutation, lower=lower, upper=upper, n_offspring=offspring, stages=stages,
                        seed=args.seed, progress=False)
    hint = _ParentHint(fitness, eng)
    t0 = time.perf_counter()
    g = 0
    while g < args.generations:
        dt = time.perf_counter() - t0
        if g >= args.min_generations and dt + dt / g > args.search_seconds:
            break
        g += 1
        res = eng.run(hint, generations=g)
    dt = time.perf_counter() - t0
    eng.close()
    return np.asarray(res.best_genome, dtype=np.int64), {
        "generations": int(res.generations), "search_s": dt, "s_per_generation": dt / max(1, res.generations),
        "final_calib_kl": None if res.best_fitness is None else float(res.best_fitness),
        "history_kl": [h.get("best_fitness") for h in res.history]}


def run(args) -> dict:

    from evoforge.compress import (
        DepthFitness,
        KLFitness,
        LayerDatabase,
        adapt,
        build_database,
        collect_hessians,
        depth_drops,
        depth_mutation,
        levels_applied,
        perplexity,
        provider_for,
    )
    from evoforge.compress.baselines import OWL_LAMBDA, OWL_M, owl_genome, shortgpt_genome, shortgpt_scores, spread_genome

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model, _tok, calib, held, load_s, n_text, torch = _load(args)
    torch.set_num_threads(args.threads)
    adapter = adapt(model)
    N = adapter.n_blocks
    stages = [(args.survivors, args.stage_tokens[0]), (1, args.stage_tokens[1])]
    out = {"machine": _harness.machine(), "torch": torch.__version__, "load_avg_start": os.getloadavg(),
           "settings": {k: v for k, v in vars(args).items()}, "text_tokens": n_text,
           "calibration": list(calib.shape), "heldout_tokens": int(held.numel()), "model_load_s": load_s,
           "rows": []}

    def ppl(ctx=None) -> float:
        if ctx is None:
            return perplexity(model, held, window=args.window, max_windows=args.windows)
        with ctx:
            return perplexity(model, held, window=args.window, max_windows=args.windows)

    def save() -> None:
        _harness.write_json(args.out, out)
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(markdown(out))

    t0 = time.perf_counter()
    out["ppl_dense"] = ppl()
    out["ppl_dense_s"] = time.perf_counter() - t0
    print(f"dense perplexity {out['ppl_dense']:.3f} ({out['ppl_dense_s']:.0f} s)", flush=True)

    stats = None
    if any(ROWS[r][0] != "depth" for r in args.rows):
        t0 = time.perf_counter()
        stats = collect_hessians(adapter, calib, batch_size=args.batch_size)
        out["hessians_s"] = time.perf_counter() - t0
        print(f"Hessians on {calib.numel()} tokens: {out['hessians_s']:.0f} s", flush=True)

    fitness = None
    quant_db = None
    for name in args.rows:
        kind, target = ROWS[name]
        row = {"row": name, "kind": kind, "target": target, "load_avg": os.getloadavg()}
        print(f"--- {name}: {kind} {target}", flush=True)
        if kind == "depth":
            t0 = time.perf_counter()
            scores = shortgpt_scores(adapter, calib, batch_size=args.batch_size)
            short = shortgpt_genome(scores, int(target))
            dfit = DepthFitness(adapter, calib, k=int(target), top_k=args.top_k, batch_size=args.batch_size,
                                compute_dtype=args.compute_dtype)
            row["setup_s"] = time.perf_counter() - t0
            best, info = _search(dfit, short, depth_mutation(N, 3), 0, 1, args, offspring=args.offspring,
                                 stages=stages)
            del dfit
            row.update(info)
            for col, g in (("uniform", spread_genome(N, int(target))), ("shortgpt", short), ("evoforge", best)):
                row[f"ppl_{col}"] = ppl(adapter.dropped(depth_drops(g, N)))
            row["evoforge_dropped"] = [list(d) for d in depth_drops(best, N)]
        else:
            reuse = work / f"db-sparsegpt-{target}" / "manifest.json"
            if kind == "sparsity" and args.reuse_db and reuse.is_file():
                db = LayerDatabase.open(reuse.parent, model_fingerprint=adapter.fingerprint())
                row["db_bytes"] = _du(db.path)
            elif kind == "sparsity":
                t0 = time.perf_counter()
                db = build_database(adapter, calib, work / f"db-sparsegpt-{target}", method="sparsegpt",
                                    sparsity=target, n_levels=3, step=20000, stats=stats,
                                    batch_size=args.batch_size, overwrite=True)
                row["db_solve_s"] = time.perf_counter() - t0
                row["db_build_s"] = row["db_solve_s"] + out["hessians_s"]
                row["db_bytes"] = _du(db.path)
            else:
                if quant_db is None:
                    t0 = time.perf_counter()
                    quant_db = build_database(adapter, calib, work / "db-gptq", method="gptq", bits=(2, 3, 4),
                                              group_size=64, stats=stats, batch_size=args.batch_size,
                                              overwrite=True)
                    row["db_solve_s"] = time.perf_counter() - t0
                    row["db_build_s"] = row["db_solve_s"] + out["hessians_s"]
                    row["db_bytes"] = _du(quant_db.path)
                db = quant_db
            prov = provider_for(db, device="cpu", dtype=torch.float32)
            initial = prov.uniform() if kind == "sparsity" else prov.uniform(target)
            t0 = time.perf_counter()
            if fitness is None or fitness.provider is not prov:
                fitness = KLFitness(adapter, prov, calib, top_k=args.top_k, teacher_dir=work / "teacher",
                                    batch_size=args.batch_size, compute_dtype=args.compute_dtype)
            row["fitness_setup_s"] = time.perf_counter() - t0
            row["teacher_bytes"] = fitness.teacher.nbytes
            best, info = _search(fitness, initial, prov.mutation(3), prov.lower, prov.upper, args,
                                 offspring=args.offspring, stages=stages)
            row.update(info)
            row["budget_exact"] = bool(prov.budget(best) == prov.budget(initial))
            cols = [("uniform", initial), ("evoforge", best)]
            if kind == "sparsity":
                owl, _ = owl_genome(adapter, prov, stats, lam=OWL_LAMBDA, m=OWL_M)
                cols.insert(1, ("owl", owl))
                row["owl_budget_exact"] = bool(prov.budget(owl) == prov.budget(initial))
            for col, g in cols:
                row[f"ppl_{col}"] = ppl(levels_applied(adapter, prov, g))
            row["average"] = (1 - prov.budget(best) / prov.numel.sum()) if kind == "sparsity" else \
                prov.budget(best) / prov.numel.sum()
            row["levels"] = prov.levels(best)
            fitness.reset_stats()
        row["ppl_dense"] = out["ppl_dense"]
        out["rows"].append(row)
        print({k: v for k, v in row.items() if k not in ("levels", "evoforge_dropped", "history_kl")}, flush=True)
        save()
    out["load_avg_end"] = os.getloadavg()
    save()
    return out


def _f(x, fmt="{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def markdown(res: dict) -> str:
    s = res["settings"]
    m = res["machine"]
    lines = [
        "## Compression on SmolLM2-135M (issue 5) — `evoforge bench compress`",
        "",
        (f"{m['cpu']} ({m['cores']} cores, shared with other jobs), {m['date']}; load average at the start "
         f"{', '.join(f'{x:.1f}' for x in res['load_avg_start'])}; torch {res['torch']}, git {m['git']}."),
        (f"SmolLM2-135M-Instruct (Q4_1 GGUF de-quantised to float32). WikiText-2 test tokenised whole "
         f"({res['text_tokens']} tokens): calibration = the first {res['calibration'][0]} windows of "
         f"{res['calibration'][1]} tokens of the first half; perplexity on the first {s['windows']} "
         f"non-overlapping windows of {s['window']} tokens of the second half."),
        (f"Search: (1 + {s['offspring']}), stages {s['survivors']} <- {s['stage_tokens'][0]} tokens, 1 <- "
         f"{s['stage_tokens'][1]} tokens, from uniform (depth: from ShortGPT), up to {s['generations']} "
         f"generations or {s['search_seconds']:.0f} s per row (the machine is shared: the generations run are "
         f"listed), fitness KL over the teacher's top {s['top_k']} + tail bin, candidates computed in "
         f"{s.get('compute_dtype') or 'float32'}; EvoPress runs hundreds of "
         "generations. Databases: SparseGPT, 3 levels each side, 20,000 weights per step; GPTQ 2/3/4 bits, "
         "group 64."),
        "",
        ("| row | dense | uniform | OWL | ShortGPT | evoforge | generations | s / generation | database build s "
         "| database MB |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = {"s50": "50% sparsity", "s60": "60% sparsity", "s70": "70% sparsity", "q3": "3 bits",
             "q2.5": "2.5 bits", "d25": "25% depth (7+7 of 30+30)"}
    for r in res["rows"]:
        lines.append(
            f"| {names.get(r['row'], r['row'])} | {_f(r.get('ppl_dense'))} | {_f(r.get('ppl_uniform'))} | "
            f"{_f(r.get('ppl_owl'))} | {_f(r.get('ppl_shortgpt'))} | **{_f(r.get('ppl_evoforge'))}** | "
            f"{r.get('generations', '-')} | "
            f"{_f(r.get('s_per_generation'), '{:.1f}')} | {_f(r.get('db_build_s'), '{:.0f}')} | "
            f"{_f(None if r.get('db_bytes') is None else r['db_bytes'] / 1e6, '{:.0f}')} |")
    if "hessians_s" in res:
        lines += ["", (f"Database build = Hessians on {res['calibration'][0] * res['calibration'][1]} tokens "
                       f"({res['hessians_s']:.0f} s, shared by every database) + solves.")]
    if "load_avg_end" in res:
        lines.append(f"Load average at the end: {', '.join(f'{x:.1f}' for x in res['load_avg_end'])}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = OneLineParser(prog="evoforge bench compress", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--text", default=str(TEXT))
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    ap.add_argument("--generations", type=int, default=50, help="at most this many per row")
    ap.add_argument("--search-seconds", type=float, default=390.0, help="search time per row")
    ap.add_argument("--min-generations", type=int, default=3, help="at least this many per row")
    ap.add_argument("--reuse-db", action="store_true", help="open a sparsity database left in --work by a run")
    ap.add_argument("--offspring", type=int, default=8)
    ap.add_argument("--survivors", type=int, default=2, help="survivors of the first stage")
    ap.add_argument("--stage-tokens", type=int, nargs=2, default=[512, 2048],
                    help="tokens of the first and the last stage (EvoPress: 1024 4096 with 16 offspring, 4 survivors)")
    ap.add_argument("--calib-seqs", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compute-dtype", default=None, choices=("bfloat16",),
                    help="the search's candidates in bfloat16 (autocast); perplexities stay float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/evoforge-bench-compress")
    ap.add_argument("--out", default="bench/results/compress.json")
    ap.add_argument("--md", default="bench/results/SECTION-compress.md")
    a = ap.parse_args(argv)
    a.rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    bad = [r for r in a.rows if r not in ROWS]
    if bad:
        raise SystemExit(f"unknown rows {bad}; choose from {list(ROWS)}")
    res = run(a)
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
