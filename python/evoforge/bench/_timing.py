"""Whole models timed against a latency model's predictions, shared by ``bench front`` and ``bench
subnets``: interleaved rounds (so that a drift of the machine's speed hits every model alike) and
the prediction's error and rank correlation."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["interleaved_medians", "prediction_summary"]


def interleaved_medians(models: dict[Any, Any], *, prefill: int, rounds: int = 11) -> dict[Any, dict[str, float]]:
    """Median seconds per model of a decode step after 16 cached tokens (median of 3 per round) and
    of a ``prefill``-token forward, over ``rounds`` rounds after one warm-up round, every model
    timed once per round in turn: ``{name: {"decode": s, "prefill": s}}``."""
    import torch

    from evoforge.compress import latency

    times: dict[Any, dict[str, list[float]]] = {k: {"decode": [], "prefill": []} for k in models}
    with torch.inference_mode():
        for r in range(rounds + 1):
            for k, m in models.items():
                dec = latency.model_seconds(m, tokens=1, context=16, repeats=3, warmup=0)
                pre = latency.model_seconds(m, tokens=prefill, context=0, repeats=1, warmup=0)
                if r:
                    times[k]["decode"].append(dec)
                    times[k]["prefill"].append(pre)
    return {k: {m: float(np.median(v)) for m, v in t.items()} for k, t in times.items()}


def prediction_summary(rows: list[dict]) -> dict[str, dict]:
    """Per mode (decode, prefill): max and mean relative error of ``{mode}_pred`` against
    ``{mode}_meas`` over ``rows``, and their Spearman correlation."""
    from evoforge.search.screening import spearman

    out = {}
    for m in ("decode", "prefill"):
        pred, meas = np.array([r[f"{m}_pred"] for r in rows]), np.array([r[f"{m}_meas"] for r in rows])
        err = np.abs(pred - meas) / meas
        out[m] = {"max_rel_error": float(err.max()), "mean_rel_error": float(err.mean()),
                  "spearman": spearman(pred, meas)}
    return out
