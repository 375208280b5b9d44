"""evoforge.hashing: the native digest against an independent numpy model of the algorithm and an
arithmetic reference of the quantisation; invariance (threads, SIMD, strides, numpy/torch);
sensitivity (shape, dtype, order, types); collisions and avalanche; the Python API."""

from __future__ import annotations

import random
import subprocess
import sys
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

torch = pytest.importorskip("torch")

import evoforge  # noqa: E402
from evoforge._native import core  # noqa: E402
from evoforge.hashing import FunctionalHasher, Hasher, genotype_hash, hash_array  # noqa: E402
from evoforge.hashing import digest as hashing_digest  # noqa: E402  (the header and codes, for the model)

# ==================================================================================================
# A numpy model of the hash (cpp/include/evoforge/hashing.h), organised as the CUDA kernel splits
# the work, and an arithmetic reference of the quantisation
# ==================================================================================================

import numpy as np  # noqa: E402

M = (1 << 64) - 1
CHUNK_WORDS, LANES, STRIPES, BLOCK_WORDS = 8192, 8, 16, 128


def fmix64(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & M
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & M
    return k ^ (k >> 33)


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
    return x ^ (x >> 31)


def rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & M


def perm(a: int, b: int) -> tuple[int, int]:
    a = fmix64((a + b) & M)
    b = (fmix64(b ^ rotl(a, 23)) + 0x2545F4914F6CDD1D) & M
    a ^= rotl(b, 41)
    return a, b


def absorb(a: int, b: int, w: int) -> tuple[int, int]:
    return perm(a ^ w, (b + w * 0x9FB21C651E98DF25) & M)


def lane_step(j):
    return splitmix64(0x6A09E667F3BCC908 + j) | 1


def block_step(j):
    return splitmix64(0xBB67AE8584CAA73B + j) | 1


def chunk_base(seed, c):
    return fmix64(seed ^ splitmix64(c ^ 0x3C6EF372FE94F82B))


def data_key(base, j):
    return splitmix64((base + 0x9E3779B97F4A7C15 * (2 * j + 1)) & M)


def scramble_key(base, j):
    return splitmix64(base ^ ((0xA54FF53A5F1D36F1 * (2 * j + 2)) & M))


def scramble(x: int, key: int) -> int:
    x ^= key
    x ^= x >> 32
    x = (x * 0x9E3779B1) & M
    return x ^ (x >> 29)


def _u64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.uint64)


