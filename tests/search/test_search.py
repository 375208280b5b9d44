"""Search engines: runtime theory for (1 + lambda), hypervolume against pymoo's NSGA-II,
determinism, checkpoint/resume after kill -9, the cache, and bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from evoforge import pareto
from evoforge.cache import EvaluationCache
from evoforge.errors import ConfigError, CorruptCheckpointError
from evoforge.search import GA, NSGA2, LevelSwitch, OnePlusLambda, PointMutation
from evoforge.search.engine import CHECKPOINT, MAX_POPULATION
from evoforge.search.problems import dtlz2, leading_ones, one_max, zdt1, zdt2, zdt3


# ---- (1 + lambda) against runtime theory ------------------------------------------------------


def onemax_expected_generations(n: int, lam: int, start_ones: int) -> float:
    """Exact expected generations of the (1 + lambda) EA with standard bit mutation (rate 1/n) on
    OneMax from a parent with ``start_ones`` ones: a Markov chain on the number of ones."""
    p = 1.0 / n
    E = np.zeros(n + 1)
    for i in range(n - 1, start_ones - 1, -1):
        # q[j]: probability that one offspring has exactly j ones.
        q = np.zeros(n + 1)
        for k in range(n - i + 1):  # zeros flipped to one
            pk = math.comb(n - i, k) * p**k * (1 - p) ** (n - i - k)
            for l in range(i + 1):  # ones flipped to zero
                q[i + k - l] += pk * math.comb(i, l) * p**l * (1 - p) ** (i - l)
        tail = np.cumsum(q[::-1])[::-1]  # tail[j] = P(one offspring >= j)
        at_least = 1.0 - (1.0 - tail) ** lam  # P(best of lambda >= j)
        move = np.array([at_least[j] - (at_least[j + 1] if j < n else 0.0) for j in range(n + 1)])
        stay = 1.0 - at_least[i + 1]
        E[i] = (1.0 + sum(move[j] * E[j] for j in range(i + 1, n + 1))) / (1.0 - stay)
    return float(E[start_ones])


@pytest.mark.parametrize("lam", [1, 4])
def test_one_plus_lambda_onemax_matches_theory(lam):
    n, runs = 40, 60
    gens = []
    for s in range(runs):
        e = OnePlusLambda(np.zeros(n, np.int32), PointMutation(), lower=0, upper=1, n_offspring=lam, seed=s,
                          progress=False)
        gens.append(e.run(one_max, target=-n, generations=100_000).generations)
    expected = onemax_expected_generations(n, lam, 0)
    # Four standard errors of the sample mean: fails for a wrong mutation rate or selection.
    assert abs(np.mean(gens) - expected) < 4 * np.std(gens) / math.sqrt(runs), (np.mean(gens), expected)


def test_one_plus_one_leading_ones_matches_theory():
    # From a uniformly random start: E[T] = 1/2 * sum_i 1 / ((1/n) (1 - 1/n)^i) (Boettcher et al. 2010).
    n, runs = 30, 60
    expected = 0.5 * sum(n * (1 - 1 / n) ** -i for i in range(n))
    gens = []
    for s in range(runs):
        start = np.random.default_rng(1000 + s).integers(0, 2, n).astype(np.int32)
        e = OnePlusLambda(start, PointMutation(), lower=0, upper=1, n_offspring=1, seed=s, progress=False)
        gens.append(e.run(leading_ones, target=-n, generations=100_000).generations)
    assert abs(np.mean(gens) - expected) < 4 * np.std(gens) / math.sqrt(runs), (np.mean(gens), expected)


def test_one_plus_lambda_multistage_keeps_budget_and_improves():
    L, target = 24, np.arange(24) % 7
    calls = []

    def noisy(genomes, batch):
        calls.append((len(genomes), batch.fidelity, batch.seed))
        rng = np.random.default_rng(batch.seed)
        noise = rng.normal(0, 1.0 / math.sqrt(batch.fidelity), size=L)
        return (((genomes - target) ** 2) + noise).sum(axis=1)

    class Ev:
        evaluate = staticmethod(noisy)

    start = np.full(L, 3, np.int32)
    e = OnePlusLambda(start, LevelSwitch(), lower=0, upper=6, n_offspring=8, stages=[(4, 64), (2, 256), (1, 1024)],
                      seed=3, progress=False)
    r = e.run(Ev(), generations=60)
    assert r.best_genome.sum() == start.sum()  # the level sum (budget) is exact
    assert ((r.best_genome >= 0) & (r.best_genome <= 6)).all()
    assert ((r.best_genome - target) ** 2).sum() < ((start - target) ** 2).sum() / 3
    # Stage sizes: 8 offspring, then 4 survivors, then 2 survivors + the parent.
    assert [c[0] for c in calls[:3]] == [8, 4, 3]
    assert [c[1] for c in calls[:3]] == [64, 256, 1024]
    assert len({c[2] for c in calls[:6]}) == 6  # a fresh minibatch per stage and generation


# ---- NSGA-II against pymoo ----------------------------------------------------------------------


PROBLEMS = {
    "zdt1": (zdt1, 30, 2, [1.1, 1.1]),
    "zdt2": (zdt2, 30, 2, [1.1, 1.1]),
    "zdt3": (zdt3, 30, 2, [1.1, 1.1]),
    "dtlz2": (dtlz2, 12, 3, [1.1, 1.1, 1.1]),
}


def _pymoo_hv(name, fn, L, M, ref, pop, gens, seed):
    from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    class P(Problem):
        def __init__(self):
            super().__init__(n_var=L, n_obj=M, xl=0.0, xu=1.0)

        def _evaluate(self, X, out, *args, **kwargs):
            out["F"] = fn(X)

    res = minimize(P(), PymooNSGA2(pop_size=pop), ("n_gen", gens), seed=seed, verbose=False)
    F = np.atleast_2d(res.F)
    return pareto.hypervolume(F, ref)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_nsga2_hypervolume_not_worse_than_pymoo(name):
    pytest.importorskip("pymoo")
    fn, L, M, ref = PROBLEMS[name]
    pop, gens, seeds = 100, 100, [1, 2, 3, 4, 5]
    ours, theirs = [], []
    for s in seeds:
        e = NSGA2(np.zeros(L), np.ones(L), n_objectives=M, pop_size=pop, ref_point=ref, seed=s, progress=False)
        r = e.run(fn, generations=gens)
        ours.append(pareto.hypervolume(r.best_fitness, ref))
        theirs.append(_pymoo_hv(name, fn, L, M, ref, pop, gens, s))
    # Equal evaluations (pop * gens each). "Not worse" on the mean over seeds: our mean may fall
    # below pymoo's by at most 2.5 standard errors of the difference (seed noise); an NSGA-II
    # that loses the front's extremes (e.g. rank-based tournaments on ZDT2) fails by far more.
    se = math.sqrt(np.var(ours, ddof=1) / len(ours) + np.var(theirs, ddof=1) / len(theirs))
    assert np.mean(ours) >= np.mean(theirs) - 2.5 * se, (ours, theirs)


def test_nsga2_constraints_are_respected():
    def constrained(X):
        F = zdt1(X)
        return F, np.maximum(0.0, 0.3 - X[:, 0])  # feasible only where x0 >= 0.3

    e = NSGA2(np.zeros(10), np.ones(10), n_objectives=2, constrained=True, pop_size=40, seed=0, progress=False)
    genomes = e.run(constrained, generations=30).best_genome
    assert len(genomes) > 0 and (genomes[:, 0] >= 0.3).all()


def test_ga_minimises_sphere_and_keeps_the_elite():
    def sphere(X):
        return ((X - 0.25) ** 2).sum(axis=1)

    e = GA(np.full(8, -1.0), np.full(8, 1.0), pop_size=40, elitism=2, seed=0, progress=False)
    r = e.run(sphere, generations=60)
    best = [h["best_fitness"] for h in r.history]
    assert all(b <= a for a, b in zip(best, best[1:]))  # elitism: never worse
    assert r.best_fitness < 0.05 * best[0]


# ---- determinism, cache, checkpoints ------------------------------------------------------------


def test_same_seed_same_result_and_cache_counts():
    def run(seed):
        e = NSGA2(np.zeros(10), np.ones(10), n_objectives=2, pop_size=20, seed=seed, progress=False)
        return e.run(zdt2, generations=15)

    a, b, c = run(5), run(5), run(6)
    np.testing.assert_array_equal(a.best_genome, b.best_genome)
    np.testing.assert_array_equal(a.best_fitness, b.best_fitness)
    assert not np.array_equal(a.best_fitness, c.best_fitness)
    assert a.requested == 20 * 15 and a.evaluations + a.cache_hits == a.requested


def test_one_plus_lambda_parent_is_a_cache_hit():
    e = OnePlusLambda(np.zeros(20, np.int32), PointMutation(), lower=0, upper=1, n_offspring=4, seed=0,
                      progress=False)
    r = e.run(one_max, generations=30)
    # The parent is re-asked every generation but evaluated once (deterministic stage).
    assert r.cache_hits >= 29
    assert r.evaluations + r.cache_hits == r.requested == 30 * 5


SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from evoforge.search import NSGA2
    from evoforge.search.problems import zdt1
    run_dir, log, mode, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

    def evaluate(X):
        with open(log, "a") as f:
            for x in X:
                f.write(x.tobytes().hex() + "\\n")
        time.sleep(delay)
        return zdt1(X)

    if mode == "start":
        e = NSGA2(np.zeros(6), np.ones(6), n_objectives=2, pop_size=16, seed=11, run_dir=run_dir, progress=False)
    else:
        e = NSGA2.resume(run_dir, progress=False)
    r = e.run(evaluate, generations=12)
    print(json.dumps({"F": r.best_fitness.tolist(), "X": r.best_genome.tolist(), "gen": r.generations}))
    """
)


