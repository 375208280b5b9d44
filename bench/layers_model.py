"""Sparse layer kernels and packed models benchmark; see evoforge/bench/layers_model.py."""

import sys

from evoforge.bench.layers_model import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
