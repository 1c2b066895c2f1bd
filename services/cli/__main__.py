"""`python -m services.cli`: the `hookline` command."""

import sys

from services.cli import main

sys.exit(main())