def test_resume_after_kill_9_gives_the_same_result(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    ref = subprocess.run([sys.executable, str(script), str(tmp_path / "ref"), str(tmp_path / "ref.log"), "start", "0"],
                         capture_output=True, text=True, check=True)
    expected = json.loads(ref.stdout)

    run_dir, log = tmp_path / "run", tmp_path / "run.log"
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir), str(log), "start", "0.05"])
    deadline = time.time() + 60
    while time.time() < deadline:
        hist = run_dir / "history.jsonl"
        if hist.exists() and len(hist.read_text().splitlines()) >= 4:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = log.read_text().splitlines()
    with EvaluationCache(run_dir) as cache:
        committed = len(cache)
    assert 0 < committed < 16 * 12

    resumed = subprocess.run([sys.executable, str(script), str(run_dir), str(log), "resume", "0"],
                             capture_output=True, text=True, check=True)
    got = json.loads(resumed.stdout)
    assert got == expected
    after = log.read_text().splitlines()[len(before):]
    ref_log = (tmp_path / "ref.log").read_text().splitlines()
    # Nothing committed before the kill is evaluated again: at most the batch in flight (16
    # candidates) is redone, so the two processes together evaluate at most 16 more than one run.
    assert len(set(before) & set(after)) <= 16
    assert len(before) + len(after) <= len(ref_log) + 16
    hist = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["generation"] for h in hist] == list(range(1, 13))


