"""evoforge.crossover: structure of the point crossovers and SBX against a float64 numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

import evoforge
from evoforge import crossover
from test_mutation import draws, u01_f64


def _parents(P=200, L=37, dtype=np.int32):
    rng = np.random.default_rng(0)
    return rng.integers(0, 1000, (P, L)).astype(dtype), rng.integers(1000, 2000, (P, L)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.int64, np.float64])
@pytest.mark.parametrize("kind", ["uniform", "one_point", "two_point"])
def test_children_exchange_genes(kind, dtype):
    a, b = _parents(dtype=dtype)
    c1, c2 = getattr(crossover, kind)(a, b, seed=3)
    assert c1.dtype == dtype and c1.shape == a.shape
    ex = c1 != a  # genes from b
    np.testing.assert_array_equal(np.where(ex, b, a), c1)
    np.testing.assert_array_equal(np.where(ex, a, b), c2)
    L = a.shape[1]
    if kind == "uniform":
        assert abs(ex.mean() - 0.5) < 0.02
    else:
        for row in ex:
            idx = np.nonzero(row)[0]
            assert idx.size >= 1 and (np.diff(idx) == 1).all()  # one contiguous segment
            if kind == "one_point":
                assert idx[-1] == L - 1 and 1 <= idx[0]
            else:
                assert 1 <= idx[0] and idx[-1] <= L - 2 + 1
        if kind == "one_point":
            cuts = ex.argmax(axis=1)
            assert set(np.unique(cuts)) <= set(range(1, L))
            assert len(np.unique(cuts)) > L // 2


def test_two_point_cuts_uniform():
    """Cuts k1 < k2 in [1, L - 1]: for L = 5 the 6 segments [k1, k2) are equally likely."""
    L = 5
    a, b = _parents(P=20000, L=L)
    c1, _ = crossover.two_point(a, b, seed=1)
    ex = c1 != a
    lo = ex.argmax(axis=1)
    hi = L - ex[:, ::-1].argmax(axis=1)  # one past the last exchanged gene
    pairs = np.bincount(lo * 10 + hi, minlength=100)
    freq = np.array([pairs[k1 * 10 + k2] for k1 in range(1, L) for k2 in range(k1 + 1, L)]) / 20000
    assert freq.sum() > 0.999 and np.abs(freq - 1 / 6).max() < 0.015, freq


def test_prob_and_determinism():
    a, b = _parents()
    c1, c2 = crossover.uniform(a, b, prob=0.0, seed=1)
    np.testing.assert_array_equal(c1, a)
    np.testing.assert_array_equal(c2, b)
    c1, _ = crossover.one_point(a, b, prob=0.3, seed=1)
    crossed = (c1 != a).any(axis=1)
    assert 0.2 < crossed.mean() < 0.4
    try:
        evoforge.set_num_threads(1)
        x = crossover.two_point(a, b, prob=0.5, seed=8)
        evoforge.set_num_threads(2)
        y = crossover.two_point(a, b, prob=0.5, seed=8)
    finally:
        evoforge.set_num_threads(0)
    np.testing.assert_array_equal(x[0], y[0])
    z = crossover.two_point(a[50:], b[50:], prob=0.5, seed=8, individual_offset=50)
    np.testing.assert_array_equal(z[1], x[1][50:])


def sbx_reference(a, b, xl, xu, eta, prob_var, seed, generation, offset):
    P, L = a.shape
    w = draws("sbx", seed, generation, offset + np.arange(P)[:, None], np.arange(L)[None, :]).reshape(P, L, 4)
    do = ((w[..., 0] >> 8) < prob_var * 2**24) & (np.abs(a - b) > 1e-14) & (xu > xl)
    u = u01_f64(w[..., 1], w[..., 2])
    y1, y2 = np.minimum(a, b), np.maximum(a, b)
    with np.errstate(all="ignore"):
        d = y2 - y1

        def betaq(beta):
            alpha = 2.0 - beta ** -(eta + 1.0)
            return np.where(u <= 1.0 / alpha, (u * alpha) ** (1.0 / (eta + 1.0)),
                            (1.0 / (2.0 - u * alpha)) ** (1.0 / (eta + 1.0)))

        lo = np.clip(0.5 * ((y1 + y2) - betaq(1.0 + 2.0 * (y1 - xl) / d) * d), xl, xu)
        hi = np.clip(0.5 * ((y1 + y2) + betaq(1.0 + 2.0 * (xu - y2) / d) * d), xl, xu)
    swap = (w[..., 3] >> 31) == 1
    c1 = np.where(do, np.where(swap, hi, lo), a)
    c2 = np.where(do, np.where(swap, lo, hi), b)
    return c1, c2


@pytest.mark.parametrize("eta", [1.0, 15.0, 30.0])
def test_sbx_matches_reference(eta):
    rng = np.random.default_rng(5)
    L = 40
    xl, xu = rng.uniform(-3, 0, L), rng.uniform(0.5, 3, L)
    a = xl + rng.random((300, L)) * (xu - xl)
    b = xl + rng.random((300, L)) * (xu - xl)
    b[:, 0] = a[:, 0]  # equal parents are copied
    c1, c2 = crossover.sbx(a, b, xl, xu, eta=eta, prob_var=0.6, seed=4, generation=2, individual_offset=9)
    r1, r2 = sbx_reference(a, b, xl, xu, eta, 0.6, 4, 2, 9)
    np.testing.assert_allclose(c1, r1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c2, r2, rtol=1e-12, atol=1e-12)
    assert (c1 >= xl).all() and (c1 <= xu).all() and (c2 >= xl).all() and (c2 <= xu).all()
    np.testing.assert_array_equal(c1[:, 0], a[:, 0])
    f1, f2 = crossover.sbx(a.astype(np.float32), b.astype(np.float32), xl, xu, eta=eta, seed=4)
    assert f1.dtype == np.float32 and (f1 >= xl.astype(np.float32)).all()


@pytest.mark.parametrize("fn,args,exc", [
    (crossover.uniform, (np.zeros((2, 3), np.int32), np.zeros((2, 4), np.int32)), ValueError),
    (crossover.uniform, (np.zeros((2, 3), np.int32), np.zeros((2, 3), np.int64)), TypeError),
    (crossover.uniform, (np.zeros((2, 3), np.int8), np.zeros((2, 3), np.int8)), TypeError),
    (crossover.sbx, (np.zeros((2, 3), np.int32), np.zeros((2, 3), np.int32), 0, 1), TypeError),
    (crossover.sbx, (np.zeros((2, 3)), np.full((2, 3), 2.0), 0, 1), ValueError),
    (crossover.sbx, (np.zeros((2, 3)), np.zeros((2, 3)), 1, 0), ValueError),
    (crossover.sbx, (np.full((2, 3), np.nan), np.zeros((2, 3)), 0, 1), ValueError),
])
def test_bad_input(fn, args, exc):
    with pytest.raises(exc):
        fn(*args, seed=0)
    with pytest.raises(ValueError, match="prob"):
        crossover.one_point(np.zeros((2, 3)), np.zeros((2, 3)), prob=-0.1, seed=0)
