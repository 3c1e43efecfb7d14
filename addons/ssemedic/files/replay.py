"""Live replay: a recording served again as an upstream, chunk by chunk, with
the recorded pauses.

``ssemedic replay FILE`` (and scripts/replay_upstream.py) serves the responses
of a mitmproxy flow file or HAR on a loopback port. A request gets the recorded
response with the same method and path (query included first, then without);
several matches take turns in recorded order. The body is the raw recorded
body (still compressed if it was) cut back into the chunks the ssemedic addon
timed, each sent as its own HTTP/1.1 chunk frame after the recorded pause,
scaled by 1/speed. A flow that broke off is cut at the same place. A
recording that was cut (the recording cap) ends where it was cut, and the
connection is closed there without ending the body: the recorded stream did
not end there, so the replay does not claim it did. The stdlib parses every
request; this module only writes chunk frames.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from os import PathLike
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from .. import __version__
from ..core import recording
from .sources import Damage, NotFlowsError, SourceError, read_flow_file

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8777
HELP = "serve a recording's responses again as a live upstream, with their chunks and timing"
DESCRIPTION = (
    "Serve the responses in FILE (a mitmproxy flow file, ideally recorded with ssemedic, "
    "or a HAR file) as an upstream on a loopback address. A request gets the recorded "
    "response with the same method and path (with its query first, then without); "
    "several matches take turns in recorded order. Each recorded chunk goes out as its "
    "own HTTP/1.1 chunk, after the recorded pause divided by --speed."
)

#: Headers about one connection, not the message: never replayed as recorded.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
LAST_CHUNK = b"0\r\n\r\n"
#: How many flows (and notes) the start-up listing shows before summing up.
LISTED = 20
_READ = 64 * 1024

#: How a body is delimited on the wire: chunk frames, the recorded
#: Content-Length, the connection's end (HTTP/1.0 clients), or no body at all.
Framing = Literal["chunked", "length", "close", "none"]


# -- what to serve ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded response as the replay serves it. Times are recorded
    seconds after the request started, before scaling by the speed."""

    number: int
    method: str
    path: str
    status: int
    reason: str
    #: The recorded headers without hop-by-hop ones (framing is added when sent).
    headers: tuple[tuple[str, str], ...]
    framing: Framing
    content_length: int | None
    head_at: float
    #: (bytes, time) of each recorded chunk, in order, as in recording.Chunk,
    #: with times as offsets from the request; never empty bytes.
    chunks: tuple[tuple[bytes, float], ...]
    end_at: float
    #: Whether the recorded connection broke before the body ended.
    aborted: bool
    timed: bool
    notes: tuple[str, ...] = ()
    #: Where the recording stops short of the stream, when it does: the body
    #: sent ends there, and the connection is closed without ending it.
    cut: recording.Cut | None = None

    @property
    def label(self) -> str:
        return f"#{self.number} {self.method} {self.path}"

    def summary(self) -> str:
        """E.g. ``200, 93 chunks over 3.31 s, then cut``."""
        count = len(self.chunks)
        text = f"{self.status}, {count} chunk{'' if count == 1 else 's'}"
        text += f" over {self.end_at:.2f} s" if self.timed else " (no timeline)"
        if self.cut is not None:
            where = f" at byte {self.cut.at:,}" if self.cut.at is not None else ""
            return text + f", recording cut{where}: closed there"
        return text + (", then cut" if self.aborted else "")

    @property
    def breaks_off(self) -> bool:
        """Whether the body is sent without its end (it never ended in the recording)."""
        return self.aborted or self.cut is not None


def offsets(started: float, times: Sequence[float]) -> list[float]:
    """Recorded times as seconds after ``started``, never negative and never
    going back (clock steps in a recording must not reorder the replay)."""
    out: list[float] = []
    last = 0.0
    for t in times:
        last = max(last, t - started)
        out.append(last)
    return out


