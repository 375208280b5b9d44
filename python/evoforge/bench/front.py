"""Compression fronts (issue 15): the front run itself, its latency model against real packed models,
dedicated single-budget runs, and predictor screening.

    evoforge bench front [--quick] [--parts front,latency,dedicated,screen] [--generations G]
                         [--pop-size P] [--offspring N] [--seeds 3] [--first-seed 0] [--work DIR] [--out FILE]

SmolLM2-135M (``--quick``: stories260k, smaller everything), calibrated on WikiText-2.

front
    ``FrontConfig(space="sparsity+quant", objectives=("kl", "bytes", "latency"))`` with shares
    0, 0.3 .. 0.7 and 3, 4, 8, 16 bits (SparseGPT database, RTN of the kept values, groups of 64):
    its points, evaluations and phase times; how many uniform configurations a front point
    dominates or matches on held-out KL and bytes (target: all); the engine's own share of the
    search time (target: at most 2% of the evaluation time).
latency
    At least 8 front points exported as packed models (``FrontResult.export(packed=True)``, then
    ``evoforge.layers.load``) and timed whole (a decode step after 16 cached tokens; a prefill of
    ``--prefill`` tokens) against the table's prediction: relative error (target <= 15%) and
    Spearman (target >= 0.9).
dedicated
    Three single-budget runs (sparsity 0.6 with float16 values; RTN quant at 4 and at 3 bits, groups
    of 64, asymmetric as the front), given together the front's number of evaluations; at each one's
    packed bytes, the front's best held-out KL within that size against the run's (target: within 5%).
screen
    The unscreened front against a screened one (``screen=--screen``) given at most half of its
    evaluations, ``--seeds`` seeds: hypervolume of the returned fronts' held-out KL and bytes
    (normalised by a common reference point); target: the screened run reaches the unscreened one's.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from evoforge._cli_parser import OneLineParser, int_at_least
from evoforge.bench import _harness, _timing

STORIES = _harness.shared_data("stories260k", "hf")
TEXT = _harness.shared_data("text", "wikitext2-test.raw")
PARTS = ("front", "latency", "dedicated", "screen")  # latency / dedicated without front: reuse --work's front


def _setting(quick: bool, a: argparse.Namespace) -> dict:
    base = {"sparsities": (0.0, 0.3, 0.4, 0.5, 0.6, 0.7), "bits": (3, 4, 8, 16), "group_size": 64,
            "objectives": ("kl", "bytes", "latency"), "seed": 0, "progress": False}
    if quick:
        base.update(n_calib=8, n_heldout=8, seq_len=64, pop_size=24, offspring=16, generations=6, group_size=32,
                    db_method="sparsegpt")
    else:
        base.update(n_calib=8, n_heldout=16, seq_len=128, pop_size=32, offspring=16, generations=8,
                    calib_text=str(TEXT))
    for k in ("generations", "pop_size", "offspring", "n_heldout"):
        if getattr(a, k) is not None:
            base[k] = getattr(a, k)
    return base


def _load(quick: bool):
    from evoforge.compress import load_model

    return load_model(str(STORIES) if quick else "smollm2-135m")


def _dominated_or_matched(res: Any) -> tuple[int, int]:
    pts = np.array([[p["heldout"]["kl"], p["heldout"]["bytes"]] for p in res.points])
    n = 0
    for u in res.uniform:
        f = np.array([u["heldout"]["kl"], u["heldout"]["bytes"]])
        n += bool(np.any(np.all(pts <= f + 1e-12 * np.abs(f), axis=1)))  # KL may be -1e-4 (rounding)
    return n, len(res.uniform)


def part_front(model: Any, tok: Any, kw: dict, work: Path) -> tuple[Any, dict]:
    from evoforge.compress import FrontConfig, compress

    rd = work / "front"
    shutil.rmtree(rd, ignore_errors=True)
    t0 = time.perf_counter()
    res = compress(model, FrontConfig(run_dir=str(rd), **kw), tokenizer=tok)
    wall = time.perf_counter() - t0
    dom, n_uni = _dominated_or_matched(res)
    t = res.times
    engine = t["search"] - t["search_evaluate"]
    row = {"points": len(res.points), "evaluations": res.evaluations, "generations": res.generations,
           "wall_s": wall, "times": dict(t), "uniform_dominated_or_matched": dom, "uniform": n_uni,
           "engine_s": engine, "engine_share_of_evaluation": engine / max(t["search_evaluate"], 1e-12)}
    return res, row


def _space(res: Any) -> Any:
    """The front's space: the one it was computed with, or rebuilt from its database."""
    if res._bound is not None:
        return res._bound[1]
    from evoforge.compress import FrontSpace, LayerDatabase

    return FrontSpace(LayerDatabase.open(res.db_path), res.bits, group_size=res.group_size, symmetric=res.symmetric,
                      depth="depth" in res.space.split("+"))


