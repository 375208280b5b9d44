"""CMAES: the cma library through the engine interface. It reaches a sphere's optimum, is a pure
function of its seed, resumes from a checkpoint to the uninterrupted result, stays in its bounds,
runs through a process pool in the synchronous and the asynchronous mode (every evaluation
accounted for, one strategy update per lambda results), and refuses bad settings."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from evoforge.errors import ConfigError
from evoforge.evaluate import InProcess, ProcessPool
from evoforge.search import CMAES

pytest.importorskip("cma")


def sphere(X: np.ndarray, centre: float = 0.3) -> np.ndarray:
    return np.sum((np.asarray(X, dtype=np.float64) - centre) ** 2, axis=1)


def make_sphere():  # a process pool's factory (module level: picklable)
    return sphere


def test_finds_the_optimum_and_is_a_pure_function_of_its_seed():
    runs = [CMAES(np.full(5, 0.8), 0.3, lower=0, upper=1, seed=s, progress=False).run(sphere, generations=60)
            for s in (4, 4, 5)]
    assert runs[0].best_fitness < 1e-6
    np.testing.assert_allclose(runs[0].best_genome, 0.3, atol=1e-3)
    assert runs[0].best_fitness == runs[1].best_fitness and runs[0].best_fitness != runs[2].best_fitness


def test_resume_gives_the_uninterrupted_run(tmp_path):
    e = CMAES(np.full(6, 0.5), 0.2, lower=0, upper=1, seed=3, run_dir=tmp_path, progress=False)
    e.run(sphere, generations=4)
    resumed = CMAES.resume(tmp_path, progress=False).run(sphere, generations=10)
    whole = CMAES(np.full(6, 0.5), 0.2, lower=0, upper=1, seed=3, progress=False).run(sphere, generations=10)
    assert [h["best_fitness"] for h in resumed.history] == [h["best_fitness"] for h in whole.history]
    np.testing.assert_array_equal(resumed.best_genome, whole.best_genome)


def test_asked_genomes_stay_in_bounds_and_the_global_generator_is_untouched():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    e = CMAES(np.full(4, 0.9), 0.9, lower=[0, 0, 0.5, 0.5], upper=[1, 1, 1, 2], seed=0, progress=False)
    for _ in range(5):
        b = e.ask()
        assert ((b.genomes >= e.lower) & (b.genomes <= e.upper)).all()
        e.tell(b, sphere(b.genomes))
    assert np.array_equal(np.random.get_state()[1], before)


def test_process_pool_sync_equals_in_process():
    with ProcessPool(make_sphere, workers=2) as pool:
        a = CMAES(np.full(5, 0.6), 0.2, lower=0, upper=1, seed=1, progress=False).run(pool, generations=8)
    b = CMAES(np.full(5, 0.6), 0.2, lower=0, upper=1, seed=1, progress=False).run(sphere, generations=8)
    assert a.best_fitness == b.best_fitness


@pytest.mark.parametrize("workers", [1, 2])
def test_asynchronous_mode_accounts_for_every_evaluation(workers, tmp_path):
    with ProcessPool(make_sphere, workers=workers, chunk_size=1, depth=1) as pool:
        e = CMAES(np.full(5, 0.8), 0.3, lower=0, upper=1, pop_size=8, seed=2, run_dir=tmp_path, progress=False)
        r = e.run_async(pool, max_evaluations=80)
    assert r.evaluations == 80 and r.generations == 10
    assert [h["evaluations"] for h in r.history] == list(range(8, 81, 8))
    assert r.best_fitness < sphere(np.full((1, 5), 0.8))[0]
    assert r.best_fitness == pytest.approx(float(sphere(r.best_genome[None])[0]))
    # a second call continues (the budget counts what was done)
    r2 = CMAES.resume(tmp_path, progress=False).run_async(InProcess(sphere), max_evaluations=96)
    assert r2.evaluations == 96


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="sigma0"):
        CMAES(np.zeros(3), 0.0)
    with pytest.raises(ConfigError, match="x0"):
        CMAES(np.array([np.nan]), 0.1)
    with pytest.raises(ConfigError, match="within the bounds"):
        CMAES(np.full(3, 2.0), 0.1, lower=0, upper=1)
    with pytest.raises(ConfigError, match="lower must be below"):
        CMAES(np.zeros(3), 0.1, lower=1, upper=0)
    with pytest.raises(ConfigError, match="pop_size"):
        CMAES(np.zeros(3), 0.1, pop_size=1)
    with pytest.raises(ConfigError, match="evaluate_stream"):
        CMAES(np.zeros(3), 0.1, progress=False).run_async(sphere, max_evaluations=4)
    with pytest.raises(ConfigError, match="max_evaluations"):
        CMAES(np.zeros(3), 0.1, progress=False).run_async(InProcess(sphere), max_evaluations=-1)
