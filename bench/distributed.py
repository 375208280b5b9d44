"""Distributed evaluation benchmark; see evoforge/bench/distributed.py."""

import sys

from evoforge.bench.distributed import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
