"""`python -m chaos` (and `make chaos`): see chaos/cli.py and docs/reliability-suite.md."""

import sys

from chaos.cli import main

# The receiver process is spawned, which imports this module again: only run when run.
if __name__ == "__main__":
    sys.exit(main())
