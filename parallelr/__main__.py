"""``python -m parallelr``."""

import sys

from parallelr.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="parallelr"))
