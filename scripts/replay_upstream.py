#!/usr/bin/env python3
"""A recording served again as a live upstream: ``ssemedic replay`` as a script.

Record once through mitmdump with ssemedic (``-w FILE``), then point a client
or a proxy at the replay to see the same chunks with the same pauses again,
as often as needed and without calling the real API. All the work is done by
ssemedic.files.replay; this file only makes it runnable from a checkout.

Usage: .venv/bin/python scripts/replay_upstream.py FILE [--port 8777] [--speed X | --no-delay] [--max-seconds N]
"""

from __future__ import annotations

import sys
from pathlib import Path

# From a plain checkout the package sits in addons/, as for mitmdump -s addons/medic.py.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "addons"))

from ssemedic.files.replay import main

if __name__ == "__main__":
    sys.exit(main())