def from_flow(flow: Any, number: int) -> Recorded:
    """What to serve for an HTTP flow that has a response."""
    request, response = flow.request, flow.response
    notes: list[str] = []
    body = response.raw_content
    if body is None:
        notes.append("body not stored (streamed without ssemedic): served empty")
        body = b""
    aborted = flow.error is not None
    head_at, chunks, end_at, timed = _schedule(flow, body, notes)
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.fields]
    cut = recording.read(flow).cut
    if cut is not None:
        notes.append(f"{cut.message()}; the replay sends what was saved and closes the connection there")
    kept, framing, length = _framing(request.method, response.status_code, headers, len(body),
                                     aborted or cut is not None)
    return Recorded(
        number=number,
        method=request.method,
        path=request.path,
        status=response.status_code,
        reason=response.reason or "",
        headers=kept,
        framing=framing,
        content_length=length,
        head_at=head_at,
        chunks=chunks,
        end_at=end_at,
        aborted=aborted,
        timed=timed,
        notes=tuple(notes),
        cut=cut,
    )


def _schedule(
    flow: Any, body: bytes, notes: list[str]
) -> tuple[float, tuple[tuple[bytes, float], ...], float, bool]:
    """(headers time, timed chunks, end time, whether timed) for a flow."""
    untimed = (0.0, ((body, 0.0),) if body else (), 0.0, False)
    recorded = recording.read(flow)
    if recorded.problem is not None:
        notes.append(f"{recorded.problem}: the body goes out as one chunk, at once")
        return untimed
    times = [t for _, t in recorded.chunks if t is not None]
    started = flow.request.timestamp_start
    if not isinstance(started, (int, float)):
        started = times[0] if times else 0.0
    head = flow.response.timestamp_start
    head = head if isinstance(head, (int, float)) else started
    ended = recorded.ended_at if recorded.ended_at is not None else head
    # One pass over every moment keeps headers <= chunks <= end.
    at = offsets(started, [head, *times, ended])
    timed = tuple((data, t) for t, (data, _) in zip(at[1:-1], recorded.chunks, strict=True) if data)
    return at[0], timed, at[-1], True


