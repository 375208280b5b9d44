"""The argument parser of the ``evoforge`` command line and of its benchmarks' own options
(``evoforge bench NAME ...``): a usage error is one stderr line ``PROG: error: ...`` and exit
status 2, with no usage block (argparse's default prints the usage first)."""

from __future__ import annotations

import argparse

__all__ = ["OneLineParser", "int_at_least", "one_line", "positive_float"]


def one_line(msg: object) -> str:
    """``msg`` on one line (runs of whitespace, newlines included, become one space)."""
    return " ".join(str(msg).split())


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (no usage block), exit 2; sub-parsers inherit the class
    (``add_subparsers`` defaults ``parser_class`` to the parser's own type)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def positive_float(s: str) -> float:
    """An argparse ``type``: a finite number > 0 (seconds, timeouts)."""
    try:
        v = float(s)
    except ValueError:
        v = float("nan")
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {s!r}")
    return v


def int_at_least(lo: int):
    """An argparse ``type``: an int >= ``lo`` (argparse names the option in the message)."""

    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            v = None
        if v is None or v < lo:
            raise argparse.ArgumentTypeError(f"must be an integer >= {lo}, got {s!r}")
        return v

    return parse
