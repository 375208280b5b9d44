"""OnePlusLambda with several starting points: the best of them (on the last stage's fidelity)
becomes the first parent, before any offspring is made."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge.errors import ConfigError
from evoforge.search import LevelSwitch, OnePlusLambda, PointMutation


def _sphere(target):
    def f(genomes, batch):
        return ((np.asarray(genomes, dtype=np.float64) - target) ** 2).sum(axis=1)
    return f


class _Recorder:
    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def evaluate(self, genomes, batch):
        self.calls.append((np.array(genomes), batch.fidelity, batch.seed, batch.stage))
        return self.fn(genomes, batch)


@pytest.mark.parametrize("seed", range(5))
def test_the_best_start_is_the_first_parent(seed):
    rng = np.random.default_rng(seed)
    L = 12
    target = rng.integers(0, 7, L)
    starts = rng.integers(0, 7, (5, L)).astype(np.int64)
    ev = _Recorder(_sphere(target))
    e = OnePlusLambda(starts, PointMutation(), lower=0, upper=6, n_offspring=4, stages=[(2, 64), (1, 256)],
                      seed=seed, progress=False)
    r = e.run(ev, generations=1)
    first = ev.calls[0]
    np.testing.assert_array_equal(first[0], starts)  # every start, before any offspring
    assert first[1] == 256 and first[3] == 2  # the last stage's fidelity, a stage index of its own
    brute = int(np.argmin(((starts - target) ** 2).sum(axis=1)))
    assert e.start_index == brute and r.history[0]["start"] == brute
    # Offspring of generation 0 are mutants of the chosen start; the parent joins the last stage.
    assert (ev.calls[-1][0] == starts[brute]).all(axis=1).any()
    assert r.best_fitness <= ((starts[brute] - target) ** 2).sum()


def test_ties_keep_the_earlier_start_and_one_row_equals_1d():
    target = np.zeros(6)
    starts = np.array([[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]])  # equal fitness
    e = OnePlusLambda(starts, LevelSwitch(), lower=0, upper=3, n_offspring=3, seed=1, progress=False)
    e.run(_Recorder(_sphere(target)), generations=1)
    assert e.start_index == 0
    a = OnePlusLambda(starts[:1], LevelSwitch(), lower=0, upper=3, n_offspring=3, seed=1, progress=False)
    b = OnePlusLambda(starts[0], LevelSwitch(), lower=0, upper=3, n_offspring=3, seed=1, progress=False)
    ra, rb = a.run(_Recorder(_sphere(target)), generations=4), b.run(_Recorder(_sphere(target)), generations=4)
    np.testing.assert_array_equal(ra.best_genome, rb.best_genome)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in ra.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in rb.history]
    assert "start" not in ra.history[0]


def test_starting_from_the_best_is_never_worse_than_it():
    # A deceptive start first: a search from row 0 alone ends worse than row 1 already is.
    L = 40
    target = np.full(L, 5)
    starts = np.stack([np.zeros(L, np.int64), np.full(L, 4)])
    ev = _Recorder(_sphere(target))
    r = OnePlusLambda(starts, PointMutation(), lower=0, upper=6, n_offspring=2, seed=0,
                      progress=False).run(ev, generations=3)
    assert r.best_fitness <= ((starts[1] - target) ** 2).sum()


def test_resume_after_the_start_choice_gives_the_same_result(tmp_path):
    rng = np.random.default_rng(7)
    target, starts = rng.integers(0, 7, 10), rng.integers(0, 7, (3, 10))
    whole = OnePlusLambda(starts, PointMutation(), lower=0, upper=6, n_offspring=4, seed=3,
                          progress=False).run(_Recorder(_sphere(target)), generations=6)
    e = OnePlusLambda(starts, PointMutation(), lower=0, upper=6, n_offspring=4, seed=3, run_dir=tmp_path,
                      progress=False)
    e.run(_Recorder(_sphere(target)), generations=2)
    e.close()
    again = OnePlusLambda.resume(tmp_path, progress=False)
    r = again.run(_Recorder(_sphere(target)), generations=6)
    np.testing.assert_array_equal(r.best_genome, whole.best_genome)
    assert r.best_fitness == whole.best_fitness


@pytest.mark.parametrize("bad", [np.zeros((0, 4)), np.zeros((2, 0)), np.zeros((2, 2, 2))])
def test_bad_starts_are_refused(bad):
    with pytest.raises(ConfigError, match="initial"):
        OnePlusLambda(bad, PointMutation(), progress=False)
