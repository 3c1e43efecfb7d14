"""The inspection worker, from the proxy's side (``ssemedic_worker``): a
Channel (core/pipeline.py) that hands remote streams' chunks to a child
process running ``python -m ssemedic.worker``.

Strategy: on mitmproxy's event loop, a chunk costs one header and two
appends to one buffer shared by every stream; the buffer is written to the
worker's stdin at most every FLUSH_SECONDS (non-blocking; the rest when the
pipe can take it), so one system call, and one wake-up of the worker,
carries the chunks of many streams. The client's bytes never wait for it:
they were forwarded already; only the log is up to FLUSH_SECONDS later.
What waits in the buffer is bounded per proxy and per flow, with the
budgets of in-proxy inspection: a chunk past either makes its stream fall
behind, as a Backlog would (forwarded and recorded, not inspected). A
flow's share is counted from the last moment the buffer was empty, which
can only overstate it. Results and log records come back on the worker's stdout, read
by the loop when they are there.

If the worker dies (or cannot take frames any more), that is logged once;
every stream it had passes through uninspected, says so in its notes, and
the next streams get a new worker. A worker that dies three times within a
minute is not restarted: streams are inspected in the proxy from then on,
and the log says so. Forwarding never depends on the worker.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import select
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from ..core.pipeline import MAX_QUEUED_PER_FLOW, MAX_QUEUED_PER_PROXY, Pipeline
from ..core import wire

logger = logging.getLogger("ssemedic")

#: How long a newly set option waits for the worker to say it is up.
STARTUP_SECONDS = 10.0
#: How long stopping waits for the worker to finish what it was sent.
SHUTDOWN_SECONDS = 2.0
#: A worker that dies this many times within RESTART_WINDOW seconds stays down.
MAX_RESTARTS = 3
RESTART_WINDOW = 60.0
#: The pipe to the worker is asked to hold this much (Linux; the default is 64 KiB).
PIPE_SIZE = 1024 * 1024
READ_SIZE = 256 * 1024
#: How long chunks may wait in the buffer before they are written to the worker.
FLUSH_SECONDS = 0.004

_CHUNK_HEADER = wire.HEADER.pack
_CHUNK = wire.CHUNK
_NAN = math.nan


class WorkerError(Exception):
    """The worker cannot be started here (said in one line)."""


def problem() -> str | None:
    """Why no worker can be started by this mitmproxy, or None."""
    if getattr(sys, "frozen", False) or not sys.executable:
        return "this mitmproxy is a standalone binary; the worker needs mitmproxy installed as a Python package"
    return None


class _Open:
    """A remote stream the worker has: its number, its bytes still in the buffer, its answer."""

    __slots__ = ("number", "stream", "queued", "since", "result", "full")

    def __init__(self, number: int, stream: Pipeline, result: asyncio.Future[dict[str, Any] | None]) -> None:
        self.number = number
        self.stream = stream
        self.queued = 0  # bytes put in the buffer since it was empty (at ``since``)
        self.since = 0
        self.result = result
        self.full = ""  # whose budget a refused chunk would have exceeded


class Offload:
    """The worker process and its frames (implements core.pipeline.Channel)."""

    def __init__(self, *, per_flow: int = MAX_QUEUED_PER_FLOW, per_proxy: int = MAX_QUEUED_PER_PROXY,
                 command: list[str] | None = None) -> None:
        self.per_flow = per_flow
        self.per_proxy = per_proxy
        self.command = command or [sys.executable, "-m", "ssemedic.worker"]
        self.process: subprocess.Popen[bytes] | None = None
        #: The options that shape the worker's reporting (see Inspector.configure).
        self.settings: dict[str, Any] = {}
        #: Why no worker runs any more (too many deaths), or None.
        self.gone: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wfd = -1
        self._rfd = -1
        self._out = bytearray()
        self._emptied = 0  # how many times the buffer was written out whole
        self._open: dict[Pipeline, _Open] = {}
        self._numbers: dict[int, _Open] = {}
        self._next = 1
        self._flush_scheduled = False
        self._writing = False
        self._reader = wire.Reader()
        self._deaths: deque[float] = deque()

    # -- the process --------------------------------------------------------------

    def start(self, *, wait: bool = True) -> None:
        """Start a worker (stopping any before it); with ``wait``, until it
        says it is up. Raises WorkerError saying why it cannot."""
        reason = problem()
        if reason is not None:
            raise WorkerError(reason)
        self.stop()
        env = dict(os.environ)
        package_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        try:
            process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        except OSError as exc:
            raise WorkerError(f"cannot start {self.command[0]}: {exc.strerror or exc}") from None
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._wfd, self._rfd = process.stdin.fileno(), process.stdout.fileno()
        self._reader = wire.Reader()
        try:
            import fcntl

            fcntl.fcntl(self._wfd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except (ImportError, AttributeError, OSError):
            pass  # a smaller pipe: the buffer here takes the rest
        if wait:
            self._await_hello()
        os.set_blocking(self._wfd, False)
        os.set_blocking(self._rfd, False)
        self._send_now(wire.value_frame(wire.SETTINGS, 0, self.settings))

    def _await_hello(self) -> None:
        """Block until the worker's first frame (it sends one once its imports are done)."""
        deadline = time.monotonic() + STARTUP_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._rfd], [], [], left)
            if not ready:
                continue
            data = os.read(self._rfd, READ_SIZE)
            if not data:
                status = self.process.wait() if self.process is not None else None
                self.stop()
                raise WorkerError(f"the inspection worker exited at once (status {status}; its error is above)")
            for frame in self._reader.feed(data):
                self._received(frame)
            return
        self.stop()
        raise WorkerError(f"the inspection worker did not start within {STARTUP_SECONDS:.0f} s")

    def ready(self) -> bool:
        """Whether a remote stream can be opened now (a worker runs, or was
        restarted for it). Only under a running event loop."""
        if self.gone is not None:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._loop is not loop:
            self._detach()
            self._loop = loop
        if self.process is None:
            try:
                self.start(wait=False)
            except WorkerError as exc:
                self._died(str(exc))
                return False
        if self._wfd >= 0 and not self._attached:
            loop.add_reader(self._rfd, self._readable)
            self._attached = True
        return self.process is not None

    _attached = False

    def configure(self, settings: dict[str, Any]) -> None:
        self.settings = dict(settings)
        if self.process is not None:
            self._put(wire.value_frame(wire.SETTINGS, 0, self.settings))

    def stop(self, timeout: float = 0.0) -> None:
        """Close the worker's stdin; it inspects what it was sent and exits.
        What it still says within ``timeout`` seconds is logged; then it is
        killed. Streams it had not finished pass through uninspected."""
        process, self.process = self.process, None
        self._detach()
        if process is None:
            return
        deadline = time.monotonic() + timeout
        if self._out and timeout > 0:
            self._drain(deadline)
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        while self._rfd >= 0 and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._rfd], [], [], left)
            if ready:
                try:
                    data = os.read(self._rfd, READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                try:
                    for frame in self._reader.feed(data):
                        self._received(frame)
                except wire.WireError:
                    break
        if process.stdout is not None:
            process.stdout.close()
        self._wfd = self._rfd = -1
        try:
            process.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._abandon("ssemedic's inspection worker was stopped")

    def close(self) -> None:
        """The proxy stops: what the worker was sent is inspected, within SHUTDOWN_SECONDS."""
        self.stop(SHUTDOWN_SECONDS)

    def _detach(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            if self._attached and self._rfd >= 0:
                loop.remove_reader(self._rfd)
            if self._writing and self._wfd >= 0:
                loop.remove_writer(self._wfd)
        self._attached = self._writing = False

    # -- core.pipeline.Channel ------------------------------------------------------

    def open(self, stream: Pipeline, spec: dict[str, Any]) -> asyncio.Future[dict[str, Any] | None]:
        """Hand ``stream`` (a Pipeline made with this channel) to the worker,
        made there from ``spec``; the future gets its RESULT (None: it was
        not inspected to the end, see the stream's notes)."""
        assert self._loop is not None
        number, self._next = self._next, self._next + 1
        state = _Open(number, stream, self._loop.create_future())
        self._open[stream] = state
        self._numbers[number] = state
        self._put(wire.value_frame(wire.OPEN, number, spec))
        return state.result

    def send(self, stream: Pipeline, data: bytes, at: float | None) -> bool:
        state = self._open.get(stream)
        if state is None:
            return True  # the worker is gone: noted then
        size = len(data) + 17
        out = self._out
        if state.since != self._emptied:
            state.since, state.queued = self._emptied, 0
        if state.queued + size > self.per_flow or len(out) + size > self.per_proxy or len(data) > wire.MAX_PAYLOAD:
            state.full = ("its" if state.queued + size > self.per_flow or len(data) > wire.MAX_PAYLOAD
                          else "the proxy's")
            return False
        out += _CHUNK_HEADER(_CHUNK, state.number, _NAN if at is None else at, len(data))
        out += data
        state.queued += size
        if not self._flush_scheduled:
            self._schedule()
        return True

    def behind(self, stream: Pipeline) -> None:
        state = self._open.get(stream)
        if state is not None and stream.behind_at is not None:
            note = (f"inspection fell behind the stream ({state.full} backlog of bytes for the inspection worker "
                    f"is full): from byte {stream.behind_at:,} on it is forwarded and recorded but not parsed")
            self._put(wire.value_frame(wire.BEHIND, state.number, {"at": stream.behind_at, "note": note}))

    def fed(self, stream: Pipeline, at: float) -> None:
        state = self._open.get(stream)
        if state is not None:
            self._put(wire.frame(wire.FED, state.number, at))

    def end(self, stream: Pipeline) -> None:
        state = self._open.pop(stream, None)
        if state is None:
            return
        self._put(wire.value_frame(wire.END, state.number, {
            "error": stream.error,
            "notes": list(stream.notes),
            "wire_bytes": stream.wire_bytes,
            "wire_chunks": stream.wire_chunks,
            "unparsed": stream.unparsed,
        }, at=stream.ended_at))

    # -- frames out ---------------------------------------------------------------

    def _put(self, data: bytes) -> None:
        self._out += data
        if not self._flush_scheduled:
            self._schedule()

    def _schedule(self) -> None:
        if self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_later(FLUSH_SECONDS, self._flush)

    def _send_now(self, data: bytes) -> None:
        self._out[:0] = data  # before anything queued for this worker

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out or self._wfd < 0:
            return
        try:
            written = os.write(self._wfd, out)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._died(f"cannot write to it: {exc.strerror or exc}")
            return
        if written:
            del out[:written]
            if not out:
                self._emptied += 1
        loop = self._loop
        if loop is None:
            return
        if out and not self._writing:
            loop.add_writer(self._wfd, self._flush)
            self._writing = True
        elif not out and self._writing:
            loop.remove_writer(self._wfd)
            self._writing = False

    def _drain(self, deadline: float) -> None:
        """Write what is buffered, blocking, until ``deadline`` (stopping)."""
        while self._out and self._wfd >= 0 and (left := deadline - time.monotonic()) > 0:
            _, ready, _ = select.select([], [self._wfd], [], left)
            if ready:
                try:
                    written = os.write(self._wfd, self._out)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                del self._out[:written]

    # -- frames in ------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            data = os.read(self._rfd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._died(f"cannot read from it: {exc.strerror or exc}")
            return
        if not data:
            status = self.process.poll() if self.process is not None else None
            self._died("it exited" + (f" with status {status}" if status is not None else ""))
            return
        try:
            for frame in self._reader.feed(data):
                self._received(frame)
        except wire.WireError as exc:
            self._died(str(exc))

    def _received(self, frame: wire.Frame) -> None:
        if frame.kind == wire.LOG:
            logger.log(frame.stream, "%s", frame.payload.decode("utf-8", "replace"))
        elif frame.kind == wire.RESULT and frame.stream:
            state = self._numbers.pop(frame.stream, None)
            if state is not None:
                self._open.pop(state.stream, None)
                if not state.result.done():
                    state.result.set_result(frame.value())

    # -- when the worker dies -----------------------------------------------------

    def _died(self, reason: str) -> None:
        """Log once, give up what the worker had, and let the next stream start a new one."""
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > RESTART_WINDOW:
            self._deaths.popleft()
        count = len(self._numbers)
        process, self.process = self.process, None
        self._detach()
        if process is not None:
            for pipe in (process.stdin, process.stdout):
                try:
                    if pipe is not None:
                        pipe.close()
                except OSError:
                    pass
            if process.poll() is None:
                process.kill()
            process.wait()
        self._wfd = self._rfd = -1
        self._abandon(f"ssemedic's inspection worker stopped ({reason})")
        if len(self._deaths) >= MAX_RESTARTS:
            self.gone = f"it stopped {len(self._deaths)} times within {RESTART_WINDOW:.0f} s"
            logger.error("ssemedic's inspection worker stopped (%s), %d streams in flight pass through uninspected; "
                         "%s: streams are inspected in the proxy from now on", reason, count, self.gone)
        else:
            logger.error("ssemedic's inspection worker stopped (%s); %d streams in flight pass through uninspected, "
                         "the next ones get a new worker", reason, count)
            if self._loop is not None and self._loop.is_running():
                self.ready()  # started now, so that it has its imports done when the next stream comes

    def _abandon(self, why: str) -> None:
        """Every stream the worker had: not inspected to the end, and noted so."""
        self._out.clear()
        self._emptied += 1
        self._flush_scheduled = False
        for state in self._numbers.values():
            state.stream.notes.append(f"{why}: stream passed through uninspected")
            if not state.result.done():
                state.result.set_result(None)
        self._numbers.clear()
        self._open.clear()
