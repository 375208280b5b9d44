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


def _tiny_llama():
    """The tiny Llama of the packed-layer tests (tests/models.py, shared by the test directories)."""
    import models

    return models.tiny_llama(0, vocab=96, hidden=64, intermediate=96, tie=True, token_ids=False)


def test_apply_values_dtype_as_torch_dtype():
    from evoforge.layers import SparseLinear, apply, packed_layers

    tiny_llama = _tiny_llama

    for spec_dtype in (torch.float16, "float16"):
        model = apply(tiny_llama(), {"sparsity": 0.5, "values_dtype": spec_dtype})
        for n in packed_layers(model):
            m = model.get_submodule(n)
            assert isinstance(m, SparseLinear) and m.values.dtype == torch.float16
    apply(tiny_llama(), {"sparsity": 0.5}, values_dtype=torch.float16)  # apply's own argument, too
    with pytest.raises(ConfigError, match="values_dtype"):
        apply(tiny_llama(), {"sparsity": 0.5}, values_dtype="int8")


# ---- the bad-input harness's findings (tests/fuzz), one regression test per group ----------------------


def test_layers_refuse_meta_and_wrong_types():
    from evoforge.layers import QuantLinear, SparseLinear, pack_sparse, sparse_matmul

    meta = nn.Linear(64, 8, device="meta")
    for convert in (QuantLinear.from_linear, SparseLinear.from_linear):
        with pytest.raises(ValueError, match=r"linear.weight is on meta"):
            convert(meta)
    with pytest.raises(ValueError, match="weight is on meta"):
        pack_sparse(torch.empty(8, 64, device="meta"))
    with pytest.raises(TypeError, match="weight must be a floating-point tensor"):
        pack_sparse(torch.ones(8, 64, dtype=torch.bool))
    w = torch.randn(8, 64)
    with pytest.raises(TypeError, match="bias must be a torch.Tensor, got ndarray"):
        SparseLinear.from_dense(w, np.zeros(8, np.float32))
    with pytest.raises(ValueError, match=r"bias must have shape \[8\]"):
        SparseLinear.from_dense(w, torch.zeros(7))
    for layer in (QuantLinear(64, 8), SparseLinear(64, 8)):
        for x in (np.zeros((2, 64), np.float32), [[0.0] * 64], None):
            with pytest.raises(TypeError, match="x must be a torch.Tensor"):
                layer(x)
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        SparseLinear(64, 8)(torch.zeros(2, 64, dtype=torch.bool))
    buffers = pack_sparse(w)
    for bad in (None, list(buffers.values())):
        with pytest.raises(TypeError, match="buffers must be a dict"):
            sparse_matmul(np.zeros((2, 64), np.float32), bad, 64)
    with pytest.raises(ValueError, match="x is on meta"):
        sparse_matmul(torch.empty(2, 64, device="meta"), buffers, 64)
    # numpy buffers are read as they are: the same product
    np.testing.assert_array_equal(sparse_matmul(np.ones((2, 64), np.float32), buffers, 64),
                                  sparse_matmul(np.ones((2, 64), np.float32),
                                                {k: v.numpy() for k, v in buffers.items()}, 64))


@pytest.mark.parametrize("device,exc", [("no-such-device", ValueError), ("", ValueError), ("CPU", ValueError),
                                        ("meta", ValueError), (3, TypeError), (b"cpu", TypeError)])
def test_quant_linear_checks_its_device(device, exc):
    from evoforge.layers import QuantLinear

    with pytest.raises(exc, match="device"):
        QuantLinear(64, 8, device=device)
    assert QuantLinear(64, 8, device="cpu").packed.device.type == "cpu"


def test_layer_sizes_are_checked_ints():
    from evoforge.layers import (QuantLinear, SparseLinear, num_groups, pack_sparse, row_bytes, sparse_matmul,
                                 unpack_codes, unpack_sparse)

    for cls in (QuantLinear, SparseLinear):
        with pytest.raises(ConfigError, match="in_features must be at most"):
            cls(2**62, 8)
        with pytest.raises(ConfigError, match="out_features must be at most"):
            cls(64, 2**62)
    with pytest.raises(TypeError, match="columns must be an int"):
        row_bytes(float("inf"), 4)
    with pytest.raises(TypeError, match="columns must be an int"):
        num_groups(float("inf"), 32)
    with pytest.raises(TypeError, match="in_features must be an int"):
        unpack_codes(np.zeros((8, 32), np.uint8), 4, float("inf"))
    buffers = pack_sparse(torch.randn(8, 64))
    with pytest.raises(TypeError, match="threads must be an int"):
        unpack_sparse(buffers, 64, threads=float("inf"))
    with pytest.raises(TypeError, match="max_isa must be an int"):
        sparse_matmul(np.zeros((2, 64), np.float32), buffers, 64, max_isa=float("inf"))
    with pytest.raises(ConfigError, match="max_isa must lie in"):
        sparse_matmul(np.zeros((2, 64), np.float32), buffers, 64, max_isa=2**64)


