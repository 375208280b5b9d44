"""Plots of search runs (matplotlib, imported only here): convergence curves from an engine's
history and Pareto fronts. Each function draws on ``ax`` (a new figure when None) and returns it;
``save`` writes the figure (PNG, SVG, PDF by the file's suffix)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _checks

__all__ = ["convergence", "layer_levels", "load_history", "pareto_front"]


def load_history(run: Any) -> list[dict]:
    """The per-generation records of a run: a run directory, its history.jsonl, a Result, or a list."""
    if isinstance(run, (str, os.PathLike)):
        p = Path(run)
        p = p / "history.jsonl" if p.is_dir() else p
        if not p.is_file():
            raise FileNotFoundError(f"no history file at {p}")
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    if hasattr(run, "history"):
        return list(run.history)
    return list(run)


def _axes(ax: Any):
    import matplotlib

    if ax is None:
        if not os.environ.get("DISPLAY") and not os.environ.get("MPLBACKEND"):
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    return ax


def _check_save(save: Any) -> None:
    """Refuse, before drawing, a ``save`` that matplotlib could not write: not a path or a binary
    file object (TypeError), a NUL byte (ValueError), a parent that is not a directory (OSError)."""
    if save is None or (hasattr(save, "write") and not isinstance(save, (str, os.PathLike))):
        return
    if not isinstance(save, (str, os.PathLike)):
        raise TypeError(f"save must be None, a path (str or os.PathLike) or a binary file object, got "
                        f"{type(save).__name__}")
    raw = os.fspath(save)
    if "\0" in (os.fsdecode(raw) if isinstance(raw, bytes) else raw):
        raise ValueError(f"save path {raw!r} contains a NUL byte")
    parent = Path(os.fsdecode(raw)).parent
    if not parent.is_dir():
        if parent.exists() or any(p.is_file() for p in parent.parents):
            raise NotADirectoryError(f"cannot save the plot to {raw!r}: {parent} is not a directory")
        raise FileNotFoundError(f"cannot save the plot to {raw!r}: the directory {parent} does not exist")


def _save(ax: Any, save: str | os.PathLike | None) -> None:
    if save is not None:
        ax.figure.savefig(save, dpi=150)


def convergence(run: Any, *, key: str = "best_fitness", x: str = "evaluations", ax: Any = None,
                label: str | None = None, save: str | os.PathLike | None = None):
    """``key`` (e.g. best_fitness, hypervolume) against ``x`` (evaluations, generation, seconds).
    Vector values (a front's best per objective) draw one line per component."""
    _check_save(save)
    hist = load_history(run)
    if not hist:
        raise ValueError("the history is empty")
    missing = [k for k in (key, x) if k not in hist[0]]
    if missing:
        raise KeyError(f"history records have no {missing}; they have {sorted(hist[0])}")
    ax = _axes(ax)
    xs = np.array([h[x] for h in hist], dtype=float)
    ys = np.array([np.atleast_1d(np.asarray(h[key], dtype=float)) for h in hist])
    for j in range(ys.shape[1]):
        name = label if ys.shape[1] == 1 else f"{label or key}[{j}]"
        ax.plot(xs, ys[:, j], label=name)
    ax.set_xlabel(x)
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    if label is not None or ys.shape[1] > 1:
        ax.legend()
    _save(ax, save)
    return ax


def layer_levels(values: Any, *, labels: Sequence[str] | None = None, ylabel: str = "level",
                 reference: float | None = None, title: str | None = None, ax: Any = None,
                 save: str | os.PathLike | None = None):
    """Bar chart of one value per layer (e.g. sparsity or bits), in order; ``reference`` draws a
    horizontal line (e.g. the uniform level); ``labels`` name the bars (shown when few)."""
    _check_save(save)
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size == 0:
        raise ValueError("no values to plot")
    ax = _axes(ax)
    ax.bar(np.arange(v.size), v, width=0.85)
    if reference is not None:
        ax.axhline(float(reference), color="k", lw=1, ls="--", label="uniform")
        ax.legend()
    if labels is not None and len(labels) == v.size and v.size <= 40:
        ax.set_xticks(np.arange(v.size), [str(x) for x in labels], rotation=90, fontsize=6)
    else:
        ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    _save(ax, save)
    return ax


def pareto_front(F: Any, *, ranks: Sequence[int] | None = None, ax: Any = None, labels: Sequence[str] = ("f1", "f2"),
                 max_fronts: int = 5, save: str | os.PathLike | None = None):
    """Scatter of 2-D objectives [N, 2], N >= 1, coloured by front (computed when ``ranks`` is
    None; else ``ranks`` [N], integers) for the fronts 0 .. max_fronts - 1; the first front is
    joined as a staircase. Non-finite objectives are left out of the picture by matplotlib;
    finite ones must not exceed 1e300 in magnitude."""
    from . import pareto

    _check_save(save)
    max_fronts = _checks.check_int(max_fronts, "max_fronts", 1)
    F = np.asarray(F, dtype=float)
    if F.ndim != 2 or F.shape[1] != 2:
        raise ValueError(f"pareto_front draws 2 objectives: F must have shape [N, 2], got {F.shape}")
    if F.shape[0] == 0:
        raise ValueError("pareto_front has no points to plot (F has 0 rows)")
    # matplotlib's axis arithmetic (view limits with margins, tick steps) overflows float64 and fails
    # for spans near the largest double (~1.8e308); 1e300 leaves ample headroom and no real
    # objective is that large, so such a value is a bug or a penalty to plot on another scale.
    huge = np.isfinite(F) & (np.abs(F) > 1e300)
    if huge.any():
        i = int(np.argmax(huge.any(axis=1)))
        raise ValueError(f"F row {i} holds a value beyond 1e300 in magnitude ({F[i]}), which cannot be plotted")
    if ranks is None:
        r = pareto.nondominated_rank(F)
    else:
        r = np.asarray(ranks)
        if r.shape != (F.shape[0],):
            raise ValueError(f"ranks must have shape ({F.shape[0]},) like F's rows, got {r.shape}")
        if r.dtype.kind not in "biuf" or (r.dtype.kind == "f" and not (np.isfinite(r) & (r == np.round(r))).all()):
            raise TypeError(f"ranks must hold integers, got dtype {r.dtype}")
    ax = _axes(ax)
    # Only the fronts present are drawn: a huge max_fronts or rank never loops over empty fronts.
    fronts = np.unique(r[(r >= 0) & (r < max_fronts)]).astype(np.int64)
    for k in fronts:
        P = F[r == k]
        ax.scatter(P[:, 0], P[:, 1], s=12, label=f"front {k}")
        if k == 0:
            P = P[np.argsort(P[:, 0])]
            ax.step(P[:, 0], P[:, 1], where="post", lw=1, alpha=0.6)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.grid(alpha=0.3)
    if fronts.size:
        ax.legend()
    _save(ax, save)
    return ax