def chunk_digest(words: np.ndarray, seed: int, c: int) -> tuple[int, int]:
    """Chunk c of the stream (its words), as the CUDA kernel splits it: thread (bl, j)."""
    base = chunk_base(seed, c)
    nw = len(words)
    acc = [0] * LANES
    for bl in range((nw + BLOCK_WORDS - 1) // BLOCK_WORDS):
        for j in range(LANES):
            idx = bl * BLOCK_WORDS + j + 8 * np.arange(STRIPES)
            s = bl * STRIPES + np.arange(STRIPES)
            ok = idx < nw
            w = words[idx[ok]]
            k = _u64(data_key(base, j)) + _u64(s[ok]) * _u64(lane_step(j))
            v = w ^ k
            terms = (v & _u64(0xFFFFFFFF)) * (v >> _u64(32)) + w
            B = int(terms.sum(dtype=np.uint64)) if len(terms) else 0
            acc[j] = (acc[j] + scramble(B, (scramble_key(base, j) + bl * block_step(j)) & M)) & M
    a, b = base ^ 0x510E527FADE682D1, rotl(base, 32) ^ 0x9B05688C2B3E6C1F
    for x in acc:
        a, b = absorb(a, b, x)
    a, b = absorb(a, b, nw)
    return perm(a, b)


def digest(words: np.ndarray, header: list[int], seed: int = 0) -> bytes:
    """Digest of a canonical word stream (uint64 array) with the given header words."""
    words = _u64(words)
    n = len(words)
    lo = hi = 0
    with np.errstate(over="ignore"):
        for c in range((n + CHUNK_WORDS - 1) // CHUNK_WORDS):
            dlo, dhi = chunk_digest(words[c * CHUNK_WORDS:(c + 1) * CHUNK_WORDS], seed, c)
            lo, hi = (lo + dlo) & M, (hi + dhi) & M
    a, b = splitmix64(seed ^ 0x1F83D9ABFB41BD6B), splitmix64((seed + 0x5BE0CD19137E2179) & M)
    for w in [lo, hi, n, len(header), *header]:
        a, b = absorb(a, b, w & M)
    a, b = perm(*perm(a, b))
    return a.to_bytes(8, "little") + b.to_bytes(8, "little")


# ---- quantisation reference (arithmetic, not bit tricks) -----------------------------------------


def quantise_mantissa(x: np.ndarray, b: int) -> np.ndarray:
    """Nearest value with b explicit mantissa bits, ties away from zero, as float32/float64 of x."""
    x = np.asarray(x)
    f64 = x.dtype == np.float64
    mant, emin, fmax = (52, -1022, np.finfo(np.float64).max) if f64 else (23, -126, np.finfo(np.float32).max)
    out = np.empty_like(x)
    for i, v in np.ndenumerate(x):
        v = float(v)
        if not np.isfinite(v) or v == 0:
            out[i] = v
            continue
        _, e_ = np.frexp(abs(v))  # |v| = m * 2^e_, m in [0.5, 1)
        e = max(int(e_) - 1, emin)
        if f64:
            q = Fraction(2) ** (e - b)
            r = Fraction(abs(v)) / q
            n = int(r) + (1 if r - int(r) >= Fraction(1, 2) else 0)
            val = n * q
            mag = float(val) if val <= Fraction(fmax) else float("inf")
        else:
            q = 2.0 ** (e - b)
            n = np.floor(abs(v) / q + 0.5)  # exact in float64 for float32 inputs
            val = n * q
            mag = val if val <= fmax else float("inf")
        out[i] = np.copysign(mag, v)
    return out


def canon_bits(q: np.ndarray) -> np.ndarray:
    """Canonical lanes of already-quantised floats: -0.0 -> 0, NaN -> all ones."""
    if q.dtype == np.float32:
        u = q.view(np.uint32).copy()
        u[q == 0] = 0
        u[np.isnan(q)] = 0xFFFFFFFF
        return u
    u = q.astype(np.float64).view(np.uint64).copy()
    u[q == 0] = 0
    u[np.isnan(q)] = np.uint64(M)
    return u


def words_from_lanes(lanes: np.ndarray) -> np.ndarray:
    """Pack canonical lanes (C order) into 64-bit words: two uint32 lanes per word, low first."""
    lanes = np.ascontiguousarray(lanes).ravel()
    if lanes.dtype == np.uint32:
        if len(lanes) % 2:
            lanes = np.concatenate([lanes, np.zeros(1, np.uint32)])
        return lanes.view(np.uint64)
    return lanes.astype(np.uint64)


def grid_lanes(x: np.ndarray, g: float) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.rint(x.astype(np.float64) / g)
    return canon_bits(q)


# ==================================================================================================
# Tests
# ==================================================================================================

F32_MAX = float(np.finfo(np.float32).max)


def _model_digest_of(x: np.ndarray, *, mantissa_bits=None, grid=None, seed=0, ignore_dtype=False) -> bytes:
    """Digest through the model, with lanes from the arithmetic quantisation reference."""
    code = hashing_digest._NP_CODES[x.dtype]
    quant = hashing_digest.check_quant(mantissa_bits, grid)
    header = hashing_digest._header(code, x.shape, quant, ignore_dtype)
    x = x.reshape(-1)
    if x.dtype.kind == "f":
        if grid is not None:
            lanes = grid_lanes(x, grid)
        else:
            xf = x.astype(np.float32) if x.dtype == np.float16 else x
            b = mantissa_bits if mantissa_bits is not None else (52 if x.dtype == np.float64 else 23)
            lanes = canon_bits(quantise_mantissa(xf, b))
    else:
        lanes = x.astype(np.int64).view(np.uint64)
    return digest(words_from_lanes(lanes), header, seed)


@st.composite
def hash_inputs(draw):
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_]))
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=3)))
    if np.dtype(dtype).kind == "f":
        elements = st.one_of(
            st.sampled_from([0.0, -0.0, 1.0, -1.0, 1.5, 0.75, float("inf"), -float("inf"), float("nan")]),
            st.floats(allow_nan=True, allow_infinity=True, width=np.finfo(dtype).bits),
        )
    elif dtype == np.bool_:
        elements = st.booleans()
    else:
        info = np.iinfo(dtype)
        elements = st.integers(int(info.min), int(info.max))
    x = draw(arrays(dtype, shape, elements=elements))
    quant = draw(st.sampled_from(["exact", "mantissa", "grid"]))
    kw = {}
    if quant == "mantissa":
        kw["mantissa_bits"] = draw(st.integers(0, 52 if dtype == np.float64 else 23))
    elif quant == "grid":
        kw["grid"] = draw(st.sampled_from([1.0, 0.1, 0.25, 3.0, 1e-3]))
    kw["seed"] = draw(st.sampled_from([0, 1, 2**64 - 1, 12345]))
    kw["ignore_dtype"] = draw(st.booleans())
    return x, kw


