"""The additive front (dynamic programming over a budget) against brute force, and the screen that
adds it to NSGA2's pool."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from evoforge import pareto
from evoforge.errors import ConfigError
from evoforge.search import NSGA2, OnePlusLambda, PointMutation, Screen
from evoforge.search.additive_front import additive_front
from evoforge.search.engine import MAX_POPULATION
from evoforge.search.screening import Ridge


def _all_genomes(levels):
    return np.array(list(itertools.product(*[range(v) for v in levels])), dtype=np.int64)


def _totals(costs, G):
    return np.stack([sum(costs[i][G[:, i], t] for i in range(len(costs))) for t in range(costs[0].shape[1])], axis=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("T", [2, 3])
def test_each_row_is_the_brute_force_optimum_within_its_budget(seed, T):
    rng = np.random.default_rng(seed)
    levels = rng.integers(1, 5, size=int(rng.integers(2, 6)))
    costs = [np.column_stack([rng.normal(size=v), rng.integers(0, 9, size=v)]).astype(np.float64) for v in levels]
    if T == 3:  # a second budget target with the same range per gene: the measure stays an integer sum
        costs = [np.column_stack([c, rng.permutation(c[:, 1])]) for c in costs]
    span = sum(c[:, 1].max() - c[:, 1].min() for c in costs)
    bins = max(int(span), 1)
    K = int(rng.integers(1, 9))
    rows = additive_front(costs, K, bins=bins)
    G = _all_genomes(levels)
    tot = _totals(costs, G)
    shift = sum(c[:, 1:].min(axis=0) for c in costs)
    measure = (tot[:, 1:] - shift).sum(axis=1) * (bins / span if span > 0 else 0.0)  # T = 3: both ranges equal span
    assert rows.dtype == np.int64 and rows.shape[1] == len(levels) and len(rows) <= K
    assert len(np.unique(rows, axis=0)) == len(rows)
    row_tot = _totals(costs, rows)
    row_measure = (row_tot[:, 1:] - shift).sum(axis=1) * (bins / span if span > 0 else 0.0)
    budgets = np.unique(np.rint(np.linspace(measure.min(), measure.max(), K)))
    for b in budgets:  # some row is within the budget and as good as anything within it
        best = tot[measure <= b + 1e-9, 0].min()
        ok = (row_measure <= b + 1e-9) & np.isclose(row_tot[:, 0], best)
        assert ok.any(), (b, best, row_tot, row_measure)


def test_one_target_is_the_unconstrained_minimum_and_bad_costs_raise():
    costs = [np.array([[3.0], [1.0], [2.0]]), np.array([[0.5], [-1.0]])]
    np.testing.assert_array_equal(additive_front(costs, 5), [[1, 1]])
    with pytest.raises(ValueError, match="non-empty"):
        additive_front([], 3)
    with pytest.raises(ValueError, match="one T"):
        additive_front([np.zeros((2, 2)), np.zeros((2, 3))], 3)
    with pytest.raises(ValueError, match="finite"):
        additive_front([np.array([[np.nan, 1.0]])], 3)
    with pytest.raises(ValueError, match="n_points"):
        additive_front([np.zeros((2, 2))], 0)


L, LEVELS = 6, 4
_T = np.random.default_rng(7).random((2, L, LEVELS))
_T[0] = np.sort(_T[0], axis=1)
_T[1] = np.sort(_T[1], axis=1)[:, ::-1]


def additive(X):
    X = np.asarray(X, dtype=np.int64)
    return np.stack([_T[m][np.arange(L), X].sum(axis=1) for m in range(2)], axis=1)


def test_the_screen_adds_the_fitted_predictors_own_front_to_the_pool():
    lo, hi = np.zeros(L, np.int32), np.full(L, LEVELS - 1, np.int32)
    e = NSGA2(lo, hi, n_objectives=2, pop_size=8, seed=3, progress=False, screen=Screen(2, front=6, alpha=0.1))
    e.run(additive, generations=3)
    batch = e.ask()  # a screened generation: its pool made with the predictor fitted now
    s = e.screen
    front = s.predicted_front(2)
    assert 1 <= len(front) <= 6 and front.dtype == s.archive_X.dtype
    # the pool of the last screened generation ends with the front of the predictor fitted then
    np.testing.assert_array_equal(s.last_pool[-len(front):], front)
    assert len(batch.genomes) == 8
    # each row is non-dominated among every genome of the space under the predictions (up to the
    # budget's rounding: half a bin per gene)
    G = _all_genomes([LEVELS] * L).astype(np.int32)
    P, Pf = s.predict(G), s.predict(front)
    slack = L * 0.5 / 2048 * (P[:, 1].max() - P[:, 1].min())
    for p in Pf:
        assert P[P[:, 1] <= p[1] - slack, 0].min(initial=np.inf) >= p[0] - 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_with_its_front_the_screen_beats_the_unscreened_hypervolume_with_half_the_evaluations(seed):
    lo, hi = np.zeros(L, np.int32), np.full(L, LEVELS - 1, np.int32)
    ref = additive(np.stack([lo, hi])).max(axis=0) + 0.5
    kw = dict(n_objectives=2, pop_size=16, seed=seed, ref_point=ref, progress=False)
    plain = NSGA2(lo, hi, **kw).run(additive, generations=10)
    hv = {}
    for front in (0, 8):
        half = NSGA2(lo, hi, **kw, n_offspring=4, screen=Screen(4, front=front, select="hypervolume"))
        res = half.run(additive, generations=17)
        assert res.requested <= plain.requested / 2
        hv[front] = pareto.hypervolume(res.best_fitness, ref)
    hv_plain = pareto.hypervolume(plain.best_fitness, ref)
    assert hv[8] > max(hv[0], hv_plain), (hv, hv_plain)


def test_a_front_screen_is_deterministic_and_resumes(tmp_path):
    lo, hi = np.zeros(L, np.int32), np.full(L, LEVELS - 1, np.int32)

    def make(run_dir=None):
        return NSGA2(lo, hi, n_objectives=2, pop_size=8, seed=5, progress=False, run_dir=run_dir,
                     screen=Screen(2, front=4, select="hypervolume"))

    ref = make().run(additive, generations=6)
    e = make(tmp_path)
    e.run(additive, generations=3)
    e.close()
    e = NSGA2.resume(tmp_path, progress=False)
    got = e.run(additive, generations=6)
    e.close()
    np.testing.assert_array_equal(got.best_fitness, ref.best_fitness)
    assert [r["screen_generated"] for r in got.history] == [r["screen_generated"] for r in ref.history]


def test_bad_front_configuration_raises_clearly():
    lo, hi = np.zeros(3, np.int32), np.full(3, 2, np.int32)
    with pytest.raises(ConfigError, match="front"):
        Screen(front=-1)
    with pytest.raises(ConfigError, match="default encoding and ridge predictor"):
        NSGA2(lo, hi, n_objectives=2, pop_size=4, screen=Screen(2, front=3, predictor=Ridge(2.0)))
    with pytest.raises(ConfigError, match="gene 0 is not one"):
        NSGA2(np.zeros(3), np.ones(3), n_objectives=2, pop_size=4, screen=Screen(2, front=3))  # float genes
    with pytest.raises(ConfigError, match="for NSGA2"):
        OnePlusLambda(np.zeros(3, np.int32), PointMutation(), lower=0, upper=2, screen=Screen(2, front=3))
    with pytest.raises(ConfigError, match="\\+ front"):
        NSGA2(lo, hi, n_objectives=2, pop_size=4, screen=Screen(2, front=MAX_POPULATION))
