"""Predictor screening in NSGA2 and OnePlusLambda: a perfect predictor evaluates exactly the
predicted best of the pool (against a brute-force NSGA-II survival / sort), ridge against least
squares, Spearman against scipy, hypervolume on an additive problem, resume, and bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from evoforge import pareto
from evoforge.errors import ConfigError
from evoforge.search import NSGA2, LevelSwitch, OnePlusLambda, PointMutation, Screen
from evoforge.search.engine import MAX_POPULATION
from evoforge.search.screening import GeneEncoding, Ridge, spearman

import reference

L, LEVELS = 10, 6
_TABLES = np.random.default_rng(42).random((2, L, LEVELS))
_TABLES[0] = np.sort(_TABLES[0], axis=1)  # objective 0 grows with the level, objective 1 falls:
_TABLES[1] = np.sort(_TABLES[1], axis=1)[:, ::-1]  # a trade-off, summed over genes


def additive(X):
    """Two separable objectives [B, 2] of integer genomes [B, L] in [0, LEVELS)."""
    X = np.asarray(X, dtype=np.int64)
    return np.stack([_TABLES[m][np.arange(L), X].sum(axis=1) for m in range(2)], axis=1)


def weighted(X):
    """One separable objective [B] (distinct values for distinct genomes, almost surely)."""
    return additive(X) @ np.array([1.0, 0.37])


def as_float(X):
    return np.asarray(X, dtype=np.float64)


class Oracle:
    """A perfect predictor: the true objective of the genome (encoded as its raw values)."""

    def __init__(self, fn):
        self.fn, self.fits = fn, 0

    def fit(self, Z, Y):
        self.fits += 1

    def predict(self, Z):
        return self.fn(np.rint(Z).astype(np.int64))


class Recorder:
    def __init__(self, fn):
        self.fn, self.batches = fn, []

    def evaluate(self, genomes, batch):
        self.batches.append(np.array(genomes))
        return self.fn(genomes)


def _rows(A):
    return sorted(a.tobytes() for a in A)


# ---- a perfect predictor evaluates exactly the predicted best ---------------------------------


@pytest.mark.parametrize("constrained", [False, True])
def test_nsga2_with_a_perfect_predictor_evaluates_the_best_survivors_of_the_pool(constrained):
    def problem(X):
        F = additive(X)
        return (F, np.asarray(X)[:, 0] - 3.0) if constrained else F  # feasible: gene 0 <= 3

    def oracle(X):
        F = additive(X)
        return np.column_stack([F, X[:, 0] - 3.0]) if constrained else F

    pop, n, k = 12, 8, 4
    e = NSGA2(np.zeros(L, np.int32), np.full(L, LEVELS - 1, np.int32), n_objectives=2, pop_size=pop, n_offspring=n,
              constrained=constrained, seed=3, progress=False,
              screen=Screen(k, encode=as_float, predictor=Oracle(oracle)))
    for g in range(8):
        batch = e.ask()
        if g == 0:
            assert len(batch.genomes) == pop and e.screen.last_pool is None
        else:
            pool = e.screen.last_pool
            assert pool.shape == (k * n, L) and len(set(_rows(pool))) == k * n
            assert not set(_rows(pool)) & set(_rows(e.X))  # new genomes only
            # Brute force: the population's known objectives with the pool's true ones, ordered by
            # rank, then crowding (larger first), then index; the first n pool members are the best.
            truth = problem(pool)
            Fp, cvp = truth if constrained else (truth, None)
            FF = np.concatenate([e.F, Fp])
            cv = None if not constrained else np.concatenate([e.CV, cvp])
            rank = reference.nondominated_rank(FF, cv)
            crowd = reference.crowding_distance(FF, rank)
            P = len(e.F)
            best = sorted(range(k * n), key=lambda i: (rank[P + i], -crowd[P + i], i))[:n]
            np.testing.assert_array_equal(batch.genomes, pool[sorted(best)])
            np.testing.assert_array_equal(e.screen.last_chosen, sorted(best))
        e.tell(batch, *((problem(batch.genomes),) if not constrained else problem(batch.genomes)))
    h = e.history
    assert h[0]["screen_spearman"] is None and h[0]["screen_generated"] == pop
    assert all(r["screen_generated"] == k * n and r["screen_evaluated"] == n for r in h[1:])
    assert all(r["screen_spearman"] == [1.0, 1.0] for r in h[1:])  # a perfect predictor ranks perfectly
    assert e.screen.predictor.fits == len(h) - 1  # refitted before each screening


@pytest.mark.parametrize("stages", [None, [(2, None), (1, None)]])
def test_one_plus_lambda_with_a_perfect_predictor_evaluates_the_predicted_best(stages):
    n, k = 4, 6
    ev = Recorder(weighted)
    e = OnePlusLambda(np.full(L, 2, np.int32), PointMutation(prob=0.3), lower=0, upper=LEVELS - 1, n_offspring=n,
                      stages=stages, seed=5, progress=False,
                      screen=Screen(k, encode=as_float, predictor=Oracle(weighted)))
    for g in range(10):
        parent = e.parent.copy()
        batch = e.ask()
        assert batch.stage == 0
        if g == 0:
            assert e.screen.last_pool is None
        else:
            pool = e.screen.last_pool
            assert len(pool) == k * n
            # Brute force: the n distinct pool genomes (other than the parent) of smallest true fitness.
            distinct = {p.tobytes(): p for p in pool if not np.array_equal(p, parent)}
            best = sorted(distinct.values(), key=lambda p: weighted(p[None])[0])[:n]
            assert _rows(batch.genomes[:n]) == _rows(best)
        e.run(ev, generations=g + 1)
    assert all(r["screen_spearman"] == 1.0 for r in e.history[1:])
    assert e.history[0]["screen_spearman"] is None


def test_hypervolume_select_with_a_perfect_predictor_takes_the_greatest_contributions_in_turn():
    pop, n, k = 12, 4, 6
    e = NSGA2(np.zeros(L, np.int32), np.full(L, LEVELS - 1, np.int32), n_objectives=2, pop_size=pop, n_offspring=n,
              seed=4, progress=False,
              screen=Screen(k, encode=as_float, predictor=Oracle(additive), select="hypervolume"))
    greedy_steps = 0
    for g in range(8):
        batch = e.ask()
        if g:
            pool = e.screen.last_pool
            P = additive(pool)
            # Brute force: the reference point from the population and the pool, then in turn the pool
            # member adding the most 2-D hypervolume (a sweep) to the population's front and those taken.
            both = np.concatenate([e.F, P])
            lo, hi = both.min(axis=0), both.max(axis=0)
            ref = hi + 0.1 * (hi - lo)
            front = e.F[reference.nondominated_rank(e.F) == 0]
            taken: list[int] = []
            for _ in range(n):
                base = reference.hypervolume_2d(front, ref)
                gain = [reference.hypervolume_2d(np.concatenate([front, P[i:i + 1]]), ref) - base
                        if i not in taken else -1.0 for i in range(len(P))]
                i = int(np.argmax(gain))
                if gain[i] <= 1e-12:
                    break
                taken.append(i)
                front = np.concatenate([front, P[i:i + 1]])
            greedy_steps += len(taken)
            assert set(taken) <= set(e.screen.last_chosen.tolist())
            if len(taken) == n:
                np.testing.assert_array_equal(e.screen.last_chosen, sorted(taken))
        e.tell(batch, additive(batch.genomes))
    assert greedy_steps >= n * 4  # the greedy rule decided most choices


def test_depth_draws_later_pools_from_a_population_evolved_on_the_predictions():
    pop, n, k = 12, 4, 3
    kw = dict(n_objectives=2, pop_size=pop, n_offspring=n, seed=6, progress=False)
    lo, hi = np.zeros(L, np.int32), np.full(L, LEVELS - 1, np.int32)
    one = NSGA2(lo, hi, **kw, screen=Screen(k, encode=as_float, predictor=Oracle(additive)))
    three = NSGA2(lo, hi, **kw, screen=Screen(k, encode=as_float, predictor=Oracle(additive), depth=3))
    for e in (one, three):
        b = e.ask()
        e.tell(b, additive(b.genomes))
    X, F = three.X.copy(), three.F.copy()
    virtual = copy.deepcopy(three)
    one.ask(), three.ask()
    np.testing.assert_array_equal(three.X, X)  # the real population is back after the virtual generations
    np.testing.assert_array_equal(three.F, F)
    p1, p3 = one.screen.last_pool, three.screen.last_pool
    assert p3.shape == (3 * k * n, L)
    np.testing.assert_array_equal(p3[: k * n], p1)  # the first pool: the population's own offspring
    # The second pool: offspring (the next stream) of the NSGA-II survivors of the population and the
    # first pool under the (here perfect) predictions, survival by brute force.
    FF = np.concatenate([F, additive(p1)])
    rank = reference.nondominated_rank(FF)
    crowd = reference.crowding_distance(FF, rank)
    keep = sorted(range(len(FF)), key=lambda i: (rank[i], -crowd[i], i))[:pop]
    virtual.X, virtual.F = np.concatenate([X, p1])[keep], FF[keep]
    virtual.rank, virtual.crowding = rank[keep], crowd[keep]
    assert not np.array_equal(virtual.X, X)  # the virtual population moved
    np.testing.assert_array_equal(p3[k * n: 2 * k * n], virtual._offspring(k * n, stream=1))
    one.run(additive, generations=12)
    three.run(additive, generations=12)
    ref = np.concatenate([one.F, three.F]).max(axis=0) + 1.0
    assert reference.hypervolume_2d(three.best[1], ref) >= reference.hypervolume_2d(one.best[1], ref)


def test_factor_one_evaluates_what_the_unscreened_engine_does():
    """k = 1 screens nothing out: the same candidates and result, plus the recorded correlation."""
    kw = dict(n_objectives=2, pop_size=10, seed=7, progress=False)
    lo, hi = np.zeros(L, np.int32), np.full(L, LEVELS - 1, np.int32)
    plain, screened = Recorder(additive), Recorder(additive)
    a = NSGA2(lo, hi, **kw).run(plain, generations=6)
    b = NSGA2(lo, hi, **kw, screen=Screen(1)).run(screened, generations=6)
    assert len(plain.batches) == len(screened.batches)
    for x, y in zip(plain.batches, screened.batches):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.best_fitness, b.best_fitness)
    assert all(isinstance(r["screen_spearman"], list) for r in b.history[1:])
    assert "screen_spearman" not in a.history[0]

    plain, screened = Recorder(weighted), Recorder(weighted)
    kw = dict(lower=0, upper=LEVELS - 1, n_offspring=5, seed=2, progress=False)
    a = OnePlusLambda(np.zeros(L, np.int32), PointMutation(), **kw).run(plain, generations=8)
    b = OnePlusLambda(np.zeros(L, np.int32), PointMutation(), **kw, screen=Screen(1)).run(screened, generations=8)
    for x, y in zip(plain.batches, screened.batches, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.best_fitness == b.best_fitness


# ---- the default predictor ----------------------------------------------------------------------


@pytest.mark.parametrize("N,D", [(40, 9), (12, 30)])  # the primal and the dual system
def test_ridge_equals_least_squares_on_the_augmented_system(N, D):
    rng = np.random.default_rng(N)
    Z = rng.normal(size=(N, D)) * rng.uniform(0.1, 10, D)
    Y = np.column_stack([Z @ rng.normal(size=D) * 1e3 + rng.normal(size=N), rng.normal(size=N) * 1e-3 + 5.0])
    alpha = 0.7
    Znew = rng.normal(size=(15, D))
    ours = Ridge(alpha).fit(Z, Y).predict(Znew)
    # min ||Z w + b - y||^2 + alpha ||w||^2 (b unpenalised) as one least-squares problem
    A = np.block([[Z, np.ones((N, 1))], [np.sqrt(alpha) * np.eye(D), np.zeros((D, 1))]])
    for t in range(Y.shape[1]):
        sol = np.linalg.lstsq(A, np.concatenate([Y[:, t], np.zeros(D)]), rcond=None)[0]
        ref = Znew @ sol[:D] + sol[D]
        np.testing.assert_allclose(ours[:, t], ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())


def test_gene_encoding_one_hot_and_scaled():
    lower = np.array([0, 2, 0, -5])
    upper = np.array([3, 4, 1000, 5])
    enc = GeneEncoding(lower, upper, 4, integer=True)
    X = np.array([[0, 2, 0, -5], [3, 4, 1000, 5], [1, 3, 500, 0]], np.int32)
    want = []
    for x in X:
        row = []
        for j in (0, 1, 3):  # at most MAX_ONE_HOT_LEVELS levels: one-hot, in gene order
            row += [float(x[j] == v) for v in range(lower[j], upper[j] + 1)]
        row.append((x[2] - 0) / 1000)  # 1001 levels: by value, scaled to [0, 1]
        want.append(row)
    np.testing.assert_array_equal(enc(X), np.array(want))
    floats = GeneEncoding(np.zeros(2), np.array([2.0, 4.0]), 2, integer=False)
    np.testing.assert_allclose(floats(np.array([[1.0, 1.0]])), [[0.5, 0.25]])
    unbounded = GeneEncoding(None, None, 2, integer=True)
    np.testing.assert_array_equal(unbounded(np.array([[3, -7]])), [[3.0, -7.0]])


def test_spearman_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (2, 3, 10, 57):
        for ties in (False, True):
            x = rng.integers(0, 4, n) if ties else rng.normal(size=n)
            y = x + rng.integers(-2, 3, n) if ties else rng.normal(size=n) + x
            if np.ptp(x) == 0 or np.ptp(y) == 0:
                continue
            assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    assert spearman([1.0], [2.0]) is None


# ---- a search that screens ----------------------------------------------------------------------


def test_screened_nsga2_reaches_the_unscreened_hypervolume_on_an_additive_problem():
    lo, hi = np.zeros(L, np.int32), np.full(L, LEVELS - 1, np.int32)
    ref = additive(np.stack([lo, hi])).max(axis=0) + 0.5
    kw = dict(n_objectives=2, pop_size=20, seed=1, ref_point=ref, progress=False)
    plain = NSGA2(lo, hi, **kw).run(additive, generations=15)
    screened = NSGA2(lo, hi, **kw, screen=Screen(4)).run(additive, generations=15)
    assert screened.requested == plain.requested  # the same evaluations asked for
    hv_plain, hv_screened = (pareto.hypervolume(r.best_fitness, ref) for r in (plain, screened))
    assert hv_screened >= hv_plain, (hv_screened, hv_plain)
    # ridge on one-hot genes fits a separable objective: the screen ranks well once trained
    assert np.mean([r["screen_spearman"] for r in screened.history[3:]]) > 0.8


def test_same_seed_same_result_and_resume_with_a_screen(tmp_path):
    lo, hi = np.zeros(L, np.int32), np.full(L, LEVELS - 1, np.int32)

    def make(run_dir=None):
        return NSGA2(lo, hi, n_objectives=2, pop_size=12, seed=9, progress=False, run_dir=run_dir,
                     screen=Screen(3, alpha=0.5))

    ref = make().run(additive, generations=10)
    again = make().run(additive, generations=10)
    np.testing.assert_array_equal(ref.best_genome, again.best_genome)
    e = make(tmp_path / "nsga2")
    e.run(additive, generations=4)
    e.close()
    e = NSGA2.resume(tmp_path / "nsga2", progress=False)
    assert 12 < len(e.screen.archive_Y) <= 12 + 3 * 12  # one row per distinct genome evaluated
    got = e.run(additive, generations=10)
    e.close()
    np.testing.assert_array_equal(got.best_genome, ref.best_genome)
    np.testing.assert_array_equal(got.best_fitness, ref.best_fitness)
    keys = ("generation", "evaluations", "requested", "front_size", "screen_spearman", "screen_generated")
    assert [[r[k] for k in keys] for r in got.history] == [[r[k] for k in keys] for r in ref.history]

    def make1(run_dir=None):
        return OnePlusLambda(np.full(L, 2, np.int32), LevelSwitch(), lower=0, upper=LEVELS - 1, n_offspring=4,
                             stages=[(2, None), (1, None)], seed=4, progress=False, run_dir=run_dir,
                             screen=Screen(3))

    ref = make1().run(weighted, generations=12)
    e = make1(tmp_path / "opl")
    e.run(weighted, generations=5)
    e.close()
    e = OnePlusLambda.resume(tmp_path / "opl", progress=False)
    got = e.run(weighted, generations=12)
    e.close()
    np.testing.assert_array_equal(got.best_genome, ref.best_genome)
    assert [r["screen_spearman"] for r in got.history] == [r["screen_spearman"] for r in ref.history]
    assert ref.history[-1]["screen_generated"] == 12 and ref.history[-1]["screen_evaluated"] == 4


def test_an_unscreened_checkpoint_resumes_without_a_screen(tmp_path):
    """A checkpoint pickled before screening existed has no ``screen`` attribute: the class default."""
    e = NSGA2(np.zeros(3), np.ones(3), n_objectives=2, pop_size=6, progress=False, run_dir=tmp_path)
    e.run(lambda X: np.column_stack([X[:, 0], 1 - X[:, 0]]), generations=2)
    e.close()
    assert "screen" not in vars(e)
    e = NSGA2.resume(tmp_path, progress=False)
    assert e.screen is None
    e.close()


# ---- bad input --------------------------------------------------------------------------------


def test_bad_screen_configuration_raises_clearly():
    with pytest.raises(ConfigError, match="factor"):
        Screen(0)
    with pytest.raises(TypeError, match="factor"):
        Screen("4")
    with pytest.raises(ConfigError, match="alpha"):
        Screen(alpha=0.0)
    with pytest.raises(ConfigError, match="alpha"):
        Screen(alpha=float("nan"))
    with pytest.raises(ConfigError, match="min_train"):
        Screen(min_train=0)
    with pytest.raises(TypeError, match="encode must be a callable"):
        Screen(encode=3)
    with pytest.raises(TypeError, match="encode must take one argument"):
        Screen(encode=lambda: 0)
    with pytest.raises(TypeError, match="fit.*predict"):
        Screen(predictor=object())
    with pytest.raises(TypeError, match="screen must be an evoforge.search.Screen"):
        NSGA2(np.zeros(3), np.ones(3), n_objectives=2, screen=4)
    with pytest.raises(TypeError, match="screen must be"):
        OnePlusLambda(np.zeros(3, np.int32), PointMutation(), screen="yes")
    with pytest.raises(ConfigError, match="select"):
        Screen(select="best")
    with pytest.raises(ConfigError, match="depth"):
        Screen(depth=0)
    with pytest.raises(ConfigError, match="depth \\* factor \\* n_offspring"):
        NSGA2(np.zeros(3), np.ones(3), n_objectives=2, pop_size=4, screen=Screen(MAX_POPULATION // 128, depth=64))
    with pytest.raises(ConfigError, match="factor \\* n_offspring"):
        NSGA2(np.zeros(3), np.ones(3), n_objectives=2, pop_size=4, screen=Screen(MAX_POPULATION // 2))

    class Wrong:
        def fit(self, Z, Y):
            pass

        def predict(self, Z):
            return np.zeros((len(Z), 3))

    e = NSGA2(np.zeros(3), np.ones(3), n_objectives=2, pop_size=4, progress=False, screen=Screen(predictor=Wrong()))
    with pytest.raises(ValueError, match=r"predictor.predict must return shape \(16, 2\)"):
        e.run(lambda X: np.column_stack([X[:, 0], 1 - X[:, 0]]), generations=3)
