"""A live dashboard of run directories: ``evoforge dashboard RUN_DIR [RUN_DIR ...]``.

It reads any engine's run directory (``history.jsonl``, the ``evaluations.sqlite`` cache) and a
compression run's (``compress.json``, ``report.json``, ``front.json``) read-only, serves a page that
polls JSON endpoints (a new generation appears within a second or two, without reloading), and can
export the same views as one self-contained HTML file. Charts are drawn by plotly.js, served from the
installed ``plotly`` package (``pip install 'evoforge[dashboard]'``)::

    from evoforge.dashboard import make_server, export_html
    server = make_server(["runs/a", "runs/b"], port=0)   # 127.0.0.1, a free port
    server.serve_forever()
    export_html(["runs/a"], "report.html")
"""

from __future__ import annotations

from .export import export_html
from .page import page_html, plotly_js_path
from .runs import Run
from .server import Dashboard, make_server, serve_in_thread

__all__ = ["Dashboard", "Run", "export_html", "make_server", "page_html", "plotly_js_path", "serve_in_thread"]
