"""Layer solver benchmark; the same as `evoforge bench solvers` (see evoforge/bench/solvers.py)."""

import sys

from evoforge.bench.solvers import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
