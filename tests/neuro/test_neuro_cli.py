"""`evoforge neuro` and `evoforge neuro play` on CartPole with tiny budgets: the run directory's files
(checkpoint, history, curve.png, best_policy.npz, report.json), resume, the saved policy's returns and
a GIF video, and bad arguments refused in one line before anything heavy runs."""

from __future__ import annotations

import importlib.util
import json
import time

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from evoforge.cli import main as cli_main  # noqa: E402
from evoforge.neuro import load_policy  # noqa: E402

GA = ["neuro", "--env", "CartPole-v1", "--algo", "ga", "--pop", "8", "--hidden", "8", "--elite-episodes", "2",
      "--final-episodes", "3", "--quiet", "--seed", "1"]


def run(argv, capsys):
    rc = cli_main(argv)
    return rc, capsys.readouterr()


def error_line(argv, capsys) -> str:
    """The CLI must exit 2 with one stderr line and no traceback; returns the line."""
    try:
        rc = cli_main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, (rc, err)
    assert lines[0].startswith("evoforge") and "error" in lines[0]
    return lines[0]


def test_train_writes_the_run_directory_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    rc, cap = run([*GA, "--generations", "2", "--out", str(out)], capsys)
    assert rc == 0, cap.err
    for name in ("checkpoint.pkl", "history.jsonl", "curve.png", "best_policy.npz", "report.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "curve.png").read_bytes()[:4] == b"\x89PNG"
    rep = json.loads((out / "report.json").read_text())
    assert rep["generations"] == 2 and rep["env_steps"] > 0 and rep["wall_seconds"] > 0
    assert rep["settings"]["pop"] == 8 and rep["settings"]["hidden"] == [8] and rep["algo"] == "ga"
    assert rep["final_evaluation"]["episodes"] == 3 and np.isfinite(rep["final_evaluation"]["mean"])
    b = rep["bytes"]
    assert b["param_bytes"] == 4 * rep["policy"]["n_params"] and b["best_genome_bytes"] == 8 * b["best_genome_seeds"]
    assert b["sent_weight_bytes"] > b["sent_genome_bytes"] > 0
    assert "2 generations" in cap.out and "final 3 episodes" in cap.out
    saved = load_policy(out / "best_policy.npz")
    assert saved.meta["env"] == "CartPole-v1" and saved.policy.hidden == (8,)

    # an existing run directory resumes: two more generations continue the history
    rc, cap = run([*GA, "--generations", "4", "--out", str(out)], capsys)
    assert rc == 0 and "(resumed)" in cap.out
    lines = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["generation"] for h in lines] == [1, 2, 3, 4]
    rep2 = json.loads((out / "report.json").read_text())
    assert rep2["generations"] == 4 and rep2["wall_seconds_total"] >= rep["wall_seconds_total"]
    # ... and refuses other settings, in one line
    line = error_line([*GA, "--generations", "5", "--out", str(out), "--pop", "10"], capsys)
    assert "other settings" in line


def test_play_prints_returns_and_writes_a_gif(tmp_path, capsys):
    out = tmp_path / "run"
    assert run([*GA, "--generations", "1", "--out", str(out)], capsys)[0] == 0
    gif = tmp_path / "ep.gif"
    rc, cap = run(["neuro", "play", str(out), "--episodes", "3", "--video", str(gif)], capsys)
    assert rc == 0, cap.err
    assert "returns over 3 episodes: mean" in cap.out and "std" in cap.out
    assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    # the video replays the first of the evaluated episodes
    from evoforge.neuro import play

    r = play(out, 3, video=tmp_path / "again.gif")
    assert r["video_return"] == r["returns"][0] and r["frames"] > 1
    assert r["mean"] == pytest.approx(np.mean(r["returns"]))
    # the saved file itself is accepted too
    rc, cap = run(["neuro", "play", str(out / "best_policy.npz"), "--episodes", "1"], capsys)
    assert rc == 0 and "returns over 1 episodes" in cap.out
    if importlib.util.find_spec("moviepy") is None:
        assert "moviepy" in error_line(["neuro", "play", str(out), "--video", str(tmp_path / "v.mp4")], capsys)


def test_es_run(tmp_path, capsys):
    out = tmp_path / "es"
    rc, cap = run(["neuro", "--env", "CartPole-v1", "--algo", "es", "--pop", "6", "--generations", "2", "--hidden",
                   "8", "--eval-episodes", "1", "--final-episodes", "2", "--quiet", "--out", str(out)], capsys)
    assert rc == 0, cap.err
    rep = json.loads((out / "report.json").read_text())
    assert rep["algo"] == "es" and "best_genome_bytes" not in rep["bytes"]
    assert load_policy(out / "best_policy.npz").obs_norm is not None  # ES normalises observations by default


@pytest.mark.parametrize("argv,match", [
    (["--env", "CartPol-v1"], "unknown Gymnasium environment id 'CartPol-v1'"),
    (["--env", "NoSuch/Env-v0"], "'NoSuch/Env-v0'"),
    (["--pop", "1"], "argument --pop: must be an integer >= 2"),
    (["--pop", "x"], "argument --pop"),
    (["--algo", "es", "--pop", "7"], "--pop must be even for es"),
    (["--algo", "cma"], "argument --algo"),
    (["--generations", "-1"], "argument --generations"),
    (["--hidden", "0"], "argument --hidden"),
    (["--episodes", "0"], "argument --episodes"),
    (["--sigma", "nan"], "argument --sigma"),
    (["--workers", "2"], "--workers needs --backend process or ray"),
    (["--backend", "nope"], "argument --backend"),
    (["--truncation", "9"], "--truncation 9 is larger than --pop 8"),
    (["--lr", "0.1"], "--lr is not an option of --algo ga"),
    (["--env-kwarg", "novalue"], "argument --env-kwarg"),
    (["--env-kwarg", "nope=1"], "does not take env_kwargs"),
    (["--policy", "conv"], "--policy conv needs image observations"),
    (["--target-return", "nan"], "--target-return must be a finite number"),
])
def test_bad_arguments_refused_in_one_line_before_any_work(tmp_path, capsys, argv, match):
    out = tmp_path / "run"
    base = ["neuro", "--env", "CartPole-v1", "--algo", "ga", "--pop", "8", "--generations", "2", "--out", str(out)]
    t0 = time.perf_counter()
    line = error_line([*base, *argv], capsys)
    assert match in line, line
    assert time.perf_counter() - t0 < 5 and not (out / "checkpoint.pkl").exists()


def test_missing_arguments_and_bad_paths(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert "needs --env, --algo, --pop, --generations, --out" in error_line(["neuro"], capsys)
    assert "--out" in error_line(["neuro", "--env", "CartPole-v1", "--algo", "ga", "--pop", "4", "--generations",
                                  "1"], capsys)
    assert "not a directory" in error_line(["neuro", "--env", "CartPole-v1", "--algo", "ga", "--pop", "4",
                                            "--generations", "1", "--out", str(tmp_path / "afile")], capsys)
    assert "best_policy.npz" in error_line(["neuro", "play", str(tmp_path)], capsys)
    assert "not found" in error_line(["neuro", "play", str(tmp_path / "missing")], capsys)
    assert "argument --episodes" in error_line(["neuro", "play", str(tmp_path), "--episodes", "0"], capsys)
    assert ".gif, .mp4" in error_line(["neuro", "play", str(tmp_path), "--video", str(tmp_path / "v.avi")], capsys)
    assert "not a saved policy" in error_line(["neuro", "play", str(tmp_path / "afile")], capsys)