def part_latency(model: Any, res: Any, work: Path, prefill: int, n_points: int, rounds: int = 11) -> dict:
    """The points (and the dense model, for the speed-ups) timed in interleaved rounds (the first a
    warm-up), so that a drift of the machine's speed hits all alike, against the front's latency
    model (``latency_tables``: the table times the in-model factor of each level, plus the fixed
    part), made now at 1 and at ``prefill`` tokens."""
    from evoforge.compress.methods.front import latency_tables
    from evoforge.layers import load as load_packed

    space = _space(res)
    order = np.argsort([p["heldout"]["bytes"] for p in res.points])
    pick = order[np.unique(np.linspace(0, len(order) - 1, min(n_points, len(order))).round().astype(int))]
    lat = dict(zip(("decode", "prefill"), latency_tables(space, model, (1, prefill))))
    models: dict[Any, Any] = {"dense": model.eval()}  # float32 on the CPU, as loaded
    for j in pick:
        out = res.export(int(j), work / f"point{j}", packed=True, model=model)
        if (out / "evoforge_layers.json").is_file():
            models[int(j)] = load_packed(out).eval()
        else:  # a dense float16 point: exported unpacked, run in float32 as the table times it
            import transformers

            models[int(j)] = transformers.AutoModelForCausalLM.from_pretrained(out).float().eval()
    med = _timing.interleaved_medians(models, prefill=prefill, rounds=rounds)
    rows = []
    for j in pick:
        levels = space.combined(np.array(res.points[j]["genome"]))[0]
        row = {"point": int(j), "bytes": res.points[j]["heldout"]["bytes"]}
        for m, (table, fixed, _) in lat.items():
            row[f"{m}_pred"] = float(table[np.arange(space.n_layers), levels].sum() + fixed)
            row[f"{m}_meas"] = med[int(j)][m]
            row[f"{m}_speedup"] = med["dense"][m] / med[int(j)][m]
        rows.append(row)
        shutil.rmtree(work / f"point{j}", ignore_errors=True)
    return {"rows": rows, "summary": _timing.prediction_summary(rows), "prefill_tokens": prefill, "rounds": rounds,
            "dense": med["dense"], "fixed": {m: v[1] for m, v in lat.items()},
            "factors": {m: v[2].tolist() for m, v in lat.items()}}


