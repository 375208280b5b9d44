"""GPU quantised-layer benchmark; see evoforge/bench/layers_gpu.py (needs a CUDA GPU)."""

import sys

from evoforge.bench.layers_gpu import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
