"""Quantised layers (evoforge.layers.quant): the packed format against a numpy transcription of the
contract, the kernels against float64 dequantise-then-matmul with the stated float32 error bound,
and QuantLinear as an nn.Linear replacement."""

from __future__ import annotations

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import evoforge
from evoforge import _native, solvers
from evoforge.errors import ConfigError
from evoforge.layers import (
    QuantLinear,
    dequantize,
    num_groups,
    pack_codes,
    quant_matmul,
    quantize_rtn,
    row_bytes,
    unpack_codes,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ISAS = _native.core.quant_isas()
U = 2.0**-24  # float32 unit roundoff


# ---- independent references ---------------------------------------------------------------------


def ref_pack(c: np.ndarray, bits: int) -> np.ndarray:
    """The v1 byte layout, transcribed from the contract with numpy."""
    N, K = c.shape
    nb = -(-K // 32)
    cp = np.zeros((N, nb * 32), np.uint32)
    cp[:, :K] = c
    blk = cp.reshape(N, nb, 32)
    if bits == 8:
        out = blk
    elif bits == 4:
        out = blk[:, :, :16] | blk[:, :, 16:] << 4
    else:
        lo = blk & 3
        out = lo[:, :, 0:8] | lo[:, :, 8:16] << 2 | lo[:, :, 16:24] << 4 | lo[:, :, 24:32] << 6
        if bits == 3:
            m = (((blk >> 2) & 1).astype(np.uint64) << np.arange(32, dtype=np.uint64)).sum(axis=2)
            mb = (m[:, :, None] >> (8 * np.arange(4, dtype=np.uint64))) & 255
            out = np.concatenate([out, mb.astype(np.uint32)], axis=2)
    return out.astype(np.uint8).reshape(N, nb * 4 * bits)


def group_index(K: int, g: int) -> np.ndarray:
    return np.arange(K) // g if g else np.zeros(K, dtype=np.int64)


def ref_weight(c, s, z, bits, g) -> np.ndarray:
    """float64 w = s * (q - z)."""
    gi = group_index(c.shape[1], g)
    s64 = s.astype(np.float64)[:, gi]
    z64 = np.full_like(s64, 2.0 ** (bits - 1)) if z is None else z.astype(np.float64)[:, gi]
    return s64 * (c.astype(np.float64) - z64)


def error_bound(c, s, z, bits, g, x) -> np.ndarray:
    """[B, N] float32 accumulation bound: 2u (K + G + 4) sum_k |s| (q + |z| + 2^b) |x|."""
    K = c.shape[1]
    gi = group_index(K, g)
    s64 = np.abs(s.astype(np.float64))[:, gi]
    z64 = np.full_like(s64, 2.0 ** (bits - 1)) if z is None else np.abs(z.astype(np.float64))[:, gi]
    M = np.abs(x.astype(np.float64)) @ (s64 * (c + z64 + 2.0**bits)).T
    return 2 * U * (K + num_groups(K, g) + 4) * M


def make_layer(rng, N, K, bits, g, symmetric, scale=1.0):
    c = rng.integers(0, 1 << bits, (N, K), dtype=np.uint8)
    G = num_groups(K, g)
    s = (rng.uniform(0.5, 2.0, (N, G)) * scale).astype(np.float16)
    z = None if symmetric else rng.integers(0, 1 << bits, (N, G)).astype(np.float16)
    return c, s, z


# ---- packing --------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(bits=st.sampled_from([2, 3, 4, 8]), N=st.integers(1, 9), K=st.integers(1, 150), seed=st.integers(0, 2**31))
def test_pack_matches_contract_and_round_trips(bits, N, K, seed):
    c = np.random.default_rng(seed).integers(0, 1 << bits, (N, K), dtype=np.uint8)
    p = pack_codes(c, bits)
    assert p.shape == (N, row_bytes(K, bits)) and p.dtype == np.uint8
    np.testing.assert_array_equal(p, ref_pack(c, bits))
    np.testing.assert_array_equal(unpack_codes(p, bits, K), c)


def test_pack_torch_in_torch_out():
    c = torch.randint(0, 16, (3, 70), dtype=torch.uint8)
    p = pack_codes(c, 4)
    assert isinstance(p, torch.Tensor) and p.dtype == torch.uint8
    assert torch.equal(unpack_codes(p, 4, 70), c)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("g", [0, 32, 64, 128, 256])
def test_dequantize_one_rounding(bits, g):
    rng = np.random.default_rng(bits * 1000 + g)
    for symmetric in (True, False):
        c, s, z = make_layer(rng, 7, 300, bits, g, symmetric)
        w = dequantize(pack_codes(c, bits), s, z, bits, g, 300)
        ref = ref_weight(c, s, z, bits, g)
        assert w.dtype == np.float32
        np.testing.assert_array_equal(w, ref.astype(np.float32))  # exact value rounded once


# ---- matmul -----------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bits=st.sampled_from([2, 3, 4, 8]),
    g=st.sampled_from([0, 32, 64, 128, 256]),
    symmetric=st.booleans(),
    N=st.integers(1, 33),
    K=st.integers(1, 300),
    B=st.sampled_from([1, 2, 3, 5, 8, 9, 13, 64]),
    bias=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_matmul_within_float32_bound(bits, g, symmetric, N, K, B, bias, seed):
    rng = np.random.default_rng(seed)
    c, s, z = make_layer(rng, N, K, bits, g, symmetric, scale=0.01)
    x = rng.standard_normal((B, K)).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32) if bias else None
    p = pack_codes(c, bits)
    want = x.astype(np.float64) @ ref_weight(c, s, z, bits, g).T + (0 if b is None else b.astype(np.float64))
    tol = error_bound(c, s, z, bits, g, x) + (0 if b is None else 2 * U * np.abs(b))
    for isa in ISAS:
        y = quant_matmul(x, p, s, z, bits, g, b, isa=isa)
        assert y.shape == (B, N) and y.dtype == np.float32
        assert (np.abs(y - want) <= tol).all(), (isa, np.max(np.abs(y - want) - tol))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("g", [0, 32, 128])
def test_matmul_exact_on_integers(isa, bits, g):
    """Integer x, power-of-two scales and integer zeros keep every float32 partial sum exact."""
    rng = np.random.default_rng(bits + g)
    N, K, B = 19, 517, 11
    c = rng.integers(0, 1 << bits, (N, K), dtype=np.uint8)
    G = num_groups(K, g)
    s = (2.0 ** rng.integers(-3, 3, (N, G))).astype(np.float16)
    for z in (None, rng.integers(0, 1 << bits, (N, G)).astype(np.float16)):
        x = rng.integers(-4, 5, (B, K)).astype(np.float32)
        want = x.astype(np.float64) @ ref_weight(c, s, z, bits, g).T
        np.testing.assert_array_equal(quant_matmul(x, pack_codes(c, bits), s, z, bits, g, isa=isa), want)


def test_matmul_large_k_bound():
    rng = np.random.default_rng(5)
    N, K, B = 37, 4099, 3
    for bits, g in ((4, 128), (8, 0), (3, 64)):
        c, s, z = make_layer(rng, N, K, bits, g, False, scale=0.01)
        x = rng.standard_normal((B, K)).astype(np.float32)
        want = x.astype(np.float64) @ ref_weight(c, s, z, bits, g).T
        for isa in ISAS:
            y = quant_matmul(x, pack_codes(c, bits), s, z, bits, g, isa=isa)
            assert (np.abs(y - want) <= error_bound(c, s, z, bits, g, x)).all()


def test_matmul_thread_count_independent():
    rng = np.random.default_rng(11)
    c, s, z = make_layer(rng, 301, 1000, 4, 64, False)
    p = pack_codes(c, 4)
    x = rng.standard_normal((9, 1000)).astype(np.float32)
    before = evoforge.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3, 7):
            evoforge.set_num_threads(t)
            outs.append(quant_matmul(x, p, s, z, 4, 64))
    finally:
        evoforge.set_num_threads(before)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_matmul_releases_gil():
    rng = np.random.default_rng(2)
    N = K = 2048
    c, s, _ = make_layer(rng, N, K, 8, 128, True)
    p = pack_codes(c, 8)
    x = rng.standard_normal((16, K)).astype(np.float32)
    counter, seen = [0], []
    started = threading.Event()

    def work():
        started.set()
        quant_matmul(x, p, s, None, 8, 128, isa="scalar")
        seen.append(counter[0])

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    while t.is_alive():
        counter[0] += 1
    t.join()
    assert seen[0] > 100  # the main thread ran Python while the kernel ran