def _framing(
    method: str, status: int, headers: list[tuple[str, str]], size: int, aborted: bool
) -> tuple[tuple[tuple[str, str], ...], Framing, int | None]:
    """The headers to replay, the framing, and the Content-Length to send."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    chunked = any(n.lower() == "transfer-encoding" and "chunked" in v.lower() for n, v in headers)
    lengths = {v.strip() for n, v in headers if n.lower() == "content-length"}
    length = int(next(iter(lengths))) if len(lengths) == 1 and next(iter(lengths)).isdigit() else None
    framing: Framing
    if method == "HEAD" or status in (204, 304) or status < 200:
        framing = "none"
    elif not chunked and length is not None and (length == size or (aborted and length > size)):
        # The client saw a length-delimited body (a fault worth reproducing on
        # a stream): keep it, and still write the recorded chunks one by one.
        framing = "length"
    else:
        framing, length = "chunked", None
    drop = HOP_BY_HOP | named | ({"content-length"} if framing != "none" else set())
    kept = tuple((n, v) for n, v in headers if n.lower() not in drop)
    return kept, framing, length


def _without_query(target: str) -> str:
    return target.split("?", 1)[0]


def _origin_form(target: str) -> str:
    """The path and query of a request target, also in absolute form."""
    if target.startswith(("http://", "https://")):
        url = urlsplit(target)
        return (url.path or "/") + (f"?{url.query}" if url.query else "")
    return target


class Recording:
    """The responses a replay serves, and which one answers a request.
    Thread-safe: matches take turns across connections."""

    def __init__(self, responses: Iterable[Recorded], skipped: Iterable[str] = (), label: str = "flows") -> None:
        self.responses = tuple(responses)
        #: One line per flow that cannot be served, saying why.
        self.skipped = tuple(skipped)
        self.label = label
        self._exact: dict[tuple[str, str], list[Recorded]] = {}
        self._loose: dict[tuple[str, str], list[Recorded]] = {}
        for r in self.responses:
            self._exact.setdefault((r.method, r.path), []).append(r)
            self._loose.setdefault((r.method, _without_query(r.path)), []).append(r)
        self._turns: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_flows(cls, flows: Iterable[Any], label: str = "flows") -> Recording:
        """Every HTTP flow with a response; the others are listed as skipped."""
        from mitmproxy import http  # the core stays free of mitmproxy

        responses: list[Recorded] = []
        skipped: list[str] = []
        for number, flow in enumerate(flows, 1):
            if not isinstance(flow, http.HTTPFlow):
                skipped.append(f"#{number}: a {type(flow).__name__}, not HTTP")
            elif flow.response is None:
                skipped.append(f"#{number} {flow.request.method} {flow.request.path}: no response recorded")
            else:
                responses.append(from_flow(flow, number))
        return cls(responses, skipped, label)

    def match(self, method: str, target: str) -> Recorded | None:
        """The next recorded response for a request: same method and path with
        its query first, then without; several matches take turns in order."""
        target = _origin_form(target)
        tiers = (("exact", self._exact, target), ("loose", self._loose, _without_query(target)))
        for tier, table, path in tiers:
            candidates = table.get((method, path))
            if candidates:
                with self._lock:
                    turn = self._turns.get((tier, method, path), 0)
                    self._turns[(tier, method, path)] = turn + 1
                return candidates[turn % len(candidates)]
        return None

    def holds(self) -> list[str]:
        """Each distinct ``METHOD path`` the recording answers, in recorded order."""
        return list(dict.fromkeys(f"{r.method} {r.path}" for r in self.responses))


def load(path: str | PathLike[str]) -> Recording:
    """The recording in a flow or HAR file; raises SourceError with a one-line
    reason. A damaged file gives the flows before the damage, and the
    damage is listed among the skipped flows."""
    return _read(path)[0]


def _read(path: str | PathLike[str]) -> tuple[Recording, Damage | None]:
    path = Path(path)
    try:
        read = read_flow_file(path)
    except NotFlowsError as exc:
        if exc.kind != "sse":
            raise
        raise SourceError(f"{path}: a raw body capture holds no requests to replay; "
                          "record flows with mitmdump -w") from None
    flows, damage = read.flows, read.damage
    recording = Recording.from_flows(flows, str(path))
    if damage is not None:
        recording = Recording(recording.responses, (*recording.skipped, f"{damage.where} on: {damage.reason}"),
                              recording.label)
    if not recording.responses:
        where = f" (then {damage})" if damage is not None else ""
        raise SourceError(f"{path}: no HTTP response to replay among its {len(flows)} flows{where}")
    return recording, damage


# -- serving ------------------------------------------------------------------


def chunk_frame(data: bytes) -> bytes:
    """One HTTP/1.1 chunk: size in hex, CRLF, data, CRLF (``data`` not empty:
    an empty chunk ends the body)."""
    if not data:
        raise ValueError("an empty chunk would end the body")
    return b"%x\r\n%b\r\n" % (len(data), data)


class _Handler(BaseHTTPRequestHandler):
    """Answers each request with its recorded response, paced as recorded."""

    protocol_version = "HTTP/1.1"
    server_version = f"ssemedic-replay/{__version__}"
    # TCP_NODELAY: a small chunk must leave at once, not wait for the last one's ACK.
    disable_nagle_algorithm = True
    timeout = 60

    server: ReplayServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _answer(self) -> None:
        started = time.monotonic()
        if not self._drain_request():
            return
        found = self.server.recording.match(self.command, self.path)
        if found is None:
            log.info("%s %s -> 404: not in the recording", self.command, self.path)
            message = f"no recorded response for {self.command} {_origin_form(self.path)}"
            self._json(404, {"error": {"message": message, "type": "not_found", "code": "not_recorded"},
                             "recorded": self.server.recording.holds()})
            return
        log.info("%s %s -> %s: %s, %s", self.command, self.path, found.label, found.summary(), self.server.pace())
        self._serve(found, started)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

    def _drain_request(self) -> bool:
        """Read and drop the request body; False when the request was refused."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # Chunked requests are the one parse the stdlib does not do.
            self._json(411, {"error": {"message": "send the request body with a Content-Length",
                                       "type": "invalid_request_error", "code": "length_required"}}, close=True)
            return False
        try:
            remaining = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            remaining = -1
        if remaining < 0:
            self._json(400, {"error": {"message": "Content-Length is not a number",
                                       "type": "invalid_request_error", "code": "bad_length"}}, close=True)
            return False
        while remaining > 0:
            data = self.rfile.read(min(remaining, _READ))
            if not data:
                self.close_connection = True
                return False
            remaining -= len(data)
        return True

    def _json(self, status: int, payload: Any, close: bool = False) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
        try:
            self.end_headers()
            self.wfile.write(body)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _wait(self, started: float, at: float) -> bool:
        """Sleep until recorded time ``at``, scaled; False if the server stops first."""
        stopping, speed = self.server.stopping, self.server.speed
        if speed is not None:
            remaining = started + at / speed - time.monotonic()
            if remaining > 0:
                return not stopping.wait(remaining)
        return not stopping.is_set()

    def _serve(self, rec: Recorded, started: float) -> None:
        framing = rec.framing
        if framing == "chunked" and self.request_version != "HTTP/1.1":
            framing = "close"  # HTTP/1.0 knows no chunks: the body ends with the connection
        self.send_response_only(rec.status, rec.reason or None)
        for name, value in rec.headers:
            self.send_header(name, value)
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif framing == "length":
            self.send_header("Content-Length", str(rec.content_length))
        elif framing == "close":
            self.send_header("Connection", "close")
        sent = 0
        try:
            if not self._wait(started, rec.head_at):
                return self._cut(rec, sent)
            self.end_headers()
            if framing == "none":
                return None
            # wfile is unbuffered (wbufsize 0): each write is sent at once.
            for data, at in rec.chunks:
                if not self._wait(started, at):
                    return self._cut(rec, sent)
                self.wfile.write(chunk_frame(data) if framing == "chunked" else data)
                sent += 1
            if not self._wait(started, rec.end_at):
                return self._cut(rec, sent)
            if rec.breaks_off:
                # The recorded body never ended (it broke off, or the recording
                # was cut): stop here without an end, as far as it is known.
                self.close_connection = True
                if rec.cut is not None:
                    log.info("  %s: %s", rec.label, rec.cut.message())
            elif framing == "chunked":
                self.wfile.write(LAST_CHUNK)
        except (ConnectionError, TimeoutError) as exc:
            self.close_connection = True
            log.info("  client went away after %d of %d chunks of %s (%s)",
                     sent, len(rec.chunks), rec.label, type(exc).__name__)
        return None

    def _cut(self, rec: Recorded, sent: int) -> None:
        self.close_connection = True
        log.info("  replay stopping: %s cut after %d of %d chunks", rec.label, sent, len(rec.chunks))


