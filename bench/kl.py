"""KL fitness benchmark; see evoforge/bench/kl.py."""

import sys

from evoforge.bench.kl import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
