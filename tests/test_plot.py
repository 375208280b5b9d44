"""evoforge.plot draws what the history holds."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from evoforge import plot  # noqa: E402
from evoforge.search import NSGA2  # noqa: E402
from evoforge.search.problems import zdt1  # noqa: E402


def test_convergence_and_front_plots_from_a_run_directory(tmp_path):
    e = NSGA2(np.zeros(8), np.ones(8), n_objectives=2, pop_size=20, ref_point=[1.1, 1.1], seed=0,
              run_dir=tmp_path / "run", progress=False)
    r = e.run(zdt1, generations=6)
    e.close()
    hist = plot.load_history(tmp_path / "run")
    assert [h["generation"] for h in hist] == list(range(1, 7))
    ax = plot.convergence(tmp_path / "run", key="hypervolume", save=tmp_path / "hv.png")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [h["hypervolume"] for h in r.history])
    assert (tmp_path / "hv.png").stat().st_size > 1000
    ax = plot.pareto_front(e.F, save=tmp_path / "front.png")
    assert len(ax.collections) >= 1 and (tmp_path / "front.png").stat().st_size > 1000


def test_plot_errors():
    with pytest.raises(FileNotFoundError, match="no history file"):
        plot.load_history("/nonexistent/run")
    with pytest.raises(KeyError, match="hypervolume"):
        plot.convergence([{"generation": 1, "evaluations": 3, "best_fitness": 1.0}], key="hypervolume")
    with pytest.raises(ValueError, match=r"shape \[N, 2\]"):
        plot.pareto_front(np.zeros((4, 3)))