class ReplayServer(ThreadingHTTPServer):
    """A threaded HTTP server for a Recording. ``speed`` None sends without
    pauses. ``shutdown()`` also cuts running streams and closes the socket."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], recording: Recording, speed: float | None = 1.0) -> None:
        if speed is not None and not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be a positive number, not {speed!r}")
        super().__init__(address, _Handler)
        self.recording = recording
        self.speed = speed
        self.stopping = threading.Event()

    def pace(self) -> str:
        return "no delay" if self.speed is None else f"speed {self.speed:g}x"

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up is normal here; only real bugs get a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.info("connection from %s:%s dropped (%s)", *client_address[:2], type(exc).__name__)
            return
        super().handle_error(request, client_address)


def check_loopback(host: str) -> None:
    """Raise ValueError unless ``host`` is an IPv4 loopback address or localhost."""
    try:
        loopback = ipaddress.IPv4Address("127.0.0.1" if host == "localhost" else host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"replay listens on loopback addresses only (127.0.0.0/8), not {host!r}")


def serve(
    flows_or_path: str | PathLike[str] | Recording | Iterable[Any],
    host: str = DEFAULT_HOST,
    port: int = 0,
    speed: float = 1.0,
    delay: bool = True,
) -> tuple[ReplayServer, threading.Thread]:
    """Serve a recording (a file path, flows or a Recording) in a daemon thread.
    Port 0 picks a free port (``server.server_address[1]``); ``delay=False``
    sends without pauses; ``server.shutdown()`` stops it. Raises SourceError
    for an unreadable file and ValueError for a non-loopback host."""
    check_loopback(host)
    if isinstance(flows_or_path, Recording):
        recording = flows_or_path
    elif isinstance(flows_or_path, (str, PathLike)):
        recording = load(flows_or_path)
    else:
        recording = Recording.from_flows(flows_or_path)
    server = ReplayServer((host, port), recording, speed if delay else None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name="ssemedic-replay", daemon=True)
    thread.start()
    return server, thread


# -- command line ---------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the replay options to ``parser`` (a subparser or a script's own)."""
    parser.add_argument("file", metavar="FILE", help="a mitmproxy flow file (mitmdump -w) or a HAR file")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"loopback address to listen on (default {DEFAULT_HOST}; only 127.0.0.0/8)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT}; 0 = any free port)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_positive, default=1.0, metavar="X",
                      help="play X times as fast: recorded pauses are divided by X (default 1)")
    pace.add_argument("--no-delay", action="store_true",
                      help="send every chunk at once, without the recorded pauses")
    parser.add_argument("--max-seconds", type=_positive, default=None, metavar="N",
                        help="stop by itself after N seconds (default: run until Ctrl-C)")


