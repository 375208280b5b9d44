"""What a front run returns and leaves in its run directory: :class:`FrontResult`, ``front.json``,
``front.csv``, ``front.png`` and ``report.md``.

A point is a dict: ``genome``, the per-layer or per-block lists named by ``columns``
(``--method front``: ``sparsity`` and ``bits`` per layer, the genome 2L ints of sparsity levels
then bit indices; ``--method subnet``: ``heads`` and ``mlp`` kept per block), ``search`` (its
objectives as the search scored them: KL on the calibration tokens) and ``heldout`` (KL re-scored on the held-out tokens; bytes and latency are the same
numbers). ``uniform`` holds the same for every uniform configuration of the space (one share and
one bit-width in every layer; the same heads and width in every block), ``label`` saying which.
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
    fractions: list[float] = dataclasses.field(default_factory=list)
    bits: list[int] = dataclasses.field(default_factory=list)
    group_size: int = 0
    symmetric: bool = False
    generations: int = 0
    evaluations: int = 0
    history: list = dataclasses.field(default_factory=list)
    run_dir: str | None = None
    db_path: str | None = None
    model: str | None = None
    latency_tokens: int = 1
    fixed_seconds: float | None = None
    #: per combined level, the in-model factor of its table entries (evoforge.compress.latency_calibration)
    latency_factors: list | None = None
    times: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)
    #: single-budget results to draw beside the front: ``{"name", "kl" (held-out), "bytes"}`` dicts
    references: list = dataclasses.field(default_factory=list)
    method: str = "front"
    #: the per-layer (or per-block) lists of a point summarised by their mean in tables and files
    columns: list = dataclasses.field(default_factory=lambda: ["sparsity", "bits"])
    #: ``--method subnet``: the MLP width shares of the space
    widths: list = dataclasses.field(default_factory=list)
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
        objs, cols = self.objectives, self.columns
        head = "| point | " + " | ".join(_label(o) for o in objs) + "".join(f" | mean {c}" for c in cols) + " |"
        rows = [head, "|" + "---|" * (len(objs) + len(cols) + 1)]
        for i, p in enumerate(self.points):
            rows.append(f"| {i} | " + " | ".join(_fmt(o, p["heldout"][o]) for o in objs)
                        + "".join(f" | {np.mean(p[c]):.3f}" for c in cols) + " |")
        for u in self.uniform:
            rows.append(f"| uniform {_uniform_label(u)} | " + " | ".join(_fmt(o, u["heldout"][o]) for o in objs)
                        + "".join(f" | {np.mean(u[c]):.3f}" for c in cols) + " |")
        return "\n".join(rows)

    def export(self, i: int, out_dir: str | os.PathLike, *, packed: bool = True, model: Any = None,
               tokenizer: Any = None, heal_steps: int = 0, heal_lr: float = 1e-4) -> Path:
        """Write point ``i`` to ``out_dir``: packed layers (:func:`evoforge.layers.save`, float16 dense
        tensors) or, with ``packed=False``, a Hugging Face model with the compressed weights in place
        (float32). ``model``: the dense model (default: the one this result was computed on, or the
        run's ``model`` path). Returns ``out_dir``.

        A sub-network front (``method == "subnet"``) writes the real smaller model
        (:func:`evoforge.compress.subnet_model.save_subnet`; ``packed`` does not apply), first healed
        for ``heal_steps`` distillation steps at learning rate ``heal_lr`` when ``heal_steps`` > 0."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < len(self.points):
            raise ConfigError(f"point must be an int in [0, {len(self.points) - 1}], got {i!r}")
        if self.method == "subnet":  # a real smaller model; `packed` does not apply
            from .subnet_model import export_subnet_point

            return export_subnet_point(self, int(i), Path(out_dir), model=model, tokenizer=tokenizer,
                                       heal_steps=heal_steps, heal_lr=heal_lr)
        if heal_steps:
            raise ConfigError("heal_steps applies to sub-network fronts (--method subnet), not to compression fronts")
        from .front_export import export_point

        return export_point(self, int(i), Path(out_dir), packed=packed, model=model, tokenizer=tokenizer)


def _plain(v: Any) -> Any:
    """JSON for the engine's history records (NumPy arrays and scalars)."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


def _label(o: str) -> str:
    return {"kl": "KL (held-out)", "cosine": "cosine distance (held-out)", "bytes": "MB (linear layers)",
            "params": "M parameters", "latency": "latency ms"}[o]


def _uniform_label(u: dict) -> str:
    if "label" in u:
        return str(u["label"])
    s, b = u["uniform"]  # front.json of earlier versions
    return f"{s:g} / {b} bits"


def _fmt(o: str, v: float) -> str:
    if o in ("bytes", "params"):
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
                    *[f"mean_{c}" for c in result.columns]])
        for i, p in enumerate(result.points):
            w.writerow(["front", i, *[p["heldout"][o] for o in objs], *[p["search"][o] for o in objs],
                        *[float(np.mean(p[c])) for c in result.columns]])
        for u in result.uniform:
            w.writerow([f"uniform {_uniform_label(u)}", "", *[u["heldout"][o] for o in objs],
                        *[u["search"][o] for o in objs], *[float(np.mean(u[c])) for c in result.columns]])
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
    size = next((o for o in ("bytes", "params") if o in result.objectives), None)
    if size is not None:
        x, xu = [p["heldout"][size] / 1e6 for p in pts], [u["heldout"][size] / 1e6 for u in uni]
    else:  # a front of KL against latency: the points' mean size on the x axis
        x = [np.mean(p["bits"]) * (1 - np.mean(p["sparsity"])) if "bits" in p else np.mean(p["mlp"]) for p in pts]
        xu = [np.mean(u["bits"]) * (1 - np.mean(u["sparsity"])) if "bits" in u else np.mean(u["mlp"]) for u in uni]
    q = next((o for o in ("kl", "cosine") if o in result.objectives),
             next(o for o in result.objectives if o != size))  # the quality objective, else the other one
    y = [p["heldout"][q] for p in pts]
    yu = [u["heldout"][q] for u in uni]
    # a log axis cannot show KL <= 0 (the dense configuration, up to rounding): draw it at a floor,
    # as everything at rounding level (below 1e-5 of the largest value)
    top = max(y + yu, default=0.0)
    pos = [v for v in y + yu if v > 1e-5 * top]
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
    if result.references and size is not None:
        xr = [r[size] / 1e6 for r in result.references]
        ax.scatter(xr, [max(r[q], floor) for r in result.references], marker="D", facecolor="none",
                   edgecolor="black", s=44, label="single-budget runs", zorder=4)
        for r, x_ in zip(result.references, xr):
            ax.annotate(r["name"], (x_, max(r[q], floor)), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel({"bytes": "linear layers, MB packed", "params": "parameters, millions"}.get(
        size, "mean bits x density" if result.method == "front" else "mean MLP neurons kept"))
    ax.set_ylabel(f"{_label(q)} (<= 0 drawn at {floor:.1g})")
    ax.set_title(f"{'sub-network' if result.method == 'subnet' else 'compression'} front: {result.space}")
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
