"""The files of a finished neuroevolution run, beside the engine's checkpoint and history.

:func:`write_run` writes into the run directory:

* ``best_policy.npz``: the best policy (parameters, architecture, observation normalisation, the
  environment id and kwargs; :func:`~evoforge.neuro.saved.save_policy`), which ``evoforge neuro
  play`` and :func:`~evoforge.neuro.play.play` rebuild;
* ``curve.png``: the learning curve (:func:`~evoforge.neuro.curve.plot_curve`), with a reference line
  per ``references`` entry;
* ``report.json``: the settings, the policy, generations, environment steps, wall time (this call's
  and, over resumes, the total), the best policy's returns over ``eval_episodes`` fresh episodes, and
  bytes: the best genome as a seed list against its float32 weights, and what the run sent to its
  evaluators (genome arrays) against what shipping weights would have cost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import check_int
from ..errors import ConfigError
from ..search.engine import _json_default
from .api import EvolveResult
from .curve import plot_curve
from .play import BEST_POLICY
from .saved import save_policy

__all__ = ["write_run", "REPORT", "CURVE"]

REPORT = "report.json"
CURVE = "curve.png"


def _bytes(result: Any) -> dict:
    D = result.policy.n_params
    hist = result.curve
    sent_g = sum(int(r.get("genome_bytes", 0)) for r in hist)
    sent_w = sum(int(r.get("weight_bytes", 0)) for r in hist)
    out = {"param_bytes": 4 * D, "sent_genome_bytes": sent_g, "sent_weight_bytes": sent_w,
           "sent_ratio": (sent_w / sent_g) if sent_g else None}
    if result.genome is not None:
        g = np.asarray(result.genome)
        n = int(g[0])
        out.update(best_genome_seeds=n, best_genome_bytes=8 * n, best_genome_ratio=4 * D / (8 * n))
    if result.algo == "es":
        out["note"] = ("OpenAI-ES sends (seed, sign) pairs, 16 bytes per candidate, and the mean (4 D bytes) once "
                       "per generation to each worker; the best policy is the mean, its weights")
    return out


def write_run(result: Any, run_dir: Any, *, settings: dict | None = None, eval_episodes: int = 20,
              eval_seed: int = 2**32 + 7, references: dict | None = None) -> dict:
    """Write ``best_policy.npz``, ``curve.png`` and ``report.json`` of ``result`` (an
    :class:`~evoforge.neuro.api.EvolveResult` whose ``env`` is a Gymnasium id) into ``run_dir``;
    returns the report."""
    if not isinstance(result, EvolveResult):
        raise TypeError(f"result must be the EvolveResult of evolve(), got {type(result).__name__}")
    if settings is not None and not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict, got {type(settings).__name__}")
    if references is not None and (not isinstance(references, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in references.items())):
        raise TypeError("references must be a dict of label (str) -> return (a number)")
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"run_dir must be a path, got {type(run_dir).__name__}")
    if result.params is None:
        raise ConfigError("no policy to save: the run evaluated no generation")
    if not isinstance(result.env, str):
        raise ConfigError("write_run needs a run on a Gymnasium id (its policy file names the environment)")
    E = check_int(eval_episodes, "eval_episodes", 1, 1 << 16)
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous = {}
    if (out / REPORT).is_file():
        try:
            previous = json.loads((out / REPORT).read_text())
        except ValueError:
            previous = {}
    settings = dict(settings or {})
    meta = {"env": result.env, "env_kwargs": result.env_kwargs or {}, "algo": result.algo,
            "max_steps": settings.get("max_steps"), "generations": result.generations}
    save_policy(out / BEST_POLICY, result.policy, result.params, result.obs_norm, meta)
    returns = result.evaluate(episodes=E, seed=eval_seed, max_steps=settings.get("max_steps"))
    plot_curve(result.curve, out / CURVE, title=f"{result.env}: {result.algo.upper()} "
                                                 f"(pop {settings.get('pop', '?')}), final {returns.mean():.1f}",
               references=references)
    total = float(previous.get("wall_seconds_total", 0.0)) + float(result.seconds)
    last = result.curve[-1] if result.curve else {}
    report = {
        "settings": settings, "env": result.env, "env_kwargs": result.env_kwargs or {}, "algo": result.algo,
        "policy": {**result.policy.describe(), "n_params": result.policy.n_params},
        "generations": result.generations, "stopped": result.stopped, "env_steps": int(result.env_steps),
        "wall_seconds": round(float(result.seconds), 3), "wall_seconds_total": round(total, 3),
        "steps_per_second": (result.env_steps / total) if total > 0 else None,
        "best_return_search": result.best_return, "last_generation": last,
        "final_evaluation": {"episodes": E, "seed": eval_seed, "mean": float(returns.mean()),
                             "std": float(returns.std()), "min": float(returns.min()), "max": float(returns.max())},
        "bytes": _bytes(result),
        "files": {"policy": BEST_POLICY, "curve": CURVE, "history": "history.jsonl", "checkpoint": "checkpoint.pkl"},
    }
    tmp = out / (REPORT + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=_json_default))
    os.replace(tmp, out / REPORT)
    return report