@settings(max_examples=300, deadline=None)
@given(hash_inputs())
def test_native_matches_model(case):
    x, kw = case
    assert hash_array(x, **kw) == _model_digest_of(x, **kw)


@pytest.mark.parametrize("n_words", [1, 7, 8, 127, 128, 129, 8191, 8192, 8193, 2 * 8192 - 1, 2 * 8192 + 129])
def test_chunk_boundaries_match_model(n_words):
    rng = np.random.default_rng(n_words)
    x = rng.standard_normal(n_words).astype(np.float64)
    assert hash_array(x, mantissa_bits=20) == _model_digest_of(x, mantissa_bits=20)
    # float32: two elements per word, odd counts leave a zero half word
    for n in (2 * n_words - 1, 2 * n_words):
        y = rng.standard_normal(n).astype(np.float32)
        assert hash_array(y, mantissa_bits=7) == _model_digest_of(y, mantissa_bits=7)


def test_chunk_boundaries_differ():
    x = np.arange(3 * 16384 + 3, dtype=np.float32)
    seen = {hash_array(x[:n]) for n in range(16384 - 3, 16384 + 4)}
    seen |= {hash_array(x[:n]) for n in range(2 * 16384 - 2, 2 * 16384 + 3)}
    assert len(seen) == 12


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_])
def test_thread_counts_and_simd_paths_agree(dtype):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(5 * 16384 + 77) * 100).astype(dtype)
    code = hashing_digest._NP_CODES[np.dtype(dtype)]
    header = hashing_digest._header(code, x.shape, hashing_digest.check_quant(None, None), False)
    ref = hash_array(x)
    try:
        for t in (1, 2, 3, 7):
            evoforge.set_num_threads(t)
            assert hash_array(x) == ref
            assert hash_array(x[::3]) == hash_array(np.ascontiguousarray(x[::3]))
    finally:
        evoforge.set_num_threads(0)
    for t in (1, 4):
        for fs in (False, True):
            assert core.hash_array(x, code, 0, 0, 1.0, header, 0, t, fs) == ref


def test_strided_views_equal_contiguous_copies():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((37, 300, 5)).astype(np.float32)
    views = [a[::2], a[:, ::-3], a.transpose(2, 0, 1), a[..., 1], a[::-1, :, ::2], a[5:6, 10:290:7, :],
             np.broadcast_to(a[:, :1, :], (37, 300, 5))]
    for v in views:
        c = np.ascontiguousarray(v)
        assert not v.flags.c_contiguous or v is c
        for kw in ({}, {"mantissa_bits": 5}, {"grid": 0.1}):
            assert hash_array(v, **kw) == hash_array(c, **kw)
    assert hash_array(a.transpose(2, 0, 1)) != hash_array(a.reshape(5, 37, 300))


def test_numpy_and_torch_cpu_agree():
    rng = np.random.default_rng(5)
    base = rng.standard_normal((33, 71)) * 10
    for dt, tdt in [(np.float16, torch.float16), (np.float32, torch.float32), (np.float64, torch.float64),
                    (np.int32, torch.int32), (np.int64, torch.int64), (np.uint8, torch.uint8),
                    (np.int8, torch.int8), (np.bool_, torch.bool)]:
        a = base.astype(dt)
        t = torch.from_numpy(a.copy())
        assert hash_array(t) == hash_array(a)
        assert hash_array(t[:, 1::3]) == hash_array(a[:, 1::3])
        assert hash_array(t.T, mantissa_bits=3 if dt == np.float16 else None) == hash_array(
            a.T, mantissa_bits=3 if dt == np.float16 else None)
    t = torch.randn(10, 20, requires_grad=True)
    assert hash_array(t) == hash_array(t.detach().numpy())


