"""The `evoforge` CLI on bad input (issue 12): one line `evoforge: error: ...` on stderr and exit 2,
never a traceback, and every argument checked before the model loads; unexpected failures are one
line and exit 1 (the traceback with EVOFORGE_DEBUG=1); a resumed run says so; report.md names a
database inside the run directory relative to it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from conftest import REPO, STORIES
from evoforge import cli
from evoforge.cli import main as cli_main
import evoforge.compress as compress_pkg
from evoforge.compress import adapt, build_database, compress
from evoforge.compress.report import write_report

FAST = ["--n-calib", "4", "--n-heldout", "4", "--seq-len", "16", "--offspring", "4", "--db-method", "magnitude",
        "--db-levels", "2", "--no-export"]


@pytest.fixture(scope="module")
def stok(stories, tmp_path_factory):
    """stories260k with a character-level tokenizer, so text and perplexity paths run."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    d = tmp_path_factory.mktemp("stok") / "model"
    shutil.copytree(STORIES, d)
    vocab = {"[UNK]": 0, **{chr(i): i for i in range(32, 127)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]").save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def files(stories, tmp_path_factory):
    f = tmp_path_factory.mktemp("files")
    (f / "t.txt").write_text("Once upon a time there was a cat. " * 40)
    (f / "empty.txt").write_text("")
    (f / "blank.txt").write_text(" \n\n\t\n")
    (f / "afile").write_text("x")
    (f / "nodb").mkdir()
    build_database(adapt(stories), None, f / "sdb", method="magnitude", n_levels=1, step=512)
    return f


@pytest.fixture()
def no_load(monkeypatch):
    """Loading the model fails the test: bad arguments must be refused before it."""
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: pytest.fail("the model was loaded before the check"))


def error_line(argv, capsys) -> str:
    """Run the CLI in-process; it must exit 2 with exactly one line on stderr (besides the model's
    loading bar) and no traceback. Returns that line."""
    try:
        rc = cli_main(argv)
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("Loading weights")]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (rc, err)
    return lines[0]


def run_cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evoforge.cli", *argv], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, cwd=REPO)


# ---- 1: tracebacks on bad paths and windows -------------------------------------------------------


@pytest.mark.parametrize("case", ["run-dir", "out", "window"])
def test_no_traceback_in_a_subprocess(case, stok, files):
    argv = {"run-dir": ["compress", "--model", str(STORIES), "--target", "0.5", "--run-dir", str(files / "afile")],
            "out": ["compress", "build-db", "--model", str(STORIES), "--method", "rtn", "--out", str(files / "afile")],
            "window": ["eval", "ppl", "--model", str(stok), "--text", str(files / "t.txt"), "--window", "1"]}[case]
    out = run_cli(*argv, "--quiet" if case != "window" else "--max-windows=1")
    lines = out.stderr.splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith("evoforge") and ": error: " in lines[0]
    assert ("--window" if case == "window" else "is not a directory") in lines[0]


# ---- 2: every argument before the model loads -----------------------------------------------------


