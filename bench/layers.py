"""Quantised layers benchmark; see evoforge/bench/layers.py."""

import sys

from evoforge.bench.layers import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
