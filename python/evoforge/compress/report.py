"""The report of a compression run, written into its run directory.

``report.json``
    The :class:`~evoforge.compress.result.CompressionResult` as JSON (with perplexities when
    measured, times per phase and the per-generation history).
``report.md``
    The budget, a table of dense / uniform / baselines / evoforge held-out KL (and perplexity when
    measured), the times, notes, and the plots below.
``levels.png``, ``convergence.png``
    Per-layer sparsity or bits (per sub-block for depth and depth+quant) of the searched
    configuration against uniform, and the best calibration KL per generation. Drawn with
    matplotlib through :mod:`evoforge.plot`; without matplotlib they are skipped and the report
    says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["budget_line", "dashboard_line", "summary_rows", "summary_table", "write_report"]

_UNITS = {"sparsity": "average sparsity", "quant": "bits per weight", "depth": "share of sub-blocks dropped",
          "depth+quant": "bits per weight"}


def summary_rows(result: Any) -> list[tuple[str, float, float | None]]:
    """``[(name, held-out KL, perplexity or None)]``: dense, uniform, the baselines, evoforge."""
    ppl = result.ppl or {}
    rows = [("dense", 0.0), ("uniform", result.kl_uniform)]
    rows += [(name, b["kl"]) for name, b in result.baselines.items()]
    rows.append(("evoforge", result.kl_search))
    return [(name, float(kl), ppl.get(name)) for name, kl in rows]


def summary_table(result: Any, *, markdown: bool = False) -> str:
    """The side-by-side table of :func:`summary_rows` as plain text or markdown."""
    rows = summary_rows(result)
    with_ppl = any(p is not None for _, _, p in rows)
    head = ["model", "KL (held-out)"] + (["perplexity"] if with_ppl else [])
    body = [[n, f"{kl:.4f}"] + ([f"{p:.3f}" if p is not None else "-"] if with_ppl else []) for n, kl, p in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    w = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.ljust(w[0]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))

    return "\n".join([fmt(head), "-" * (sum(w) + 2 * (len(w) - 1))] + [fmt(r) for r in body])


def budget_line(result: Any) -> str:
    """One line: the budget of the searched configuration against uniform's and the target."""
    m = result.method
    if m == "depth":
        k = result.budget // 2
        return (f"drop K={k} attention and K={k} MLP sub-blocks of {result.total_weights // 2} blocks "
                f"({result.budget} of {result.total_weights} sub-blocks; uniform spreads as many evenly)")
    unit = "non-zeros" if m == "sparsity" else "bits" + (" (weights + scales/zeros)" if result.count_metadata else "")
    avg = result.average
    return (f"budget {result.budget} {unit} (uniform {result.uniform_budget}) over {result.total_weights} weights: "
            f"{_UNITS[m]} {avg:.4f} (target {result.target:g})")


def _per_layer(result: Any) -> tuple[list[float], float | None, str]:
    m = result.method
    if m == "sparsity":
        return list(result.sparsity), result.target, "sparsity"
    if m == "depth":
        return [float(x) for x in result.genome], None, "dropped (1) / kept (0)"
    return [float(b) for b in result.bits], result.target, "bits (0 = dropped)" if m == "depth+quant" else "bits"


def _plots(result: Any, out: Path) -> tuple[list[str], str | None]:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [], "plots skipped: matplotlib is not installed (pip install matplotlib)"
    import matplotlib.pyplot as plt

    from .. import plot

    made = []
    values, ref, ylabel = _per_layer(result)
    ax = plot.layer_levels(values, labels=result.layers, ylabel=ylabel, reference=ref,
                           title=f"{result.method} {result.target:g}: per-layer levels (evoforge)")
    ax.figure.savefig(out / "levels.png", dpi=120)
    plt.close(ax.figure)
    made.append("levels.png")
    hist = [h for h in result.history if h.get("best_fitness") is not None]
    if hist:
        ax = plot.convergence(hist, key="best_fitness", x="generation")
        ax.set_ylabel("best KL (calibration, last stage)")
        ax.figure.savefig(out / "convergence.png", dpi=120)
        plt.close(ax.figure)
        made.append("convergence.png")
    return made, None


def write_report(result: Any, run_dir: str | os.PathLike) -> Path:
    """Write report.json, report.md and the plots into ``run_dir``; returns report.md's path."""
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_json()
    data["history"] = list(result.history)
    _atomic(out / "report.json", json.dumps(data, indent=1, default=str))
    plots, note = _plots(result, out)
    notes = list(result.notes) + ([note] if note else [])
    units = "sub-blocks" if result.method.startswith("depth") else "layers"
    best = "-" if result.kl_calib_search is None else f"{result.kl_calib_search:.4f}"
    db = f" (`{_db_name(result.db_path, out)}`)" if result.db_path else ""
    lines = [f"# evoforge compress: {result.method} {result.target:g}", "",
             f"- layer database: {result.db_method}{db}; {len(result.layers)} {units}",
             f"- {budget_line(result)}",
             f"- search: {result.generations} generations, {result.evaluations} evaluations; best calibration KL {best}"]
    if result.dropped:
        lines.append("- dropped: " + ", ".join(f"{b}:{k}" for b, k in result.dropped))
    if result.model_dir:
        lines.append(f"- compressed model: `{result.model_dir}`")
    lines.append(f"- {dashboard_line(out)}")
    lines += ["", "## Dense / baselines / evoforge", "", summary_table(result, markdown=True), ""]
    if result.times:
        lines += ["## Times (this process, seconds)", "", "| phase | s |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in result.times.items()] + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    for p in plots:
        lines += [f"![{p[:-4]}]({p})", ""]
    path = out / "report.md"
    _atomic(path, "\n".join(lines))
    return path


def dashboard_line(run_dir: str | os.PathLike) -> str:
    """The command that shows the run in the dashboard (convergence, levels over generations, this
    report's table), live or as one HTML file."""
    rd = str(run_dir)
    return (f"dashboard: `evoforge dashboard {rd}` (needs `pip install 'evoforge[dashboard]'`; "
            f"`--export {Path(rd) / 'dashboard.html'}` writes one HTML file)")


def _db_name(db_path: str, run_dir: Path) -> str:
    """The database relative to the run directory when inside it (the report stays valid when the
    run directory is moved or shared), else its absolute path."""
    p = Path(db_path).resolve()
    try:
        return p.relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(p)


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
