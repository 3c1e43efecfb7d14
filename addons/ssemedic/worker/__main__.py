"""``python -m ssemedic.worker``: the inspection worker process, started by
the addon with ``ssemedic_worker`` (see mitm/offload.py).

Frames come on stdin and go back on the file that was stdout; stdout
itself is pointed at stderr, so nothing printed by accident can break the
frames. Log records go back to the proxy as LOG frames, to be logged
there (mitmweb and the console UI show them); the terminal lines and
panels of mitmdump are written to stderr directly, which the proxy shares
with this process. The worker stops when stdin closes (the proxy stopped,
or closed it) and ignores SIGINT: a Ctrl-C in mitmdump's terminal reaches
the whole process group, and the proxy decides when inspection stops.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from ..core import wire
from .inspector import Inspector

#: Bytes read from the proxy at once.
READ_SIZE = 1024 * 1024


class _Relay(logging.Handler):
    """Log records as LOG frames, for the proxy to log."""

    def __init__(self, out: bytearray) -> None:
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            text = str(record.msg)
        data = text.encode("utf-8", "replace")
        if len(data) > wire.MAX_PAYLOAD:
            data = data[:wire.MAX_PAYLOAD - 64].decode("utf-8", "ignore").encode() + b" [clipped by ssemedic's worker]"
        self.out += wire.frame(wire.LOG, record.levelno, None, data)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    out = bytearray()
    relay = _Relay(out)
    relay.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("ssemedic")
    root.addHandler(relay)
    root.setLevel(logging.INFO)
    root.propagate = False
    # The SDK's own loggers (OpenTelemetry) reach the proxy too.
    logging.getLogger().addHandler(relay)
    logging.getLogger().setLevel(logging.WARNING)

    inspector = Inspector(out.extend, console=sys.stderr)
    reader = wire.Reader()
    out += wire.value_frame(wire.RESULT, 0, {"pid": os.getpid()})  # up: the proxy may go on
    _write(results, out)
    try:
        while data := os.read(0, READ_SIZE):
            for frame in reader.feed(data):
                inspector.handle(frame)
            inspector.settle()
            _write(results, out)
    except wire.WireError as exc:
        logging.getLogger("ssemedic").error("ssemedic's inspection worker stops: %s", exc)
        return 2
    finally:
        inspector.close()
        try:
            _write(results, out)
        except OSError:
            pass
    return 0


def _write(fd: int, out: bytearray) -> None:
    view = memoryview(out)
    try:
        while view:
            view = view[os.write(fd, view):]
    finally:
        view.release()
        out.clear()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the proxy is gone: nobody to tell
        sys.exit(0)
