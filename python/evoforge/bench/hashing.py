"""Functional hashing benchmark: evoforge.hashing.hash_array on float32 buffers with quantisation
(mantissa_bits=7), against numpy quantisation + hashlib.blake2b and numpy quantisation + xxhash's
xxh3_128, and against memcpy bandwidth (np.copyto of the same buffer), all in the same run.

    evoforge bench hashing [--quick] [--sizes-mb 1 16 256 1024] [--out FILE]
    python -m evoforge.bench.hashing ...

GB/s = buffer bytes / median seconds (10^9 bytes). evoforge runs on 1 and on 2 threads (the
digest is the same). The numpy quantisation is the same rounding as evoforge's (ties away from
zero, -0.0 -> 0.0, one NaN), vectorised over the whole buffer. A GPU section (``run_gpu``; skipped
without a GPU) hashes a 1 GB float32 CUDA tensor and compares with a device-to-device copy, whose
bandwidth is counted as read + write (2 x bytes / s).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

import evoforge
from evoforge import hashing
from evoforge._cli_parser import OneLineParser
from evoforge.bench import _harness

MB = 1 << 20
MANTISSA_BITS = 7


def numpy_quantise(x: np.ndarray, b: int = MANTISSA_BITS) -> np.ndarray:
    """Canonical uint32 lanes of float32 ``x`` rounded to ``b`` mantissa bits (numpy, whole buffer)."""
    u = x.view(np.uint32)
    drop = 23 - b
    a = np.bitwise_and(u, np.uint32(0x7FFFFFFF))
    r = np.add(a, np.uint32(1 << (drop - 1)) if drop else np.uint32(0))
    np.bitwise_and(r, np.uint32((0xFFFFFFFF << drop) & 0xFFFFFFFF), out=r)
    sign = np.bitwise_and(u, np.uint32(0x80000000))
    sign[r == 0] = 0
    np.bitwise_or(r, sign, out=r)
    r[a > np.uint32(0x7F800000)] = np.uint32(0xFFFFFFFF)
    return r


def _peers() -> dict:
    peers = {"numpy+blake2b": lambda x: hashlib.blake2b(numpy_quantise(x), digest_size=16).digest()}
    try:
        import xxhash

        peers["numpy+xxh3_128"] = lambda x: xxhash.xxh3_128(numpy_quantise(x)).digest()
        peers["xxh3_128 alone"] = lambda x: xxhash.xxh3_128(x).digest()  # no quantisation: a ceiling
    except ImportError:
        print("xxhash is not installed (pip install xxhash): its columns are skipped", flush=True)
    return peers


def run(sizes_mb, *, repeats=5, budget_s=5.0) -> dict:
    peers = _peers()
    rows = []
    rng = np.random.default_rng(0)
    for mb in sizes_mb:
        n = mb * MB // 4
        x = rng.standard_normal(n, dtype=np.float32)
        dst = np.empty_like(x)
        gb = x.nbytes / 1e9
        row = {"MB": mb, "bytes": x.nbytes}
        row["memcpy_GBps"] = gb / (_harness.measure(lambda: np.copyto(dst, x), repeats=repeats,
                                                    budget_s=budget_s)["median_ms"] / 1e3)
        digests = set()
        for t in (1, 2):
            evoforge.set_num_threads(t)
            try:
                digests.add(hashing.hash_array(x, mantissa_bits=MANTISSA_BITS))
                ms = _harness.measure(lambda: hashing.hash_array(x, mantissa_bits=MANTISSA_BITS),
                                      repeats=repeats, budget_s=budget_s)["median_ms"]
            finally:
                evoforge.set_num_threads(0)
            row[f"evoforge_{t}t_GBps"] = gb / (ms / 1e3)
        if len(digests) != 1:
            raise AssertionError("evoforge digests differ between 1 and 2 threads")
        for name, fn in peers.items():
            ms = _harness.measure(lambda: fn(x), repeats=repeats, budget_s=budget_s)["median_ms"]
            row[f"{name}_GBps"] = gb / (ms / 1e3)
        one = row["evoforge_1t_GBps"]
        row["vs_memcpy_1t"] = one / row["memcpy_GBps"]
        row["speedup_2t_vs_1t"] = row["evoforge_2t_GBps"] / one
        if "numpy+xxh3_128_GBps" in row:
            row["vs_numpy_xxh3_1t"] = one / row["numpy+xxh3_128_GBps"]
        row["vs_numpy_blake2b_1t"] = one / row["numpy+blake2b_GBps"]
        rows.append(row)
        print(f"  {mb:>5d} MB: evoforge 1t {one:.2f} GB/s, 2t {row['evoforge_2t_GBps']:.2f}, "
              f"memcpy {row['memcpy_GBps']:.2f}", flush=True)
        del x, dst
    return {"peers": list(peers), "mantissa_bits": MANTISSA_BITS, "rows": rows,
            "avx2": bool(evoforge._native.core.hash_cpu_has_avx2())}


def run_gpu(size_mb: int = 1024, *, repeats: int = 10, check_mb: int = 64) -> dict | None:
    """GB/s of hash_array on a float32 CUDA tensor of ``size_mb`` MB (mantissa_bits=7) against a
    device-to-device copy (read + write bytes / s), and a CPU == GPU digest check on ``check_mb``
    MB of it. None without a GPU."""
    if not evoforge.has_cuda():
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    dev = torch.device("cuda")
    n = size_mb * MB // 4
    x = torch.randn(n, device=dev, dtype=torch.float32)
    y = torch.empty_like(x)
    gb = x.numel() * 4 / 1e9

    def copy():
        y.copy_(x)
        torch.cuda.synchronize()

    def hash_():
        hashing.hash_array(x, mantissa_bits=MANTISSA_BITS)  # synchronises (16-byte copy back)

    copy_ms = _harness.measure(copy, repeats=repeats, warmup=2)["median_ms"]
    hash_ms = _harness.measure(hash_, repeats=repeats, warmup=2)["median_ms"]
    part = x[: check_mb * MB // 4]
    same = hashing.hash_array(part, mantissa_bits=MANTISSA_BITS) == hashing.hash_array(
        part.cpu(), mantissa_bits=MANTISSA_BITS)
    strided = x[: 2 * MB].view(1024, -1)[:, ::3]
    same_strided = hashing.hash_array(strided) == hashing.hash_array(strided.cpu())
    out = {
        "device": torch.cuda.get_device_name(dev),
        "MB": size_mb,
        "hash_GBps": gb / (hash_ms / 1e3),
        "d2d_copy_GBps": 2 * gb / (copy_ms / 1e3),
        "cpu_equals_gpu": bool(same and same_strided),
    }
    out["vs_device_bandwidth"] = out["hash_GBps"] / out["d2d_copy_GBps"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="evoforge bench hashing", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 and 16 MB, 3 repeats (seconds)")
    ap.add_argument("--sizes-mb", type=int, nargs="+", default=None,
                    help="buffer sizes in MB (default 1 4 16 64 256; up to 1024)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-gpu", action="store_true", help="skip the GPU section")
    ap.add_argument("--gpu-mb", type=int, default=1024)
    ap.add_argument("--out", default=None, help="JSON file (default bench/results/hashing.json)")
    args = ap.parse_args(argv)
    sizes = args.sizes_mb or ([1, 16] if args.quick else [1, 4, 16, 64, 256])
    repeats = args.repeats or (3 if args.quick else 5)

    meta = _harness.machine()
    print(f"evoforge {meta['evoforge']} on {meta['cpu']} ({meta['cores']} cores), {meta['date']}", flush=True)
    res = run(sizes, repeats=repeats)
    print(f"\nhash_array(float32, mantissa_bits={MANTISSA_BITS}), GB/s (median; ratio = evoforge 1 thread / other)")
    cols = ["MB", "memcpy", "evoforge 1t", "evoforge 2t"] + res["peers"] + [
        "1t / memcpy", "1t / numpy+xxh3", "2t / 1t"]
    table = []
    for r in res["rows"]:
        line = [r["MB"], f"{r['memcpy_GBps']:.2f}", f"{r['evoforge_1t_GBps']:.2f}", f"{r['evoforge_2t_GBps']:.2f}"]
        line += [f"{r[p + '_GBps']:.2f}" for p in res["peers"]]
        line += [f"{r['vs_memcpy_1t']:.2f}x",
                 f"{r['vs_numpy_xxh3_1t']:.1f}x" if "vs_numpy_xxh3_1t" in r else "-",
                 f"{r['speedup_2t_vs_1t']:.2f}x"]
        table.append(line)
    _harness.print_table(cols, table)

    gpu = None if args.no_gpu else run_gpu(args.gpu_mb)
    if gpu is None:
        print("\nGPU: skipped (no CUDA GPU, or evoforge built without CUDA)")
    else:
        print(f"\nGPU {gpu['device']}, {gpu['MB']} MB float32: hash {gpu['hash_GBps']:.0f} GB/s, "
              f"device-to-device copy {gpu['d2d_copy_GBps']:.0f} GB/s (read + write), "
              f"ratio {gpu['vs_device_bandwidth']:.2f}; CPU == GPU digest: {gpu['cpu_equals_gpu']}")
    out = Path(args.out) if args.out else Path("bench/results/hashing.json")
    _harness.write_json(out, {"benchmark": "hashing", "machine": meta, **res, "gpu": gpu})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
