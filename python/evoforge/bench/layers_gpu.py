"""GPU quantised-layer benchmark: evoforge.layers._cuda.quant_matmul / sparse24_quant_matmul on
packed weights against torch's fp16 F.linear on the dense weight, in the same run.

    python -m evoforge.bench.layers_gpu [--shapes 8192x8192 4096x11008 11008x4096]
                                        [--batches 1 4 16 32] [--out FILE] [--deadline 90]

Shapes are N x K (out x in features, F.linear's weight). Formats: int4 / int3 / int2 / int8 with
group 128 (symmetric), int4-zeros (asymmetric), 2:4-int4 (group 128 over the kept values), and
int4-bf16 (bfloat16 activations). Times are GPU times per call (microseconds) from CUDA events around a
CUDA graph of many calls (so Python's launch overhead is not counted, for torch either), the
weights rotating over enough copies to exceed the L2 cache. GB/s = bytes that must move (packed
weights, scales, zeros, meta, x, y) / time; the device's copy bandwidth (read + write) is measured
in the same run for reference. Every format's output is checked against F.linear of its
dequantised weight in float32. JSON in bench/results/layers_gpu.json (and $OUT when set); the
table is printed last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import evoforge
from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness

L2_FLUSH_BYTES = 160 << 20  # rotate weight copies until a pass reads this much (> H100/H200 L2)
GROUP = 128

# name: (bits, zeros, sparse, activation dtype name)
FORMATS = {
    "int4": (4, False, False, "float16"),
    "int4-zeros": (4, True, False, "float16"),
    "int3": (3, False, False, "float16"),
    "int2": (2, False, False, "float16"),
    "int8": (8, False, False, "float16"),
    "2:4-int4": (4, False, True, "float16"),
    "int4-bf16": (4, False, False, "bfloat16"),
}


def _graph_time_us(calls, *, reps: int, rounds: int = 5) -> float:
    """Median GPU time per call (us) of a CUDA graph replaying ``calls`` (a list of thunks)
    ``reps`` times; eager timing with events when capture fails."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for f in calls:  # warm up (allocator, lazy init) outside the capture
            f()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    n = reps * len(calls)
    try:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(reps):
                for f in calls:
                    f()

        def run():
            g.replay()
    except RuntimeError:  # pragma: no cover - capture unsupported: eager launches
        def run():
            for _ in range(reps):
                for f in calls:
                    f()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / n)
    return statistics.median(times)


def _copy_bandwidth_gbps() -> float:
    import torch

    x = torch.empty(1 << 28, dtype=torch.uint8, device="cuda")  # 256 MiB
    y = torch.empty_like(x)
    us = _graph_time_us([lambda: y.copy_(x)], reps=10)
    return 2 * x.numel() / (us * 1e-6) / 1e9


