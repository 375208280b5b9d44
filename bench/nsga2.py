"""NSGA-II generation benchmark; the same as `evoforge bench nsga2` (see evoforge/bench/nsga2.py)."""

import sys

from evoforge.bench.nsga2 import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
