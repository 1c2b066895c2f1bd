"""`python -m services.ingest`: the same as `hookline ingest`."""

import sys

from services.cli import main

sys.exit(main(["ingest"]))
