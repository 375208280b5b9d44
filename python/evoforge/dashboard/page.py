"""The dashboard's page: static/index.html with its script and style, served with plotly.js from the
installed ``plotly`` package (no CDN), or exported as one self-contained HTML file with the runs'
data, the script, the style and plotly.js inlined."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["STATIC", "export_html", "page_html", "plotly_js_path"]

_HERE = Path(__file__).resolve().parent / "static"


def _reader(name: str) -> Callable[[], str]:
    return lambda: (_HERE / name).read_text(encoding="utf-8")


#: the page's own files under /static/
STATIC: dict[str, Callable[[], str]] = {n: _reader(n) for n in ("app.js", "app.css")}


def plotly_js_path() -> Path:
    """``plotly/package_data/plotly.min.js`` of the installed plotly package (the Python package
    ships plotly.js); ImportError naming the extra to install when it is missing."""
    spec = importlib.util.find_spec("plotly")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        p = Path(loc) / "package_data" / "plotly.min.js"
        if p.is_file():
            return p
    raise ImportError("the dashboard needs plotly.js from the plotly package: pip install 'evoforge[dashboard]' "
                      "(or pip install plotly)")


def _script_safe(text: str) -> str:
    """Text that can sit inside <script>...</script> (no closing tag or comment opener in it)."""
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def page_html(*, live: bool = True, interval: float = 1.0, data: dict | None = None) -> str:
    """The page: linked assets and polling (``live``), or, with ``data``, everything inlined."""
    html = (_HERE / "index.html").read_text(encoding="utf-8")
    boot = {"live": live, "interval_ms": int(interval * 1000)}
    if data is not None:
        boot.update(data)
    html = html.replace("/*BOOT*/null", _script_safe(json.dumps(boot, separators=(",", ":"), allow_nan=False)))
    if live:
        return html
    html = html.replace('<link rel="stylesheet" href="static/app.css">',
                        "<style>\n" + STATIC["app.css"]() + "\n</style>")
    plotly = _script_safe(plotly_js_path().read_text(encoding="utf-8"))
    html = html.replace('<script src="static/plotly.min.js"></script>', "<script>" + plotly + "</script>")
    html = html.replace('<script src="static/app.js"></script>',
                        "<script>\n" + _script_safe(STATIC["app.js"]()) + "\n</script>")
    return html


def export_html(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *, stale_after: float = 60.0) -> Path:
    """Write one self-contained HTML file of the dashboard of ``run_dirs`` (their data as of now,
    the genome of every front point shown, plotly.js inlined) to ``out``; returns its path."""
    from .server import Dashboard

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
