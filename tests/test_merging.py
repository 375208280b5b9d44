"""evoforge.merging: TIES, DARE, task arithmetic and SLERP against float64 numpy references of the
published formulas; the DARE mask's statistics, layout and CUDA twin; determinism across thread
counts; bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import evoforge
from evoforge import _native, merging
from evoforge.errors import ConfigError

from cuda_emulation import emulate_dare_mask  # noqa: E402  (tests/: the CUDA kernel's specification)

try:
    from hypothesis import assume, given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover - hypothesis may be missing on a GPU machine
    HAVE_HYPOTHESIS = False

needs_hypothesis = pytest.mark.skipif(not HAVE_HYPOTHESIS, reason="needs hypothesis")


# ---- float64 references of the published formulas ------------------------------------------------


def ref_trim(delta: np.ndarray, density: float) -> np.ndarray:
    """TIES trim: keep the top-density magnitudes (n_keep = clamp(floor(density N + 0.5), 1, N));
    thr = the n_keep-th largest |delta|, keep |delta| >= thr."""
    N = delta.shape[0]
    mag = np.abs(delta)  # float32, as the kernel compares them
    n_keep = int(min(max(math.floor(density * N + 0.5), 1), N))
    thr = np.sort(mag)[N - n_keep]
    return np.where(mag >= thr, delta.astype(np.float64), 0.0)


def ref_merge(base, deltas, weights, densities=None, *, trim=False, dare=False, sign_election=False,
              normalize=False, scale=1.0, seed=0, stream=0) -> np.ndarray:
    """base + scale * merge in float64. DARE takes its keep masks from merging.dare_mask (tested
    separately) and rescales the kept elements by 1 / density."""
    K, N = deltas.shape
    w = np.asarray(weights, dtype=np.float64)
    rho = np.ones(K) if densities is None else np.asarray(densities, dtype=np.float64)
    D = deltas.astype(np.float64)
    for k in range(K):
        if trim:
            D[k] = ref_trim(deltas[k], rho[k])
        elif dare:
            keep = merging.dare_mask(N, rho[k], seed=seed, stream=stream, k=k)
            D[k] = np.where(keep, D[k] * (1.0 / rho[k]), 0.0)
    WD = w[:, None] * D
    if not sign_election:
        r = WD.sum(axis=0)
        if normalize:
            r = r / w.sum()
    else:
        gamma = np.sign(WD.sum(axis=0))  # elect the sign of the (weighted) total mass
        agree = (D != 0) & (np.sign(D) == gamma[None, :]) & (gamma[None, :] != 0)
        r = np.where(agree, WD, 0.0).sum(axis=0)  # disjoint sum over the agreeing models
        if normalize:
            ws = np.where(agree, w[:, None], 0.0).sum(axis=0)
            r = np.where(ws != 0, r / np.where(ws != 0, ws, 1.0), 0.0)
    return base.astype(np.float64) + scale * r


def ref_magnitude(base, deltas, weights, densities, dare, normalize, sign_election, scale) -> np.ndarray:
    """A per-element size of the terms summed (the scale of the absolute tolerance)."""
    K = deltas.shape[0]
    w = np.asarray(weights, dtype=np.float64)
    amp = 1.0 / np.asarray(densities, dtype=np.float64) if dare else np.ones(K)
    m = (np.abs(w * amp)[:, None] * np.abs(deltas.astype(np.float64))).sum(axis=0)
    if normalize and not sign_election:
        m = m / abs(float(w.sum()))
    return np.abs(base.astype(np.float64)) + abs(scale) * m


def assert_close(out: np.ndarray, ref: np.ndarray, mag: np.ndarray, rtol: float = 1e-6) -> None:
    err = np.abs(out.astype(np.float64) - ref)
    bound = rtol * np.abs(ref) + 1e-6 * mag + 1e-30
    bad = err > bound
    assert not bad.any(), (f"{int(bad.sum())} elements off; first at {int(np.argmax(bad))}: "
                           f"{out[np.argmax(bad)]} vs {ref[np.argmax(bad)]}")


def ref_slerp(a: np.ndarray, b: np.ndarray, t: float, eps: float = 1e-8) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na == 0 or nb == 0:
        return (1 - t) * a64 + t * b64
    cos = float(np.clip(np.dot(a64 / na, b64 / nb), -1.0, 1.0))
    if abs(cos) > 1 - eps:
        return (1 - t) * a64 + t * b64
    omega = math.acos(cos)
    s = math.sin(omega)
    return math.sin((1 - t) * omega) / s * a64 + math.sin(t * omega) / s * b64


def _data(K: int, N: int, seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(N).astype(np.float32)
    if ties:  # few distinct values: ties at the trim threshold, zeros, exact cancellations
        deltas = rng.integers(-3, 4, (K, N)).astype(np.float32) * np.float32(0.25)
    else:
        deltas = (rng.standard_normal((K, N)) * rng.uniform(0.01, 2, (K, 1))).astype(np.float32)
    return base, deltas


@pytest.fixture
def restore_threads():
    yield
    evoforge.set_num_threads(0)


# ---- hand-worked examples --------------------------------------------------------------------------


def test_task_arithmetic_and_weighted_mean():
    base, deltas = _data(3, 1001, 0)
    w = [0.5, -1.25, 2.0]
    out = np.empty(1001, np.float32)
    got = merging.merge_deltas(out, base, deltas, w, scale=0.7)
    assert got is out
    expect = base.astype(np.float64) + 0.7 * (deltas.astype(np.float64) * np.array(w)[:, None]).sum(0)
    np.testing.assert_allclose(out, expect, rtol=1e-6, atol=1e-6)
    merging.merge_deltas(out, base, deltas, w, normalize=True)
    expect = base + (deltas.astype(np.float64) * np.array(w)[:, None]).sum(0) / sum(w)
    np.testing.assert_allclose(out, expect, rtol=1e-6, atol=1e-6)


def test_ties_by_hand():
    # N = 5, density 0.4: n_keep = floor(2.5) = 2.
    base = np.zeros(5, np.float32)
    deltas = np.array([[3.0, -1.0, 1.0, 0.5, -2.0],    # thr 2: keeps 3, -2
                       [-1.0, -4.0, 2.0, 2.0, 0.25]],  # thr 2: keeps -4, 2, 2 (a tie at thr)
                      np.float32)
    out = np.empty(5, np.float32)
    merging.merge_deltas(out, base, deltas, [1.0, 1.0], [0.4, 0.4], trim=True, sign_election=True)
    # trimmed: [3, 0, 0, 0, -2] and [0, -4, 2, 2, 0]; signs elected +, -, +, +, -
    np.testing.assert_array_equal(out, [3.0, -4.0, 2.0, 2.0, -2.0])
    deltas2 = np.array([[3.0, -1.0, 0.0], [-1.0, 2.0, 0.0], [2.0, -2.0, 0.0]], np.float32)
    merging.merge_deltas(out[:3], base[:3], deltas2, [1, 1, 1], sign_election=True, normalize=True)
    # element 0: sum 4 > 0, agree {3, 2} -> mean 2.5; element 1: sum -1 < 0, agree {-1, -2} -> -1.5;
    # element 2: all zero -> 0
    np.testing.assert_array_equal(out[:3], [2.5, -1.5, 0.0])
    merging.merge_deltas(out[:3], base[:3], deltas2, [1, 1, 1], sign_election=True)
    np.testing.assert_array_equal(out[:3], [5.0, -3.0, 0.0])


def test_trim_keeps_ties_and_at_least_one():
    d = np.array([[3.0, 1.0, -1.0, 1.0, 0.0]], np.float32)
    out = np.empty(5, np.float32)
    merging.merge_deltas(out, np.zeros(5, np.float32), d, [1.0], [0.4], trim=True)
    np.testing.assert_array_equal(out, [3.0, 1.0, -1.0, 1.0, 0.0])  # thr = 1: all ties kept
    merging.merge_deltas(out, np.zeros(5, np.float32), d, [1.0], [1e-9], trim=True)
    np.testing.assert_array_equal(out, [3.0, 0.0, 0.0, 0.0, 0.0])  # n_keep clamps to 1


def test_dare_rescales_kept_elements():
    N, rho = 4099, 0.3
    base, deltas = _data(1, N, 3)
    out = np.empty(N, np.float32)
    merging.merge_deltas(out, base, deltas, [1.0], [rho], dare=True, seed=9, stream=2)
    keep = merging.dare_mask(N, rho, seed=9, stream=2, k=0)
    expect = base.astype(np.float64) + np.where(keep, deltas[0].astype(np.float64) / rho, 0.0)
    np.testing.assert_allclose(out, expect, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out[~keep], base[~keep])
    # density 1 keeps everything: DARE is then plain task arithmetic
    merging.merge_deltas(out, base, deltas, [1.0], [1.0], dare=True, seed=9)
    np.testing.assert_array_equal(out, merging.merge_deltas(np.empty(N, np.float32), base, deltas, [1.0]))


def test_out_may_be_a_view_and_a_torch_tensor():
    base, deltas = _data(2, 100, 4)
    buf = np.full(120, 7.0, np.float32)
    merging.merge_deltas(buf[10:110], base, deltas, [1.0, 1.0])
    np.testing.assert_allclose(buf[10:110], base + deltas.sum(0), rtol=1e-6)
    assert (buf[:10] == 7).all() and (buf[110:] == 7).all()
    torch = pytest.importorskip("torch")
    t = torch.zeros(100)
    assert merging.merge_deltas(t, torch.from_numpy(base), deltas, [1.0, 1.0]) is t
    np.testing.assert_array_equal(t.numpy(), buf[10:110])


# ---- property tests against the reference ----------------------------------------------------------


if HAVE_HYPOTHESIS:

    @needs_hypothesis
    @settings(max_examples=150, deadline=None)
    @given(N=st.integers(1, 5000), K=st.integers(1, 4), data_seed=st.integers(0, 2**32 - 1),
           ties=st.booleans(), mode=st.sampled_from(["none", "trim", "dare"]), sign=st.booleans(),
           normalize=st.booleans(), scale=st.floats(-3, 3, allow_nan=False),
           weights=st.lists(st.floats(-2, 2, allow_nan=False), min_size=4, max_size=4),
           densities=st.lists(st.one_of(st.floats(0.01, 1.0), st.just(1.0)), min_size=4, max_size=4),
           seed=st.integers(0, 2**64 - 1), stream=st.integers(0, 2**32 - 1))
    def test_merge_matches_reference(N, K, data_seed, ties, mode, sign, normalize, scale, weights, densities,
                                     seed, stream):
        w, rho = weights[:K], densities[:K]
        if normalize and not sign:
            assume(abs(sum(w)) > 1e-3)
        base, deltas = _data(K, N, data_seed, ties)
        kw = dict(trim=mode == "trim", dare=mode == "dare", sign_election=sign, normalize=normalize, scale=scale,
                  seed=seed, stream=stream)
        out = merging.merge_deltas(np.empty(N, np.float32), base, deltas, w, rho, **kw)
        ref = ref_merge(base, deltas, w, rho, **kw)
        mag = ref_magnitude(base, deltas, w, rho, mode == "dare", normalize, sign, scale)
        assert_close(out, ref, mag)

    @needs_hypothesis
    @settings(max_examples=100, deadline=None)
    @given(N=st.integers(1, 5000), data_seed=st.integers(0, 2**32 - 1), t=st.floats(0, 1),
           kind=st.sampled_from(["random", "colinear", "opposite", "zero_a", "zero_b", "near"]))
    def test_slerp_matches_reference(N, data_seed, t, kind):
        rng = np.random.default_rng(data_seed)
        a = rng.standard_normal(N).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32)
        if kind == "colinear":
            b = (a * np.float32(2.5)).astype(np.float32)
        elif kind == "opposite":
            b = (-a).astype(np.float32)
        elif kind == "zero_a":
            a[:] = 0
        elif kind == "zero_b":
            b[:] = 0
        elif kind == "near":
            b = (a + np.float32(1e-3) * b).astype(np.float32)
        out = merging.slerp(np.empty(N, np.float32), a, b, t)
        ref = ref_slerp(a, b, t)
        mag = np.abs(a.astype(np.float64)) + np.abs(b.astype(np.float64))
        assert_close(out, ref, mag)


def test_slerp_endpoints_and_known_values():
    rng = np.random.default_rng(5)
    a = rng.standard_normal(3001).astype(np.float32)
    b = rng.standard_normal(3001).astype(np.float32)
    out = np.empty_like(a)
    np.testing.assert_array_equal(merging.slerp(out, a, b, 0.0), a)
    np.testing.assert_array_equal(merging.slerp(out, a, b, 1.0), b)
    e1, e2 = np.array([1, 0], np.float32), np.array([0, 3], np.float32)
    o2 = np.empty(2, np.float32)
    merging.slerp(o2, e1, e2, 0.5)  # orthogonal: sin(pi/4) / sin(pi/2) each
    np.testing.assert_allclose(o2, [math.sqrt(0.5), 3 * math.sqrt(0.5)], rtol=1e-6)
    merging.slerp(o2, e1, e1 * 4, 0.25)  # colinear: lerp
    np.testing.assert_allclose(o2, [1.75, 0.0], rtol=1e-7)
    merging.slerp(o2, np.zeros(2, np.float32), e2, 0.25)  # a zero vector: lerp
    np.testing.assert_allclose(o2, [0.0, 0.75], rtol=1e-7)
    merging.slerp(o2, e1, e1, 0.3, eps=0.0)  # eps 0, identical: sin(omega) = 0 -> lerp, no NaN
    np.testing.assert_allclose(o2, [1.0, 0.0], rtol=1e-7)
    assert merging.slerp(np.empty(0, np.float32), np.empty(0, np.float32), np.empty(0, np.float32), 0.5).shape == (0,)


# ---- the DARE mask ---------------------------------------------------------------------------------


def _binomial_ok(count: int, n: int, p: float, sigmas: float = 6.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
def test_dare_mask_statistics(p):
    n = 200_000
    m = merging.dare_mask(n, p, seed=11)
    assert m.dtype == np.bool_ and m.shape == (n,)
    assert _binomial_ok(int(m.sum()), n, p)
    for q in range(4):  # each Philox word position keeps p of its elements
        assert _binomial_ok(int(m[q::4].sum()), n // 4, p)
    # changing k, stream or seed gives an independent mask: both kept with probability p^2
    for other in (dict(seed=11, k=1), dict(seed=11, stream=1), dict(seed=12), dict(seed=11 + 2**32)):
        m2 = merging.dare_mask(n, p, **other)
        assert not np.array_equal(m, m2)
        assert _binomial_ok(int(m2.sum()), n, p)
        assert _binomial_ok(int((m & m2).sum()), n, p * p)
    # neighbours are independent too
    assert _binomial_ok(int((m[1:] & m[:-1]).sum()), n - 1, p * p)


def test_dare_mask_is_a_pure_function_of_the_element():
    full = merging.dare_mask(10_001, 0.37, seed=2**64 - 1, stream=2**32 - 1, k=3)
    np.testing.assert_array_equal(merging.dare_mask(4_097, 0.37, seed=2**64 - 1, stream=2**32 - 1, k=3), full[:4_097])
    # the same uniform for every density: a lower density keeps a subset
    low = merging.dare_mask(10_001, 0.2, seed=2**64 - 1, stream=2**32 - 1, k=3)
    assert not (low & ~full).any()
    assert merging.dare_mask(1000, 1.0, seed=4).all()
    assert merging.dare_mask(0, 0.5).shape == (0,)


@pytest.mark.parametrize("n,density,seed,stream,k", [
    (1, 0.5, 0, 0, 0), (7, 0.9, 3, 1, 2), (10_003, 0.37, 2**64 - 1, 2**32 - 1, 2**32 - 1), (4096, 1.0, 5, 0, 0),
    (333, 2**-24, 1, 2, 3)])
def test_dare_mask_equals_the_cuda_emulation(n, density, seed, stream, k):
    np.testing.assert_array_equal(merging.dare_mask(n, density, seed=seed, stream=stream, k=k),
                                  emulate_dare_mask(n, density, seed, stream, k, threads=32))


@pytest.mark.cuda
@pytest.mark.parametrize("n,density,seed,stream,k", [
    (1, 0.5, 0, 0, 0), (7, 0.9, 3, 1, 2), (1_000_003, 0.37, 2**64 - 1, 2**32 - 1, 5), (4096, 1.0, 5, 0, 0)])
def test_dare_mask_cuda_equals_cpu(n, density, seed, stream, k):
    torch = pytest.importorskip("torch")
    cpu = merging.dare_mask(n, density, seed=seed, stream=stream, k=k)
    gpu = merging.dare_mask(n, density, seed=seed, stream=stream, k=k, device="cuda")
    assert gpu.device.type == "cuda" and gpu.dtype == torch.bool and gpu.shape == (n,)
    np.testing.assert_array_equal(gpu.cpu().numpy(), cpu)


# ---- determinism -------------------------------------------------------------------------------------


def test_same_bits_on_any_thread_count(restore_threads):
    N, K = 300_001, 3
    base, deltas = _data(K, N, 8)
    w, rho = [0.7, -0.2, 1.1], [0.2, 0.5, 0.9]
    runs: dict[int, list[np.ndarray]] = {}
    for threads in (1, 2, 4):
        evoforge.set_num_threads(threads)
        res = []
        for kw in (dict(), dict(trim=True, sign_election=True, normalize=True), dict(dare=True, seed=3),
                   dict(dare=True, sign_election=True, normalize=True, seed=3, stream=1), dict(normalize=True)):
            res.append(merging.merge_deltas(np.empty(N, np.float32), base, deltas, w, rho, **kw))
        res.append(merging.slerp(np.empty(N, np.float32), deltas[0], deltas[1], 0.35))
        res.append(merging.dare_mask(N, 0.4, seed=7, k=2))
        runs[threads] = res
    for threads in (2, 4):
        for x, y in zip(runs[1], runs[threads]):
            np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))


def exact_merge(base, deltas, weights, densities, *, trim=False, dare=False, sign_election=False, normalize=False,
                scale=1.0, seed=0, stream=0) -> np.ndarray:
    """The kernel's definition (cpp/include/evoforge/merging.h) operation by operation in float64,
    k = 0 .. K-1 in order, rounded once to float32: the native merge must give these bits."""
    K, N = deltas.shape
    w = [float(x) for x in weights]
    D = deltas.astype(np.float64)
    for k in range(K):
        if trim:
            mag = np.abs(deltas[k])
            thr = np.sort(mag)[N - merging.n_keep(densities[k], N)]
            D[k] = np.where(mag >= thr, D[k], 0.0)
        elif dare:
            keep = merging.dare_mask(N, densities[k], seed=seed, stream=stream, k=k)
            D[k] = np.where(keep, D[k] * (1.0 / densities[k]), 0.0)
    s = np.zeros(N)
    for k in range(K):
        s = s + w[k] * D[k]
    if sign_election:
        r, ws = np.zeros(N), np.zeros(N)
        for k in range(K):
            agree = D[k] * s > 0.0
            r = r + np.where(agree, w[k] * D[k], 0.0)
            ws = ws + np.where(agree, w[k], 0.0)
        s = np.where(ws != 0.0, r / np.where(ws != 0.0, ws, 1.0), 0.0) if normalize else r
    elif normalize:
        total = 0.0
        for x in w:
            total += x
        s = s / total
    return (base.astype(np.float64) + scale * s).astype(np.float32)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_fused_merge_gives_the_exact_bits_of_the_definition(threads, restore_threads):
    """The one-pass native merge (lane groups of 32 elements, a zero-padded last group, DARE words
    per span of 128 elements, rows of modified deltas kept for K <= 64 and made again above) gives
    the float64 definition's bits, for lengths around those boundaries and on any thread count."""
    evoforge.set_num_threads(threads)
    rng = np.random.default_rng(11)
    modes = [dict(), dict(normalize=True), dict(sign_election=True), dict(sign_election=True, normalize=True),
             dict(trim=True), dict(trim=True, sign_election=True, normalize=True, scale=-0.6),
             dict(dare=True, seed=5, stream=2), dict(dare=True, sign_election=True, normalize=True, seed=2**64 - 1)]
    for K, N in ((1, 1), (2, 31), (2, 32), (3, 33), (2, 127), (4, 129), (2, 2048 + 161), (3, 70_001), (70, 301)):
        base, deltas = _data(K, N, K * 1000 + N, ties=N % 2 == 1)
        w = rng.uniform(-0.5, 1.5, K)
        rho = rng.uniform(0.05, 1.0, K)
        for kw in modes:
            if kw.get("normalize") and not kw.get("sign_election") and sum(w.tolist()) == 0:
                continue
            out = merging.merge_deltas(np.empty(N, np.float32), base, deltas, w, rho, **kw)
            want = exact_merge(base, deltas, w, rho, **kw)
            np.testing.assert_array_equal(out.view(np.uint32), want.view(np.uint32), err_msg=f"K={K} N={N} {kw}")


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_selected_thresholds_equal_the_sorted_ones_on_hard_magnitudes(threads, restore_threads):
    """The native threshold selection (a radix select over the magnitudes' bits, counted by threads
    over disjoint ranges) keeps exactly what thresholds read from np.sort keep: zeros of both signs,
    subnormals, huge values, long runs of one magnitude, lengths above one counting chunk."""
    evoforge.set_num_threads(threads)
    rng = np.random.default_rng(3)
    N = 200_003
    pool = np.array([0.0, -0.0, 1e-45, -1e-45, 3e-39, 1e-3, -1e-3, 2.5e-3, 3e38, -3e38], np.float32)
    deltas = np.stack([
        pool[rng.integers(0, len(pool), N)],
        (rng.standard_normal(N) * 1e-3).astype(np.float32),
        np.where(rng.random(N) < 0.9, np.float32(0.0), rng.standard_normal(N).astype(np.float32)),
    ]).astype(np.float32)
    base = rng.standard_normal(N).astype(np.float32)
    srt = np.sort(np.abs(deltas), axis=1)
    for dens in ([1e-9, 0.5, 1.0], [0.05, 0.999, 0.3], [0.7, 1e-5, 0.95]):
        a, b = np.empty(N, np.float32), np.empty(N, np.float32)
        merging.merge_deltas(a, base, deltas, [1.0, 1.0, 1.0], dens, trim=True, scale=1e-38)
        merging.merge_deltas(b, base, deltas, [1.0, 1.0, 1.0], dens, trim=True, scale=1e-38,
                             thresholds=merging.trim_thresholds(srt, dens))
        np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
        one = np.empty(N, np.float32)
        for k in range(3):  # each model alone: the kept set itself (zero base, unit weight)
            merging.merge_deltas(one, np.zeros(N, np.float32), deltas[k:k + 1], [1.0], dens[k:k + 1], trim=True)
            thr = srt[k, N - merging.n_keep(dens[k], N)]
            np.testing.assert_array_equal(one, np.where(np.abs(deltas[k]) >= thr, deltas[k], np.float32(0)))


