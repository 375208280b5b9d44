"""evoforge.random: Philox4x32-10 known answers, the key layout, and bit-exact conversions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evoforge
from evoforge import _core
from evoforge import random as er

# Random123's kat_vectors for Philox4x32-10 (Salmon et al. 2011): counter, key, output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def philox_np(ctr: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Independent numpy Philox4x32-10 (the published round function), uint64 arithmetic."""
    c = [ctr[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = key[:, 0].astype(np.uint64), key[:, 1].astype(np.uint64)
    m = np.uint64(0xFFFFFFFF)
    for r in range(10):
        if r:
            k0 = (k0 + np.uint64(0x9E3779B9)) & m
            k1 = (k1 + np.uint64(0xBB67AE85)) & m
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & m, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & m]
    return np.stack(c, axis=1).astype(np.uint32)


@pytest.mark.parametrize("ctr,key,out", KAT)
def test_known_answers(ctr, key, out):
    got = er.philox4x32_10(np.array(ctr, dtype=np.uint32), np.array(key, dtype=np.uint32))
    assert [int(v) for v in got] == list(out)


def test_matches_independent_numpy_philox():
    rng = np.random.default_rng(0)
    ctr = rng.integers(0, 2**32, size=(5000, 4), dtype=np.uint64).astype(np.uint32)
    key = rng.integers(0, 2**32, size=(5000, 2), dtype=np.uint64).astype(np.uint32)
    np.testing.assert_array_equal(er.philox4x32_10(ctr, key), philox_np(ctr, key))


# ---- Box-Muller, re-done in numpy float32 with the same rounded operations ------------------------

f32 = np.float32


def log_np(x: np.ndarray) -> np.ndarray:
    b = x.view(np.uint32).astype(np.int64)
    e = ((b >> 23) & 0xFF) - 127
    mb = (b & 0x7FFFFF) | 0x3F800000
    big = mb > 0x3FB504F3
    mb = np.where(big, mb - 0x00800000, mb)
    e = e + big
    m = mb.astype(np.uint32).view(np.float32)
    s = (m - f32(1)) / (m + f32(1))
    s2 = s * s
    p = f32(0.111111111) * s2 + f32(0.142857143)
    p = p * s2 + f32(0.2)
    p = p * s2 + f32(0.333333333)
    p = p * s2
    logm = f32(2) * (s + s * p)
    fe = e.astype(np.float32)
    return fe * f32(0.693145751953125) + (fe * f32(1.42860682e-06) + logm)


def sincos_np(k: np.ndarray):
    o, t = k >> 21, k & 0x1FFFFF
    odd = (o & 1) == 1
    tt = np.where(odd, 0x200000 - t, t)
    x = tt.astype(np.float32) * f32(3.74507039e-07)
    x2 = x * x
    ps = f32(-2.50521084e-08)
    for c in (2.75573192e-06, -1.98412698e-04, 8.33333333e-03, -1.66666667e-01):
        ps = ps * x2 + f32(c)
    s = x + (x * x2) * ps
    pc = f32(-2.75573192e-07)
    for c in (2.48015873e-05, -1.38888889e-03, 4.16666667e-02, -0.5):
        pc = pc * x2 + f32(c)
    c = f32(1) + x2 * pc
    sa, ca = np.where(odd, c, s), np.where(odd, s, c)
    q = o >> 1
    sn = np.select([q == 0, q == 1, q == 2], [sa, ca, -sa], -ca)
    cs = np.select([q == 0, q == 1, q == 2], [ca, -sa, -ca], sa)
    return sn, cs


def box_muller_np(w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    u1 = ((w1 >> 8) + 1).astype(np.float32) * f32(2.0**-24)
    r = np.sqrt(f32(2) * (f32(0) - log_np(u1)))
    sn, cs = sincos_np((w2 >> 8).astype(np.int64))
    return np.stack([r * cs, r * sn], axis=1)


def test_box_muller_is_the_documented_float32_arithmetic():
    """Bit-equality with a per-operation-rounded numpy twin: no FMA contraction, no libm."""
    rng = np.random.default_rng(1)
    w1 = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    w2 = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    w1[:4] = [0, 0xFFFFFFFF, 0xFF, 0x100]
    w2[:8] = np.arange(8, dtype=np.uint32) << 29  # octant boundaries
    with np.errstate(all="ignore"):
        ref = box_muller_np(w1, w2)
    got = er.box_muller(w1, w2)
    np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_log_and_trig_accuracy():
    x = np.unique(np.random.default_rng(2).integers(1, 2**24 + 1, 100_000)).astype(np.float32) * f32(2.0**-24)
    got = _core.log_f32(x).astype(np.float64)
    ref = np.log(x.astype(np.float64))
    assert np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)) < 4e-7
    k = np.arange(0, 2**24, 97, dtype=np.uint32)
    z = er.box_muller(np.full(k.size, 0x7FFFFFFF, np.uint32), k << 8).astype(np.float64)
    r = np.sqrt(-2 * np.log(((0x7FFFFFFF >> 8) + 1) / 2**24))
    theta = 2 * np.pi * k / 2**24
    assert np.max(np.abs(z[:, 0] - r * np.cos(theta))) < 3e-7 * r
    assert np.max(np.abs(z[:, 1] - r * np.sin(theta))) < 3e-7 * r


