"""``evoforge dashboard RUN_DIR [RUN_DIR ...] [--host H] [--port N] [--export FILE.html]``: a live
page of runs (see :mod:`evoforge.dashboard`), or one self-contained HTML file of them."""

from __future__ import annotations

import argparse
import sys

from evoforge._cli_parser import positive_float

__all__ = ["add_dashboard"]


def _port(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = -1
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 65535] (0: any free port), got {s!r}")
    return v


def add_dashboard(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="a live dashboard of run directories (or --export one HTML file)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories of any engine or of `evoforge compress` (read, never written)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 serves the network)")
    p.add_argument("--port", type=_port, default=8050, help="port (default 8050; 0: any free port)")
    p.add_argument("--export", metavar="FILE.html", default=None,
                   help="write one self-contained HTML file of the runs as they are now, and exit")
    p.add_argument("--stale-after", type=positive_float, default=60.0,
                   help="seconds without an update after which a run is no longer shown as running (default 60)")
    p.set_defaults(fn=_cmd_dashboard)


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from evoforge import dashboard

    if args.export is not None:
        out = dashboard.export_html(args.run_dirs, args.export, stale_after=args.stale_after)
        print(f"dashboard of {len(args.run_dirs)} run(s) written to {out}")
        return 0
    server = dashboard.make_server(args.run_dirs, host=args.host, port=args.port, stale_after=args.stale_after)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    if args.host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        print(f"evoforge dashboard: warning: bound to {args.host}: anyone who can reach it can read these runs",
              file=sys.stderr)
    print(f"evoforge dashboard: http://{shown}:{port}/ ({len(args.run_dirs)} run(s); Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