def test_non_finite_deltas_are_named():
    base, deltas = _data(3, 50, 1)
    deltas[2, 17] = np.nan
    out = np.full(50, 5.0, np.float32)
    with pytest.raises(ValueError, match=r"deltas\[2\] holds a non-finite"):
        merging.merge_deltas(out, base, deltas, [1, 1, 1], [0.5] * 3, trim=True)
    assert (out == 5.0).all()  # trim finds it before writing
    deltas[1, 3] = np.inf
    for kw in (dict(), dict(dare=True), dict(sign_election=True)):
        with pytest.raises(ValueError, match=r"deltas\[1\] holds a non-finite"):
            merging.merge_deltas(out, base, deltas, [1, 1, 1], [0.5] * 3, **kw)
    a = np.ones(10, np.float32)
    b = a.copy()
    b[3] = np.nan
    with pytest.raises(ValueError, match="b holds a non-finite"):
        merging.slerp(np.empty(10, np.float32), a, b, 0.5)


# ---- bad inputs --------------------------------------------------------------------------------------


def _bad_merge_cases():
    base, deltas = _data(2, 8, 0)
    out = np.empty(8, np.float32)
    w = [1.0, 1.0]
    return [
        ("float64 out", (out.astype(np.float64), base, deltas, w), {}, TypeError, "out must be float32"),
        ("float64 base", (out, base.astype(np.float64), deltas, w), {}, TypeError, "base must be float32"),
        ("float16 deltas", (out, base, deltas.astype(np.float16), w), {}, TypeError, "deltas must be float32"),
        ("list base", (out, base.tolist(), deltas, w), {}, TypeError, "base must be a float32 numpy array"),
        ("strided out", (np.empty(16, np.float32)[::2], base, deltas, w), {}, ValueError, "C-contiguous"),
        ("strided deltas", (out, base, np.asfortranarray(deltas), w), {}, ValueError, "deltas must be C-contiguous"),
        ("read-only out", (np.frombuffer(bytes(32), np.float32), base, deltas, w), {}, ValueError, "writeable"),
        ("1-D deltas", (out, base, deltas[0], w), {}, ValueError, r"deltas must have shape \[K, N\]"),
        ("K = 0", (out, base, deltas[:0], []), {}, ValueError, "at least one task vector"),
        ("N mismatch base", (out, base[:7], deltas, w), {}, ValueError, "base has 7 elements"),
        ("N mismatch out", (out[:7], base, deltas, w), {}, ValueError, "out has 7 elements"),
        ("weights length", (out, base, deltas, [1.0]), {}, ValueError, r"weights must have shape \[K=2\]"),
        ("NaN weight", (out, base, deltas, [1.0, np.nan]), {}, ConfigError, r"weights\[1\] must be finite"),
        ("inf weight", (out, base, deltas, [np.inf, 1.0]), {}, ConfigError, r"weights\[0\] must be finite"),
        ("density 0", (out, base, deltas, w, [0.0, 0.5]), {"trim": True}, ConfigError,
         r"densities\[0\] must lie in \(0, 1\]"),
        ("density 1.5", (out, base, deltas, w, [0.5, 1.5]), {"dare": True}, ConfigError,
         r"densities\[1\] must lie in \(0, 1\]"),
        ("density NaN", (out, base, deltas, w, [0.5, np.nan]), {"dare": True}, ConfigError,
         r"densities\[1\] must be finite"),
        ("densities length", (out, base, deltas, w, [0.5]), {"dare": True}, ValueError, "densities must have shape"),
        ("no densities", (out, base, deltas, w), {"trim": True}, ConfigError, "densities are required with trim"),
        ("trim and dare", (out, base, deltas, w, [0.5, 0.5]), {"trim": True, "dare": True}, ConfigError,
         "exclude each other"),
        ("alias base", (base, base, deltas, w), {}, ValueError, "out must not share memory with base"),
        ("alias deltas", (deltas[1], base, deltas, w), {}, ValueError, "out must not share memory with deltas"),
        ("zero weight sum", (out, base, deltas, [1.0, -1.0]), {"normalize": True}, ConfigError,
         "sum of the weights, which is 0"),
        ("NaN scale", (out, base, deltas, w), {"scale": float("nan")}, ConfigError, "scale is NaN"),
        ("inf scale", (out, base, deltas, w), {"scale": float("inf")}, ConfigError, "scale must be finite"),
        ("negative seed", (out, base, deltas, w), {"seed": -1}, ConfigError, "seed must lie in"),
        ("big stream", (out, base, deltas, w), {"stream": 2**32}, ConfigError, "stream must lie in"),
        ("non-bool flag", (out, base, deltas, w), {"trim": 1}, TypeError, "trim must be a bool"),
    ]