def _listing(recording: Recording) -> list[str]:
    lines = [f"  {r.label}: {r.summary()}" for r in recording.responses]
    notes = [f"  note: {r.label}: {note}" for r in recording.responses for note in r.notes]
    notes += [f"  skipped {line}" for line in recording.skipped]
    out = lines[:LISTED] + ([f"  ... and {len(lines) - LISTED} more"] if len(lines) > LISTED else [])
    return out + notes[:LISTED] + ([f"  ... and {len(notes) - LISTED} more notes"] if len(notes) > LISTED else [])


def run(args: argparse.Namespace) -> int:
    """Serve ``args.file`` until Ctrl-C or ``--max-seconds``; the exit code."""
    try:
        check_loopback(args.host)
        recording, damage = _read(args.file)
    except (ValueError, SourceError) as exc:
        print(f"ssemedic: error: {exc}", file=sys.stderr)
        return 2
    speed = None if args.no_delay else args.speed
    try:
        server = ReplayServer((args.host, args.port), recording, speed)
    except OSError as exc:
        print(f"ssemedic: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        host, port = server.server_address[:2]
        count = len(recording.responses)
        log.info("replaying %s on http://%s:%s (%d response%s, %s)", recording.label, host, port,
                 count, "" if count == 1 else "s", server.pace())
        for line in _listing(recording):
            log.info("%s", line)
        if args.max_seconds is not None:
            timer = threading.Timer(args.max_seconds, server.shutdown)
            timer.daemon = True
            timer.start()
        try:
            server.serve_forever(poll_interval=0.1)
        except KeyboardInterrupt:
            pass
        finally:
            server.stopping.set()
            server.server_close()
        log.info("replay stopped")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    if damage is not None:
        before = damage.flow - 1
        them = "the flow before it was" if before == 1 else f"the {before} flows before it were"
        print(f"ssemedic: error: {damage}; only {them} served", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """A stand-alone command line (scripts/replay_upstream.py)."""
    parser = argparse.ArgumentParser(prog="replay_upstream", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
