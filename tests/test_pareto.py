"""evoforge.pareto against brute-force float64 references and moocore."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import evoforge
import reference
from evoforge import pareto
from evoforge.bench.pareto import point_set

from strategies import CV_VALUES, objective_sets


@settings(max_examples=400, deadline=None)
@given(objective_sets())
def test_rank_matches_brute_force(F):
    got = pareto.nondominated_rank(F)
    assert got.dtype == np.int32 and got.shape == (len(F),)
    np.testing.assert_array_equal(got, reference.nondominated_rank(F))


@settings(max_examples=300, deadline=None)
@given(objective_sets(max_n=40, max_m=4), st.data())
def test_constrained_rank_matches_brute_force(F, data):
    cv = data.draw(arrays(np.float64, len(F), elements=st.sampled_from(CV_VALUES)))
    got = pareto.nondominated_rank(F, constraint_violation=cv)
    np.testing.assert_array_equal(got, reference.nondominated_rank(F, cv))


def test_negative_zero_equals_zero():
    F = np.array([[0.0, 1.0, 2.0], [-0.0, 1.0, 2.0], [1.0, -0.0, 2.0], [-0.0, 1.0, 2.5]])
    np.testing.assert_array_equal(pareto.nondominated_rank(F), [0, 0, 0, 1])


def test_empty_and_single():
    for m in (1, 2, 3, 5):
        assert pareto.nondominated_rank(np.zeros((0, m))).shape == (0,)
        np.testing.assert_array_equal(pareto.nondominated_rank(np.ones((1, m))), [0])


def _point_set(kind: str, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "integers":
        return rng.integers(0, 5, size=(n, m)).astype(np.float64)
    return point_set(kind, n, m, seed=int(rng.integers(2**31)))


@pytest.mark.parametrize("kind", ["uniform", "simplex", "correlated", "integers"])
@pytest.mark.parametrize("m", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("n", [1000, 20000])
def test_rank_matches_moocore(kind, m, n):
    moocore = pytest.importorskip("moocore")
    rng = np.random.default_rng(1000 * m + n)
    F = _point_set(kind, n, m, rng)
    np.testing.assert_array_equal(pareto.nondominated_rank(F), moocore.pareto_rank(F))
    F32 = F.astype(np.float32)
    np.testing.assert_array_equal(pareto.nondominated_rank(F32), moocore.pareto_rank(F32.astype(np.float64)))


@pytest.mark.parametrize("m", [2, 3, 5])
def test_same_result_on_any_thread_count(m):
    F = _point_set("uniform", 60000, m, np.random.default_rng(m))
    try:
        evoforge.set_num_threads(1)
        one = pareto.nondominated_rank(F)
        evoforge.set_num_threads(2)
        two = pareto.nondominated_rank(F)
        evoforge.set_num_threads(3)
        three = pareto.nondominated_rank(F)
    finally:
        evoforge.set_num_threads(0)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_array_equal(one, three)


def test_torch_cpu_tensor_in_torch_out():
    torch = pytest.importorskip("torch")
    F = torch.rand(500, 3, dtype=torch.float64)
    got = pareto.nondominated_rank(F)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int32
    np.testing.assert_array_equal(got.numpy(), reference.nondominated_rank(F.numpy()))


def test_strided_and_integer_input():
    F = np.random.default_rng(0).integers(0, 4, size=(300, 6))
    view = F[::2, ::2]  # non-contiguous int64 view
    np.testing.assert_array_equal(pareto.nondominated_rank(view), reference.nondominated_rank(view))


# ---- crowding distance, selection, hypervolume -------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(objective_sets(max_n=40, max_m=4))
def test_crowding_matches_reference(F):
    ranks = pareto.nondominated_rank(F)
    np.testing.assert_allclose(
        pareto.crowding_distance(F, ranks), reference.crowding_distance(F, ranks), rtol=1e-12, atol=0
    )


def test_crowding_extremes_are_infinite():
    F = np.array([[0.0, 3.0], [1.0, 2.0], [2.0, 1.0], [3.0, 0.0]])
    cd = pareto.crowding_distance(F, np.zeros(4, dtype=np.int32))
    assert np.isinf(cd[[0, 3]]).all()
    np.testing.assert_allclose(cd[1:3], [2 * (2 / 3), 2 * (2 / 3)])


@settings(max_examples=100, deadline=None)
@given(objective_sets(max_n=40, max_m=3), st.data())
def test_crowding_with_sparse_huge_labels(F, data):
    # Labels are only names of fronts: any labels, however large, give the reference's distances,
    # in memory set by the number of fronts (2**31 - 1 once allocated 16 GiB and crashed).
    n = len(F)
    labels = np.array(data.draw(st.lists(st.sampled_from([0, 5, 77, 2**20, 2**31 - 1]), min_size=n, max_size=n)),
                      dtype=np.int64)
    np.testing.assert_allclose(pareto.crowding_distance(F, labels), reference.crowding_distance(F, labels),
                               rtol=1e-12, atol=0)


def test_crowding_huge_label_is_cheap():
    F = np.random.default_rng(0).random((4, 2))
    cd = pareto.crowding_distance(F, np.array([0, 2**31 - 1, 0, 5]))
    np.testing.assert_array_equal(cd, np.full(4, np.inf))  # fronts of one or two points


@settings(max_examples=150, deadline=None)
@given(objective_sets(max_n=40, max_m=3), st.data())
def test_select_is_rank_then_crowding(F, data):
    n = len(F)
    k = data.draw(st.integers(0, n))
    got = pareto.select(F, k)
    ranks = reference.nondominated_rank(F)
    cd = reference.crowding_distance(F, ranks)
    expect = np.lexsort((np.arange(n), -cd, ranks))[:k]
    np.testing.assert_array_equal(got, expect)


def test_select_prefers_feasible():
    F = np.array([[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]])
    cv = np.array([1.0, 0.0, 0.5])
    np.testing.assert_array_equal(pareto.select(F, 3, constraint_violation=cv), [1, 2, 0])


def test_select_agrees_with_pymoo_survival_sizes():
    """The selected set has pymoo's front structure: every front before the last is taken whole."""
    F = _point_set("uniform", 400, 3, np.random.default_rng(5))
    sel = pareto.select(F, 150)
    ranks = pareto.nondominated_rank(F)
    last = ranks[sel].max()
    assert set(np.flatnonzero(ranks < last)) <= set(sel.tolist())


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_2d_matches_sweep(seed):
    rng = np.random.default_rng(seed)
    F = rng.random((200, 2))
    ref = np.array([1.1, 1.2])
    assert pareto.hypervolume(F, ref) == pytest.approx(reference.hypervolume_2d(F, ref), rel=1e-12)


