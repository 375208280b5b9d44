"""The benchmarks' common scoring of fronts."""

from __future__ import annotations

import numpy as np
import pytest

from evoforge.bench import _harness


def _staircase_area(F, ref):
    """Area dominated by the points F [P, 2] inside the box [0, ref], by a sweep over sorted x."""
    F = F[(F < ref).all(axis=1)]
    area, best_y = 0.0, ref[1]
    xs = np.sort(np.unique(np.r_[F[:, 0], ref[0]]))
    for x0, x1 in zip(xs[:-1], xs[1:]):
        ys = F[F[:, 0] <= x0, 1]
        if len(ys):
            best_y = min(best_y, ys.min())
            area += (x1 - x0) * (ref[1] - best_y)
    return area


@pytest.mark.parametrize("seed", range(5))
def test_boxed_hypervolume_is_the_area_in_the_uniform_box(seed):
    rng = np.random.default_rng(seed)
    uniform = rng.uniform(1, 10, size=(6, 2))
    ref = uniform.max(axis=0) * 1.1
    F = rng.uniform(0.5, 12, size=(9, 2))
    got = _harness.boxed_hypervolume(F, uniform)
    assert got == pytest.approx(_staircase_area(F, ref) / (ref[0] * ref[1]), rel=1e-9)
    # a point beyond the box (an all but empty model) changes nothing; one inside can only add
    far = np.array([[0.01, 50 * ref[1]], [50 * ref[0], 0.01]])
    assert _harness.boxed_hypervolume(np.r_[F, far], uniform) == pytest.approx(got, rel=1e-12)
    assert _harness.boxed_hypervolume(np.r_[F, [[0.1, 0.1]]], uniform) >= got
    assert _harness.boxed_hypervolume(far, uniform) == 0.0