def part_dedicated(model: Any, tok: Any, kw: dict, res: Any, work: Path) -> list[dict]:
    from evoforge.compress import QuantConfig, SparsityConfig, compress
    from evoforge.layers import packed_bytes

    per_run = max(1, res.evaluations // 3)
    common = {k: kw[k] for k in ("n_calib", "n_heldout", "seq_len", "seed") if k in kw}
    if "calib_text" in kw:
        common["calib_text"] = kw["calib_text"]
    off = 16
    gens = max(1, per_run // (off + 1))
    runs = [("sparsity 0.6 (f16 values)", SparsityConfig(target=0.6, offspring=off, generations=gens, **common)),
            ("quant 4 bits (RTN g64)", QuantConfig(target=4, db_method="rtn", bits=(2, 3, 4, 5, 6, 7, 8),
                                                   group_size=kw["group_size"], offspring=off, generations=gens,
                                                   **common)),
            ("quant 3 bits (RTN g64)", QuantConfig(target=3, db_method="rtn", bits=(2, 3, 4, 5, 6, 7, 8),
                                                   group_size=kw["group_size"], offspring=off, generations=gens,
                                                   **common))]
    from evoforge.compress import adapt

    shapes = [(ref.out_features, ref.in_features) for ref in adapt(model).linear_layers()]
    out = []
    for name, cfg in runs:
        r = compress(model, cfg, tokenizer=tok)
        if cfg.method == "sparsity":
            nnz = [o * i - round(s * o * i) for s, (o, i) in zip(r.sparsity, shapes)]
            size = sum(packed_bytes(o, i, nnz=n, values_dtype="float16") for n, (o, i) in zip(nnz, shapes))
        else:
            size = sum(packed_bytes(o, i, bits=b, group_size=kw["group_size"], symmetric=False)
                       for b, (o, i) in zip(r.bits, shapes))
        within = [p["heldout"]["kl"] for p in res.points if p["heldout"]["bytes"] <= size]
        best = min(within) if within else None
        out.append({"run": name, "evaluations": r.evaluations, "bytes": size, "kl_dedicated": r.kl_search,
                    "kl_front_best_within": best,
                    "front_over_dedicated": None if best is None else best / r.kl_search})
    return out


def part_screen(model: Any, tok: Any, kw: dict, work: Path, seeds: range, factor: int) -> list[dict]:
    """The unscreened front against a screened one given at most half of its evaluations
    (:func:`_harness.screened_half`), per seed: hypervolume of the returned front's held-out KL and
    bytes in the box of the uniform configurations (:func:`_harness.boxed_hypervolume`)."""
    from evoforge.compress import FrontConfig, compress

    out = []
    for seed in seeds:
        runs: dict[str, Any] = {}
        for name in ("unscreened", f"screen {factor}, half the evaluations"):
            extra = _harness.screened_half(kw, factor, runs["unscreened"][1]) if runs else {}
            k = {**kw, "objectives": ("kl", "bytes"), "seed": seed, **extra}
            res = compress(model, FrontConfig(run_dir=None, export=False, **k), tokenizer=tok)
            F, U = (np.array([[p["heldout"]["kl"], p["heldout"]["bytes"]] for p in pts])
                    for pts in (res.points, res.uniform))
            spear = [h.get("screen_spearman") for h in res.history if h.get("screen_spearman") is not None]
            runs[name] = (F, res.evaluations, spear, U)
            del res  # its space holds the run's cached levels (gigabytes on SmolLM2)
            gc.collect()
        for name, (F, ev, spear, _) in runs.items():
            out.append({"seed": seed, "run": name, "evaluations": ev,
                        "hypervolume": _harness.boxed_hypervolume(F, runs["unscreened"][3]),
                        "spearman_kl": [s[0] if isinstance(s, list) else s for s in spear]})
            print(f"screen: seed {seed} {name}: {ev} evaluations, hypervolume {out[-1]['hypervolume']:.4f}",
                  flush=True)  # a long run: each seed's numbers as they come
    return out


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench front", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="stories260k, small settings (minutes)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    ap.add_argument("--generations", type=int_at_least(1), default=None)
    ap.add_argument("--pop-size", dest="pop_size", type=int_at_least(2), default=None)
    ap.add_argument("--offspring", type=int_at_least(1), default=None)
    ap.add_argument("--heldout", dest="n_heldout", type=int_at_least(1), default=None,
                    help="held-out sequences (default 16; 8 with --quick)")
    ap.add_argument("--seeds", type=int_at_least(1), default=3, help="screening seeds")
    ap.add_argument("--first-seed", type=int_at_least(0), default=0, help="the screening seeds start here")
    ap.add_argument("--screen", type=int_at_least(2), default=16, help="screening factor k of the screened runs")
    ap.add_argument("--points", type=int_at_least(2), default=8, help="front points exported and timed")
    ap.add_argument("--prefill", type=int_at_least(2), default=128, help="prefill tokens of the latency check")
    ap.add_argument("--work", default="/tmp/evoforge-bench-front")
    ap.add_argument("--out", default=str(Path("bench/results/front.json")))
    a = ap.parse_args(argv)
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    bad = sorted(set(parts) - set(PARTS))
    if bad:
        ap.error(f"--parts: unknown {bad}; choose from {','.join(PARTS)}")
    import torch

    torch.set_num_threads(1)  # the latency table and the model timings under one setting (2 cores)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    model, tok = _load(a.quick)
    kw = _setting(a.quick, a)
    out: dict[str, Any] = {"machine": _harness.machine(), "model": "stories260k" if a.quick else "smollm2-135m",
                           "settings": {k: v for k, v in kw.items() if k != "progress"}}
    res = None
    if "front" not in parts and any(p in parts for p in ("latency", "dedicated")):
        from evoforge.compress import load_front

        res = load_front(work / "front")  # the front of an earlier run of this benchmark (same --work)
        print(f"front: reusing {work / 'front'} ({len(res.points)} points)")
    elif "front" in parts:
        res, row = part_front(model, tok, kw, work)
        out["front"] = row
        print(f"front: {row['points']} points, {row['evaluations']} evaluations in {row['wall_s']:.0f} s; uniform "
              f"dominated or matched on held-out KL and bytes: {row['uniform_dominated_or_matched']}/{row['uniform']}; "
              f"engine {row['engine_s']:.2f} s = {100 * row['engine_share_of_evaluation']:.2f}% of evaluation")
        print(res.table())
    if "latency" in parts:
        lat = part_latency(model, res, work, a.prefill, a.points)
        out["latency"] = lat
        _harness.print_table(["point", "MB", "decode pred ms", "decode meas ms", "prefill pred ms",
                              "prefill meas ms"],
                             [[r["point"], f"{r['bytes'] / 1e6:.2f}", f"{r['decode_pred'] * 1e3:.2f}",
                               f"{r['decode_meas'] * 1e3:.2f}", f"{r['prefill_pred'] * 1e3:.1f}",
                               f"{r['prefill_meas'] * 1e3:.1f}"] for r in lat["rows"]])
        for m, s in lat["summary"].items():
            print(f"{m}: max relative error {100 * s['max_rel_error']:.1f}%, mean {100 * s['mean_rel_error']:.1f}%, "
                  f"Spearman {s['spearman']:.3f}")
    if "dedicated" in parts:
        from evoforge.compress.front_result import write_front

        out["dedicated"] = part_dedicated(model, tok, kw, res, work)
        res.references = [{"name": r["run"], "kl": r["kl_dedicated"], "bytes": r["bytes"]} for r in out["dedicated"]]
        write_front(res, work / "front")  # front.png with the single-budget runs drawn in
        _harness.print_table(["run", "evaluations", "MB", "dedicated KL", "front best KL within", "front / dedicated"],
                             [[r["run"], r["evaluations"], f"{r['bytes'] / 1e6:.2f}", f"{r['kl_dedicated']:.4f}",
                               "-" if r["kl_front_best_within"] is None else f"{r['kl_front_best_within']:.4f}",
                               "-" if r["front_over_dedicated"] is None else f"{r['front_over_dedicated']:.3f}"]
                              for r in out["dedicated"]])
    if "screen" in parts:
        out["screen"] = part_screen(model, tok, kw, work, range(a.first_seed, a.first_seed + a.seeds), a.screen)
        _harness.print_table(["seed", "run", "evaluations", "hypervolume"],
                             [[r["seed"], r["run"], r["evaluations"], f"{r['hypervolume']:.4f}"]
                              for r in out["screen"]])
    out["machine_end"] = _harness.machine()
    print("wrote", _harness.write_json(a.out, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