def _make_weight(fmt, n, k, gen):
    """Random packed weight of a format on the GPU: dict of tensors + bytes moved per call."""
    import torch

    from evoforge.layers import _cuda as lc

    bits, with_zeros, sparse, _ = FORMATS[fmt]
    cols = lc.stored_columns(k, sparse)
    packed = torch.randint(0, 256, (n, lc.row_bytes(cols, bits)), dtype=torch.uint8, device="cuda", generator=gen)
    G = lc.num_groups(cols, GROUP)
    scales = (torch.rand(n, G, device="cuda", generator=gen) * 0.02 + 0.001).half()
    zeros = (torch.rand(n, G, device="cuda", generator=gen) * (2**bits - 1)).half() if with_zeros else None
    meta = None
    if sparse:  # valid nibbles only: i0 < i1
        valid = torch.tensor([a | (b << 2) for a in range(4) for b in range(a + 1, 4)], dtype=torch.uint8,
                             device="cuda")
        nib = valid[torch.randint(0, 6, (n, -(-k // 32) * 8), device="cuda", generator=gen)]  # Kp / 4 nibbles
        meta = (nib[:, 0::2] | (nib[:, 1::2] << 4)).contiguous()
    w = {"packed": packed, "scales": scales, "zeros": zeros, "meta": meta, "bits": bits}
    w["bytes"] = sum(t.numel() * t.element_size() for t in (packed, scales, zeros, meta) if t is not None)
    return w


def _call(w, x, n):
    from evoforge.layers import _cuda as lc

    if w["meta"] is not None:
        return lc.sparse24_quant_matmul(x, w["packed"], w["meta"], w["scales"], w["zeros"], w["bits"], GROUP, n)
    return lc.quant_matmul(x, w["packed"], w["scales"], w["zeros"], w["bits"], GROUP, n)


def _check(w, x, y, n, k) -> float:
    """max |y - F.linear(x, dequantised W)| / max |reference| (float32 reference)."""
    import torch

    from evoforge.layers import _cuda as lc

    if w["meta"] is not None:
        W = lc.sparse24_dequantize(w["packed"], w["meta"], w["scales"], w["zeros"], w["bits"], GROUP, n, k, x.dtype)
    else:
        W = lc.dequantize(w["packed"], w["scales"], w["zeros"], w["bits"], GROUP, n, k, x.dtype)
    ref = torch.nn.functional.linear(x.float(), W.float())
    return float((y.float() - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def run(shapes, batches, formats, *, deadline_s: float, on_row=None) -> list[dict]:
    import torch

    t0 = time.perf_counter()
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = []
    for n, k in shapes:
        dense_bytes = n * k * 2
        dense = [torch.randn(n, k, device="cuda", dtype=torch.float16, generator=gen) * 0.02
                 for _ in range(max(2, -(-L2_FLUSH_BYTES // dense_bytes)))]
        weights = {}
        for fmt in formats:
            one = _make_weight(fmt, n, k, gen)
            copies = [one] + [_make_weight(fmt, n, k, gen) for _ in range(min(15, -(-L2_FLUSH_BYTES // one["bytes"]) - 1))]
            weights[fmt] = copies
        for b in batches:
            row: dict = {"N": n, "K": k, "B": b}
            if time.perf_counter() - t0 > deadline_s:
                row["skipped"] = "deadline"
                rows.append(row)
                print(f"  {n}x{k} B={b}: skipped (past the {deadline_s:.0f} s deadline)", flush=True)
                continue
            xs = {dt: torch.randn(b, k, device="cuda", dtype=getattr(torch, dt)) for dt in ("float16", "bfloat16")}
            x16 = xs["float16"]
            reps = 20
            row["torch_fp16_us"] = _graph_time_us(
                [lambda W=W, x16=x16: torch.nn.functional.linear(x16, W) for W in dense], reps=reps)
            row["torch_fp16_GBps"] = (dense_bytes + 2 * b * (k + n)) / (row["torch_fp16_us"] * 1e-6) / 1e9
            for fmt in formats:
                x = xs[FORMATS[fmt][3]]
                copies = weights[fmt]
                us = _graph_time_us([lambda w=w, x=x, n=n: _call(w, x, n) for w in copies], reps=reps)
                moved = copies[0]["bytes"] + 2 * b * (k + n)
                row[fmt] = {"us": us, "GBps": moved / (us * 1e-6) / 1e9, "speedup": row["torch_fp16_us"] / us,
                            "rel_err": _check(copies[0], x, _call(copies[0], x, n), n, k)}
                if row[fmt]["rel_err"] > 2e-2:
                    raise AssertionError(f"{fmt} {n}x{k} B={b}: relative error {row[fmt]['rel_err']:.3g}")
            rows.append(row)
            print(f"  {n}x{k} B={b}: torch fp16 {row['torch_fp16_us']:.1f} us; "
                  + ", ".join(f"{f} {row[f]['us']:.1f} us ({row[f]['speedup']:.2f}x)" for f in formats), flush=True)
            if on_row is not None:
                on_row(rows)
        del dense, weights
        torch.cuda.empty_cache()
    return rows


def sweep_occupancy(shapes, batches, scales, fmt: str = "int4") -> list[dict]:
    """Time of ``fmt`` when the split-K geometry assumes ``scale`` times the resident blocks per SM
    that the occupancy query reports (more, shorter K ranges): how much latency hiding is missing."""
    import torch

    from evoforge.layers import _cuda as lc

    gen = torch.Generator(device="cuda").manual_seed(1)
    queried = lc._blocks_per_sm
    out = []
    try:
        for n, k in shapes:
            one = _make_weight(fmt, n, k, gen)
            copies = [one] + [_make_weight(fmt, n, k, gen) for _ in range(min(15, -(-L2_FLUSH_BYTES // one["bytes"]) - 1))]
            for b in batches:
                x = torch.randn(b, k, device="cuda", dtype=getattr(torch, FORMATS[fmt][3]))
                row = {"N": n, "K": k, "B": b, "format": fmt}
                for sc in scales:
                    lc._blocks_per_sm = lambda *a, sc=sc: sc * queried(*a)
                    bps = lc._blocks_per_sm(_native_mod(), 0, x.dtype, FORMATS[fmt][0], b, FORMATS[fmt][2])
                    cfg = lc.kernel_config(b, n, k, lc._sm_count(0), bps)
                    row[f"x{sc}"] = {"us": _graph_time_us([lambda w=w, x=x, n=n: _call(w, x, n) for w in copies], reps=20),
                                     "splits": cfg["splits"]}
                out.append(row)
                print(f"  sweep {fmt} {n}x{k} B={b}: " + ", ".join(
                    f"x{sc} ({row[f'x{sc}']['splits']} splits) {row[f'x{sc}']['us']:.1f} us" for sc in scales), flush=True)
            del copies, one
    finally:
        lc._blocks_per_sm = queried
    return out


def _native_mod():
    from evoforge import _native

    return _native.require_cuda()


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="python -m evoforge.bench.layers_gpu", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=["8192x8192", "4096x11008", "11008x4096"])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32])
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    ap.add_argument("--deadline", type=float, default=90.0, help="no new cells after this many seconds")
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/layers_gpu.json)")
    ap.add_argument("--sweep", type=int, nargs="*", default=[],
                    help="also time int4 with the split-K geometry for these multiples of the resident blocks per SM")
    args = ap.parse_args(argv)

    import torch

    if not (evoforge.has_cuda() and torch.cuda.is_available()):
        print("layers_gpu: no GPU (evoforge.has_cuda() or torch.cuda.is_available() is False)")
        return 1
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes]
    meta = _harness.machine()
    meta["gpu"] = torch.cuda.get_device_name()
    meta["torch"] = torch.__version__
    meta["torch_cuda"] = torch.version.cuda
    meta["copy_GBps"] = _copy_bandwidth_gbps()
    print(f"evoforge {meta['evoforge']} on {meta['gpu']}, {meta['date']}; device copy {meta['copy_GBps']:.0f} GB/s",
          flush=True)
    outs = [Path(args.out) if args.out else Path("bench/results/layers_gpu.json")]
    if os.environ.get("OUT"):
        outs.append(Path(os.environ["OUT"]) / "layers_gpu.json")

    def save(rows):
        for p in outs:
            _harness.write_json(p, {"benchmark": "layers_gpu", "machine": meta, "group_size": GROUP,
                                    "formats": {f: FORMATS[f] for f in args.formats}, "rows": rows})

    rows = run(shapes, args.batches, args.formats, deadline_s=args.deadline, on_row=save)
    save(rows)
    if args.sweep:
        sweep = sweep_occupancy(shapes, args.batches, args.sweep)
        for p in outs:
            _harness.write_json(p.with_name(p.stem + "_sweep.json"), {"machine": meta, "rows": sweep})
    print("wrote " + ", ".join(map(str, outs)))
    print(f"\ny = x W^T on {meta['gpu']}: speedup over torch fp16 F.linear (us per call in CUDA graphs; int4"
          f" GB/s against a device copy of {meta['copy_GBps']:.0f} GB/s); group {GROUP}; '-' = not run")
    cols = ["N x K", "B", "fp16 us", "int4 us", "int4 GB/s"] + list(args.formats)
    table = []
    for r in rows:
        if r.get("skipped"):
            table.append([f"{r['N']}x{r['K']}", r["B"]] + ["-"] * (len(cols) - 2))
            continue
        int4 = r.get("int4")
        line = [f"{r['N']}x{r['K']}", r["B"], f"{r['torch_fp16_us']:.1f}",
                f"{int4['us']:.1f}" if int4 else "-", f"{int4['GBps']:.0f}" if int4 else "-"]
        line += [f"{r[f]['speedup']:.2f}x" for f in args.formats]
        table.append(line)
    _harness.print_table(cols, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
