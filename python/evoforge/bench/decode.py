"""End-to-end decoding and prefill of packed models against dense float32 and bfloat16, in one process.

    evoforge bench decode [--quick] [--threads 1,2] [--new-tokens 64] [--prompt 32] [--prefill 512]
                          [--keep-head] [--out FILE]
    python -m evoforge.bench.decode ...

SmolLM2-135M (``evoforge.compress.load_model("smollm2-135m")``; ``--quick``: stories260k from the
shared data, fewer tokens) packed with ``evoforge.layers.apply`` as

* sparse 60% f16: unstructured 60% magnitude sparsity, float16 kept values (SparseLinear);
* int4 g64: weight-only int4, group 64, symmetric (QuantLinear);
* sparse 60% + int4 g64: both (SparseLinear with quantised kept values);

against the dense model in float32 (the peer every ratio is taken against) and in bfloat16. The
linear layers inside the decoder blocks are packed, and the output head too (its 49152 x 576
weight is a fifth of the model; ``--keep-head`` leaves it dense float32, untouched).

Rows: greedy decoding tokens/s (``generate``, ``--new-tokens`` after a ``--prompt``-token prompt,
KV cache, batch 1; the prompt's prefill included) and prefill tokens/s (one ``--prefill``-token
sequence, no cache), on each thread count of ``--threads`` (``torch.set_num_threads`` and
``evoforge.set_num_threads`` both). "same tokens" checks that the packed model's greedy tokens
equal those of the same compressed weights run densely in float32 (every packed layer replaced by
an ``nn.Linear`` holding its dequantised / unpacked weight), so that the speed compares equal work;
"-" for the dense rows.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import evoforge
from evoforge._cli_parser import OneLineParser, int_at_least
from evoforge.bench import _harness

CONFIGS: list[tuple[str, dict | str | None]] = [
    ("dense fp32", None),
    ("dense bf16", "bfloat16"),
    ("sparse 60% f16", {"sparsity": 0.6, "values_dtype": "float16"}),
    ("int4 g64", {"bits": 4, "group_size": 64}),
    ("sparse 60% + int4 g64", {"sparsity": 0.6, "bits": 4, "group_size": 64}),
]


def _load(quick: bool) -> Any:
    from evoforge.compress import load_model

    if quick:
        return load_model(str(_harness.shared_data("stories260k", "hf")))[0]
    return load_model("smollm2-135m")[0]


def _head_name(model: Any) -> str | None:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, m in model.named_modules():
        if m is head:
            return name
    return None


def build(dense: Any, spec: dict | str | None, *, pack_head: bool) -> Any:
    """The model of one configuration (a deep copy of ``dense``)."""
    import torch

    from evoforge.layers import apply, linear_layers

    if spec is None:
        return dense
    if spec == "bfloat16":
        return copy.deepcopy(dense).to(torch.bfloat16)
    model = copy.deepcopy(dense)
    layers = list(linear_layers(model))
    head = _head_name(model)
    if pack_head and head is not None:
        layers.append(head)
    return apply(model, spec, layers=layers)


def dense_equivalent(model: Any) -> Any:
    """A copy of a packed ``model`` whose packed layers are ``nn.Linear`` layers holding their
    dequantised / unpacked float32 weights: the same compressed weights, run densely."""
    import torch
    from torch import nn

    from evoforge.layers import QuantLinear, SparseLinear, packed_layers

    ref = copy.deepcopy(model)
    for name in packed_layers(ref):
        m = ref.get_submodule(name)
        W = m.to_dense() if isinstance(m, SparseLinear) else m.dequantize()
        assert isinstance(m, (SparseLinear, QuantLinear))
        lin = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(W)
            if m.bias is not None:
                lin.bias.copy_(m.bias.float())
        parent, _, child = name.rpartition(".")
        setattr(ref.get_submodule(parent) if parent else ref, child, lin)
    return ref


def _generate(model: Any, prompt: Any, new_tokens: int) -> Any:
    return model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                          pad_token_id=0, attention_mask=prompt.new_ones(prompt.shape))


def run(*, quick: bool = False, threads: list[int] | None = None, new_tokens: int | None = None,
        prompt_len: int | None = None, prefill: int | None = None, pack_head: bool = True) -> dict:
    import torch

    threads = threads or [2, 1]
    new_tokens = new_tokens or (16 if quick else 64)
    prompt_len = prompt_len or (8 if quick else 32)
    prefill = prefill or (64 if quick else 512)
    repeats, budget = (2, 2.0) if quick else (3, 15.0)
    dense = _load(quick)
    vocab = dense.config.vocab_size
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, vocab, (1, prompt_len), generator=g)
    long = torch.randint(0, vocab, (1, prefill), generator=g)
    res: dict[str, Any] = {"machine": _harness.machine(), "torch": torch.__version__, "quick": quick,
                           "new_tokens": new_tokens, "prompt": prompt_len, "prefill": prefill,
                           "pack_head": pack_head, "rows": []}
    models = []
    with torch.inference_mode():
        for name, spec in CONFIGS:
            model = build(dense, spec, pack_head=pack_head)
            same = None
            if isinstance(spec, dict):  # equal work: the same compressed weights, dense float32
                same = bool(torch.equal(_generate(model, prompt, new_tokens),
                                        _generate(dense_equivalent(model), prompt, new_tokens)))
            models.append((name, model, same))
        for t in threads:
            torch.set_num_threads(t)
            evoforge.set_num_threads(t)
            base: dict[str, float] = {}
            for name, model, same in models:
                d = _harness.measure(lambda m=model: _generate(m, prompt, new_tokens), repeats=repeats,
                                     budget_s=budget)
                p = _harness.measure(lambda m=model: m(input_ids=long, use_cache=False), repeats=repeats,
                                     budget_s=budget)
                dec, pre = new_tokens / d["median_ms"] * 1e3, prefill / p["median_ms"] * 1e3
                base = base or {"decode": dec, "prefill": pre}
                res["rows"].append({"threads": t, "config": name, "decode_tok_per_s": dec,
                                    "decode_x_fp32": dec / base["decode"], "prefill_tok_per_s": pre,
                                    "prefill_x_fp32": pre / base["prefill"], "same_tokens": same,
                                    "decode": d, "prefill_ms": p})
    evoforge.set_num_threads(0)
    return res


def _threads(s: str) -> list[int]:
    try:
        out = [int(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads takes comma-separated integers, got {s!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"--threads takes positive integers, got {s!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench decode", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="stories260k, few tokens (a smoke test)")
    ap.add_argument("--threads", type=_threads, default=None, help="thread counts, e.g. 2,1 (default)")
    ap.add_argument("--new-tokens", type=int_at_least(1), default=None, help="greedy tokens per decode (64)")
    ap.add_argument("--prompt", type=int_at_least(1), default=None, help="prompt tokens before decoding (32)")
    ap.add_argument("--prefill", type=int_at_least(1), default=None, help="prefill sequence length (512)")
    ap.add_argument("--keep-head", action="store_true", help="leave the output head dense float32")
    ap.add_argument("--out", default=str(Path("bench/results/decode.json")))
    a = ap.parse_args(argv)
    res = run(quick=a.quick, threads=a.threads, new_tokens=a.new_tokens, prompt_len=a.prompt, prefill=a.prefill,
              pack_head=not a.keep_head)
    print(f"{'stories260k' if a.quick else 'SmolLM2-135M'}: {res['new_tokens']} greedy tokens after a "
          f"{res['prompt']}-token prompt; prefill of {res['prefill']} tokens; output head "
          f"{'packed' if res['pack_head'] else 'dense fp32'}")
    _harness.print_table(
        ["threads", "config", "decode tok/s", "x dense fp32", "prefill tok/s", "x dense fp32", "same tokens"],
        [[r["threads"], r["config"], f"{r['decode_tok_per_s']:.1f}", f"{r['decode_x_fp32']:.2f}",
          f"{r['prefill_tok_per_s']:.0f}", f"{r['prefill_x_fp32']:.2f}",
          "-" if r["same_tokens"] is None else ("yes" if r["same_tokens"] else "NO")] for r in res["rows"]])
    print("wrote", _harness.write_json(a.out, res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