def test_bfloat16_float16_float32_equal_with_ignore_dtype():
    vals = torch.tensor([0.0, -0.0, 1.0, -2.5, 0.15625, 65504.0, float("inf"), float("nan"), 3.0e-5])
    b16 = vals.to(torch.bfloat16)
    f16 = vals.to(torch.float16)
    for src in (b16, f16):
        f32 = src.float()
        assert hash_array(src, ignore_dtype=True) == hash_array(f32, ignore_dtype=True)
        assert hash_array(src, ignore_dtype=True, mantissa_bits=4) == hash_array(f32, ignore_dtype=True, mantissa_bits=4)
        assert hash_array(src) != hash_array(f32)
    assert hash_array(b16) != hash_array(f16)
    # bfloat16 through the model: its float32 widening is exact
    x = b16.float().numpy()
    header = hashing_digest._header(hashing_digest._BF16, x.shape, hashing_digest.check_quant(6, None), False)
    assert hash_array(b16, mantissa_bits=6) == digest(words_from_lanes(canon_bits(quantise_mantissa(x, 6))), header)


# ---- quantisation at bucket edges -----------------------------------------------------------------


def _edges_f32(b):
    """Values at, just below and just above the rounding ties of b mantissa bits (float32)."""
    out = []
    for e in (-149, -140, -126, -125, -3, 0, 1, 20, 126, 127):
        for m in (0, 1, 2, 5, (1 << b) - 1):
            if m >= (1 << b):
                continue
            lo = np.float64(2.0 ** e) * (1 + m / 2**b)  # a grid value
            q = 2.0 ** (max(e, -126) - b)
            tie = lo + q / 2
            for v in (tie, lo, lo + q):
                f = np.float32(v) if abs(v) <= F32_MAX else np.float32(np.inf)
                if np.isfinite(f) and f != 0:
                    out += [f, np.nextafter(f, np.float32(0)), np.nextafter(f, np.float32(np.inf))]
    out += [np.float32(F32_MAX), np.float32(np.finfo(np.float32).tiny), np.float32(1e-45)]
    a = np.array(out, dtype=np.float32)
    return np.concatenate([a, -a])


@pytest.mark.parametrize("b", [0, 1, 2, 7, 10, 22, 23])
def test_mantissa_rounding_float32_edges(b):
    with np.errstate(over="ignore"):
        x = _edges_f32(b)
    q = quantise_mantissa(x, b)
    # the reference is idempotent and ties go away from zero
    np.testing.assert_array_equal(quantise_mantissa(q, b), q)
    for xi, qi in zip(x, q):
        one = np.array([xi])
        assert hash_array(one, mantissa_bits=b) == hash_array(np.array([qi]), mantissa_bits=b), (xi, qi)
        assert hash_array(one, mantissa_bits=b) == _model_digest_of(one, mantissa_bits=b)
        if np.isfinite(qi) and qi != 0:  # the neighbouring bucket differs
            with np.errstate(over="ignore"):
                other = np.nextafter(qi, np.float32(np.inf) if qi > 0 else np.float32(-np.inf))
            if np.isfinite(other):
                oq = quantise_mantissa(np.array([other]), b)
                if oq[0] != qi:
                    assert hash_array(one, mantissa_bits=b) != hash_array(oq, mantissa_bits=b)


def test_mantissa_ties_away_from_zero_and_overflow():
    # 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 (b = 7): rounds up (away from zero)
    h = lambda v, b=7: hash_array(np.array([v], dtype=np.float32), mantissa_bits=b)  # noqa: E731
    assert h(1 + 2**-8) == h(1 + 2**-7) != h(1.0)
    assert h(-(1 + 2**-8)) == h(-(1 + 2**-7)) != h(-1.0)
    assert h(np.nextafter(np.float32(1 + 2**-8), np.float32(0))) == h(1.0)
    assert h(1.5, 0) == h(2.0, 0) and h(1.25, 1) == h(1.5, 1)
    assert h(F32_MAX) == h(np.inf) != h(-np.inf) == h(-F32_MAX)  # rounds up to inf at the top
    assert h(F32_MAX, 23) != h(np.inf, 23)
    h64 = lambda v, b: hash_array(np.array([v], dtype=np.float64), mantissa_bits=b)  # noqa: E731
    assert h64(1 + 2**-11, 10) == h64(1 + 2**-10, 10) != h64(1.0, 10)
    assert h64(np.finfo(np.float64).max, 51) == h64(np.inf, 51)


