"""Functional hashing benchmark; the same as `evoforge bench hashing` (see evoforge/bench/hashing.py)."""

import sys

from evoforge.bench.hashing import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