def test_hypervolume_3d_box():
    # One point: a box; two points: inclusion-exclusion.
    assert pareto.hypervolume([[0.0, 0.0, 0.0]], [1, 2, 3]) == pytest.approx(6.0)
    hv = pareto.hypervolume([[0.0, 0.5, 0.5], [0.5, 0.0, 0.0]], [1, 1, 1])
    assert hv == pytest.approx(0.25 + 0.5 - 0.5 * 0.5 * 0.5)


# ---- bad input -------------------------------------------------------------------------------


def test_nan_names_first_bad_row():
    F = np.zeros((10, 3))
    F[7, 1] = np.nan
    F[8, 0] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        pareto.nondominated_rank(F)
    with pytest.raises(ValueError, match="constraint_violation holds NaN in row 2"):
        pareto.nondominated_rank(np.zeros((4, 2)), constraint_violation=[0, 0, np.nan, 1])


@pytest.mark.parametrize(
    "bad, err, match",
    [
        (np.zeros(5), ValueError, "2-D"),
        (np.zeros((2, 3, 4)), ValueError, "2-D"),
        (np.zeros((5, 0)), ValueError, "at least one objective"),
        (np.array([[object(), 1.0]], dtype=object), TypeError, "dtype object"),
        (np.array([["a", "b"]]), TypeError, "dtype <U1"),
        (np.zeros((3, 2), dtype=np.complex128), TypeError, "complex128"),
        ([[1.0, 2.0], [3.0]], TypeError, "numeric array"),
    ],
)
def test_bad_objectives(bad, err, match):
    with pytest.raises(err, match=match):
        pareto.nondominated_rank(bad)


def test_bad_constraints_and_arguments():
    F = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"constraint_violation must have shape \[4\]"):
        pareto.nondominated_rank(F, constraint_violation=np.zeros(3))
    with pytest.raises(ValueError, match=r"ranks must have shape \[4\]"):
        pareto.crowding_distance(F, np.zeros(5, dtype=np.int32))
    with pytest.raises(ValueError, match="ranks must lie"):
        pareto.crowding_distance(F, -np.ones(4, dtype=np.int32))
    with pytest.raises(TypeError, match="ranks must be integers"):
        pareto.crowding_distance(F, np.zeros(4))
    with pytest.raises(ValueError, match="k must lie"):
        pareto.select(F, 5)
    with pytest.raises(TypeError, match="k must be an int"):
        pareto.select(F, 2.0)
    with pytest.raises(ValueError, match=r"ref must have shape \[2\]"):
        pareto.hypervolume(F, [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        pareto.hypervolume([[np.nan, 0.0]], [1.0, 1.0])


def test_native_layer_rejects_wrong_dtype_without_crashing():
    from evoforge._native import core

    with pytest.raises(TypeError):
        core.nondominated_rank_f64(np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        core.nondominated_rank_f64(np.zeros(3))
