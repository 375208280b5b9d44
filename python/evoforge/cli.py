"""The ``evoforge`` command line."""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_info(args: argparse.Namespace) -> int:
    import evoforge

    print(json.dumps(evoforge.info(), indent=2, default=str))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from importlib import import_module

    mod = import_module(f"evoforge.bench.{args.name}")
    return int(mod.main(args.rest) or 0)


def _bench_names() -> list[str]:
    import pkgutil

    from evoforge import bench

    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="evoforge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="build flags, threads, CUDA compiled / GPU visible")
    p.set_defaults(fn=_cmd_info)
    p = sub.add_parser("bench", help="run a benchmark against its peers: evoforge bench pareto --quick")
    p.add_argument("name", choices=_bench_names())
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the benchmark (see --help)")
    p.set_defaults(fn=_cmd_bench)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