@pytest.mark.parametrize("b", [0, 1, 10, 30, 51, 52])
def test_mantissa_rounding_float64(b):
    rng = np.random.default_rng(b)
    base = rng.standard_normal(40) * 10.0 ** rng.integers(-300, 300, 40)
    q = 2.0 ** (np.frexp(np.abs(base))[1] - 1 - b)
    x = np.concatenate([base, (np.floor(np.abs(base) / q) * q + q / 2) * np.sign(base), [5e-324, 2.2250738585072014e-308]])
    x = np.concatenate([x, np.nextafter(x, 0), np.nextafter(x, np.inf)])
    ref = quantise_mantissa(x, b)
    for xi, qi in zip(x, ref):
        assert hash_array(np.array([xi]), mantissa_bits=b) == hash_array(np.array([qi]), mantissa_bits=b)
    assert hash_array(x, mantissa_bits=b) == _model_digest_of(x, mantissa_bits=b)


def test_grid_rounding_ties_to_even():
    h = lambda v, g=1.0, dt=np.float64: hash_array(np.array([v], dtype=dt), grid=g)  # noqa: E731
    assert h(0.5) == h(0.0) == h(-0.5) == h(-0.0)
    assert h(1.5) == h(2.0) == h(2.5) != h(3.0)
    assert h(np.nextafter(0.5, 1)) == h(1.0)
    assert h(0.25, 0.5) == h(0.0, 0.5) and h(0.75, 0.5) == h(1.0, 0.5)
    assert h(np.inf) != h(-np.inf) and h(np.nan) == h(-np.nan)
    # float32 and float64 inputs of the same value: same integer, same digest with ignore_dtype
    x = np.array([0.1, 2.5, -7.25, 1e30], dtype=np.float32)
    assert hash_array(x, grid=0.05, ignore_dtype=True) == hash_array(x.astype(np.float64), grid=0.05, ignore_dtype=True)
    assert hash_array(x, grid=0.05) != hash_array(x.astype(np.float64), grid=0.05)
    rng = np.random.default_rng(1)
    y = np.round(rng.standard_normal(1000) * 20) / 4 + 0.125  # many exact ties of grid 0.25
    assert hash_array(y, grid=0.25) == _model_digest_of(y, grid=0.25)


def test_negative_zero_and_nan_payloads():
    nans32 = np.array([0x7FC00000, 0x7F800001, 0xFFC00000, 0xFFFFFFFF, 0x7FA00000], dtype=np.uint32).view(np.float32)
    nans64 = np.array([0x7FF8000000000000, 0x7FF0000000000001, 0xFFF8000000000001], dtype=np.uint64).view(np.float64)
    for kw in ({}, {"mantissa_bits": 3}, {"grid": 0.5}):
        ds = {hash_array(np.array([v, 1.0], dtype=np.float32), **kw) for v in nans32}
        assert len(ds) == 1
        ds = {hash_array(np.array([v]), **kw) for v in nans64}
        assert len(ds) == 1
        assert hash_array(np.array([-0.0, 1.0]), **kw) == hash_array(np.array([0.0, 1.0]), **kw)
        assert hash_array(np.array([-0.0], np.float32), **kw) == hash_array(np.array([0.0], np.float32), **kw)
        assert hash_array(np.array([np.nan])) != hash_array(np.array([np.inf]))
    h16 = np.array([0x7E00, 0xFE01, 0x7C01], dtype=np.uint16).view(np.float16)
    assert len({hash_array(h16[i:i + 1]) for i in range(3)}) == 1
    assert hash_array(torch.tensor([-0.0], dtype=torch.bfloat16)) == hash_array(torch.tensor([0.0], dtype=torch.bfloat16))
    # tiny values that round to zero lose their sign too
    assert hash_array(np.array([-1e-45], np.float32), mantissa_bits=0) == hash_array(np.array([0.0], np.float32), mantissa_bits=0)


# ---- collisions, shape/dtype sensitivity, avalanche ----------------------------------------------


def test_no_collisions_among_a_million_small_arrays():
    n = 1_000_000
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    x[:, 0] = np.arange(n, dtype=np.float32)  # rows distinct by construction (exact below 2^24)
    x[:, 1] = np.where(rng.random(n) < 0.3, 0.0, x[:, 1])
    fn = core.hash_array
    header = hashing_digest._header(hashing_digest._F32, (4,), hashing_digest.check_quant(None, None), False)
    digests = {fn(row, 2, 0, 0, 1.0, header, 0, 1, False) for row in x}
    assert len(digests) == n
    assert len({d[:8] for d in digests}) == n  # not even 64-bit collisions
    assert fn(x[12345], 2, 0, 0, 1.0, header, 0, 1, False) == hash_array(x[12345])


