"""What a front run returns and leaves in its run directory: :class:`FrontResult`, ``front.json``,
``front.csv``, ``front.png`` and ``report.md``.

A point is a dict: ``genome`` (2L ints: sparsity levels, then bit indices), ``sparsity`` and
``bits`` per layer, ``search`` (its objectives as the search scored them: KL on the calibration
tokens) and ``heldout`` (KL re-scored on the held-out tokens; bytes and latency are the same
numbers). ``uniform`` holds the same for every uniform configuration of the space (one share and
one bit-width in every layer), ``uniform: [share, bits]`` saying which.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["FRONT_FILE", "FrontResult", "load_front", "write_front"]

FRONT_FILE = "front.json"


@dataclasses.dataclass
class FrontResult:
    """The points of a front run non-dominated on held-out tokens (sorted by the first held-out
    objective, then the next), chosen from the search's last front and the uniform configurations,
    with the uniform configurations for comparison. :meth:`export` writes point ``i`` as a model."""

    space: str
    objectives: list[str]
    layers: list[str]
    points: list[dict]
    uniform: list[dict]
    fractions: list[float]
    bits: list[int]
    group_size: int
    symmetric: bool
    generations: int = 0
    evaluations: int = 0
    history: list = dataclasses.field(default_factory=list)
    run_dir: str | None = None
    db_path: str | None = None
    model: str | None = None
    latency_tokens: int = 1
    fixed_seconds: float | None = None
    times: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    #: single-budget results to draw beside the front: ``{"name", "kl" (held-out), "bytes"}`` dicts
    references: list = dataclasses.field(default_factory=list)
    method: str = "front"
    _bound: Any = dataclasses.field(default=None, repr=False, compare=False)

    def bind(self, adapter: Any, space: Any) -> None:
        """Keep the model and the space the points refer to (for :meth:`export` in this process)."""
        self._bound = (adapter, space)

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}

    @classmethod
    def from_json(cls, d: dict) -> FrontResult:
        names = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        return cls(**{k: v for k, v in d.items() if k in names})

    def table(self) -> str:
        """A markdown table of the points (held-out objectives) and the uniform configurations."""
        objs = self.objectives
        head = "| point | " + " | ".join(_label(o) for o in objs) + " | mean sparsity | mean bits |"
        rows = [head, "|" + "---|" * (len(objs) + 3)]
        for i, p in enumerate(self.points):
            rows.append(f"| {i} | " + " | ".join(_fmt(o, p["heldout"][o]) for o in objs)
                        + f" | {np.mean(p['sparsity']):.3f} | {np.mean(p['bits']):.2f} |")
        for u in self.uniform:
            s, b = u["uniform"]
            rows.append(f"| uniform {s:g} / {b} bits | " + " | ".join(_fmt(o, u["heldout"][o]) for o in objs)
                        + f" | {np.mean(u['sparsity']):.3f} | {np.mean(u['bits']):.2f} |")
        return "\n".join(rows)

    def export(self, i: int, out_dir: str | os.PathLike, *, packed: bool = True, model: Any = None,
               tokenizer: Any = None) -> Path:
        """Write point ``i`` to ``out_dir``: packed layers (:func:`evoforge.layers.save`, float16 dense
        tensors) or, with ``packed=False``, a Hugging Face model with the compressed weights in place
        (float32). ``model``: the dense model (default: the one this result was computed on, or the
        run's ``model`` path). Returns ``out_dir``."""
        from .front_export import export_point

        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < len(self.points):
            raise ConfigError(f"point must be an int in [0, {len(self.points) - 1}], got {i!r}")
        return export_point(self, int(i), Path(out_dir), packed=packed, model=model, tokenizer=tokenizer)


def _plain(v: Any) -> Any:
    """JSON for the engine's history records (NumPy arrays and scalars)."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


def _label(o: str) -> str:
    return {"kl": "KL (held-out)", "bytes": "MB (linear layers)", "latency": "latency ms"}[o]


def _fmt(o: str, v: float) -> str:
    if o == "bytes":
        return f"{v / 1e6:.3f}"
    if o == "latency":
        return f"{v * 1e3:.3f}"
    return f"{v:.4g}"


def write_front(result: FrontResult, run_dir: str | os.PathLike) -> None:
    """``front.json`` (the result), ``front.csv`` (one row per point and uniform configuration),
    ``front.png`` (when matplotlib is installed) and ``report.md`` in ``run_dir``."""
    rd = Path(run_dir)
    tmp = rd / (FRONT_FILE + ".tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=1, default=_plain))
    os.replace(tmp, rd / FRONT_FILE)
    objs = result.objectives
    with open(rd / "front.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "point", *[f"{o}_heldout" for o in objs], *[f"{o}_search" for o in objs],
                    "mean_sparsity", "mean_bits"])
        for i, p in enumerate(result.points):
            w.writerow(["front", i, *[p["heldout"][o] for o in objs], *[p["search"][o] for o in objs],
                        float(np.mean(p["sparsity"])), float(np.mean(p["bits"]))])
        for u in result.uniform:
            w.writerow([f"uniform {u['uniform'][0]:g}/{u['uniform'][1]}", "", *[u["heldout"][o] for o in objs],
                        *[u["search"][o] for o in objs], float(np.mean(u["sparsity"])), float(np.mean(u["bits"]))])
    plot = _plot(result, rd / "front.png")
    lines = [f"# Compression front ({result.space}; objectives {', '.join(objs)})", "",
             f"{len(result.points)} non-dominated points after {result.generations} generations "
             f"({result.evaluations} evaluations), chosen on held-out tokens from the search's "
             f"last front and the uniform configurations.", "", result.table(), ""]
    if result.fixed_seconds is not None:
        lines += [f"Latency: per-layer table at {result.latency_tokens} token(s) per forward plus a measured fixed "
                  f"part of {result.fixed_seconds * 1e3:.3f} ms.", ""]
    lines += [f"![front]({plot.name})" if plot else "plots skipped: matplotlib is not installed", ""]
    lines += [f"- {n}" for n in result.notes]
    lines += ["", f"Export a point: `evoforge compress export {rd} --point I --out DIR --packed`"]
    (rd / "report.md").write_text("\n".join(lines) + "\n")


def _plot(result: FrontResult, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts, uni = result.points, result.uniform
    x = [p["heldout"]["bytes"] / 1e6 for p in pts] if "bytes" in result.objectives else \
        [np.mean(p["bits"]) * (1 - np.mean(p["sparsity"])) for p in pts]
    xu = [u["heldout"]["bytes"] / 1e6 for u in uni] if "bytes" in result.objectives else \
        [np.mean(u["bits"]) * (1 - np.mean(u["sparsity"])) for u in uni]
    y = [p["heldout"]["kl"] for p in pts]
    yu = [u["heldout"]["kl"] for u in uni]
    # a log axis cannot show KL <= 0 (the dense configuration, up to rounding): draw it at a floor
    pos = [v for v in y + yu if v > 0]
    floor = min(pos) / 3 if pos else 1e-6
    y, yu = [max(v, floor) for v in y], [max(v, floor) for v in yu]
    if "latency" in result.objectives:
        c = [p["heldout"]["latency"] * 1e3 for p in pts]
        sc = ax.scatter(x, y, c=c, cmap="viridis", s=28, zorder=3)
        ax.scatter([], [], color="tab:purple", s=28, label="front (colour: latency)")  # a neutral legend marker
        fig.colorbar(sc, ax=ax, label=f"latency, ms ({result.latency_tokens} token(s))")
    else:
        ax.scatter(x, y, s=28, label="front", zorder=3)
    ax.scatter(xu, yu, marker="x", color="tab:red", s=36, label="uniform", zorder=2)
    if result.references and "bytes" in result.objectives:
        xr = [r["bytes"] / 1e6 for r in result.references]
        ax.scatter(xr, [max(r["kl"], floor) for r in result.references], marker="D", facecolor="none",
                   edgecolor="black", s=44, label="single-budget runs", zorder=4)
        for r, x_ in zip(result.references, xr):
            ax.annotate(r["name"], (x_, max(r["kl"], floor)), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("linear layers, MB packed" if "bytes" in result.objectives else "mean bits x density")
    ax.set_ylabel(f"KL (held-out; <= 0 drawn at {floor:.1g})")
    ax.set_title(f"compression front: {result.space}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_front(run_dir: str | os.PathLike) -> FrontResult:
    """The FrontResult kept in ``run_dir`` (its ``front.json``)."""
    p = Path(run_dir) / FRONT_FILE
    if not p.is_file():
        raise FileNotFoundError(f"no front in {str(run_dir)!r} ({p} is missing; was it a --method front run?)")
    try:
        return FrontResult.from_json(json.loads(p.read_text()))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{p} is not a front result: {exc}") from None