@pytest.mark.parametrize("bad", _bad_merge_cases(), ids=lambda c: c[0])
def test_merge_rejects_bad_inputs(bad):
    _, args, kw, exc, match = bad
    with pytest.raises(exc, match=match):
        merging.merge_deltas(*args, **kw)


def test_zero_agreeing_weights_give_zero_not_an_error():
    # sign election: normalising by a zero sum of agreeing weights gives r = 0
    base = np.ones(3, np.float32)
    deltas = np.array([[1.0, 1.0, -1.0], [1.0, -1.0, 1.0]], np.float32)
    out = np.empty(3, np.float32)
    merging.merge_deltas(out, base, deltas, [1.0, -1.0], sign_election=True, normalize=True)
    # element 0: sum 0 -> gamma 0 -> 0; element 1: sum 2 > 0, agree {k=0} (w 1) -> 1;
    # element 2: sum -2 < 0, agree {k=0} (d -1) -> -1 / 1
    np.testing.assert_array_equal(out, [1.0, 2.0, 0.0])


@pytest.mark.parametrize("kw,exc,match", [
    (dict(t=1.5), ConfigError, r"t must lie in \[0, 1\]"),
    (dict(t=-0.1), ConfigError, r"t must lie in \[0, 1\]"),
    (dict(t=float("nan")), ConfigError, "t is NaN"),
    (dict(t=0.5, eps=-1.0), ConfigError, "eps must be >= 0"),
    (dict(t="half"), TypeError, "t must be a real number"),
])
def test_slerp_rejects_bad_parameters(kw, exc, match):
    a = np.ones(4, np.float32)
    with pytest.raises(exc, match=match):
        merging.slerp(np.empty(4, np.float32), a, a.copy(), **kw)