def test_shapes_and_dtypes_differ():
    a = np.arange(12, dtype=np.float32)
    shapes = [(12,), (3, 4), (4, 3), (2, 6), (1, 12), (12, 1), (2, 2, 3)]
    assert len({hash_array(a.reshape(s)) for s in shapes}) == len(shapes)
    assert len({hash_array(a.reshape(s), ignore_dtype=True) for s in shapes}) == len(shapes)
    ints = np.arange(12) % 2
    by_dtype = {dt: hash_array(ints.astype(dt)) for dt in [np.int8, np.int16, np.int32, np.int64, np.uint8,
                                                            np.uint16, np.uint32, np.uint64, np.bool_,
                                                            np.float16, np.float32, np.float64]}
    assert len(set(by_dtype.values())) == len(by_dtype)
    ignored = {dt: hash_array(ints.astype(dt), ignore_dtype=True) for dt in by_dtype}
    assert len({ignored[dt] for dt in [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                                       np.uint64, np.bool_]}) == 1
    assert ignored[np.float16] == ignored[np.float32] != ignored[np.float64] != ignored[np.int64]
    assert hash_array(np.zeros(0, np.float32)) != hash_array(np.zeros((0, 3), np.float32))
    assert hash_array(np.float32(1.0)) != hash_array(np.array([1.0], np.float32))  # 0-d vs 1-d
    # quantisation settings are part of the digest, the seed selects another function
    assert len({hash_array(a), hash_array(a, mantissa_bits=23), hash_array(a, grid=1.0), hash_array(a, seed=1)}) == 4


def _bits(d: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(d, np.uint8))


@pytest.mark.parametrize("n", [16, 3 * 16384 + 5])
def test_avalanche(n):
    rng = np.random.default_rng(n)
    flips, per_bit, trials = [], np.zeros(128), 0
    for _ in range(4 if n > 1000 else 40):
        x = rng.standard_normal(n).astype(np.float32)
        base = _bits(hash_array(x))
        u = x.view(np.uint32)
        for _ in range(32 if n > 1000 else 64):
            y = u.copy()
            i, b = rng.integers(n), rng.integers(32)
            y[i] ^= np.uint32(1 << int(b))
            fy = y.view(np.float32)
            if np.isnan(fy[i]):
                continue
            diff = base ^ _bits(hash_array(fy))
            flips.append(diff.sum())
            per_bit += diff
            trials += 1
    mean = np.mean(flips)
    assert 60 <= mean <= 68, mean
    assert min(flips) >= 35
    p = per_bit / trials
    assert np.all((p > 0.3) & (p < 0.7)), p


def test_avalanche_of_position():
    # swapping two words, or moving a block, changes the digest
    x = np.arange(40000, dtype=np.float64)
    y = x.copy()
    y[[3, 11]] = y[[11, 3]]
    z = np.concatenate([x[128:256], x[:128], x[256:]])
    w = np.concatenate([x[8192:16384], x[:8192], x[16384:]])  # swap two whole chunks
    assert len({hash_array(v) for v in (x, y, z, w)}) == 4


# ---- Hasher ---------------------------------------------------------------------------------------


def test_hasher_type_and_order_sensitivity():
    items = ["1", 1, b"1", 1.0, True, None, (1,), [1], {1: 1}, np.int64(1), np.array([1]), np.array(1.0),
             np.float64(1.0), 2**70, -(2**70), "", b"", (), []]
    digests = [Hasher().update(v).digest() for v in items]
    assert len(set(digests)) == len(items)
    assert Hasher().update(bytearray(b"1")).digest() == Hasher().update(memoryview(b"1")).digest() == digests[2]
    assert Hasher().update("a").update("b").digest() != Hasher().update("b").update("a").digest()
    assert Hasher().update("ab").digest() != Hasher().update("a").update("b").digest()
    assert Hasher().update(("a", "b")).digest() != Hasher().update("a").update("b").digest()
    assert Hasher().update([[1], 2]).digest() != Hasher().update([1, [2]]).digest()
    assert Hasher().update({"a": 1, "b": 2}).digest() == Hasher().update({"b": 2, "a": 1}).digest()
    assert Hasher().update({"a": 1, "b": 2}).digest() != Hasher().update({"a": 2, "b": 1}).digest()
    assert Hasher(seed=1).update("x").digest() != Hasher().update("x").digest()
    assert Hasher().digest() != Hasher().update(None).digest()


