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


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def _front():
    from evoforge import pareto

    F = np.random.default_rng(0).random((8, 2))
    return F, pareto.nondominated_rank(F)


def test_pareto_front_validates_shapes_up_front():
    """Mismatched F and ranks used to fail with an IndexError inside the drawing loop."""
    F, r = _front()
    with pytest.raises(ValueError, match="0 rows"):
        plot.pareto_front(np.empty((0, 2)), ranks=r)
    with pytest.raises(ValueError, match=r"ranks must have shape \(7,\)"):
        plot.pareto_front(F[:7], ranks=r)
    with pytest.raises(ValueError, match=r"ranks must have shape \(8,\)"):
        plot.pareto_front(F, ranks=r[None, :])
    with pytest.raises(TypeError, match="ranks must hold integers"):
        plot.pareto_front(F, ranks=r + 0.5)
    with pytest.raises(ValueError, match="max_fronts"):
        plot.pareto_front(F, ranks=r, max_fronts=0)
    # a huge max_fronts or rank draws the fronts present, without looping over empty ones
    ax = plot.pareto_front(F, ranks=np.where(r == 0, 0, 2**40), max_fronts=2**62)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["front 0", f"front {2**40}"]


def test_pareto_front_refuses_values_matplotlib_cannot_scale():
    F, r = _front()
    F[0, 0], F[1, 0] = 1e308, -1e308  # matplotlib's own arithmetic overflowed ("arange: cannot compute length")
    with pytest.raises(ValueError, match="beyond 1e300"):
        plot.pareto_front(F, ranks=r)
    F[0, 0], F[1, 0] = np.inf, np.nan  # non-finite points are simply not drawn
    plot.pareto_front(F, ranks=r)


@pytest.mark.parametrize("draw", [
    lambda save: plot.pareto_front(_front()[0], save=save),
    lambda save: plot.layer_levels([0.5, 0.4], save=save),
    lambda save: plot.convergence([{"generation": 1, "evaluations": 3, "best_fitness": 1.0}], save=save),
])
def test_bad_save_paths_are_refused_before_drawing(tmp_path, draw):
    """These failed inside PIL (AttributeError for an int, its own errors for the paths)."""
    (tmp_path / "afile.txt").write_text("x")
    with pytest.raises(TypeError, match="save must be"):
        draw(3)
    with pytest.raises(ValueError, match="NUL byte"):
        draw(str(tmp_path / "a\0b.png"))
    with pytest.raises(NotADirectoryError, match="not a directory"):
        draw(tmp_path / "afile.txt" / "x.png")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        draw(tmp_path / "missing" / "x.png")
    draw(tmp_path / "ok.png")
    assert (tmp_path / "ok.png").stat().st_size > 1000
