"""``python -m ssemedic``: the same command line as the ``ssemedic`` script."""

import sys

from .cli import main

sys.exit(main())