def test_hasher_copy_hexdigest_and_quantisation():
    h = Hasher().update("task").update(3)
    c = h.copy()
    assert c.digest() == h.digest() and h.hexdigest() == h.digest().hex() and len(h.digest()) == 16
    c.update("more")
    assert c.digest() != h.digest()
    x = np.array([1.0, 2.0001], dtype=np.float32)
    y = np.array([1.0, 2.0002], dtype=np.float32)
    assert Hasher().update(x, mantissa_bits=7).digest() == Hasher().update(y, mantissa_bits=7).digest()
    assert Hasher().update(x).digest() != Hasher().update(y).digest()
    assert Hasher().update(1.0001, mantissa_bits=7).digest() == Hasher().update(1.0, mantissa_bits=7).digest()
    assert Hasher().update(torch.tensor(x)).digest() == Hasher().update(x).digest()
    with pytest.raises(TypeError, match="Hasher cannot hash object"):
        Hasher().update(object())
    with pytest.raises(ValueError, match="not both"):
        Hasher().update("x", mantissa_bits=3, grid=1.0)


def test_self_containing_objects_raise_value_error():
    """A reference cycle used to recurse until RecursionError; now a ValueError saying so."""
    loop: list = [1, 2]
    loop.append(loop)
    d: dict = {"a": 1}
    d["self"] = [d]
    for obj in (loop, d, (0, loop), [[[loop]]]):
        with pytest.raises(ValueError, match="contains itself"):
            Hasher().update(obj)
        with pytest.raises(ValueError, match="contains itself"):
            genotype_hash(obj)
    fh = FunctionalHasher(input_shape=(4,), n_probes=3)
    for kw in ({"task": loop}, {"fidelity": loop}):
        with pytest.raises(ValueError, match="contains itself"):
            fh.hash(lambda t: t, **kw)
    with pytest.raises(ValueError, match="contains itself"):
        fh.hash(lambda t: loop)
    with pytest.raises(ValueError, match="nested more than"):
        deep: list = []
        for _ in range(5000):
            deep = [deep]
        Hasher().update(deep)
    # The same object twice is not a cycle, and digests are unchanged by the check.
    shared = [1, 2]
    assert Hasher().update([shared, shared]).digest() == Hasher().update([[1, 2], [1, 2]]).digest()
    assert genotype_hash([shared, shared]) == genotype_hash([[1, 2], [1, 2]])


# ---- FunctionalHasher and genotype_hash -------------------------------------------------------------


def _mlp(seed, d_in=6, d_hidden=16, d_out=3):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d_in, d_hidden), torch.nn.Tanh(), torch.nn.Linear(d_hidden, d_out))


def test_functional_hash_equivalent_modules_hash_equal():
    fh = FunctionalHasher(input_shape=(6,), n_probes=10, seed=3)
    net = _mlp(0)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    twin = _mlp(99)
    with torch.no_grad():
        twin[0].weight.copy_(net[0].weight[perm])
        twin[0].bias.copy_(net[0].bias[perm])
        twin[2].weight.copy_(net[2].weight[:, perm])
        twin[2].bias.copy_(net[2].bias)
    assert not torch.equal(twin[0].weight, net[0].weight)
    assert fh.hash(net) == fh.hash(twin)
    assert fh.hash(net) == fh.hash(lambda x: net(x))  # a plain callable too
    bumped = _mlp(0)
    with torch.no_grad():
        bumped[2].bias[0] += 0.05
    assert fh.hash(bumped) != fh.hash(net)
    assert fh.hash(_mlp(1)) != fh.hash(net)
    # task, fidelity, probe version and the probes are part of the key
    assert len({fh.hash(net), fh.hash(net, task="a"), fh.hash(net, fidelity=0.5),
                FunctionalHasher(input_shape=(6,), seed=3, probe_version=2).hash(net),
                FunctionalHasher(input_shape=(6,), seed=4).hash(net)}) == 5


def test_functional_hash_restores_rng_and_is_deterministic():
    fh = FunctionalHasher(input_shape=(4,), n_probes=5, seed=0)
    drop = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5))  # training mode: uses the RNG
    torch.manual_seed(1234)
    np.random.seed(5)
    random.seed(7)
    before = (torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate())
    d1 = fh.hash(drop)
    noisy = lambda x: x + torch.randn_like(x) + float(np.random.rand()) + random.random()  # noqa: E731
    d2 = fh.hash(noisy)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1]) and random.getstate() == before[2]
    torch.manual_seed(999)
    assert fh.hash(drop) == d1 and fh.hash(noisy) == d2


