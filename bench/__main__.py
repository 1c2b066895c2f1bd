"""`python -m bench` (and `make bench`): see bench/cli.py and docs/performance.md."""

import sys

from bench.cli import main

# The receiver process is spawned, which imports this module again: only run when run.
if __name__ == "__main__":
    sys.exit(main())
