"""Issue 12 ("Reliability"), items 7-10: edge inputs get the function's own result or a clear error
(the right type, a message naming the problem) instead of a stray TypeError, IndexError or a NumPy
reshape error, and non-finite values are rejected alike across modules."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from evoforge import kl, mutation, pareto, selection, solvers
from evoforge.errors import ConfigError
from evoforge.search import GA, NSGA2, OnePlusLambda, PointMutation

README = Path(__file__).resolve().parents[1] / "README.md"


# ---- 7: engines asked to do nothing ---------------------------------------------------------------


def _engines():
    return {
        "GA": GA(np.zeros(3), np.ones(3), pop_size=4, progress=False),
        "NSGA2": NSGA2(np.zeros(3), np.ones(3), n_objectives=2, pop_size=4, progress=False),
        "OnePlusLambda": OnePlusLambda(np.zeros(3, np.int32), PointMutation(), lower=0, upper=3, progress=False),
    }


@pytest.mark.parametrize("name", ["GA", "NSGA2", "OnePlusLambda"])
@pytest.mark.parametrize("limit", [{"generations": 0}, {"max_evaluations": 0}])
def test_run_with_nothing_to_do_returns_no_best(name, limit):
    engine = _engines()[name]

    def never(genomes):
        raise AssertionError("nothing should be evaluated")

    r = engine.run(never, **limit)
    assert (r.generations, r.evaluations, r.requested) == (0, 0, 0)
    if name == "NSGA2":  # an empty first front, shaped like a real one
        assert r.best_genome.shape == (0, 3) and r.best_fitness.shape == (0, 2)
    else:
        assert r.best_fitness is None
        if name == "GA":
            assert r.best_genome is None
        else:  # the initial parent is known without evaluating it
            np.testing.assert_array_equal(r.best_genome, np.zeros(3))


@pytest.mark.parametrize("limit", [{"generations": -1}, {"max_evaluations": -5}, {"generations": 2.5},
                                   {"generations": True}])
def test_run_rejects_meaningless_limits(limit):
    for engine in _engines().values():
        with pytest.raises(ConfigError, match=f"{next(iter(limit))} must be an int >= 0"):
            engine.run(lambda g: np.zeros(len(g)), **limit)


# ---- 8: empty inputs get the function's own handling -----------------------------------------------


def test_hypervolume_of_empty_front():
    assert pareto.hypervolume(np.empty((0, 2)), [1.0, 1.0]) == 0.0
    with pytest.raises(ValueError, match="ref holds NaN"):
        pareto.hypervolume(np.empty((0, 2)), [1.0, np.nan])


@pytest.mark.parametrize("fitness", [[], np.empty((0, 2)), np.empty((0, 0)), np.empty((3, 0))])
def test_tournament_on_empty_fitness(fitness):
    with pytest.raises(ValueError, match="at least one candidate and one column"):
        selection.tournament(fitness, 2, seed=0)


# ---- 9: non-finite values ---------------------------------------------------------------------------


@pytest.fixture
def teacher_logits():
    return np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)


@pytest.mark.parametrize("top_k,tail", [(None, True), (3, True), (3, False)])
@pytest.mark.parametrize("value,word", [(np.inf, r"\+inf"), (np.nan, "NaN")])
@pytest.mark.parametrize("bf16", [False, True])
def test_kl_rejects_nonfinite_student_with_any_teacher(teacher_logits, top_k, tail, value, word, bf16):
    teacher = kl.teacher_targets(teacher_logits, top_k=top_k, tail=tail)
    outside = int(np.argsort(teacher_logits[1])[0])  # the smallest logit: outside the teacher's top 3
    for col in (int(teacher.pivot[1]), outside):
        s = teacher_logits.copy()
        s[1, col] = value
        student = torch.from_numpy(s).bfloat16() if bf16 else s
        if col == outside and top_k is not None and not tail:  # never read: the same KL as without it
            clean = torch.from_numpy(teacher_logits).bfloat16() if bf16 else teacher_logits
            np.testing.assert_array_equal(kl.kl_divergence(teacher, student, reduction="none"),
                                          kl.kl_divergence(teacher, clean, reduction="none"))
            continue
        with pytest.raises(ValueError, match=rf"student logits hold {word} at row 1 \(candidate 0, token 1\), "
                                             rf"column {col}"):
            kl.kl_divergence(teacher, student)


@pytest.mark.parametrize("top_k,tail", [(None, True), (3, True), (3, False)])
def test_kl_still_allows_masked_student_logits(teacher_logits, top_k, tail):
    teacher = kl.teacher_targets(teacher_logits, top_k=top_k, tail=tail)
    s = teacher_logits.copy()
    s[1, int(teacher.pivot[1])] = -np.inf  # the teacher's favourite masked: KL is +inf, not an error
    out = kl.kl_divergence(teacher, s, reduction="none")
    assert out[1] == np.inf and np.isfinite(out[[0, 2]]).all()


@pytest.mark.parametrize("value,word", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "-inf")])
@pytest.mark.parametrize("bounds", [{}, {"lower": -1.0, "upper": 1.0}])
def test_gaussian_rejects_nonfinite_genes(value, word, bounds):
    x = np.zeros((2, 3))
    x[1, 2] = value
    for xx in (x, x.astype(np.float32), torch.from_numpy(x)):
        with pytest.raises(ValueError, match=f"x holds {word} at row 1, gene 2"):
            mutation.gaussian(xx, 0.1, seed=0, **bounds)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_hessian_rejects_nonfinite_inputs(value):
    X = np.ones((2, 3, 4))
    X[1, 0, 2] = value  # sample row 3 of X reshaped to (n, C)
    for XX in (X, X.astype(np.float32), torch.from_numpy(X)):
        with pytest.raises(ValueError, match="X holds NaN or inf in row 3"):
            solvers.hessian(XX)


# ---- 10: layers -------------------------------------------------------------------------------------


def test_layers_reject_0d_input():
    from evoforge.layers import QuantLinear, SparseLinear

    for layer in (QuantLinear(8, 4), SparseLinear(8, 4)):
        with pytest.raises(ValueError, match=r"x must have .*8"):
            layer(torch.tensor(1.0))


@pytest.mark.parametrize("sizes,name", [((2.5, 8), "in_features"), ((8, 4.0), "out_features"),
                                        ((True, 8), "in_features"), (("8", 8), "in_features")])
def test_layers_reject_non_integer_sizes(sizes, name):
    from evoforge.layers import QuantLinear, SparseLinear

    for cls in (QuantLinear, SparseLinear):
        with pytest.raises(TypeError, match=f"{name} must be an int"):
            cls(*sizes)
    with pytest.raises(ValueError, match="in_features must be >= 1"):
        QuantLinear(0, 8)


def test_apply_rejects_bad_configs(tmp_path):
    from evoforge.compress import pack
    from evoforge.layers import apply

    model = nn.Sequential()
    (tmp_path / "notes.txt").write_text("not json {")
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe\x00\x81")
    (tmp_path / "list.json").write_text("[1, 2]")
    for name in ("notes.txt", "blob.bin"):
        with pytest.raises(ConfigError, match=f"{name}' is not a JSON compression config"):
            pack(model, tmp_path / name)
    with pytest.raises(ConfigError, match="holds a JSON list, not a compression result"):
        pack(model, str(tmp_path / "list.json"))
    for bad in (42, [42], None):
        with pytest.raises(TypeError, match=r"config must be a spec dict.*; got (int|NoneType)"):
            apply(model, bad)
        with pytest.raises(TypeError, match=r"result must be a search result.*; got (int|NoneType)"):
            pack(model, bad)


def test_readme_sparse_example_runs_on_a_dense_layer():
    from evoforge import layers  # noqa: F401  (the snippet's import)
    from evoforge.layers.sparse import prune_24

    lines = [ln.split("#")[0] for ln in README.read_text().splitlines()
             if re.match(r"(qlin|slin) = layers\.\w+Linear\.from_linear\(linear", ln)]
    assert len(lines) == 2
    torch.manual_seed(0)
    linear = nn.Linear(64, 32)
    env = {"layers": layers, "linear": linear}
    for ln in lines:
        exec(ln, env)
    slin = env["slin"]
    W = slin.to_dense()
    assert ((W.reshape(32, 16, 4) != 0).sum(-1) <= 2).all()
    assert torch.equal(W != 0, prune_24(linear.weight) != 0)  # the 2 largest |w| of every 4 kept
    assert env["qlin"](torch.ones(3, 64)).shape == slin(torch.ones(3, 64)).shape == (3, 32)
    # a weight that is 2:4 already is packed as it is
    with torch.no_grad():
        linear.weight.copy_(prune_24(linear.weight))
    assert torch.equal(layers.SparseLinear.from_linear(linear, format="2:4").to_dense(), linear.weight)


def test_values_dtype_takes_a_dtype_or_its_name():
    from evoforge.layers import SparseLinear, pack_sparse

    linear = nn.Linear(16, 4)
    for vd in ("float16", "torch.float16", torch.float16):
        assert SparseLinear.from_linear(linear, values_dtype=vd).values.dtype == torch.float16
        assert SparseLinear(16, 4, values_dtype=vd).values.dtype == torch.float16
    assert pack_sparse(linear.weight, values_dtype="float32")["values"].dtype == torch.float32
    with pytest.raises(ConfigError, match="values_dtype must be one of"):
        pack_sparse(linear.weight, values_dtype="bfloat16")  # the kernels read float32 / float16 values
    with pytest.raises(TypeError, match="values_dtype must be torch.float32 or torch.float16"):
        SparseLinear.from_linear(linear, values_dtype=torch.bfloat16)


def test_apply_values_dtype_as_torch_dtype():
    from test_layers_model import tiny_llama

    from evoforge.layers import SparseLinear, apply, packed_layers

    for spec_dtype in (torch.float16, "float16"):
        model = apply(tiny_llama(), {"sparsity": 0.5, "values_dtype": spec_dtype})
        for n in packed_layers(model):
            m = model.get_submodule(n)
            assert isinstance(m, SparseLinear) and m.values.dtype == torch.float16
    apply(tiny_llama(), {"sparsity": 0.5}, values_dtype=torch.float16)  # apply's own argument, too
    with pytest.raises(ConfigError, match="values_dtype"):
        apply(tiny_llama(), {"sparsity": 0.5}, values_dtype="int8")