def test_functional_hash_outputs_and_probes():
    x = torch.randn(3, 5)
    fh = FunctionalHasher(x, mantissa_bits=None)
    f = lambda t: {"logits": t * 2, "past": object()}  # noqa: E731  (ModelOutput-like: logits only)
    g = lambda t: t * 2  # noqa: E731
    assert fh.hash(f) == fh.hash(g)
    assert fh.hash(lambda t: (t, t.sum())) != fh.hash(lambda t: [t, t.sum()])
    two = FunctionalHasher((x, x), mantissa_bits=None)
    assert two.hash(lambda a, b: a + b) == two.hash(lambda a, b: 2 * a)
    kw = FunctionalHasher({"a": x}, mantissa_bits=None)
    assert kw.hash(lambda a: a) == kw.hash(lambda a: a.clone())
    with pytest.raises(ValueError, match="input_shape"):
        FunctionalHasher()
    # Absurd or negative probe sizes are refused before torch allocates (it raised RuntimeError).
    for kw in ({"input_shape": (2**31, 2**31)}, {"input_shape": (2**62,)}, {"input_shape": (2, -1)},
               {"input_shape": (0,)}, {"input_shape": (4,), "n_probes": 2**62}, {"input_shape": (4,), "n_probes": 0}):
        with pytest.raises(ValueError, match="input_shape|n_probes"):
            FunctionalHasher(**kw)
    with pytest.raises(TypeError, match="input_shape"):
        FunctionalHasher(input_shape=(2.5, 3))
    with pytest.raises(TypeError, match="n_probes"):
        FunctionalHasher(input_shape=(4,), n_probes=1.0)
    with pytest.raises(TypeError, match="cannot hash an output"):
        fh.hash(lambda t: object())


def test_genotype_hash():
    g = genotype_hash
    assert g([1, 2, 3]) == g([1, 2, 3]) != g([1.0, 2.0, 3.0])
    assert g(list(range(100))) != g([float(i) for i in range(100)]) != g(tuple(range(100)))
    assert g(list(range(100))) == g(list(range(100)))
    assert g(list(range(100))) != g(list(range(99)) + [100])
    assert g({"a": [1, 2], "b": "x"}) == g({"b": "x", "a": [1, 2]})
    assert g(np.arange(5, dtype=np.int32)) != g(np.arange(5, dtype=np.int64))
    assert g(np.arange(5)) == g(torch.arange(5))
    assert g([0.0]) == g([-0.0]) and g([float("nan")] * 20) == g([-float("nan")] * 20)
    assert g([2**80] * 10) != g([2**80 + 1] * 10)
    assert g("abc") != g(b"abc")
    assert len(g([1, [2, 3], (4,)])) == 16


# ---- errors ----------------------------------------------------------------------------------------


def test_bad_inputs():
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="complex"):
        hash_array(np.ones(3, np.complex64))
    with pytest.raises(TypeError, match="object"):
        hash_array(np.array([object()]))
    with pytest.raises(TypeError, match="<U"):
        hash_array(np.array(["a"]))
    with pytest.raises(TypeError, match="complex"):
        hash_array(torch.ones(2, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"\[0, 23\]"):
        hash_array(x, mantissa_bits=24)
    with pytest.raises(ValueError, match=r"\[0, 23\]"):
        hash_array(torch.ones(2, dtype=torch.bfloat16), mantissa_bits=30)
    with pytest.raises(ValueError, match=r"\[0, 52\]"):
        hash_array(x.astype(np.float64), mantissa_bits=53)
    with pytest.raises(ValueError, match=r"\[0, 52\]"):
        hash_array(x, mantissa_bits=-1)
    with pytest.raises(TypeError, match="mantissa_bits must be an int"):
        hash_array(x, mantissa_bits=3.0)
    with pytest.raises(ValueError, match="not both"):
        hash_array(x, mantissa_bits=3, grid=0.5)
    for g in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="grid must be a positive finite number"):
            hash_array(x, grid=g)
    with pytest.raises(ValueError, match="seed"):
        hash_array(x, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        hash_array(x, seed=2**64)
    # integers ignore quantisation; big-endian input is read by value
    assert hash_array(np.arange(3), mantissa_bits=60 - 10) == hash_array(np.arange(3))
    assert hash_array(np.arange(3, dtype=">f4")) == hash_array(np.arange(3, dtype="<f4"))
    assert hash_array([1.0, 2.0]) == hash_array(np.array([1.0, 2.0]))


def test_module_does_not_import_torch():
    code = "import sys, evoforge.hashing; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
