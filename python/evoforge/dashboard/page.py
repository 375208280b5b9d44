"""The dashboard's page: static/index.html with its script and style, served with plotly.js from the
installed ``plotly`` package (no CDN), or, with the runs' data, everything inlined (the export)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Callable

__all__ = ["STATIC", "page_html", "plotly_js_path"]

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