def test_matmul_shapes_and_dtypes():
    rng = np.random.default_rng(3)
    c, s, z = make_layer(rng, 6, 40, 4, 32, False)
    p = pack_codes(c, 4)
    x = rng.standard_normal((2, 3, 40)).astype(np.float32)
    y = quant_matmul(x, p, s, z, 4, 32)
    assert y.shape == (2, 3, 6)
    np.testing.assert_array_equal(y.reshape(6, 6), quant_matmul(x.reshape(6, 40), p, s, z, 4, 32))
    xt = torch.from_numpy(x)
    yt = quant_matmul(xt, torch.from_numpy(p), torch.from_numpy(s), torch.from_numpy(z), 4, 32)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float32
    np.testing.assert_array_equal(yt.numpy(), y)
    yb = quant_matmul(xt.bfloat16(), p, s, z, 4, 32)
    assert yb.dtype == torch.bfloat16
    want = quant_matmul(xt.bfloat16().float(), p, s, z, 4, 32)
    assert torch.equal(yb, want.bfloat16())
    # non-contiguous x is copied: the same result as the contiguous copy
    xs = rng.standard_normal((40, 5)).astype(np.float32).T
    np.testing.assert_array_equal(quant_matmul(xs, p, s, z, 4, 32), quant_matmul(np.ascontiguousarray(xs), p, s, z, 4, 32))
    assert quant_matmul(x[0, 0], p, s, z, 4, 32).shape == (6,)


