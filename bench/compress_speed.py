"""compress_speed benchmark; see evoforge/bench/compress_speed.py."""

import sys

from evoforge.bench.compress_speed import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