# ---- bad input -----------------------------------------------------------------------------------


def test_bad_configuration_raises_clearly():
    with pytest.raises(ConfigError, match="lower > upper at gene 1"):
        NSGA2([0.0, 1.0], [1.0, 0.5], n_objectives=2)
    with pytest.raises(ConfigError, match="stages"):
        OnePlusLambda(np.zeros(4, np.int32), LevelSwitch(), n_offspring=4, stages=[(2, 10), (3, 20)])
    with pytest.raises(ConfigError, match="mutation"):
        OnePlusLambda(np.zeros(4, np.int32), mutation=lambda x: x)
    with pytest.raises(ConfigError, match="at least one of"):
        GA(np.zeros(3), np.ones(3), progress=False).run(lambda X: X.sum(1))
    with pytest.raises(ValueError, match="budget|switch"):  # all genes fixed: no level switch exists
        OnePlusLambda(np.zeros(4, np.int32), LevelSwitch(), lower=0, upper=0, progress=False).run(
            lambda X: X.sum(1), generations=1)


@pytest.mark.parametrize("kw", [{"pop_size": math.inf}, {"pop_size": 2**62}, {"pop_size": 2**64},
                                {"pop_size": MAX_POPULATION + 1}, {"n_offspring": 2**62}, {"n_offspring": math.inf},
                                {"n_offspring": 2.5}, {"n_objectives": math.inf}, {"n_objectives": math.nan},
                                {"n_objectives": 0}, {"pop_size": True}, {"n_offspring": "3"}])
