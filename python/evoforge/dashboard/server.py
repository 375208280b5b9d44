"""The dashboard's HTTP server: the standard library's ThreadingHTTPServer, GET and HEAD only.

Routes (everything else: 404; any other method: 501)::

    /                               the page (static/index.html)
    /static/app.js, app.css         the page's script and style
    /static/plotly.min.js           plotly.js, from the installed ``plotly`` package
    /api/runs                       {"runs": [a row of the runs table per run], "time": ...}
    /api/run/I                      the data of run I's charts
    /api/run/I/genome/ID            one front point's genome (ID: p3, u0, r1234)
    /run/I/file/NAME                a file of run I's directory (.md, .png, .json, .csv, ...)

Safe by default: it binds 127.0.0.1, answers only requests whose Host header names a loopback
address when bound to one (DNS rebinding), serves only the run directories it was given (a file
path that is absolute, holds ``..`` (percent-encoded or not) or a backslash, or resolves outside
the run directory through a symbolic link is refused with 403), and no route writes anything.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

from .page import STATIC, page_html, plotly_js_path
from .runs import Run

__all__ = ["Dashboard", "make_server", "serve_in_thread"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_TYPES = {".md": "text/markdown; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
          ".json": "application/json", ".jsonl": "text/plain; charset=utf-8", ".csv": "text/csv; charset=utf-8",
          ".txt": "text/plain; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8"}


class Dashboard:
    """The runs of the given directories (each must exist and be a directory) and what the routes
    answer, without the HTTP: usable from Python and by the export."""

    def __init__(self, run_dirs: Sequence[str | os.PathLike], *, stale_after: float = 60.0,
                 interval: float = 1.0) -> None:
        if isinstance(run_dirs, (str, os.PathLike)):
            run_dirs = [run_dirs]
        if not run_dirs:
            raise ValueError("give at least one run directory")
        paths = []
        for d in run_dirs:
            p = Path(d).expanduser()
            if not p.exists():
                raise FileNotFoundError(f"run directory {str(d)!r} does not exist")
            if not p.is_dir():
                raise NotADirectoryError(f"{str(d)!r} is not a run directory (not a directory)")
            paths.append(p)
        if not (stale_after > 0) or not (interval > 0):
            raise ValueError(f"stale_after and interval must be > 0, got {stale_after!r} and {interval!r}")
        self.runs = [Run(p, i, stale_after=stale_after) for i, p in enumerate(paths)]
        self.interval = float(interval)

    def run(self, i: int) -> Run | None:
        return self.runs[i] if 0 <= i < len(self.runs) else None

    def runs_json(self) -> dict:
        now = time.time()
        for r in self.runs:
            r.refresh()
        return {"time": now, "runs": [r.summary(now) for r in self.runs]}

    def detail(self, i: int) -> dict | None:
        run = self.run(i)
        if run is None:
            return None
        run.refresh()
        return run.detail()


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


class _Handler(BaseHTTPRequestHandler):
    server_version = "evoforge-dashboard"
    dashboard: Dashboard
    check_host: bool
    quiet: bool = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        if not self.quiet:
            super().log_message(format, *args)

    def do_HEAD(self) -> None:  # noqa: N802 -- http.server's name
        self._answer(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def _send(self, status: int, body: bytes, ctype: str, head: bool, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, head: bool) -> None:
        self._send(status, _json_bytes({"error": status.phrase}), "application/json", head)

    def _host_ok(self) -> bool:
        if not self.check_host:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            name = host[: host.find("]") + 1] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if ":" in host else host
        return name in _LOOPBACK

    def _answer(self, head: bool) -> None:
        try:
            if not self._host_ok():
                return self._error(HTTPStatus.FORBIDDEN, head)
            raw = urlsplit(self.path).path
            self._route(raw, head)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001 -- a bug or an unreadable file: one line, a 500, serve on
            import sys

            print(f"evoforge dashboard: {self.path[:200]!r}: {type(e).__name__}: {e}", file=sys.stderr)
            try:
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, head)
            except OSError:
                pass

    def _route(self, raw: str, head: bool) -> None:
        d = self.dashboard
        if raw in ("/", "/index.html"):
            return self._send(200, page_html(live=True, interval=d.interval).encode(), _TYPES[".html"], head)
        if raw == "/favicon.ico":
            self.send_response(204)
            self.end_headers()
            return None
        if raw.startswith("/static/"):
            name = raw[len("/static/"):]
            if name == "plotly.min.js":
                return self._send(200, plotly_js_path().read_bytes(), _TYPES[".js"], head, cache=True)
            if name in STATIC:
                return self._send(200, STATIC[name]().encode(), _TYPES[Path(name).suffix], head)
            return self._error(HTTPStatus.NOT_FOUND, head)
        if raw == "/api/runs":
            return self._send(200, _json_bytes(d.runs_json()), "application/json", head)
        m = re.fullmatch(r"/api/run/(\d{1,6})", raw)
        if m:
            data = d.detail(int(m.group(1)))
            if data is None:
                return self._error(HTTPStatus.NOT_FOUND, head)
            return self._send(200, _json_bytes(data), "application/json", head)
        m = re.fullmatch(r"/api/run/(\d{1,6})/genome/([A-Za-z0-9%]{1,40})", raw)
        if m:
            run = d.run(int(m.group(1)))
            g = None if run is None else run.genome(unquote(m.group(2)))
            if g is None:
                return self._error(HTTPStatus.NOT_FOUND, head)
            return self._send(200, _json_bytes(g), "application/json", head)
        m = re.fullmatch(r"/run/(\d{1,6})/file/(.+)", raw, flags=re.S)
        if m:
            run = d.run(int(m.group(1)))
            if run is None:
                return self._error(HTTPStatus.NOT_FOUND, head)
            try:
                p = run.file(unquote(m.group(2), errors="strict"))
                body = p.read_bytes()
            except PermissionError:
                return self._error(HTTPStatus.FORBIDDEN, head)
            except (OSError, UnicodeDecodeError):
                return self._error(HTTPStatus.NOT_FOUND, head)
            return self._send(200, body, _TYPES.get(p.suffix.lower(), "application/octet-stream"), head)
        if ".." in raw or "%2e" in raw.lower() or "%2f" in raw.lower():
            return self._error(HTTPStatus.FORBIDDEN, head)
        return self._error(HTTPStatus.NOT_FOUND, head)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(run_dirs: Sequence[str | os.PathLike] | Dashboard, *, host: str = "127.0.0.1", port: int = 8050,
                stale_after: float = 60.0, interval: float = 1.0, quiet: bool = True) -> ThreadingHTTPServer:
    """A server of the dashboard of ``run_dirs`` bound to ``host:port`` (port 0: a free one; see
    ``server.server_address``), not yet serving: call ``serve_forever()`` (or run it in a thread),
    then ``shutdown()`` and ``server_close()``. Checks plotly.js is installed first."""
    plotly_js_path()  # ImportError now rather than a broken page later
    dash = run_dirs if isinstance(run_dirs, Dashboard) else Dashboard(run_dirs, stale_after=stale_after,
                                                                      interval=interval)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in [0, 65535], got {port!r}")
    handler = type("Handler", (_Handler,), {"dashboard": dash, "check_host": host in _LOOPBACK, "quiet": quiet})
    cls = _Server if ":" not in host else type("Server6", (_Server,), {"address_family": socket.AF_INET6})
    server = cls((host.strip("[]"), port), handler)
    server.dashboard = dash  # type: ignore[attr-defined]
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Serve ``server`` in a daemon thread (tests, notebooks); stop it with ``server.shutdown()``."""
    t = threading.Thread(target=server.serve_forever, name="evoforge-dashboard", daemon=True)
    t.start()
    return t
