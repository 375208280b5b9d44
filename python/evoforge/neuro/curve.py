"""The learning curve of a neuroevolution run: returns per generation against environment steps.

One line per record key of the run's history (``history.jsonl`` or :attr:`EvolveResult.curve`):
``best_return`` (the best policy so far: Deep GA's re-evaluated elite, OpenAI-ES's mean), the
generation's policy (``elite_return`` or ``center_return``, thin), the population's ``mean_return``
and ``max_return`` (dotted), against ``env_steps`` (cumulative, every episode of the run counted:
the population's, and the re-evaluations'). Horizontal references (random play, a target) are
drawn dashed. Needs matplotlib (drawn off-screen).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..plot import _check_save

__all__ = ["load_curve", "plot_curve"]

_LINES = (("best_return", "best so far", dict(lw=2.0)),
          ("elite_return", "elite (re-evaluated)", dict(lw=0.8, alpha=0.7)),
          ("center_return", "ES mean (re-evaluated)", dict(lw=0.8, alpha=0.7)),
          ("max_return", "population max", dict(lw=0.8, ls=":")),
          ("mean_return", "population mean", dict(lw=1.2)))


def load_curve(run: Any) -> list[dict]:
    """The history of a run: a run directory (its ``history.jsonl``), that file, or a list of records."""
    if isinstance(run, list):
        if not all(isinstance(r, dict) for r in run):
            raise TypeError("a history must be a list of dicts (one record per generation)")
        return [dict(r) for r in run]
    if not isinstance(run, (str, os.PathLike)):
        raise TypeError(f"run must be a run directory, a history file or a list of records, got {type(run).__name__}")
    p = Path(run)
    p = p / "history.jsonl" if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(f"no history: {str(p)!r} is missing")
    try:
        records = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    except ValueError as e:  # not JSON lines (UnicodeDecodeError is a ValueError too)
        raise ValueError(f"{str(p)!r} is not a history (JSON lines): {e}") from None
    if not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{str(p)!r} is not a history: its lines must be JSON objects")
    return records


def plot_curve(run: Any, save: str | os.PathLike | None = None, *, title: str | None = None,
               references: dict[str, float] | None = None, ax: Any = None) -> Any:
    """Draw the learning curve of ``run`` (see :func:`load_curve`); ``references`` maps a label to a
    return drawn as a dashed horizontal line (e.g. ``{"random play": -180.0, "solved": 200}``).
    Saves to ``save`` when given (PNG by its suffix); returns the matplotlib Axes."""
    if references is not None and (not isinstance(references, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in references.items())):
        raise TypeError("references must be a dict of label (str) -> return (a number)")
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    if save is not None:
        if not isinstance(save, (str, os.PathLike)):
            raise TypeError(f"save must be a path, got {type(save).__name__}")
        _check_save(save)  # a NUL byte, a parent that is not a directory
        if Path(save).is_dir():
            raise IsADirectoryError(f"save {str(save)!r} is a directory")
    records = load_curve(run)
    if ax is None:
        if "matplotlib.pyplot" not in sys.modules:  # off-screen, unless the caller already chose a backend
            import matplotlib

            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    else:
        fig = ax.figure
    steps = [r.get("env_steps", r.get("generation", i + 1)) for i, r in enumerate(records)]
    for key, label, style in _LINES:
        pts = [(x, r[key]) for x, r in zip(steps, records) if r.get(key) is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=label, marker="o" if len(pts) < 12 else None, ms=3, **style)
    for i, (label, value) in enumerate((references or {}).items()):
        ax.axhline(float(value), ls="--", lw=1, color=f"C{5 + i}", label=f"{label} ({float(value):.4g})")
    ax.set_xlabel("environment steps" if records and "env_steps" in records[0] else "generation")
    ax.set_ylabel("return")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4))
    ax.grid(alpha=0.3)
    gens = len(records)
    ax.set_title(title or f"learning curve ({gens} generation{'s' if gens != 1 else ''})", fontsize=10)
    if records or references:
        ax.legend(fontsize=8, loc="best")
    if save is not None:
        fig.tight_layout()
        fig.savefig(save)
        import matplotlib.pyplot as plt

        plt.close(fig)
    return ax