def test_nsga2_integer_hyperparameters_are_range_checked(kw):
    """Refused at construction (before any loop or allocation sized by them), naming the parameter:
    n_offspring=2**62 used to hang, inf to raise OverflowError."""
    name = next(iter(kw))
    with pytest.raises((ConfigError, TypeError), match=name):
        NSGA2(np.zeros(3), np.ones(3), **{"n_objectives": 2, **kw}, progress=False)
    # an integral float is still an int
    e = NSGA2(np.zeros(3), np.ones(3), n_objectives=2.0, pop_size=4.0, n_offspring=2.0, progress=False)
    assert (e.n_objectives, e.pop_size, e.n_offspring) == (2, 4, 2)


@pytest.mark.parametrize("make", [
    lambda v: GA(np.zeros(3), np.ones(3), pop_size=v, progress=False),
    lambda v: GA(np.zeros(3), np.ones(3), pop_size=10, elitism=v, progress=False),
    lambda v: GA(np.zeros(3), np.ones(3), pop_size=10, tournament_size=v, progress=False),
    lambda v: OnePlusLambda(np.zeros(3, np.int32), PointMutation(), n_offspring=v, progress=False),
    lambda v: LevelSwitch(max_switches=v),
])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e308, 2**64, 2.5, -1])
def test_integer_hyperparameters_never_overflow(make, value):
    with pytest.raises(ConfigError, match="must"):
        make(value)


def test_operators_must_be_operator_objects():
    """A plain function cannot be pickled into the checkpoint: refused at construction."""
    for kw in ({"crossover": lambda A, B, *a, **k: (A, B)}, {"mutation": lambda X, *a, **k: X}):
        with pytest.raises(TypeError, match=next(iter(kw))):
            NSGA2(np.zeros(3), np.ones(3), n_objectives=2, pop_size=4, progress=False, **kw)
        with pytest.raises(TypeError, match=next(iter(kw))):
            GA(np.zeros(3), np.ones(3), pop_size=4, progress=False, **kw)


@pytest.mark.parametrize("content", [b"\x00garbage\xff" * 10, b"", b"not a pickle", "truncated"])
def test_resume_from_a_corrupt_checkpoint_names_the_file(tmp_path, content):
    run_dir = tmp_path / "run"
    e = OnePlusLambda(np.zeros(6, np.int32), PointMutation(), lower=0, upper=1, n_offspring=4, run_dir=run_dir,
                      progress=False)
    e.run(one_max, generations=2)
    e.close()
    path = run_dir / CHECKPOINT
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if content == "truncated" else content)
    with pytest.raises(CorruptCheckpointError, match=r"checkpoint\.pkl is not a readable evoforge checkpoint"):
        OnePlusLambda.resume(run_dir)
    assert isinstance(CorruptCheckpointError("x"), ValueError)
    path.write_bytes(good)  # the intact file still resumes
    OnePlusLambda.resume(run_dir).close()


# A tiny genome space ({0, 1}**3): once the search has seen it all, every candidate is a cache hit
# and no evaluation is ever counted again.
_CONVERGING = {
    "GA": lambda **kw: GA(np.zeros(3, np.int32), np.ones(3, np.int32), pop_size=4, progress=False, **kw),
    "OnePlusLambda": lambda **kw: OnePlusLambda(np.zeros(3, np.int32), PointMutation(prob=0.5), lower=0, upper=1,
                                                n_offspring=4, progress=False, **kw),
}


