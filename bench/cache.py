"""Evaluation-cache benchmark; the same as `evoforge bench cache` (see evoforge/bench/cache.py)."""

import sys

from evoforge.bench.cache import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
