"""``evoforge dashboard RUN_DIR ... --export FILE.html``: one self-contained HTML file of the
dashboard's views, the runs' data as of now, the genome of every front point shown, the page's
script and style and plotly.js inlined (opens from disk, fetches nothing)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from .page import page_html
from .server import Dashboard

__all__ = ["export_html"]


def export_html(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *, stale_after: float = 60.0) -> Path:
    """Write one self-contained HTML file of the dashboard of ``run_dirs`` (their data as of now,
    the genome of every front point shown, plotly.js inlined) to ``out``; returns its path."""
    out = Path(out)
    if out.is_dir():
        raise IsADirectoryError(f"--export {str(out)!r} is a directory; give a file name such as report.html")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--export {str(out)!r}: the directory {str(out.parent)!r} does not exist")
    dash = Dashboard(run_dirs, stale_after=stale_after)
    runs = dash.runs_json()
    details: dict[str, Any] = {}
    genomes: dict[str, Any] = {}
    for run in dash.runs:
        d = run.detail()
        details[str(run.id)] = d
        genomes[str(run.id)] = _front_genomes(run, d.get("front"))
    html = page_html(live=False, data={"runs": runs["runs"], "details": details, "genomes": genomes,
                                       "exported": time.strftime("%Y-%m-%d %H:%M:%S")})
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out


def _front_genomes(run: Any, front: dict | None) -> dict:
    """id -> genome view of every point the front shows."""
    if not front:
        return {}
    return run.genomes(list(front.get("ids", [])) + list((front.get("uniform") or {}).get("ids", [])))
