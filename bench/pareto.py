"""Pareto ranking benchmark; the same as `evoforge bench pareto` (see evoforge/bench/pareto.py)."""

import sys

from evoforge.bench.pareto import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