C = "compress --model {s} --target 0.5"  # then .format(s=model, f=files).split()
B = "compress build-db --model {s} --out {f}/newdb --method"
E = "eval ppl --model {s} --text {f}/t.txt"
BAD = [
    (C + " --run-dir {f}/afile/sub", "is not a directory"),
    (C + " --window -5", "evoforge compress: error: argument --window: must be an integer >= 2"),
    (C + " --window 1", "argument --window"),
    (C + " --max-windows 0", "argument --max-windows: must be an integer >= 1"),
    (E + " --window 0", "evoforge eval: error: argument --window"),
    (E + " --max-windows 0", "argument --max-windows"),
    ("eval ppl --model {s} --text {f}/blank.txt", "--text: text file '"),
    (C + " --generations -1", "argument --generations: must be an integer >= 0"),
    (C + " --offspring 0", "argument --offspring"),
    (C + " --n-calib 0", "argument --n-calib"),
    (C + " --n-heldout 0", "argument --n-heldout"),
    (C + " --seq-len 1", "argument --seq-len: must be an integer >= 2"),
    (C + " --seed -1", "argument --seed"),
    (C + " --workers 0", "argument --workers"),
    (C + " --timeout 0", "argument --timeout: must be a number > 0"),
    (C + " --timeout nan", "argument --timeout"),
    (C + " --db-levels -1", "argument --db-levels"),
    (C + " --db-step 0", "argument --db-step"),
    (C + " --group-size 0", "argument --group-size"),
    (C + " --stages 4:-5,1:all", "argument --stages: survivors must be >= 1 and tokens >= 1"),
    (C + " --stages 0:8,1:all", "argument --stages: survivors must be >= 1"),
    (C + " --stages 2:8,4:all", "argument --stages: survivors must not increase"),
    (C + " --stages 4:8,2:all", "the last stage must keep 1"),
    (C + " --stages 4", "argument --stages: must look like 4:256,1:all"),
    (C + " --stages 16:8,1:all", "evoforge: error: --stages: the first stage keeps 16 survivors, more than --offspring 8"),
    (C + " --eval-text {f}/empty.txt", "--eval-text: evaluation text file"),
    (C + " --calib-text {f}/blank.txt", "--calib-text: calibration text file"),
    (C + " --calib-text {f}/missing.txt", "calibration text file not found"),
    (C + " --db {f}/missing", "layer database directory not found"),
    (C + " --db {f}/nodb", "has no manifest.json: not a layer database"),
    ("compress --model {s} --method quant --target 3 --db {f}/sdb", "holds sparsity levels (magnitude), not quant"),
    ("compress --model {s} --target 1.5", "sparsity target must lie in (0, 1)"),
    ("compress --model {s} --method quant --target 9", "quant target must lie in [2, 8]"),
    ("compress --model {s} --method depth --target 0", "depth target"),
    ("compress --model {s} --method depth+quant --target 1", "target must lie in [2, 8]"),
    ("compress --model {s} --method quant --target 3 --bits 2..9", "bits must be in [2, 8]"),
    (C + " --count-metadata", "count_metadata"),
    (C + " --device tpu", "evoforge: error: --device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    (C + " --device cpu:1", "--device must be 'cpu', 'cuda' or 'cuda:N'"),
    (C + " --db-method gptq", "--db-method gptq does not fit --method sparsity"),
    (C + " --json {f}", "--json"),
    ("compress --model {f}/nomodel --target 0.5", "model not found"),
    ("compress build-db --model {s} --method rtn --out {f}/afile", "is not a directory"),
    ("compress build-db --model {s} --method rtn --out {f}/sdb", "already holds a layer database; pass --overwrite"),
    (B + " gptq --tokens 0", "evoforge compress build-db: error: argument --tokens: must be an integer >= 1"),
    (B + " gptq --seq-len 1", "argument --seq-len"),
    (B + " magnitude --levels -1", "argument --levels"),
    (B + " magnitude --step 0", "argument --step"),
    (B + " gptq --model-samples 0", "argument --model-samples"),
    (B + " rtn --group-size -2", "argument --group-size"),
    (B + " gptq --text {f}/empty.txt", "--text: calibration text file"),
    (B + " magnitude --target 1.5", "sparsity must lie in [0, 1)"),
    (B + " rtn --bits 1..4", "bits must be in [2, 8]"),
]


@pytest.mark.parametrize("argv, msg", BAD, ids=[a.replace(" --model {s}", "") for a, _ in BAD])
def test_arguments_checked_before_loading(argv, msg, files, no_load, capsys):
    argv = argv.format(s=STORIES, f=files).split()
    line = error_line(argv + ([] if argv[0] == "eval" else ["--quiet"]), capsys)
    assert msg in line
    assert line.startswith(("evoforge: error: ", "evoforge compress: error: ", "evoforge compress build-db: error: ",
                            "evoforge eval: error: ")), line


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"], ids=["plain", "index-1"])  # not "cuda": see conftest
def test_device_without_cuda(device, files, no_load, capsys):
    """--device cuda[:N] on a machine without CUDA: one line naming the problem, before the model loads."""
    line = error_line([*C.format(s=STORIES).split(), "--device", device, "--run-dir", str(files / "rdev"), "--quiet"],
                      capsys)
    assert line == (f"evoforge: error: --device {device!r}: torch sees no CUDA GPU on this machine (or torch was "
                    "built without CUDA); use --device cpu")


def test_valid_arguments_reach_the_model(files, no_load):
    """The checks above refuse nothing valid: a good --db gets as far as loading the model."""
    with pytest.raises(pytest.fail.Exception, match="loaded before"):
        cli_main([*C.format(s=STORIES).split(), "--db", str(files / "sdb"), "--run-dir", str(files / "r0"), "--quiet"])


def test_window_beyond_the_model(stok, files, monkeypatch, capsys):
    """A window longer than the model's positions is refused once the model is loaded, before any work."""
    monkeypatch.setattr(compress_pkg, "compress", lambda *a, **k: pytest.fail("compress ran"))
    monkeypatch.setattr(compress_pkg, "perplexity", lambda *a, **k: pytest.fail("perplexity ran"))
    text = str(files / "t.txt")
    line = error_line(["eval", "ppl", "--model", str(stok), "--text", text, "--window", "1024"], capsys)
    assert "--window 1024 is longer than the model's 512 positions" in line
    c = ["compress", "--model", str(stok), "--target", "0.5", "--run-dir", str(files / "r"), "--quiet"]
    assert "--window 513" in error_line([*c, "--calib-text", text, "--window", "513"], capsys)
    assert "--seq-len 600" in error_line([*c, "--seq-len", "600"], capsys)
    # without a tokenizer the text cannot be used: said before the search, not after it
    c[2] = str(STORIES)
    assert "tokenizer" in error_line([*c, "--eval-text", text], capsys)


# ---- 3: usage errors are one line too -------------------------------------------------------------


@pytest.mark.parametrize("argv, prefix", [
    (["bogus"], "evoforge: error: argument command: invalid choice"),
    (["compress", "--method", "quant"], "evoforge compress: error: compress needs --model and --target"),
    (["compress", "build-db", "--method", "rtn"], "evoforge compress build-db: error: the following arguments"),
    (["eval", "ppl", "--model", "m", "--text", "t", "--nope"], "evoforge: error: unrecognized arguments: --nope"),
])
def test_usage_error_one_line(argv, prefix, capsys):
    assert error_line(argv, capsys).startswith(prefix)


# ---- 4: one place turns exceptions into one line --------------------------------------------------


@pytest.mark.parametrize("exc, rc, line", [
    (PermissionError("no access to 'x'"), 2, "evoforge: error: no access to 'x'"),
    (ConnectionError("cluster gone"), 2, "evoforge: error: cluster gone"),
    (TypeError("bad type"), 2, "evoforge: error: bad type"),
    (KeyboardInterrupt(), 130, "evoforge: interrupted"),
    (RuntimeError("boom\nsecond line"), 1,
     "evoforge: internal error: RuntimeError: boom second line (set EVOFORGE_DEBUG=1 for the traceback)"),
    (KeyError(), 1, "evoforge: internal error: KeyError (set EVOFORGE_DEBUG=1 for the traceback)"),
])
def test_exceptions_become_one_line(exc, rc, line, monkeypatch, capsys):
    def boom(args):
        raise exc

    monkeypatch.setattr(cli, "_cmd_info", boom)
    monkeypatch.delenv("EVOFORGE_DEBUG", raising=False)
    try:
        got = cli_main(["info"])
    except BaseException as e:  # noqa: BLE001 -- an escaping KeyboardInterrupt would stop pytest itself
        pytest.fail(f"{type(e).__name__} escaped main()")
    assert got == rc
    assert capsys.readouterr().err.splitlines() == [line]
    monkeypatch.setenv("EVOFORGE_DEBUG", "1")
    with pytest.raises(type(exc)):
        cli_main(["info"])


# ---- 5: a resumed run says so ---------------------------------------------------------------------


def test_resume_is_reported(stories, tmp_path, capsys):
    rd = tmp_path / "run"
    args = ["compress", "--model", str(STORIES), "--target", "0.5", "--run-dir", str(rd), *FAST]
    assert cli_main([*args, "--generations", "1"]) == 0
    assert "resuming" not in capsys.readouterr().err
    assert cli_main([*args, "--generations", "2"]) == 0
    err = capsys.readouterr().err
    assert f"evoforge: resuming {rd} from generation 1 (of 2)" in err.splitlines()
    assert cli_main([*args, "--generations", "2", "--quiet"]) == 0
    assert "resuming" not in capsys.readouterr().err


# ---- 6: the report names a database inside the run directory relative to it ----------------------


def test_report_database_relative(stories, tmp_path):
    rd = tmp_path / "run"
    res = compress(stories, method="sparsity", target=0.5, db_method="magnitude", db_levels=2, n_calib=4,
                   n_heldout=4, seq_len=16, offspring=4, generations=1, run_dir=rd, export_model=False)
    assert "layer database: magnitude (`db`);" in (rd / "report.md").read_text()
    elsewhere = write_report(res, tmp_path / "elsewhere").read_text()
    assert f"(`{(rd / 'db').resolve()}`)" in elsewhere  # outside the report's directory: absolute
