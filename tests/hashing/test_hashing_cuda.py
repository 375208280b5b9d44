"""evoforge.hashing on CUDA tensors: the device digest must equal the CPU digest bit for bit, for
every dtype, quantisation, size (around the 64 KiB chunks) and stride. Skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from evoforge import hashing  # noqa: E402
from evoforge.hashing import Hasher, hash_array  # noqa: E402

pytestmark = pytest.mark.cuda

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32,
          torch.int64, torch.uint8, torch.bool]
# words per chunk: 8192; float32-class elements pack two per word
SIZES = [0, 1, 2, 3, 15, 16, 17, 255, 256, 257, 8191, 8192, 8193, 16383, 16384, 16385, 3 * 16384 + 1,
         100_003, 1 << 20]
QUANTS = [{}, {"mantissa_bits": 7}, {"mantissa_bits": 0}, {"grid": 0.25}]


def _data(n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + n)
    if dtype == torch.bool:
        return torch.rand(n, generator=g) < 0.5
    if dtype.is_floating_point:
        x = torch.randn(n, generator=g, dtype=torch.float64) * 100
        if n >= 8:  # specials: signed zeros, infinities, NaNs, ties of the roundings
            x[:8] = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), 1.0078125, 0.125, -2.5])
        return x.to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(max(info.min, -1000), min(info.max, 1000) + 1, (n,), generator=g).to(dtype)


def _both(x_cpu: torch.Tensor, **kw) -> tuple[bytes, bytes]:
    return hash_array(x_cpu.cuda(), **kw), hash_array(x_cpu, **kw)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", SIZES)
def test_cuda_equals_cpu_contiguous(dtype, n):
    x = _data(n, dtype)
    for kw in QUANTS if dtype.is_floating_point else [{}]:
        for ignore in (False, True):
            gpu, cpu = _both(x, ignore_dtype=ignore, **kw)
            assert gpu == cpu, (dtype, n, kw, ignore)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64, torch.int32, torch.bool], ids=str)
def test_cuda_equals_cpu_strided(dtype):
    base = _data(6 * 5000 + 7, dtype, seed=1)
    m = base[: 6 * 5000].view(6, 5000)
    d = base.cuda()
    md = d[: 6 * 5000].view(6, 5000)
    views = [
        (lambda t: t[1:]),                    # misaligned start (odd element offset)
        (lambda t: t[::2]),
        (lambda t: t[::3]),
    ]
    mviews = [
        (lambda t: t.T),
        (lambda t: t[:, ::7]),
        (lambda t: t[1:5, 3:4999:2]),
        (lambda t: t.unsqueeze(0).expand(3, 6, 5000)),
        (lambda t: t.view(6, 50, 100).permute(2, 0, 1)),
    ]
    for kw in QUANTS if dtype.is_floating_point else [{}]:
        for f in views:
            assert hash_array(f(d), **kw) == hash_array(f(base), **kw)
        for f in mviews:
            assert hash_array(f(md), **kw) == hash_array(f(m), **kw)
            assert hash_array(f(md), **kw) == hash_array(f(md).contiguous(), **kw)


def test_cuda_large_and_seeds():
    x = torch.randn(64 << 20, device="cuda")  # 256 MB
    for seed in (0, 7, 2**64 - 1):
        assert hash_array(x, mantissa_bits=7, seed=seed) == hash_array(x.cpu(), mantissa_bits=7, seed=seed)


def test_cuda_runs_on_the_current_stream_and_in_hasher():
    x = torch.randn(1000, 33, device="cuda")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        y = x * 2  # written on s: the hash must see it
        d = hash_array(y, mantissa_bits=5)
    assert d == hash_array(y.cpu(), mantissa_bits=5)
    assert Hasher().update(y).digest() == Hasher().update(y.cpu()).digest()
    fh = hashing.FunctionalHasher(input_shape=(8,), n_probes=4)
    net = torch.nn.Linear(8, 3).cuda()  # probes move to the module's device
    assert fh.hash(net) == fh.hash(net)
    assert len(fh.outputs(net).shape) == 2 and fh.outputs(net).is_cuda


def test_cuda_bad_dtype():
    with pytest.raises(TypeError, match="complex"):
        hash_array(torch.ones(3, dtype=torch.complex64, device="cuda"))
    with pytest.raises(ValueError, match=r"\[0, 23\]"):
        hash_array(torch.ones(3, device="cuda"), mantissa_bits=40)
    assert hash_array(torch.ones(3, dtype=torch.float64, device="cuda"), mantissa_bits=40) == hash_array(
        np.ones(3), mantissa_bits=40)