@pytest.mark.parametrize("name", sorted(_CONVERGING))
def test_run_stops_when_every_candidate_is_cached(name):
    """max_evaluations counts evaluator calls, which a converged search no longer makes: run() used
    to loop forever; it now stops after stall_generations generations that evaluated nothing."""
    e = _CONVERGING[name]()
    # generations only bounds the test should the stall stop regress (it would stop on "generations")
    r = e.run(one_max, max_evaluations=1000, generations=5000)
    assert r.stopped == "stalled"
    assert r.evaluations <= 8 < 1000
    assert e.stalled_generations == 100
    evaluated = np.diff([0] + [h["evaluations"] for h in r.history])  # per generation
    assert (evaluated[-100:] == 0).all() and evaluated[-101] > 0  # stopped at the 100th in a row
    # target-only runs (a target never reached: 3 genes give at best -3) stop the same way
    e = _CONVERGING[name]()
    r = e.run(one_max, target=-10.0, stall_generations=5)
    assert r.stopped == "stalled" and e.stalled_generations == 5
    # None: only the other limits stop the run
    e = _CONVERGING[name]()
    r = e.run(one_max, generations=120, stall_generations=None)
    assert r.stopped == "generations" and r.generations == 120 and e.stalled_generations > 100
    with pytest.raises(ConfigError, match="stall_generations"):
        e.run(one_max, generations=1, stall_generations=0)


def test_stall_count_survives_resume(tmp_path):
    """The stall count is part of the checkpoint: a resumed run stops where an uninterrupted one does."""
    ref = _CONVERGING["GA"]().run(one_max, max_evaluations=1000, stall_generations=20)
    e = _CONVERGING["GA"](run_dir=tmp_path / "run")
    e.run(one_max, generations=ref.generations - 10, stall_generations=None)
    e.close()
    e = GA.resume(tmp_path / "run", progress=False)
    r = e.run(one_max, max_evaluations=1000, stall_generations=20)
    e.close()
    assert (r.stopped, r.generations, r.evaluations) == ("stalled", ref.generations, ref.evaluations)


def test_nan_fitness_names_the_candidate():
    def bad(X):
        f = X.sum(axis=1).astype(float)
        f[2] = np.nan
        return f

    e = GA(np.zeros(3), np.ones(3), pop_size=6, progress=False)
    with pytest.raises(ValueError, match="candidate 2 is not finite"):
        e.run(bad, generations=2)

    # Cached candidates are not passed to the evaluator; the error still names the row of the
    # batch that was asked, not of the sub-batch that was evaluated.
    e = OnePlusLambda(np.zeros(6, np.int32), PointMutation(prob=0.5), lower=0, upper=1, n_offspring=3, seed=0,
                      progress=False)
    batch = e.ask()
    assert len({g.tobytes() for g in batch.genomes}) == 4
    e._cache.put(e.key(batch.genomes[0], batch), 0.0)

    def bad_last(X):
        assert len(X) == 3
        f = one_max(X)
        f[-1] = np.inf
        return f

    with pytest.raises(ValueError, match="candidate 3 is not finite"):
        e.evaluate(batch, bad_last)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        GA(np.zeros(3), np.ones(3), pop_size=6, progress=False).run(lambda X: X, generations=1)


def test_ask_tell_by_hand_equals_run():
    e1 = GA(np.zeros(5), np.ones(5), pop_size=10, seed=2, progress=False)
    r1 = e1.run(lambda X: (X**2).sum(1), generations=5)
    e2 = GA(np.zeros(5), np.ones(5), pop_size=10, seed=2, progress=False)
    for _ in range(5):
        b = e2.ask()
        assert e2.ask() is b
        e2.tell(b, (b.genomes**2).sum(1))
    np.testing.assert_array_equal(e2.best[0], r1.best_genome)
    with pytest.raises(ValueError, match="last ask"):
        e2.tell(e2.ask().__class__(np.zeros((10, 5))), np.zeros(10))