def test_bad_inputs():
    rng = np.random.default_rng(4)
    c, s, z = make_layer(rng, 5, 64, 4, 32, False)
    p = pack_codes(c, 4)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    with pytest.raises(TypeError, match="x must be float32"):
        quant_matmul(x.astype(np.float64), p, s, z, 4, 32)
    with pytest.raises(TypeError, match="codes must have dtype uint8"):
        pack_codes(c.astype(np.int32), 4)
    with pytest.raises(TypeError, match="scales must have dtype float16"):
        quant_matmul(x, p, s.astype(np.float32), z, 4, 32)
    with pytest.raises(ValueError, match="packed must have shape"):
        quant_matmul(x[:, :20], p, s, z, 4, 32)
    with pytest.raises(ValueError, match="scales must have shape"):
        quant_matmul(x, p, s[:, :1], z, 4, 32)
    with pytest.raises(ValueError, match="zeros must have shape"):
        quant_matmul(x, p, s, z[:4], 4, 32)
    with pytest.raises(ValueError, match="bias must have shape"):
        quant_matmul(x, p, s, z, 4, 32, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"code 9 at row 0, column 3 is out of range \[0, 7\]"):
        pack_codes(np.array([[0, 1, 2, 9]], np.uint8), 3)
    with pytest.raises(ConfigError, match="bits must be one of"):
        pack_codes(c, 5)
    with pytest.raises(ConfigError, match="group_size must be"):
        quant_matmul(x, p, s, z, 4, 48)
    with pytest.raises(ValueError, match="must be 2-D"):
        pack_codes(c[0], 4)
    with pytest.raises(TypeError, match="numpy array or a CPU torch.Tensor"):
        quant_matmul([[1.0] * 64], p, s, z, 4, 32)
    with pytest.raises(ValueError, match="isa must be"):
        quant_matmul(x, p, s, z, 4, 32, isa="neon")


# ---- RTN and QuantLinear ---------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("g", [0, 32, 128])
@pytest.mark.parametrize("symmetric", [True, False])
def test_quantize_rtn_grid(bits, g, symmetric):
    rng = np.random.default_rng(bits * 7 + g)
    w = rng.standard_normal((9, 200)).astype(np.float32)
    codes, s, z = quantize_rtn(w, bits, g, symmetric)
    assert codes.dtype == np.uint8 and s.dtype == np.float16 and (z is None) == symmetric
    ref = solvers.rtn(w, bits, group_size=g or -1, symmetric=symmetric)
    np.testing.assert_allclose(s.astype(np.float64), ref.scales, rtol=2.0**-11)
    if not symmetric:
        np.testing.assert_array_equal(z.astype(np.float64), ref.zeros)
    err = np.abs(ref_weight(codes, s, z, bits, g) - w)
    step = s.astype(np.float64)[:, group_index(200, g)]
    assert (err <= step * (1 + 1e-6)).all()  # round to nearest (the symmetric grid clips its top by one step)
    assert (err <= step / 2 * (1 + 1e-6)).mean() > 0.95


