"""A neuroevolution run killed with SIGKILL and resumed from its run directory gives the result of an
uninterrupted run (Deep GA and OpenAI-ES), and a run directory refuses other settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip("gymnasium")

from evoforge.errors import ConfigError  # noqa: E402
from evoforge.neuro import evolve  # noqa: E402

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import gymnasium as gym
    from evoforge.neuro import evolve

    run_dir, algo, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])

    class Slow(gym.Wrapper):
        def reset(self, **kw):
            time.sleep(delay)
            return self.env.reset(**kw)

    def make():
        return Slow(gym.make("CartPole-v1"))

    KW = {"ga": dict(pop=16, hidden=(16,), sigma=0.05, truncation=4, elite_candidates=3, elite_episodes=4,
                     generations=8, seed=3),
          "es": dict(pop=16, hidden=(16,), lr=0.05, eval_episodes=4, generations=8, seed=2)}[algo]
    r = evolve(make, algo, run_dir=None if run_dir == "-" else run_dir, **KW)
    curve = [{k: v for k, v in c.items() if k not in ("seconds", "evaluations", "requested", "cache_hits")}
             for c in r.curve]
    print(json.dumps({"params": r.params.tolist(), "curve": curve, "steps": r.env_steps,
                      "norm": None if r.obs_norm is None else [r.obs_norm[0].tolist(), r.obs_norm[1].tolist()]}))
    """
)


@pytest.mark.parametrize("algo", ["ga", "es"])
def test_resume_after_kill_9_gives_the_uninterrupted_result(tmp_path, algo):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ref = subprocess.run([sys.executable, str(script), "-", algo, "0"], capture_output=True, text=True, check=True,
                         env=env, timeout=300)
    expected = json.loads(ref.stdout)

    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir), algo, "0.004"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    hist = run_dir / "history.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if hist.is_file() and len(hist.read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(hist.read_text().splitlines())
    assert 3 <= done < 8

    resumed = subprocess.run([sys.executable, str(script), str(run_dir), algo, "0"], capture_output=True, text=True,
                             check=True, env=env, timeout=300)
    got = json.loads(resumed.stdout)
    assert got == expected
    lines = [json.loads(x) for x in hist.read_text().splitlines()]
    assert [h["generation"] for h in lines] == list(range(1, 9))


def test_run_dir_refuses_other_settings(tmp_path):
    kw = dict(pop=4, hidden=(4,), generations=1, seed=0, max_steps=20, elite_episodes=1)
    evolve("CartPole-v1", "ga", run_dir=tmp_path / "r", **kw)
    with pytest.raises(ConfigError, match="other settings"):
        evolve("CartPole-v1", "ga", run_dir=tmp_path / "r", **{**kw, "seed": 1})
    with pytest.raises(ConfigError, match="not a directory"):
        (tmp_path / "f").write_text("x")
        evolve("CartPole-v1", "ga", run_dir=tmp_path / "f", **kw)
    # the same settings resume: more generations continue the run
    r = evolve("CartPole-v1", "ga", run_dir=tmp_path / "r", **{**kw, "generations": 2})
    assert r.generations == 2 and [c["generation"] for c in r.curve] == [1, 2]
