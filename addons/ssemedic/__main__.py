"""``python -m ssemedic``: the same command line as the ``ssemedic`` script."""

import sys

from .files.cli import main

sys.exit(main())
