"""Sparse layer kernels and packed whole models against torch fp32, in the same process.

    evoforge bench layers_model [--quick] [--no-model] [--out FILE]

Kernel rows: Y = X W^T for W [N, K] at batch 1 / 8 / 32, torch fp32 ``nn.Linear`` (dense) and
``torch.sparse`` CSR matmul (the peer for unstructured sparsity) against evoforge's
``SparseLinear``: unstructured 50% and 70% (float32 and float16 values), 2:4 (float32), 2:4 + int4
and unstructured 50% + int4 (group 128). Shapes: 576 -> 1536 (SmolLM2's MLP) and 4096 -> 4096.
"weight MB" is what the kernel reads; "GB/s" that divided by the time.

Model rows (SmolLM2-135M via ``evoforge.compress.pipeline.load_model("smollm2-135m")``; skipped
when it is not installed): dense fp32 vs ``evoforge.layers.apply`` with int4 (g128, QuantLinear),
2:4 + int4 and 50% unstructured + int4 (SparseLinear): batch-1 greedy decode tokens/s (16-token
prompt, 32 new tokens, KV cache), prefill tokens/s (one 256-token sequence), and the checkpoint
size on disk (dense: ``save_pretrained`` fp32; packed: ``evoforge.layers.save`` with the dense
parts - embeddings, norms - in float16).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import warnings
from pathlib import Path

import evoforge
from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness

KERNEL_SHAPES = [(576, 1536), (4096, 4096)]  # (in_features K, out_features N)
BATCHES = [1, 8, 32]


def _dir_mb(d: Path) -> float:
    return sum(f.stat().st_size for f in Path(d).rglob("*") if f.is_file()) / 1e6


def _sparse_weight(W, sparsity: float, pattern: str):
    import torch

    g = torch.Generator().manual_seed(1)
    W = W.clone()
    if pattern == "2:4":
        N, K = W.shape
        grp = W.view(N, K // 4, 4)
        drop = torch.rand(grp.shape, generator=g).argsort(-1)[..., :2]
        grp.scatter_(-1, drop, 0.0)
    else:
        W[torch.rand(W.shape, generator=g) < sparsity] = 0.0
    return W


def kernel_rows(shapes, batches, *, repeats: int, budget_s: float) -> list[dict]:
    import torch

    from evoforge.layers import SparseLinear

    rows = []
    variants = [  # (label, sparsity, pattern, SparseLinear kwargs)
        ("unstructured 50% f32", 0.5, "unstructured", {}),
        ("unstructured 50% f16", 0.5, "unstructured", {"values_dtype": torch.float16}),
        ("unstructured 70% f32", 0.7, "unstructured", {}),
        ("unstructured 70% f16", 0.7, "unstructured", {"values_dtype": torch.float16}),
        ("2:4 f32", 0.5, "2:4", {}),
        ("2:4 + int4 g128", 0.5, "2:4", {"bits": 4, "group_size": 128}),
        ("unstructured 50% + int4 g128", 0.5, "unstructured", {"bits": 4, "group_size": 128}),
    ]
    for K, N in shapes:
        W = torch.randn(N, K, generator=torch.Generator().manual_seed(0))
        dense = torch.nn.Linear(K, N, bias=False)
        dense.weight.data.copy_(W)
        mods = []
        for label, s, pattern, kw in variants:
            Ws = _sparse_weight(W, s, pattern)
            csr = None
            if label == "unstructured 50% f32":
                with warnings.catch_warnings():  # torch calls its sparse CSR support beta
                    warnings.simplefilter("ignore")
                    csr = Ws.to_sparse_csr()
            mods.append((label, SparseLinear.from_dense(Ws, None, format=pattern, **kw), csr))
        for B in batches:
            x = torch.randn(B, K, generator=torch.Generator().manual_seed(B))
            with torch.inference_mode():
                base = _harness.measure(lambda d=dense, x=x: d(x), repeats=repeats, budget_s=budget_s)
                rows.append(_row(K, N, B, "torch fp32 Linear (dense)", base, base, N * K * 4))
                for label, m, csr in mods:
                    if csr is not None:
                        xt = x.t().contiguous()
                        r = _harness.measure(lambda c=csr, xt=xt: torch.sparse.mm(c, xt), repeats=repeats, budget_s=budget_s)
                        nnz = csr.values().numel()
                        rows.append(_row(K, N, B, "torch.sparse CSR mm, 50%", r, base, nnz * 12 + (N + 1) * 8))
                    r = _harness.measure(lambda m=m, x=x: m(x), repeats=repeats, budget_s=budget_s)
                    rows.append(_row(K, N, B, f"evoforge {label}", r, base, m.weight_bytes))
    return rows


def _row(K, N, B, method, m, base, nbytes) -> dict:
    return {"shape": f"{K}->{N}", "batch": B, "method": method, **m,
            "speedup_vs_torch_fp32": base["median_ms"] / m["median_ms"], "weight_MB": nbytes / 1e6,
            "GB_per_s": nbytes / 1e9 / (m["median_ms"] / 1e3)}


def model_rows(*, new_tokens: int, prefill: int, repeats: int, budget_s: float) -> list[dict]:
    import torch

    from evoforge.compress.pipeline import load_model
    from evoforge.errors import ConfigError
    from evoforge.layers import apply, save

    try:
        dense, _ = load_model("smollm2-135m")
    except (ConfigError, FileNotFoundError) as e:
        print(f"SmolLM2-135M not available, model rows skipped: {e}")
        return []
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="evoforge-bench-"))
    dense.save_pretrained(tmp / "dense")
    configs = [("dense fp32", None), ("int4 g128 (QuantLinear)", {"bits": 4, "group_size": 128}),
               ("2:4 + int4 g128 (SparseLinear)", {"pattern": "2:4", "bits": 4, "group_size": 128}),
               ("unstructured 50% + int4 g128 (SparseLinear)", {"sparsity": 0.5, "bits": 4, "group_size": 128})]
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, dense.config.vocab_size, (1, 16), generator=g)
    long = torch.randint(0, dense.config.vocab_size, (1, prefill), generator=g)
    base_dec = base_pre = None
    for name, spec in configs:
        model = dense if spec is None else apply(copy.deepcopy(dense), spec)
        if spec is None:
            mb = _dir_mb(tmp / "dense")
        else:
            out = tmp / name.split()[0].replace(":", "-")
            save(model, out, dtype=torch.float16)
            mb = _dir_mb(out)

        def decode(model=model):
            model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=0)

        def pre(model=model):
            model(input_ids=long, use_cache=False)

        with torch.inference_mode():
            d = _harness.measure(decode, repeats=repeats, budget_s=budget_s)
            p = _harness.measure(pre, repeats=repeats, budget_s=budget_s)
        base_dec = base_dec or d["median_ms"]
        base_pre = base_pre or p["median_ms"]
        rows.append({"model": "SmolLM2-135M", "config": name, "decode_tok_per_s": new_tokens / d["median_ms"] * 1e3,
                     "decode_speedup": base_dec / d["median_ms"], "prefill_tok_per_s": prefill / p["median_ms"] * 1e3,
                     "prefill_speedup": base_pre / p["median_ms"], "checkpoint_MB": mb,
                     "decode": d, "prefill": p})
    return rows


def run(*, quick: bool = False, model: bool = True, kernels: bool = True, threads: int | None = None) -> dict:
    import torch

    if threads is not None:
        evoforge.set_num_threads(threads)
    threads = evoforge.get_num_threads()
    torch.set_num_threads(threads)
    repeats, budget = (3, 2.0) if quick else (7, 4.0)
    res = {"machine": _harness.machine(), "torch": torch.__version__, "threads": threads,
           "kernels": kernel_rows(KERNEL_SHAPES, [1, 8] if quick else BATCHES, repeats=repeats, budget_s=budget)
           if kernels else []}
    if model:
        res["model"] = model_rows(new_tokens=16 if quick else 32, prefill=256, repeats=2 if quick else 3,
                                  budget_s=20.0)
    return res


def main(argv=None) -> int:
    ap = OneLineParser(prog="evoforge bench layers_model", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 1 and 8, fewer repeats")
    ap.add_argument("--no-model", action="store_true", help="kernel rows only")
    ap.add_argument("--no-kernels", action="store_true", help="model rows only")
    ap.add_argument("--threads", type=int, default=None, help="threads for evoforge and torch (default: evoforge's)")
    ap.add_argument("--out", default=str(Path("bench/results/layers_model.json")))
    a = ap.parse_args(argv)
    res = run(quick=a.quick, model=not a.no_model, kernels=not a.no_kernels, threads=a.threads)
    print(f"threads: {res['threads']} (evoforge and torch)")
    _harness.print_table(
        ["K->N", "batch", "method", "median ms", "IQR ms", "x torch fp32", "weight MB", "GB/s"],
        [[r["shape"], r["batch"], r["method"], _harness.fmt_ms(r["median_ms"]), _harness.fmt_ms(r["iqr_ms"]),
          f"{r['speedup_vs_torch_fp32']:.2f}", f"{r['weight_MB']:.1f}", f"{r['GB_per_s']:.1f}"]
         for r in res["kernels"]])
    if res.get("model"):
        _harness.print_table(
            ["model", "config", "decode tok/s", "x dense", "prefill tok/s", "x dense", "checkpoint MB"],
            [[r["model"], r["config"], f"{r['decode_tok_per_s']:.1f}", f"{r['decode_speedup']:.2f}",
              f"{r['prefill_tok_per_s']:.0f}", f"{r['prefill_speedup']:.2f}", f"{r['checkpoint_MB']:.0f}"]
             for r in res["model"]])
    print("wrote", _harness.write_json(a.out, res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
