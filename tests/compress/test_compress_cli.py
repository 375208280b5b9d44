"""`evoforge compress build-db`, `compress --db`, `--count-metadata` and the run report on
stories260k: the budget with scales and zero points equals an independent count over the exported
model, a built database is reused (and refused for another model), the report holds the table and
plots (or says why not), and bad input gives a clear error."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from conftest import STORIES
from evoforge import ConfigError
from evoforge.cli import main as cli_main
from evoforge.compress import QuantLevels, adapt, build_database, compress
from evoforge.compress.report import write_report

QUIET = ["--n-calib", "8", "--n-heldout", "8", "--seq-len", "32", "--offspring", "4", "--generations", "2", "--quiet"]


def grid_bits(rows, cols, bits, group, symmetric):
    """Independent count: 16-bit scale per row and group, plus a `bits`-bit zero point when asymmetric."""
    groups = -(-cols // group)
    return rows * groups * (16 + (0 if symmetric else bits))


def test_count_metadata_budget_matches_exported_model(stories, tmp_path):
    rd = tmp_path / "run"
    res = compress(stories, method="quant", target=3, db_method="rtn", group_size=32, count_metadata=True,
                   n_calib=8, n_heldout=8, seq_len=32, offspring=8, generations=4, seed=0, run_dir=rd)
    cfg = json.loads((rd / "config.json").read_text())
    m = transformers.LlamaForCausalLM.from_pretrained(rd / "model").eval()
    total, bits_total = 0, 0
    for r, e in zip(adapt(m).linear_layers(), cfg["per_layer"]):
        b = e["bits"]
        W = r.weight()
        for g0 in range(0, r.in_features, 32):
            assert max(len(torch.unique(W[i, g0:g0 + 32])) for i in range(0, r.out_features, 3)) <= 2 ** b
        cost = b * r.numel + grid_bits(r.out_features, r.in_features, b, 32, symmetric=False)
        assert e["cost_bits"] == cost
        bits_total += cost
        total += r.numel
    assert res.count_metadata and res.budget == res.uniform_budget == bits_total
    assert res.budget <= 3 * total  # the grids count: 3 bits per weight is the whole allowance
    assert res.average == pytest.approx(bits_total / total) and res.average > 2.9
    assert max(res.bits) >= 3 and min(res.bits) == 2  # 3-bit codes alone plus grids would not fit
    # without counting the grids the same target gives 3 bits everywhere
    plain = compress(stories, method="quant", target=3, database=rd / "db", generations=0, n_calib=8, n_heldout=8,
                     seq_len=32, seed=0, export_model=False)
    assert plain.bits == [3] * len(plain.bits) and plain.budget == 3 * total


@pytest.mark.parametrize("symmetric", [True, False])
def test_metadata_uniform_and_mutation_exact(stories, tmp_path, symmetric):
    a = adapt(stories)
    db = build_database(a, None, tmp_path / "db", method="rtn", bits=(2, 3, 4, 5), group_size=48, symmetric=symmetric)
    q = QuantLevels(db, include_metadata=True)
    layers = a.linear_layers()
    cost = np.array([[b * r.numel + grid_bits(r.out_features, r.in_features, b, 48, symmetric) for b in q.bits]
                     for r in layers])
    assert np.array_equal(q.cost_table, cost)
    for target in (3, 3.4, 4.5):
        u = q.uniform(target)
        assert q.budget(u) == int(cost[np.arange(len(layers)), u].sum()) <= target * sum(r.numel for r in layers)
        kids = q.mutation(3).offspring(u, 16, q.lower, q.upper, seed=1, generation=0)
        assert all(q.budget(k) == q.budget(u) for k in kids)  # switches keep the counted budget exactly
    with pytest.raises(ConfigError, match="cheapest bit-width"):
        q.uniform(2.1)  # 2-bit codes plus grids cost more than 2.1 bits per weight


def test_build_db_values_dtype(stories, tmp_path):
    for dt in ("float32", None):
        out = tmp_path / str(dt)
        extra = [] if dt is None else ["--values-dtype", dt]
        assert cli_main(["compress", "build-db", "--model", str(STORIES), "--method", "magnitude", "--levels", "1",
                         "--out", str(out), "--quiet", *extra]) == 0
        man = json.loads((out / "manifest.json").read_text())
        assert man["storage"] == "sparse" and {e["values_dtype"] for e in man["layers"]} == {dt or "float16"}


def test_build_db_and_reuse(stories, tmp_path, capsys):
    db = tmp_path / "db"
    assert cli_main(["compress", "build-db", "--model", str(STORIES), "--method", "gptq", "--out", str(db),
                     "--bits", "2..4", "--group-size", "32", "--symmetric", "--model-samples", "4", "--seq-len", "32",
                     "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "35 layers" in out and "levels [2, 3, 4]" in out
    man = json.loads((db / "manifest.json").read_text())
    assert man["method"] == "gptq" and man["params"]["symmetric"] is True and man["params"]["group_size"] == 32
    assert man["calibration"]["source"] == "samples" and (man["calibration"]["n"], man["calibration"]["length"]) == (4, 32)
    rd = tmp_path / "run"
    assert cli_main(["compress", "--model", str(STORIES), "--method", "quant", "--target", "3", "--db", str(db),
                     "--run-dir", str(rd), *QUIET]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines() if ln.split()}
    assert float(lines["dense"][0]) == 0.0 and "uniform" in lines and "evoforge" in lines
    assert not (rd / "db").exists()  # the built database was used, not rebuilt
    assert json.loads((rd / "config.json").read_text())["db_method"] == "gptq"
    # the report: table, budget, plots (or the reason they are missing)
    md = (rd / "report.md").read_text()
    rep = json.loads((rd / "report.json").read_text())
    assert "| uniform |" in md and "| evoforge |" in md and "budget" in md
    assert rep["kl_search"] == pytest.approx(float(lines["evoforge"][0]), abs=1e-4)
    assert len(rep["history"]) == 2 and set(rep["times"]) >= {"calibration", "database", "search", "heldout"}
    try:
        import matplotlib  # noqa: F401

        assert (rd / "levels.png").stat().st_size > 0 and (rd / "convergence.png").stat().st_size > 0
        assert "![levels](levels.png)" in md
    except ImportError:
        assert "plots skipped" in md


def test_report_without_matplotlib(stories, tmp_path, monkeypatch):
    res = compress(stories, method="sparsity", target=0.5, db_method="magnitude", db_step=512, n_calib=4, n_heldout=4,
                   seq_len=16, offspring=4, generations=1, seed=0, export_model=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    md = write_report(res, tmp_path / "r").read_text()
    assert "plots skipped: matplotlib is not installed" in md and "| owl |" in md
    assert f"`evoforge dashboard {tmp_path / 'r'}`" in md  # the command that shows this run live
    assert not list((tmp_path / "r").glob("*.png"))


def test_cli_bad_input(stories, tmp_path, capsys):
    # a database of another model
    other = transformers.LlamaForCausalLM.from_pretrained(STORIES).eval()
    with torch.no_grad():
        other.model.layers[2].self_attn.o_proj.weight.mul_(-1)
    build_database(adapt(other), None, tmp_path / "odb", method="rtn", bits=(2, 3, 4))
    assert cli_main(["compress", "--model", str(STORIES), "--method", "quant", "--target", "3", "--db",
                     str(tmp_path / "odb"), "--run-dir", str(tmp_path / "r1"), *QUIET]) == 2
    err = capsys.readouterr().err
    assert "was built from the model with fingerprint" in err and "not from this model" in err
    # unknown model type
    opt = transformers.OPTForCausalLM(transformers.OPTConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, ffn_dim=32, num_attention_heads=2, word_embed_proj_dim=16,
        max_position_embeddings=32))
    opt.save_pretrained(tmp_path / "opt")
    assert cli_main(["compress", "build-db", "--model", str(tmp_path / "opt"), "--method", "rtn", "--out",
                     str(tmp_path / "x"), "--quiet"]) == 2
    assert "OPTForCausalLM" in capsys.readouterr().err
    # target out of range, missing and unusable text, --count-metadata where it does not apply
    bad = [
        (["compress", "build-db", "--model", str(STORIES), "--method", "magnitude", "--target", "1.5", "--out",
          str(tmp_path / "y")], "sparsity must lie in [0, 1)"),
        (["compress", "build-db", "--model", str(STORIES), "--method", "gptq", "--text", str(tmp_path / "no.txt"),
          "--out", str(tmp_path / "y")], "calibration text file not found"),
        (["compress", "build-db", "--model", str(STORIES), "--method", "rtn", "--bits", "2..9", "--out",
          str(tmp_path / "y")], "bits must be"),
        (["compress", "--model", str(STORIES), "--method", "quant", "--target", "1.5"], "quant target must lie in [2, 8]"),
        (["compress", "--model", str(STORIES), "--method", "sparsity", "--target", "0.5", "--count-metadata"],
         "count_metadata"),
    ]
    (tmp_path / "t.txt").write_text("Once upon a time " * 100)
    bad.append((["compress", "build-db", "--model", str(STORIES), "--method", "gptq", "--text", str(tmp_path / "t.txt"),
                 "--out", str(tmp_path / "y")], "tokenizer"))
    for argv, msg in bad:
        assert cli_main([*argv, "--quiet"]) == 2, argv
        assert msg in capsys.readouterr().err, argv
    for argv in (["compress", "build-db", "--model", str(STORIES), "--method", "pruning", "--out", "z"],
                 ["compress", "--model", str(STORIES), "--method", "depth+bits", "--target", "3"],
                 ["compress", "--method", "quant"]):
        with pytest.raises(SystemExit):
            cli_main(argv)


def test_compute_dtype_bfloat16(stories, tmp_path, capsys):
    """--compute-dtype bfloat16: the search runs under autocast, the budget stays exact, the reported
    KL is computed in float32 (the dense row is exactly 0), and the setting is part of the run's identity."""
    rd = tmp_path / "run"
    args = ["compress", "--model", str(STORIES), "--method", "sparsity", "--target", "0.5", "--db-method", "magnitude",
            "--db-levels", "2", "--run-dir", str(rd), "--no-export", *QUIET]
    assert cli_main([*args, "--compute-dtype", "bfloat16"]) == 0
    lines = {ln.split()[0]: ln.split()[1:] for ln in capsys.readouterr().out.splitlines() if ln.split()}
    assert float(lines["dense"][0]) == 0.0 and float(lines["evoforge"][0]) > 0
    settings = json.loads((rd / "compress.json").read_text())
    assert settings["compute_dtype"] == "bfloat16"
    assert cli_main(args) == 2  # the same run directory without it: other settings
    assert "compute_dtype" in capsys.readouterr().err
