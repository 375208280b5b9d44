"""What a merge run returns and writes: the recipe and merged model, held-out losses next to the
base, the experts and the best uniform recipe, the front for ``nsga2``, the report and plots.

Symbols: T tasks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from .recipe import Recipe

__all__ = ["MergeResult", "write_run", "load_recipe"]


@dataclass
class MergeResult:
    """recipe (None for a data-flow path: see ``path``); model : the merged model (resident);
    tasks : names [T]; heldout : float [T] of the result; search : its search fitness;
    baselines : {"base": [T], "experts": {name: [T]}, "grid": [{weight, density, search, heldout}]};
    front : for nsga2, [{"recipe", "search" [T], "heldout" [T]}]; evaluations; history;
    apply_s / eval_s : seconds merging and scoring candidates; run_dir."""

    recipe: Recipe | None
    model: nn.Module
    tasks: list[str]
    heldout: list[float]
    search: Any
    baselines: dict
    evaluations: int
    history: list = field(default_factory=list)
    front: list = field(default_factory=list)
    path: list | None = None
    apply_s: float = 0.0
    eval_s: float = 0.0
    run_dir: Path | None = None

    @property
    def best_uniform(self) -> dict:
        """The grid recipe of lowest mean search loss, with its held-out losses."""
        return min(self.baselines["grid"], key=lambda g: float(np.mean(g["search"])))

    def rows(self) -> list[tuple[str, list[float]]]:
        rows = [("base", self.baselines["base"])]
        rows += [(f"expert {Path(n).name or n}", v) for n, v in self.baselines["experts"].items()]
        if self.baselines.get("grid"):
            u = self.best_uniform
            rows.append((f"uniform w={u['weight']:g} d={u['density']:g}", u["heldout"]))
        rows.append(("evolved", self.heldout))
        return rows

    def table(self) -> str:
        """Held-out loss (and perplexity) per task and their mean, one row per model."""
        head = "| model | " + " | ".join(f"{t} loss (ppl)" for t in self.tasks) + " | mean loss |"
        lines = [head, "|" + "---|" * (len(self.tasks) + 2)]
        for name, v in self.rows():
            cells = [f"{x:.4f} ({math.exp(min(x, 50)):.2f})" for x in v]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {float(np.mean(v)):.4f} |")
        return "\n".join(lines)


def load_recipe(path: str | Path) -> Recipe:
    """The recipe of a run directory (its ``recipe.json``) or of a recipe file."""
    p = Path(path)
    f = p / "recipe.json" if p.is_dir() else p
    try:
        d = json.loads(f.read_text())
        return Recipe.from_dict(d)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{str(f)!r} is not a merge recipe ({type(e).__name__}: {e})") from e


def write_run(config: Any, evaluator: Any, engine: Any, res: Any, baselines: dict, names: list[str],
              run_dir: Path | None) -> MergeResult:
    """Re-score the search's result (nsga2: its whole first front) on the held-out windows, leave
    the best in the model, and write the run directory."""
    tasks = [d.task.name for d in evaluator.data]
    front = []
    if config.search == "nsga2":
        X, F = engine.best
        for x, f in zip(np.atleast_2d(X), np.atleast_2d(F)):
            r = evaluator.space.decode(x)
            front.append({"recipe": r, "search": np.asarray(f).tolist(),
                          "heldout": evaluator.losses(r, "heldout").tolist()})
        pick = min(front, key=lambda p: float(np.mean(p["heldout"])))
        recipe, heldout, search = pick["recipe"], pick["heldout"], pick["search"]
    else:
        recipe = evaluator.space.decode(res.best_genome)
        heldout, search = evaluator.losses(recipe, "heldout").tolist(), res.best_fitness
    evaluator.merger.apply(recipe)  # the result stays in the model
    out = MergeResult(recipe, evaluator.merger.model, tasks, heldout, search, baselines, int(res.evaluations),
                      list(res.history), front, None, evaluator.apply_s, evaluator.eval_s, run_dir)
    if run_dir is not None:
        save(out, run_dir, names, evaluator.merger)
    return out


def save(result: MergeResult, run_dir: Path, names: list[str], merger: Any = None) -> None:
    """model/ (Hugging Face), recipe.json + recipe.yaml, result.json, report.md, merge.png."""
    run_dir = Path(run_dir)
    result.model.save_pretrained(str(run_dir / "model"))
    info = {"tasks": result.tasks, "heldout": result.heldout, "baselines": result.baselines,
            "evaluations": result.evaluations, "apply_s": result.apply_s, "eval_s": result.eval_s,
            "front": [{**p, "recipe": p["recipe"].to_dict()} for p in result.front], "path": result.path}
    if result.recipe is not None:
        (run_dir / "recipe.json").write_text(result.recipe.to_json())
        ranges = merger.layer_ranges + [(0, merger.n_blocks)] if merger is not None else []
        (run_dir / "recipe.yaml").write_text(result.recipe.to_mergekit_yaml("BASE", names, ranges))
    (run_dir / "result.json").write_text(json.dumps(info, indent=1, default=_plain))
    if result.front:  # nsga2: one row per merge of the front (its recipe is in result.json's "front")
        head = ["point"] + [f"{t}_search" for t in result.tasks] + [f"{t}_heldout" for t in result.tasks]
        rows = [",".join(head)] + [",".join([str(i)] + [f"{x:.6g}" for x in p["search"] + p["heldout"]])
                                   for i, p in enumerate(result.front)]
        (run_dir / "front.csv").write_text("\n".join(rows) + "\n")
    _plot(result, run_dir / "merge.png")
    per = result.eval_s / max(1, result.evaluations)
    lines = ["# Merge", "", f"{result.evaluations} candidates evaluated; merging took "
             f"{100 * result.apply_s / max(1e-12, result.apply_s + result.eval_s):.1f}% of the evaluation time "
             f"({per:.2f} s scoring per candidate).", "", "Held-out next-token loss (nats per token) and perplexity:",
             "", result.table(), "", "![merge](merge.png)", ""]
    if result.recipe is not None:
        lines += ["Recipe (`recipe.json`; mergekit form `recipe.yaml`):", "", "```json", result.recipe.to_json(),
                  "```", ""]
    if result.path is not None:
        lines += ["Data-flow path (source model, block, input scale):", "", "```", json.dumps(result.path), "```", ""]
    (run_dir / "report.md").write_text("\n".join(lines))


def _plain(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Recipe):
        return o.to_dict()
    raise TypeError(type(o).__name__)


def _plot(result: MergeResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    h = [r for r in result.history if r.get("best_fitness") is not None and np.size(r["best_fitness"])]
    if h and np.ndim(h[0]["best_fitness"]) == 0:
        a.plot([r["evaluations"] for r in h], [r["best_fitness"] for r in h], "o-", label="evolved (best so far)")
    elif h:  # nsga2: the best of each task so far
        Y = np.array([r["best_fitness"] for r in h])
        for t, name in enumerate(result.tasks):
            a.plot([r["evaluations"] for r in h], Y[:, t], "o-", label=f"best {name} loss (nsga2)")
    if result.baselines.get("grid"):
        a.axhline(float(np.mean(result.best_uniform["search"])), color="gray", ls="--", label="best uniform recipe (mean)")
    a.set_xlabel("candidates evaluated")
    a.set_ylabel("search loss (nats/token)")
    a.set_title("search")
    a.legend(fontsize=8)
    rows = result.rows()
    if len(result.tasks) == 2:
        for name, v in rows:
            b.scatter(v[0], v[1], s=50, label=name, marker="*" if name == "evolved" else "o")
        if result.front:
            F = np.array([p["heldout"] for p in result.front])
            b.scatter(F[:, 0], F[:, 1], s=12, color="black", label="front (nsga2)")
        for g in result.baselines.get("grid", []):
            b.scatter(g["heldout"][0], g["heldout"][1], s=8, color="lightgray")
        b.set_xlabel(f"{result.tasks[0]} held-out loss")
        b.set_ylabel(f"{result.tasks[1]} held-out loss")
        b.legend(fontsize=7)
    else:
        b.barh([n for n, _ in rows], [float(np.mean(v)) for _, v in rows])
        b.set_xlabel("mean held-out loss (nats/token)")
    b.set_title("held-out (grey: uniform grid)" if len(result.tasks) == 2 else "held-out")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