def test_normal_layout_moments_and_splits():
    z = er.normal((400, 1000), seed=7, generation=3)
    assert z.dtype == np.float32 and z.shape == (400, 1000)
    assert abs(z.mean()) < 0.01 and abs(z.var() - 1) < 0.01
    assert abs((z.astype(np.float64) ** 3).mean()) < 0.03 and abs((z.astype(np.float64) ** 4).mean() - 3) < 0.06
    # the layout: block g // 4 of individual r, stream "gaussian"
    ctr = np.array([[5, 2, 3, er.STREAMS["gaussian"] << 24]], dtype=np.uint32)
    w = er.philox4x32_10(ctr, np.array([[7, 0]], dtype=np.uint32))[0]
    bm = er.box_muller(w[[0, 2]], w[[1, 3]])
    np.testing.assert_array_equal(z[2, 20:24], [bm[0, 0], bm[0, 1], bm[1, 0], bm[1, 1]])
    np.testing.assert_array_equal(er.normal((150, 1000), seed=7, generation=3, individual_offset=250), z[250:])
    np.testing.assert_array_equal(er.normal(1000, seed=7, generation=3, individual_offset=5), z[5])
    assert not np.array_equal(er.normal((2, 8), seed=7, generation=4), z[:2, :8])
    assert not np.array_equal(er.normal((2, 8), seed=8, generation=3), z[:2, :8])


def test_normal_thread_independent():
    try:
        evoforge.set_num_threads(1)
        a = er.normal((64, 333), seed=2**64 - 1)
        evoforge.set_num_threads(3)
        b = er.normal((64, 333), seed=2**64 - 1)
    finally:
        evoforge.set_num_threads(0)
    np.testing.assert_array_equal(a, b)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1))
def test_seed_range_accepted(seed, gen):
    er.normal((1, 4), seed=seed, generation=gen)


@pytest.mark.parametrize("kw,exc", [
    ({"seed": -1}, ValueError), ({"seed": 2**64}, ValueError), ({"seed": 1.5}, TypeError),
    ({"seed": True}, TypeError), ({"seed": 0, "generation": 2**32}, ValueError),
    ({"seed": 0, "individual_offset": 2**32 - 1}, ValueError),
])
def test_bad_seed_args(kw, exc):
    with pytest.raises(exc):
        er.normal((2, 3), **kw)


@pytest.mark.parametrize("shape,exc", [
    ((2**62,), ValueError), ((2**31, 2**31), ValueError), ((), ValueError), ((1, 2, 3), ValueError),
    ((2, -1), ValueError), (-1, ValueError), ("3", TypeError), ((2.5, 3), TypeError), (True, TypeError),
    (None, TypeError), (float("nan"), TypeError),
])
def test_bad_shapes(shape, exc):
    """A shape is an int L or a pair (P, L) of ints >= 0 of sane size (IndexError or silent
    truncation before)."""
    with pytest.raises(exc, match="shape"):
        er.normal(shape, seed=0)
    assert er.normal([2, 3], seed=0).shape == (2, 3) and er.normal(np.int64(3), seed=0).shape == (3,)
    assert er.normal(np.array([2, 3]), seed=0).shape == (2, 3)
    assert er.normal((0, 3), seed=0).shape == (0, 3)


def test_check_positive_int_is_the_shared_checker():
    from evoforge import _checks

    assert er.check_positive_int is _checks.check_int
    with pytest.raises(TypeError):
        er.check_positive_int(2.0, "n")  # floats only where a caller allows integral ones
    assert _checks.check_int(2.0, "n", integral_float=True) == 2
    for bad in (float("inf"), float("nan"), 2.5, 1e308):
        with pytest.raises(ValueError, match="n must"):
            _checks.check_int(bad, "n", 1, 10, integral_float=True)
    with pytest.raises(ValueError, match=r"n must lie in \[1, 10\], got 18446744073709551616"):
        _checks.check_int(2**64, "n", 1, 10)

