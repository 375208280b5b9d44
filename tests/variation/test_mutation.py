"""evoforge.mutation: level switch (budget, bounds, distinctness, distribution, determinism),
point, Gaussian and polynomial mutation against numpy references built from the same draws."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import evoforge
from evoforge import mutation
from evoforge import random as er


def threads(n):
    class _T:
        def __enter__(self):
            evoforge.set_num_threads(n)

        def __exit__(self, *a):
            evoforge.set_num_threads(0)

    return _T()


def draws(stream: str, seed: int, generation: int, individuals, blocks, sub: int = 0) -> np.ndarray:
    """Philox words [len, 4] of the evoforge layout, rebuilt with the raw generator."""
    individuals, blocks = np.broadcast_arrays(np.asarray(individuals), np.asarray(blocks))
    n = individuals.size
    ctr = np.stack([blocks.ravel(), individuals.ravel(), np.full(n, generation),
                    np.full(n, (er.STREAMS[stream] << 24) | sub)], axis=1).astype(np.uint32)
    key = np.tile(np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32), (n, 1))
    return er.philox4x32_10(ctr, key)


def u01_f64(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return ((hi.astype(np.uint64) >> np.uint64(5)) * np.uint64(2**26) + (lo.astype(np.uint64) >> np.uint64(6))) * 2.0**-53


# ---- level switch ---------------------------------------------------------------------------------


@st.composite
def level_problems(draw):
    L = draw(st.integers(2, 30))
    P = draw(st.integers(1, 4))
    lo = np.array(draw(st.lists(st.integers(-4, 2), min_size=L, max_size=L)), dtype=np.int32)
    width = np.array(draw(st.lists(st.integers(0, 5), min_size=L, max_size=L)), dtype=np.int32)
    hi = lo + width
    groups = np.array(draw(st.lists(st.integers(0, 2), min_size=L, max_size=L))) if draw(st.booleans()) else None
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    parents = (lo + (rng.random((P, L)) * (width + 1)).astype(np.int32)).astype(np.int32)
    return parents, lo, hi, groups, draw(st.integers(1, 6)), draw(st.integers(1, 5))


@settings(max_examples=150, deadline=None)
@given(level_problems(), st.integers(0, 2**64 - 1))
def test_level_switch_preserves_group_sums_bounds_and_distinctness(prob, seed):
    parents, lo, hi, groups, n_off, K = prob
    try:
        out = mutation.level_switch(parents, lo, hi, n_offspring=n_off, max_switches=K, groups=groups,
                                    seed=seed, max_attempts=200)
    except ValueError as exc:  # only for genuinely small neighbourhoods
        assert "admits no switch" in str(exc) or "distinct offspring" in str(exc)
        return
    P, L = parents.shape
    assert out.shape == (P, n_off, L) and out.dtype == np.int32
    gid = np.zeros(L, dtype=int) if groups is None else groups
    for p in range(P):
        for g in np.unique(gid):
            np.testing.assert_array_equal(out[p][:, gid == g].sum(axis=1), parents[p, gid == g].sum())
        assert ((out[p] >= lo) & (out[p] <= hi)).all()
        rows = {tuple(r) for r in out[p]}
        assert len(rows) == n_off and tuple(parents[p]) not in rows
        # at most 2K genes changed, each by at most K levels
        diff = np.abs(out[p] - parents[p])
        assert ((diff > 0).sum(axis=1) <= 2 * K).all() and diff.max() <= K


@settings(max_examples=80, deadline=None)
@given(st.integers(3, 40), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_budget_exact_with_costs(L, n_groups, seed):
    """Integer costs, a per-group cost per level (e.g. numel x bits): the budget is exactly preserved
    with budget_tol = 0, and every switch pairs genes of equal step cost."""
    rng = np.random.default_rng(seed)
    step = rng.choice([512.0, 4096.0, 11008.0], size=L)  # cost per level of each gene
    base = rng.integers(0, 10**6, size=L).astype(np.float64)
    costs = base[:, None] + step[:, None] * np.arange(6)[None, :]
    parents = rng.integers(0, 6, (3, L)).astype(np.int32)
    groups = rng.integers(0, n_groups, L)
    try:
        out, drift = mutation.level_switch(parents, 0, 5, n_offspring=4, groups=groups, costs=costs, budget_tol=0.0,
                                           seed=seed, return_drift=True, max_attempts=200)
    except ValueError as exc:
        assert "admits no switch" in str(exc) or "distinct offspring" in str(exc)
        return
    budget = lambda x: costs[np.arange(L), x].sum(axis=-1)  # noqa: E731
    for p in range(3):
        np.testing.assert_array_equal(budget(out[p]), budget(parents[p]))
        assert (drift[p] == 0).all() and ((out[p] >= 0) & (out[p] <= 5)).all()


def test_number_of_switches_distribution():
    """P(n = 1, 2, 3) = 5/9, 3/9, 1/9 for K = 3: read n from the L1 distance on a long genome."""
    L, N = 4000, 6000
    parent = np.full(L, 5, dtype=np.int32)
    out = mutation.level_switch(parent, 0, 10, n_offspring=N, seed=11)
    n = np.abs(out - parent).sum(axis=1) // 2
    freq = np.bincount(n, minlength=4)[1:4] / N
    # overlapping switches (same gene twice) are rare on 4000 genes: < 0.5% of offspring
    np.testing.assert_allclose(freq, [5 / 9, 3 / 9, 1 / 9], atol=0.02)
    # K = 1: always one switch; K = 5: P(n=1) = 9/25
    one = mutation.level_switch(parent, 0, 10, n_offspring=500, max_switches=1, seed=1)
    assert (np.abs(one - parent).sum(axis=1) == 2).all()
    five = mutation.level_switch(parent, 0, 10, n_offspring=N, max_switches=5, seed=2)
    f1 = (np.abs(five - parent).sum(axis=1) == 2).mean()
    assert abs(f1 - 9 / 25) < 0.025


def test_pairs_uniform_over_valid_pairs():
    """One switch from a parent with few valid pairs: every valid (raise, lower) pair is as likely."""
    parent = np.array([0, 1, 2, 2, 1], dtype=np.int32)  # bounds [0, 2]: raise {0, 1, 4}, lower {1, 2, 3, 4}
    groups = np.array([0, 0, 0, 1, 1])
    out = mutation.level_switch(np.tile(parent, (3000, 1)), 0, 2, n_offspring=1, max_switches=1,
                                groups=groups, seed=5)[:, 0]
    d = out - parent
    pairs = [(int(np.argmax(r)), int(np.argmin(r))) for r in d]
    valid = {(0, 1), (0, 2), (1, 2), (4, 3)}
    assert set(pairs) == valid
    counts = np.array([pairs.count(v) for v in sorted(valid)])
    assert np.abs(counts / 3000 - 0.25).max() < 0.04


def test_level_switch_deterministic_across_threads_and_splits():
    rng = np.random.default_rng(3)
    parents = rng.integers(0, 9, (40, 57)).astype(np.int32)
    kw = dict(n_offspring=6, max_switches=4, seed=99, generation=7)
    with threads(1):
        a = mutation.level_switch(parents, 0, 8, **kw)
    with threads(2):
        b = mutation.level_switch(parents, 0, 8, **kw)
    np.testing.assert_array_equal(a, b)
    first = mutation.level_switch(parents[:17], 0, 8, **kw)
    second = mutation.level_switch(parents[17:], 0, 8, individual_offset=17, **kw)
    np.testing.assert_array_equal(np.concatenate([first, second]), a)
    assert not np.array_equal(mutation.level_switch(parents, 0, 8, **{**kw, "generation": 8}), a)


@pytest.mark.parametrize("P,N,groups,costs", [(1, 3000, None, False), (30, 40, [0, 1, 2] * 10, False),
                                               (5, 60, None, True)])
def test_parallel_cpu_equals_the_sequential_definition(P, N, groups, costs):
    """The CPU's parallel phases give what level_switch_family (the GPU's code) gives, per family in order."""
    from evoforge import _core

    rng = np.random.default_rng(P)
    L = 30
    parents = rng.integers(1, 5, (P, L)).astype(np.int32)
    lo, hi = np.zeros(L, np.int32), np.full(L, 5, np.int32)
    go, mem, st = mutation._groups_csr(groups, L)
    table = np.ascontiguousarray(np.cumsum(rng.uniform(0.9, 1.1, (L, 6)), axis=1)) if costs else None
    args = (parents, lo, hi, go, mem, st, table, 0.3 if costs else 0.0, N, 3, 1000, 77, 1, 2)
    with threads(2):
        a, da = _core.level_switch(*args)
    b, db = _core.level_switch(*args, threads=1, sequential=True)
    np.testing.assert_array_equal(a, b)
    if costs:
        np.testing.assert_array_equal(da, db)


def test_level_switch_with_costs_and_drift():
    # quantisation-like: bits x numel; only layers of equal size can swap exactly
    L = 24
    numel = np.array([4096, 4096, 11008, 11008] * 6, dtype=np.float64)
    bits = np.arange(2, 9, dtype=np.float64)  # levels 0..6 = 2..8 bits
    costs = numel[:, None] * bits[None, :]
    parent = np.full(L, 2, dtype=np.int32)
    out, drift = mutation.level_switch(parent, 0, 6, n_offspring=50, costs=costs, seed=3, return_drift=True)
    budget = lambda x: costs[np.arange(L), x].sum()  # noqa: E731
    for child, d in zip(out, drift):
        assert budget(child) == budget(parent) and d == 0.0
        for size in (4096, 11008):  # switches pair layers of one size only
            assert (child - parent)[numel == size].sum() == 0
    # unequal ladders within a tolerance: the drift is reported and bounded
    rng = np.random.default_rng(0)
    ladders = [np.cumsum(rng.uniform(0.9, 1.1, 9)) for _ in range(30)]
    parents = rng.integers(2, 7, (5, 30)).astype(np.int32)
    out, drift = mutation.level_switch(parents, 0, 8, n_offspring=20, costs=ladders, budget_tol=0.15, seed=4,
                                       return_drift=True)
    for p in range(5):
        b0 = sum(ladders[i][parents[p, i]] for i in range(30))
        for k in range(20):
            b = sum(ladders[i][out[p, k, i]] for i in range(30))
            assert abs(drift[p, k] - (b - b0)) < 1e-9 and abs(drift[p, k]) <= 0.15
    assert np.abs(drift).max() > 0


def test_level_switch_torch_and_1d():
    torch = pytest.importorskip("torch")
    parent = np.arange(10, dtype=np.int32) % 4
    a = mutation.level_switch(parent, 0, 3, n_offspring=3, seed=1)
    assert a.shape == (3, 10)
    t = mutation.level_switch(torch.from_numpy(parent.astype(np.int64)), 0, 3, n_offspring=3, seed=1)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.int32
    np.testing.assert_array_equal(t.numpy(), a)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"lower": 3, "upper": 1}, ValueError, "lower > upper at gene 0"),
    ({"parents": np.full((2, 5), 9, np.int32)}, ValueError, r"parents\[0, 0\] = 9 lies outside"),
    ({"parents": np.zeros((2, 5), np.float32)}, TypeError, "parents must hold integers"),
    ({"parents": np.zeros((2, 5, 1), np.int32)}, ValueError, "shape"),
    ({"lower": np.zeros(4, np.int32)}, ValueError, r"lower must be a scalar or have shape \(5,\)"),
    ({"lower": 0.5}, TypeError, "lower must hold integers"),
    ({"n_offspring": 0}, ValueError, "n_offspring"),
    ({"max_switches": 17}, ValueError, "max_switches"),
    ({"seed": -1}, ValueError, "seed"),
    ({"groups": np.zeros(3, int)}, ValueError, "groups"),
    ({"costs": np.full((5, 5), np.nan)}, ValueError, "must be finite"),
    ({"costs": np.ones((5, 2))}, ValueError, "cover 2 levels"),
    ({"costs": np.ones((5, 5)), "budget_tol": -1.0}, ValueError, "budget_tol"),
    ({"lower": 2, "upper": 2, "parents": np.full((2, 5), 2, np.int32)}, ValueError, "admits no switch"),
    ({"groups": np.arange(5)}, ValueError, "admits no switch"),
    # steps of 1 and 2 never balance within 0.5: unreachable budget
    ({"costs": np.arange(5)[None, :] * np.array([1, 2, 4, 8, 16.0])[:, None], "budget_tol": 0.5}, ValueError,
     "admits no switch"),
    ({"parents": np.array([[0, 1, 0, 0, 0]], np.int32), "lower": 0, "upper": 1, "groups": [0, 0, 1, 2, 3],
      "n_offspring": 2, "max_attempts": 20}, ValueError, "distinct offspring"),
])
def test_level_switch_bad_input(kwargs, exc, match):
    args = {"parents": np.full((2, 5), 2, np.int32), "lower": 0, "upper": 4, "n_offspring": 2, "seed": 0}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        mutation.level_switch(args.pop("parents"), args.pop("lower"), args.pop("upper"), **args)


# ---- point mutation -------------------------------------------------------------------------------


def test_point_mutation():
    x = np.random.default_rng(0).integers(0, 6, (300, 200)).astype(np.int32)
    y = mutation.point(x, 0, 5, prob=0.2, seed=4)
    changed = y != x
    assert abs(changed.mean() - 0.2) < 0.01 and (y >= 0).all() and (y <= 5).all()
    vals = np.bincount(y[changed], minlength=6) / changed.sum()
    assert np.abs(vals - 1 / 6).max() < 0.02
    # layout: gene g of row r uses block g, word 0 decides (24-bit threshold)
    w = draws("point_mutation", 4, 0, np.arange(300)[:, None], np.arange(200)[None, :])
    np.testing.assert_array_equal(changed.ravel(), (w[:, 0] >> 8) < 0.2 * 2**24)
    np.testing.assert_array_equal(mutation.point(x[100:], 0, 5, prob=0.2, seed=4, individual_offset=100), y[100:])
    np.testing.assert_array_equal(mutation.point(x, 0, 5, prob=0.0, seed=4), x)
    fixed = np.arange(200) < 100  # lower == upper: never changes
    x2 = np.where(fixed, 0, x).astype(np.int32)
    y2 = mutation.point(x2, np.zeros(200, int), np.where(fixed, 0, 5), prob=1.0, seed=4)
    assert (y2[:, fixed] == 0).all() and (y2[:, ~fixed] != x2[:, ~fixed]).all()
    with pytest.raises(ValueError, match="prob"):
        mutation.point(x, 0, 5, prob=1.5, seed=0)
    with pytest.raises(ValueError, match="prob"):
        mutation.point(x, 0, 5, prob=float("nan"), seed=0)


# ---- Gaussian mutation ----------------------------------------------------------------------------


def test_gaussian_is_x_plus_sigma_z_bitwise():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 203)).astype(np.float32)
    sigma = rng.uniform(0.01, 1, 203).astype(np.float32)
    y = mutation.gaussian(x, sigma, seed=9, generation=2)
    z = er.normal((50, 203), seed=9, generation=2)
    np.testing.assert_array_equal(y, x + sigma * z)  # numpy rounds each float32 op, as the kernel does
    y64 = mutation.gaussian(x.astype(np.float64), sigma.astype(np.float64), seed=9, generation=2)
    np.testing.assert_array_equal(y64, x.astype(np.float64) + sigma.astype(np.float64) * z.astype(np.float64))


def test_gaussian_moments_mask_and_bounds():
    x = np.zeros((500, 1000), dtype=np.float32)
    y = mutation.gaussian(x, 0.5, seed=1).astype(np.float64)
    assert abs(y.mean()) < 0.003 and abs(y.std() - 0.5) < 0.003
    assert abs(((y / 0.5) ** 4).mean() - 3) < 0.05
    ym = mutation.gaussian(x, 0.5, prob=0.1, seed=1)
    assert abs((ym != 0).mean() - 0.1) < 0.003
    w = draws("gaussian_mask", 1, 0, np.arange(500)[:, None], np.arange(250)[None, :]).reshape(500, 1000)
    np.testing.assert_array_equal(ym != 0, (w >> 8) < 0.1 * 2**24)
    yb = mutation.gaussian(x, 2.0, lower=-1.0, upper=0.5, seed=1)
    assert yb.min() == -1.0 and yb.max() == 0.5
    np.testing.assert_array_equal(yb, np.clip(y.astype(np.float32) * 4, -1, 0.5))


def test_gaussian_threads_splits_and_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).random((33, 517), dtype=np.float32)
    with threads(1):
        a = mutation.gaussian(x, 0.1, prob=0.5, seed=5)
    with threads(2):
        b = mutation.gaussian(x, 0.1, prob=0.5, seed=5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mutation.gaussian(x[20:], 0.1, prob=0.5, seed=5, individual_offset=20), a[20:])
    t = mutation.gaussian(torch.from_numpy(x), 0.1, prob=0.5, seed=5)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), a)
    np.testing.assert_array_equal(mutation.gaussian(x[3], 0.1, prob=0.5, seed=5, individual_offset=3), a[3])


@pytest.mark.parametrize("kwargs,exc", [
    ({"sigma": -1.0}, ValueError), ({"sigma": float("nan")}, ValueError), ({"sigma": np.ones(3)}, ValueError),
    ({"prob": 2.0}, ValueError), ({"lower": 0.0}, ValueError), ({"lower": 1.0, "upper": 0.0}, ValueError),
    ({"x": np.zeros((2, 4), np.int32)}, TypeError), ({"x": np.zeros((2, 4), np.float16)}, TypeError),
    ({"lower": np.array([0, np.nan, 0, 0]), "upper": 1.0}, ValueError),
])
def test_gaussian_bad_input(kwargs, exc):
    args = {"x": np.zeros((2, 4), np.float32), "sigma": 1.0, "seed": 0}
    args.update(kwargs)
    with pytest.raises(exc):
        mutation.gaussian(args.pop("x"), args.pop("sigma"), **args)


# ---- polynomial mutation --------------------------------------------------------------------------


def polynomial_reference(x, xl, xu, eta, prob, seed, generation, offset):
    """Deb's bounded polynomial mutation in float64 numpy, on the kernel's uniforms."""
    P, L = x.shape
    w = draws("polynomial", seed, generation, offset + np.arange(P)[:, None], np.arange(L)[None, :])
    w = w.reshape(P, L, 4)
    mut = (w[..., 0] >> 8) < prob * 2**24
    u = u01_f64(w[..., 1], w[..., 2])
    rng_ = xu - xl
    m = 1.0 / (eta + 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        d1, d2 = (x - xl) / rng_, (xu - x) / rng_
        lo = (2 * u + (1 - 2 * u) * (1 - d1) ** (eta + 1)) ** m - 1
        hi = 1 - (2 * (1 - u) + 2 * (u - 0.5) * (1 - d2) ** (eta + 1)) ** m
    dq = np.where(u <= 0.5, lo, hi)
    y = np.clip(x + dq * rng_, xl, xu)
    return np.where(mut & (xu > xl), y, x)


@pytest.mark.parametrize("eta", [0.0, 5.0, 20.0, 100.0])
def test_polynomial_matches_reference(eta):
    rng = np.random.default_rng(int(eta))
    xl = rng.uniform(-5, 0, 64)
    xu = xl + rng.uniform(0, 3, 64)
    xu[3] = xl[3]
    x = xl + rng.random((200, 64)) * (xu - xl)
    x[:, 0], x[:, 1] = xl[0], xu[1]  # at the bounds
    y = mutation.polynomial(x, xl, xu, eta=eta, prob=0.7, seed=12, generation=1, individual_offset=5)
    ref = polynomial_reference(x, xl, xu, eta, 0.7, 12, 1, 5)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    assert (y >= xl).all() and (y <= xu).all()
    xl32, xu32 = xl.astype(np.float32), xu.astype(np.float32)
    x32 = np.clip(x.astype(np.float32), xl32, xu32)
    y32 = mutation.polynomial(x32, xl, xu, eta=eta, prob=0.7, seed=12, generation=1, individual_offset=5)
    ref32 = polynomial_reference(x32.astype(np.float64), xl32.astype(np.float64), xu32.astype(np.float64), eta,
                                 0.7, 12, 1, 5).astype(np.float32)
    np.testing.assert_allclose(y32, ref32, rtol=1e-6, atol=1e-6)
    assert (y32 >= xl32).all() and (y32 <= xu32).all()


def test_polynomial_bad_input():
    x = np.full((2, 3), 0.5)
    with pytest.raises(ValueError, match="outside"):
        mutation.polynomial(x, 0.0, 0.4, seed=0)
    with pytest.raises(ValueError, match="eta"):
        mutation.polynomial(x, 0.0, 1.0, eta=-1.0, seed=0)
    with pytest.raises(ValueError, match="finite"):
        mutation.polynomial(x, 0.0, np.inf, seed=0)
    with pytest.raises(ValueError, match="NaN"):
        mutation.polynomial(np.full((2, 3), np.nan), 0.0, 1.0, seed=0)


def test_bench_mutation_smoke(tmp_path):
    pytest.importorskip("torch")
    import json

    from evoforge.bench import mutation as bench

    out = tmp_path / "m.json"
    assert bench.main(["--sizes", "300", "--genes", "40", "--repeats", "1", "--loop-cap", "30", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["level_switch"][0]["vs_python_loop"] > 1 and res["gaussian"][0]["P"] == 300
    parent = bench.make_parent(40)
    child = bench.numpy_level_switch(parent, 300, np.random.default_rng(0))
    assert len(np.unique(child, axis=0)) == 300 and (child.sum(axis=1) == parent.sum()).all()
    loop = bench.evopress_loop(parent.tolist(), 20, __import__("random").Random(0))
    assert len({tuple(c) for c in loop}) == 20
