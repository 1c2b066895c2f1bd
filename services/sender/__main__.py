"""`python -m services.sender`: the same as `hookline sender`."""

import sys

from services.cli import main

sys.exit(main(["sender"]))