@pytest.mark.parametrize("bits,g,symmetric", [(4, 128, True), (8, 0, False), (2, 32, False), (3, 64, True)])
def test_quantlinear_from_linear(bits, g, symmetric):
    torch.manual_seed(0)
    lin = torch.nn.Linear(300, 41)
    q = QuantLinear.from_linear(lin, bits=bits, group_size=g, symmetric=symmetric)
    assert (q.bits, q.group_size, q.symmetric, q.in_features, q.out_features) == (bits, g, symmetric, 300, 41)
    assert f"bits={bits}, group_size={g}" in repr(q)
    x = torch.randn(4, 7, 300)
    W = q.dequantize().double()
    want = x.double() @ W.T + lin.bias.detach().double()
    with torch.no_grad():
        y = q(x)
    assert y.shape == (4, 7, 41) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), want, rtol=0, atol=1e-4)
    # close to the float layer (quantisation error only)
    rel = (q.dequantize() - lin.weight.detach()).norm() / lin.weight.detach().norm()
    assert rel < {2: 0.7, 3: 0.3, 4: 0.15, 8: 0.01}[bits]


def test_quantlinear_state_dict_round_trip_and_casts():
    torch.manual_seed(1)
    q = QuantLinear.from_linear(torch.nn.Linear(100, 30), bits=3, group_size=32, symmetric=False)
    sd = q.state_dict()
    assert set(sd) == {"packed", "scales", "zeros", "bias"}
    r = QuantLinear(100, 30, bits=3, group_size=32, symmetric=False)
    r.load_state_dict(sd)
    x = torch.randn(5, 100)
    assert torch.equal(q(x), r(x))
    sym = QuantLinear(100, 30, bias=False, bits=4, group_size=0)
    assert set(sym.state_dict()) == {"packed", "scales"}
    with pytest.raises(RuntimeError, match="size mismatch"):
        QuantLinear(100, 30, bits=4, group_size=32, symmetric=False).load_state_dict(sd)
    r.to(torch.bfloat16)
    assert r.scales.dtype == torch.float16 and r.packed.dtype == torch.uint8
    yb = r(x.bfloat16())
    assert yb.dtype == torch.bfloat16
    torch.testing.assert_close(yb.float(), q(x), atol=0.05, rtol=0.05)


def test_quantlinear_many_rows_fallback_matches_kernel():
    torch.manual_seed(2)
    q = QuantLinear.from_linear(torch.nn.Linear(256, 50), bits=4, group_size=64)
    x = torch.randn(130, 256)
    y = q(x)  # more than 64 rows: dequantise + matmul
    k = torch.cat([q(x[i : i + 64]) for i in range(0, 130, 64)])
    torch.testing.assert_close(y, k, rtol=0, atol=1e-4)


def test_from_codes_database_level():
    """A database level: float32 scales/zeros, trivial g_idx, group size >= K as per-row."""
    rng = np.random.default_rng(9)
    W = rng.standard_normal((12, 96)).astype(np.float32)
    for gs in (32, 128):
        ql = solvers.rtn(W, 4, group_size=gs, symmetric=False)
        m = QuantLinear.from_codes(ql.q, ql.scales, ql.zeros, 4, gs, g_idx=ql.g_idx)
        assert m.group_size == (gs if gs < 96 else 0)
        want = ql.scales[:, ql.g_idx] * (ql.q.astype(np.float64) - ql.zeros[:, ql.g_idx])
        np.testing.assert_allclose(m.dequantize().numpy(), want, rtol=2.0**-10, atol=1e-7)
    gs = 32
    ql = solvers.rtn(W, 4, group_size=gs, symmetric=False)
    bad = np.random.default_rng(0).permutation(ql.g_idx)
    with pytest.raises(ValueError, match="act-order"):
        QuantLinear.from_codes(ql.q, ql.scales, ql.zeros, 4, gs, g_idx=bad)
    with pytest.raises(ValueError, match="float16's range"):
        QuantLinear.from_codes(ql.q, ql.scales * 1e6, ql.zeros, 4, gs)
    with pytest.raises(ConfigError, match="bits"):
        QuantLinear.from_codes(ql.q, ql.scales, ql.zeros, 5, gs)
    with pytest.raises(ValueError, match="out of range"):
        QuantLinear.from_codes(ql.q | 16, ql.scales, ql.zeros, 4, gs)
