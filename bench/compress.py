"""compress benchmark; see evoforge/bench/compress.py."""

import sys

from evoforge.bench.compress import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
