"""`python -m services.fanout`: the same as `hookline fanout`."""

import sys

from services.cli import main

sys.exit(main(["fanout"]))
