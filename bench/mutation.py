"""Mutation benchmark; the same as `evoforge bench mutation` (see evoforge/bench/mutation.py)."""

import sys

from evoforge.bench.mutation import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