def test_slerp_rejects_bad_arrays():
    a, b, out = np.ones(4, np.float32), np.ones(4, np.float32), np.empty(4, np.float32)
    with pytest.raises(TypeError, match="a must be float32"):
        merging.slerp(out, a.astype(np.float64), b, 0.5)
    with pytest.raises(ValueError, match="one shape"):
        merging.slerp(out, a, b[:3], 0.5)
    with pytest.raises(ValueError, match="out must not share memory with a"):
        merging.slerp(a, a, b, 0.5)
    with pytest.raises(ValueError, match="C-contiguous"):
        merging.slerp(out, np.ones(8, np.float32)[::2], b, 0.5)


@pytest.mark.parametrize("args,kw,exc,match", [
    ((10, 0.0), {}, ConfigError, r"density must lie in \(0, 1\]"),
    ((10, 1.5), {}, ConfigError, r"density must lie in \(0, 1\]"),
    ((-1, 0.5), {}, ConfigError, "n must lie in"),
    ((10, 0.5), {"k": -1}, ConfigError, "k must lie in"),
    ((10, 0.5), {"seed": 2**64}, ConfigError, "seed must lie in"),
    ((10.5, 0.5), {}, TypeError, "n must be an int"),
])
def test_dare_mask_rejects_bad_inputs(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        merging.dare_mask(*args, **kw)



def test_precomputed_trim_thresholds_give_the_selected_merge():
    """merge_deltas(thresholds=trim_thresholds(sorted |deltas|, densities)) equals the merge that
    selects its thresholds itself, bit for bit, for every density (ties and the keep-one rule too)."""
    from evoforge.merging import merge_deltas, n_keep, trim_thresholds

    rng = np.random.default_rng(5)
    for N in (1, 7, 1000):
        base = rng.standard_normal(N).astype(np.float32)
        deltas = np.round(rng.standard_normal((3, N)), 1).astype(np.float32)  # many equal magnitudes
        srt = np.sort(np.abs(deltas), axis=1)
        for dens in ([0.01, 0.5, 1.0], [0.3, 0.3, 0.9]):
            a, b = np.empty(N, np.float32), np.empty(N, np.float32)
            kw = dict(trim=True, sign_election=True, normalize=True)
            merge_deltas(a, base, deltas, [0.5, 1.0, 0.7], dens, **kw)
            merge_deltas(b, base, deltas, [0.5, 1.0, 0.7], dens, thresholds=trim_thresholds(srt, dens), **kw)
            assert np.array_equal(a, b)
            assert [n_keep(d, N) for d in dens] == [int(np.clip(np.floor(d * N + 0.5), 1, N)) for d in dens]
    with pytest.raises(ConfigError, match="trim"):
        merge_deltas(np.empty(2, np.float32), np.zeros(2, np.float32), np.ones((1, 2), np.float32), [1.0],
                     [0.5], dare=True, thresholds=np.zeros(1, np.float32))
    with pytest.raises(ValueError, match="float32"):
        merge_deltas(np.empty(2, np.float32), np.zeros(2, np.float32), np.ones((1, 2), np.float32), [1.0],
                     [0.5], trim=True, thresholds=np.zeros(2, np.float32))
