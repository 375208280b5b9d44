"""Speed of the compression search: time per generation and tokens/s of EvoPress's sparsity
schedule, with each of prefix reuse, batching, the evaluation cache and the fused KL switched off
in turn (and all off: the reference's way of working, batch 1 and every candidate in full), and
with the candidates computed in bfloat16 (``compute_dtype="bfloat16"``, autocast).

    evoforge bench compress_speed [--quick] [--generations 2] [--database DIR] [--depth]

Model: SmolLM2-135M (``evoforge.compress.load_model("smollm2-135m")``), calibration
64 x 512 tokens of WikiText-2 (first half), a 50% magnitude sparsity database (3 levels each side,
20,000 weights per step) unless ``--database``; (1 + 16), stages 4 <- 1024 tokens, 1 <- 4096
tokens, fitness KL over the teacher's top 256 + tail (``--top-k 0``: full vocabulary).
``--quick``: stories260k (../shared/data/stories260k/hf), 16 x 128 sampled tokens, stages
4 <- 512, 1 <- all tokens (the last stage deterministic, so the cache can hit).
The batches of one search (all switches on) are recorded and replayed through every variant,
generation by generation in turn, so that the shared machine's load drifts over all variants alike;
each variant's KL values are compared with the recording (the table's last column). Tokens/s
counts the tokens scored per requested candidate (what the reference processes), whatever was
skipped or cached.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness

STORIES = _harness.shared_data("stories260k", "hf")
TEXT = _harness.shared_data("text", "wikitext2-test.raw")

VARIANTS = [  # name, prefix_reuse, batch_size, cache, fused_kl, compute_dtype
    ("evoforge (all on)", True, 8, True, True, None),
    ("bfloat16 compute (autocast)", True, 8, True, True, "bfloat16"),
    ("prefix reuse off", False, 8, True, True, None),
    ("batching off (batch 1)", True, 1, True, True, None),
    ("cache off", True, 8, False, True, None),
    ("fused KL off (torch log_softmax)", True, 8, True, False, None),
    ("all off", False, 1, False, False, None),
]


def _setup(args):
    import torch

    from evoforge.compress import LayerDatabase, adapt, build_database, load_model, provider_for, text_ids
    from evoforge.compress.calibration import sample_sequences

    if args.quick:
        if not STORIES.is_dir():
            raise SystemExit(f"stories260k not found at {STORIES}")
        model, tok = load_model(STORIES)
        calib = sample_sequences(model, 16, 128, seed=0, bos_token_id=1)
        stages = [(4, 512), (1, None)]
    else:
        model, tok = load_model(args.model)
        ids = text_ids(tok, args.text)
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


def run(args) -> dict:
    """Record the batches of one search (all switches on), then replay them through every
    variant, generation by generation in turn (so that the shared machine's load drifts over all
    variants alike); each variant's fitness values are compared with the recording."""
    import numpy as np

    from evoforge.compress.fitness import KLFitness
    from evoforge.search import OnePlusLambda

    adapter, prov, calib, stages, torch = _setup(args)
    torch.set_num_threads(args.threads)
    top_k = args.top_k or None
    teacher_dir = Path(args.work) / ("teacher-quick" if args.quick else "teacher")
    variants = [v for v in VARIANTS if not args.variants or v[0].split(" ")[0] in args.variants]
    fits = {}
    for name, reuse, bs, _cache, fused, cdt in variants:
        t0 = time.perf_counter()
        fits[name] = KLFitness(adapter, prov, calib, top_k=top_k, teacher_dir=teacher_dir, batch_size=bs,
                               prefix_reuse=reuse, fused_kl=fused, compute_dtype=cdt)
        print(f"{name}: set-up {time.perf_counter() - t0:.1f} s", flush=True)

    # the recording: OnePlusLambda with the first variant, every batch and the parent at that time
    eng = OnePlusLambda(prov.uniform(), prov.mutation(3), lower=prov.lower, upper=prov.upper,
                        n_offspring=args.offspring, stages=stages, seed=args.seed, progress=False)
    first = fits[variants[0][0]]
    record: list[tuple] = []

    class Recorder:
        def evaluate(self, genomes, batch):
            parent = eng.parent.copy()
            first.set_base(parent)
            F = first.evaluate(genomes, batch)
            record.append((batch.generation, parent, np.array(genomes), batch.fidelity, batch.seed, F))
            return F

    t0 = time.perf_counter()
    eng.run(Recorder(), generations=args.generations)
    print(f"recorded {len(record)} batches in {time.perf_counter() - t0:.1f} s", flush=True)
    eng.close()

    class Batch:  # what KLFitness reads of a batch
        def __init__(self, fidelity, seed):
            self.fidelity, self.seed = fidelity, seed

    seconds = {v[0]: 0.0 for v in variants}
    tokens = {v[0]: 0 for v in variants}
    hits = {v[0]: 0 for v in variants}
    err = {v[0]: 0.0 for v in variants}
    caches = {v[0]: {} for v in variants}
    loads = []
    for g in sorted({r[0] for r in record}):
        loads.append(os.getloadavg()[0])
        for name, reuse, _bs, cache, _fused, _cdt in variants:
            fit = fits[name]
            t0 = time.perf_counter()
            for gen, parent, genomes, fid, seed, want in record:
                if gen != g:
                    continue
                if reuse:
                    fit.set_base(parent)
                keys = [(x.tobytes(), fid, seed) for x in genomes]
                got = np.empty(len(genomes))
                todo = [i for i, k in enumerate(keys) if not (cache and k in caches[name])]
                for i, k in enumerate(keys):
                    if i not in todo:
                        got[i] = caches[name][k]
                hits[name] += len(keys) - len(todo)
                if todo:
                    got[todo] = fit.evaluate(genomes[todo], Batch(fid, seed))
                    if cache:
                        caches[name].update({keys[i]: got[i] for i in todo})
                err[name] = max(err[name], float(np.max(np.abs(got - want))))
                n = fit.n_seq if fid is None else min(fit.n_seq, -(-fid // fit.seq_len))
                tokens[name] += len(genomes) * n * fit.seq_len
            seconds[name] += time.perf_counter() - t0
    G = args.generations
    base = seconds[variants[0][0]]
    rows = []
    for name, reuse, bs, cache, fused, cdt in variants:
        st = fits[name].stats
        rows.append({"variant": name, "prefix_reuse": reuse, "batch_size": bs, "cache": cache, "fused_kl": fused,
                     "compute_dtype": cdt,
                     "s_per_generation": seconds[name] / G, "tokens_per_s": tokens[name] / seconds[name],
                     "x_slower_than_all_on": seconds[name] / base, "cache_hits": hits[name],
                     "blocks_computed": st["blocks_computed"], "blocks_skipped": st["blocks_skipped"],
                     "dense_blocks": st["dense_blocks"], "max_abs_diff_vs_recording": err[name],
                     "teacher_bytes": fits[name].teacher.nbytes})
        print(rows[-1], flush=True)
    return {"machine": _harness.machine(), "torch": torch.__version__, "model": "stories260k" if args.quick
            else args.model, "calibration": list(calib.shape), "stages": stages, "offspring": args.offspring,
            "generations": G, "top_k": top_k, "load_avg_per_generation": loads, "rows": rows}


def run_depth(args) -> dict:
    """EvoPress's depth schedule (25%: 7 of 30 attention and 7 of 30 MLP sub-blocks, (1 + 8), stages
    2 <- 1024, 1 <- 4096 tokens) from the ShortGPT choice, in float32 and in bfloat16 compute, the
    same seed: seconds per generation of each."""
    from evoforge.compress import DepthFitness, adapt, depth_mutation, load_model, text_ids
    from evoforge.compress.baselines import shortgpt_genome, shortgpt_scores
    from evoforge.search import OnePlusLambda

    import torch

    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    ids = text_ids(tok, args.text)
    calib = ids[: ids.numel() // 2][: 64 * 512].reshape(64, 512).contiguous()
    adapter = adapt(model)
    N = adapter.n_blocks
    k = int(0.25 * N)  # 7 of 30, as the reference
    initial = shortgpt_genome(shortgpt_scores(adapter, calib[:8]), k)
    rows = []
    for cdt in (None, "bfloat16"):
        fit = DepthFitness(adapter, calib, k=k, top_k=args.top_k or None, compute_dtype=cdt)
        eng = OnePlusLambda(initial, depth_mutation(N, 3), lower=0, upper=1, n_offspring=8,
                            stages=[(2, 1024), (1, 4096)], seed=args.seed, progress=False)
        t0 = time.perf_counter()
        res = eng.run(fit, generations=args.generations)
        dt = (time.perf_counter() - t0) / args.generations
        eng.close()
        rows.append({"compute_dtype": cdt or "float32", "s_per_generation": dt, "vs_reference_37s": 37.0 / dt,
                     "best_kl": float(res.best_fitness), "load_avg": os.getloadavg()[0]})
        print(rows[-1], flush=True)
    return {"machine": _harness.machine(), "torch": torch.__version__, "model": args.model, "k": k,
            "generations": args.generations, "rows": rows}


def main(argv=None) -> int:
    ap = OneLineParser(prog="evoforge bench compress_speed", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
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
    ap.add_argument("--depth", action="store_true",
                    help="time EvoPress's depth schedule (float32 and bfloat16 compute) instead")
    a = ap.parse_args(argv)
    a.generations = a.generations or (10 if a.quick else 2)
    if a.depth:
        res = run_depth(a)
        _harness.print_table(["compute", "s / generation", "reference 37 s / ours"],
                             [[r["compute_dtype"], f"{r['s_per_generation']:.2f}", f"{r['vs_reference_37s']:.1f}x"]
                              for r in res["rows"]])
        print("wrote", _harness.write_json(a.out or "bench/results/compress_speed_depth.json", res))
        return 0
    a.variants = [v for v in a.variants.split(",") if v]
    res = run(a)
    _harness.print_table(
        ["variant", "s / generation", "tokens/s", "x slower", "cache hits", "blocks run / skipped",
         "max |KL - recorded|"],
        [[r["variant"], f"{r['s_per_generation']:.2f}", f"{r['tokens_per_s']:.0f}", f"{r['x_slower_than_all_on']:.2f}",
          r["cache_hits"], f"{r['blocks_computed']} / {r['blocks_skipped']}",
          f"{r['max_abs_diff_vs_recording']:.1e}"] for r in res["rows"]])
    print("load average (1 min) per replayed generation:", ", ".join(f"{x:.1f}" for x in res["load_avg_per_generation"]))
    out = a.out or f"bench/results/compress_speed{'_quick' if a.quick else ''}.json"
    print("wrote", _harness.write_json(out, res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