def test_from_codes_takes_negative_strides():
    from evoforge.layers import QuantLinear, quantize_rtn

    codes, s, z = quantize_rtn(np.random.default_rng(0).normal(size=(8, 64)).astype(np.float32), 4, 32,
                               symmetric=False)
    bias = np.linspace(0, 1, 8, dtype=np.float32)
    want = QuantLinear.from_codes(codes, s, z, 4, 32, bias).state_dict()
    flip = (lambda a: a[::-1].copy()[::-1])  # the same numbers, negative strides
    got = QuantLinear.from_codes(codes, flip(s), flip(z), 4, 32, flip(bias)).state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def _adapter():
    from evoforge.compress import adapt

    return adapt(_tiny_llama())


@pytest.mark.parametrize("label", ["neg", "oov", "meta", "float", "1d"])
def test_token_ids_are_checked_before_the_model_runs(label):
    from evoforge.compress import build_database, collect_hessians, perplexity, shortgpt_scores

    a = _adapter()
    tokens = torch.randint(3, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    bad = {"neg": tokens.clone().fill_(-1), "oov": tokens + 96, "meta": tokens.to("meta"), "float": tokens.float(),
           "1d": tokens[0]}[label]
    calls = [lambda t: collect_hessians(a, t), lambda t: shortgpt_scores(a, t),
             lambda t: build_database(a, t, "never-written", method="gptq")]
    for call in calls:
        with pytest.raises(ConfigError, match="tokens"):
            call(bad)
    ids = bad if label != "1d" else tokens  # perplexity takes 1-D ids: a 2-D tensor is the bad shape there
    with pytest.raises(ConfigError, match="ids"):
        perplexity(a.model, ids, window=4)
    with pytest.raises(TypeError, match="tokens must be a torch.LongTensor"):
        collect_hessians(a, tokens.numpy())


def test_perplexity_checks_its_model_and_sizes():
    from evoforge.compress import perplexity

    ids = torch.randint(3, 64, (40,), generator=torch.Generator().manual_seed(0))
    for model in (None, "model"):
        with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
            perplexity(model, ids, window=8)
    with pytest.raises(ConfigError, match="has no parameters"):
        perplexity(nn.Sequential(), ids, window=8)
    m = _tiny_llama()
    for window in (0, 1, True):
        with pytest.raises((ConfigError, TypeError), match="window"):
            perplexity(m, ids, window=window)
    with pytest.raises(TypeError, match="max_windows must be an int"):
        perplexity(m, ids, window=8, max_windows=float("inf"))


def test_compress_sizes_and_types_are_checked():
    from evoforge.compress import (collect_hessians, depth_mutation, owl_sparsities, sample_sequences,
                                   sparsity_ladder)

    with pytest.raises(TypeError, match="numel must be an int"):
        sparsity_ladder(float("inf"), 0.5, 2, 50)
    with pytest.raises(ConfigError, match="target must lie in"):
        sparsity_ladder(1000, float("inf"), 2, 50)
    with pytest.raises(ConfigError, match="step must lie in"):
        sparsity_ladder(1000, 0.5, 2**62, 0)  # no loop over 2**63 levels
    for n_blocks in (2**64, float("inf")):
        with pytest.raises((ConfigError, TypeError), match="n_blocks"):
            depth_mutation(n_blocks)
    a = _adapter()
    stats = collect_hessians(a, torch.randint(3, 64, (2, 8)), batch_size=2)
    with pytest.raises(TypeError, match="m must be a real number"):
        owl_sparsities(a, stats, 0.5, m=1 + 1j)
    for n, length in ((2**62, 4), (4, 2**62), (2**64, 4)):
        with pytest.raises(ConfigError, match="(n|length) must|at most 2\\*\\*31"):
            sample_sequences(a.model, n, length, seed=0)


def test_garbage_model_config_is_refused_by_evoforge(tmp_path):
    from evoforge.compress import load_model

    (tmp_path / "config.json").write_bytes(b"\xff\xfe garbage {")
    with pytest.raises(ConfigError, match="is not a JSON model config"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="holds a JSON list"):
        load_model(tmp_path)


def test_export_checks_its_directory_first(tmp_path):
    from evoforge.compress import compress, export

    res = compress(_tiny_llama(), method="sparsity", target=0.5, db_method="magnitude", db_levels=1, n_calib=2,
                   n_heldout=2, seq_len=8, generations=1, offspring=2, export_model=False)
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        with pytest.raises(OSError):
            export(res, out)
    with pytest.raises(ValueError, match="null"):
        export(res, str(tmp_path) + "/a\0b")


def test_bench_usage_errors_are_one_line(capsys):
    from evoforge import cli

    for argv in (["bench", "pareto", "--nope"], ["bench", "pareto", "--repeats", "x"],
                 ["bench", "cache", "--entries", "0"]):  # 0 entries ran the whole benchmark
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1
        assert err.startswith(f"evoforge bench {argv[1]}: error: ") and "usage" not in err


def test_quiet_hides_the_loading_bar(tmp_path, capsys):
    from evoforge import cli

    _tiny_llama().save_pretrained(tmp_path / "m")
    capsys.readouterr()
    # refused once the model is loaded: --seq-len is longer than its 64 positions
    rc = cli.main(["compress", "--model", str(tmp_path / "m"), "--target", "0.5", "--seq-len", "100", "--quiet",
                   "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err == "evoforge: error: --seq-len 100 is longer than the model's 64 positions\n"
