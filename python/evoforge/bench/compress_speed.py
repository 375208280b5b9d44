"""Speed of the compression search: time per generation and tokens/s of EvoPress's sparsity
schedule, with each of prefix reuse, batching, the evaluation cache and the fused KL switched off
in turn (and all off: the reference's way of working, batch 1 and every candidate in full).

    python bench/compress_speed.py [--quick] [--generations 2] [--database DIR]

Model: SmolLM2-135M (``evoforge.compress.pipeline.load_model("smollm2-135m")``), calibration
64 x 512 tokens of WikiText-2 (first half), a 50% magnitude sparsity database (3 levels each side,
20,000 weights per step) unless ``--database``; (1 + 16), stages 4 <- 1024 tokens, 1 <- 4096
tokens, fitness KL over the teacher's top 256 + tail (``--top-k 0``: full vocabulary).
``--quick``: stories260k (../shared/data/stories260k/hf), 16 x 128 sampled tokens, stages
4 <- 512, 1 <- all tokens (the last stage deterministic, so the cache can hit).
Every variant runs the same seeds; the table says whether it found the same best genome.
Tokens/s counts the tokens scored per candidate (what the reference processes), whatever was
skipped.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from evoforge.bench import _harness
from evoforge.bench.compress import _ParentHint

ROOT = Path(__file__).resolve().parents[3]
STORIES = ROOT / ".." / "shared" / "data" / "stories260k" / "hf"
TEXT = ROOT / ".." / "shared" / "data" / "text" / "wikitext2-test.raw"

VARIANTS = [  # name, prefix_reuse, batch_size, cache, fused_kl
    ("evoforge (all on)", True, 8, True, True),
    ("prefix reuse off", False, 8, True, True),
    ("batching off (batch 1)", True, 1, True, True),
    ("cache off", True, 8, False, True),
    ("fused KL off (torch log_softmax)", True, 8, True, False),
    ("all off", False, 1, False, False),
]


def _setup(args):
    import torch

    from evoforge.compress import adapt, build_database, pipeline, provider_for
    from evoforge.compress.calibration import sample_sequences
    from evoforge.compress.database import LayerDatabase

    if args.quick:
        if not STORIES.is_dir():
            raise SystemExit(f"stories260k not found at {STORIES}")
        model, tok = pipeline.load_model(STORIES)
        calib = sample_sequences(model, 16, 128, seed=0, bos_token_id=1)
        stages = [(4, 512), (1, None)]
    else:
        model, tok = pipeline.load_model(args.model)
        ids = pipeline.text_ids(tok, args.text)
        first = ids[: ids.numel() // 2]
        calib = first[: 64 * 512].reshape(64, 512).contiguous()
        stages = [(4, 1024), (1, 4096)]
    adapter = adapt(model)
    if args.database:
        db = LayerDatabase.open(args.database, model_fingerprint=adapter.fingerprint())
    else:
        d = Path(args.work) / ("db-quick" if args.quick else "db-magnitude-0.5")
        if (d / "manifest.json").is_file():
            db = LayerDatabase.open(d, model_fingerprint=adapter.fingerprint())
        else:
            db = build_database(adapter, None, d, method="magnitude", sparsity=0.5, n_levels=3,
                                step=None if args.quick else 20000, overwrite=True)
    prov = provider_for(db, device="cpu", dtype=torch.float32)
    return adapter, prov, calib, stages, torch


class _NoCache:
    """An EvaluationCache stand-in that never finds anything (the 'cache off' variant)."""

    def get(self, key):
        return None

    def put(self, *args, **kwargs):
        return None

    def close(self):
        return None


def run(args) -> dict:
    import numpy as np

    from evoforge.cache import EvaluationCache
    from evoforge.compress.fitness import KLFitness
    from evoforge.search import OnePlusLambda

    adapter, prov, calib, stages, torch = _setup(args)
    torch.set_num_threads(args.threads)
    top_k = args.top_k or None
    teacher_dir = Path(args.work) / ("teacher-quick" if args.quick else "teacher")
    rows = []
    ref_genome = None
    for name, reuse, bs, cache, fused in VARIANTS:
        if args.variants and name.split(" ")[0] not in args.variants:
            continue
        t0 = time.perf_counter()
        fit = KLFitness(adapter, prov, calib, top_k=top_k, teacher_dir=teacher_dir, batch_size=bs,
                        prefix_reuse=reuse, fused_kl=fused)
        setup_s = time.perf_counter() - t0
        eng = OnePlusLambda(prov.uniform(), prov.mutation(3), lower=prov.lower, upper=prov.upper,
                            n_offspring=args.offspring, stages=stages, seed=args.seed, progress=False,
                            cache=EvaluationCache() if cache else _NoCache())

        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = eng.run(_ParentHint(fit, eng), generations=args.generations)
        dt = time.perf_counter() - t0
        best = np.asarray(res.best_genome)
        if ref_genome is None:
            ref_genome = best
        scored = _scored_tokens(eng.history, fit, args, stages)
        st = dict(fit.stats)
        rows.append({"variant": name, "prefix_reuse": reuse, "batch_size": bs, "cache": cache, "fused_kl": fused,
                     "s_per_generation": dt / args.generations, "tokens_per_s": scored / dt,
                     "candidate_tokens": scored, "setup_s": setup_s, "teacher_bytes": fit.teacher.nbytes,
                     "cache_hits": int(eng.cache_hits), "evaluations": int(eng.evaluations),
                     "blocks_computed": st["blocks_computed"], "blocks_skipped": st["blocks_skipped"],
                     "dense_blocks": st["dense_blocks"], "best_fitness": float(res.best_fitness),
                     "same_best_genome": bool(np.array_equal(best, ref_genome)), "load_avg_1min": load0})
        print(rows[-1], flush=True)
        eng.close()
        del fit
    base = rows[0]["s_per_generation"]
    for r in rows:
        r["x_slower_than_all_on"] = r["s_per_generation"] / base
    return {"machine": _harness.machine(), "torch": torch.__version__, "model": "stories260k" if args.quick
            else args.model, "calibration": list(calib.shape), "stages": stages, "offspring": args.offspring,
            "generations": args.generations, "top_k": top_k, "rows": rows}


def _scored_tokens(history, fit, args, stages) -> int:
    """Tokens scored per generation x generations, counted per requested candidate (as the
    reference evaluates them: every offspring at stage 1, survivors and the parent later)."""
    total, alive = 0, args.offspring
    for s, (keep, fid) in enumerate(stages):
        n = alive + (1 if s == len(stages) - 1 else 0)
        tok = fit.n_seq * fit.seq_len if fid is None else min(fit.n_seq, -(-fid // fit.seq_len)) * fit.seq_len
        total += n * tok
        alive = keep
    return total * args.generations


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="stories260k, seconds")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--text", default=str(TEXT))
    ap.add_argument("--database", default=None, help="a sparsity database of the model (default: magnitude)")
    ap.add_argument("--generations", type=int, default=None, help="default 2 (--quick: 10)")
    ap.add_argument("--offspring", type=int, default=16)
    ap.add_argument("--top-k", type=int, default=256, help="0: the full vocabulary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="", help="first words of the variants to run (default all)")
    ap.add_argument("--work", default="/tmp/evoforge-bench-compress")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    a.generations = a.generations or (10 if a.quick else 2)
    a.variants = [v for v in a.variants.split(",") if v]
    res = run(a)
    _harness.print_table(
        ["variant", "s / generation", "tokens/s", "x slower", "cache hits", "blocks run / skipped",
         "same best genome", "load"],
        [[r["variant"], f"{r['s_per_generation']:.2f}", f"{r['tokens_per_s']:.0f}", f"{r['x_slower_than_all_on']:.2f}",
          r["cache_hits"], f"{r['blocks_computed']} / {r['blocks_skipped']}", r["same_best_genome"],
          f"{r['load_avg_1min']:.1f}"] for r in res["rows"]])
    out = a.out or f"bench/results/compress_speed{'_quick' if a.quick else ''}.json"
    print("wrote", _harness.write_json(out, res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
