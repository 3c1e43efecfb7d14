"""Where offline streams come from: raw body captures, mitmproxy flow files and HAR.

The kind of a file is sniffed from its first bytes, never from its name. A
flow file that breaks off (a cut download, a killed ``mitmdump -w``) still
gives every flow before the break, with a ``Damage`` that says where and why
reading stopped; callers decide what a partial read is worth.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..core.decoding import DecodeError, StreamDecoder, problem
from ..core.diagnose import is_client_disconnect
from ..core.events import BOM
from ..core.eventstream import valid_prelude
from ..core.framing import JSONARRAY, MEDIA_TYPES, framing_for_content_type, sniff_framing
from ..core import providers
from ..core.session import EventRecord, StreamSession
from ..core import recording
from ..core import telemetry
from ..core.recording import METADATA_KEY

__all__ = [
    "METADATA_KEY", "SourceError", "NotFlowsError", "Damage", "FlowFile", "Captures", "Capture", "load",
    "read_captures", "read_flows", "read_flow_file", "read_head", "file_kind", "stream_from_flow",
]

_TNETSTRING_START = re.compile(rb"^\d{1,12}:")
_TNETSTRING_LENGTH = re.compile(rb"(\d{1,12}):")
# A HAR document's first key is "log" (HAR 1.2: the root object holds only it).
_HAR_START = re.compile(rb"^\s*\{\s*\"log\"\s*:")
_HEAD = 64 * 1024
_MEMORY_REPR = re.compile(r"<memory at 0x[0-9a-fA-F]+>")
_INVALID = "not a valid flow: "


class SourceError(Exception):
    """A file that cannot be read as a stream source; the message says why."""


@dataclass(frozen=True, slots=True)
class Damage:
    """Where and why reading a flow or HAR file stopped before its end.

    ``flow`` is the number (from 1) of the first flow that could not be read;
    ``offset`` is the byte where it starts, None in a HAR file (one JSON
    document, read whole)."""

    path: Path
    flow: int
    offset: int | None
    size: int
    reason: str

    @property
    def where(self) -> str:
        """The flow where reading stopped, e.g. ``flow #51 (byte 103,907 of 207,800)``."""
        if self.offset is None:
            return f"HAR entry #{self.flow}"
        return f"flow #{self.flow} (byte {self.offset:,} of {self.size:,})"

    def __str__(self) -> str:
        return f"{self.path}: reading stopped at {self.where}: {self.reason}"


@dataclass(slots=True)
class FlowFile:
    """The flows read from a file, and the damage that stopped reading, if any."""

    flows: list[Any]
    damage: Damage | None = None


@dataclass(slots=True)
class Captures:
    """The streams read from a file, and the damage that stopped reading, if any."""

    streams: list[Capture]
    damage: Damage | None = None


@dataclass(slots=True)
class Capture:
    """One streamed response body, with what is known about its request."""

    label: str
    body: bytes
    chunks: list[tuple[bytes, float | None]]
    started_at: float | None = None
    closed_at: float | None = None
    method: str = "GET"
    path: str = ""
    request_headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    status: int | None = None
    notes: list[str] = field(default_factory=list)
    #: None for raw captures: then no header faults can be diagnosed.
    response_headers: dict[str, str] | None = None
    #: Whether the connection broke before the body ended (a saved aborted flow).
    aborted: bool = False
    #: Whether it was the client that went away.
    client_gone: bool = False
    #: Where the recording stopped short of the stream, when it did: the
    #: chunks end there, not at the stream's end.
    cut: recording.Cut | None = None
    #: Why the body cannot be decoded (its Content-Encoding), or None. Such a
    #: body is not inspected: parsing compressed bytes would only invent faults.
    undecodable: str | None = None
    #: The flow's recording as stored (None for raw captures).
    recorded: recording.Recording | None = None
    #: The request facts an OpenTelemetry span needs (flows only).
    request: telemetry.Request | None = None
    #: The framing when the Content-Type cannot tell it (a raw JSON array capture), else None.
    framing: str | None = None

    def session(self, *, provider: str | None = None) -> StreamSession:
        """Run a new session over the whole stream and return it, closed."""
        return self.run(provider=provider, keep=0)[0]

    def run(self, *, provider: str | None = None, keep: int | None = None) -> tuple[StreamSession, list[EventRecord]]:
        """Run a new session over the whole stream; return it, closed, with the
        first ``keep`` event records (all when None). An ``undecodable`` body
        is not fed: the session stays empty and open, so nothing is diagnosed."""
        session = StreamSession(
            framing=self.framing,
            provider=provider,
            method=self.method,
            path=self.path,
            request_headers=self.request_headers,
            content_type=self.content_type,
            started_at=self.started_at,
            response_headers=self.response_headers,
        )
        records: list[EventRecord] = []
        if self.undecodable is not None:
            return session, records

        def take(new: list[EventRecord]) -> None:
            records.extend(new if keep is None else new[: max(keep - len(records), 0)])

        for data, at in self.chunks:
            take(session.feed(data, at))
        # A close time only when the chunks were timed: never mix known and unknown times.
        closed_at = self.closed_at if self.chunks and self.chunks[-1][1] is not None else None
        take(session.close(closed_at, clean=not self.aborted, client_gone=self.client_gone,
                           recording_cut=self.cut is not None))
        return session, records


def file_kind(head: bytes) -> str | None:
    """``flows``, ``json`` (HAR or NDJSON), ``sse``, ``eventstream``, ``jsonarray`` (an array of
    objects, as Gemini streams without ``alt=sse``) or None for a file's first bytes."""
    if _TNETSTRING_START.match(head):
        return "flows"
    if valid_prelude(head):
        return "eventstream"  # binary, so before the NUL check
    if b"\0" in head[:4096]:
        return None
    if head.removeprefix(BOM).lstrip(b" \t\r\n").startswith(b"{"):
        return "json"
    return sniff_framing(head, json_array=True)


def read_head(path: Path) -> bytes:
    """The first bytes of ``path`` (enough to sniff it); SourceError if unreadable or empty."""
    f, head = _open(path)
    f.close()
    return head


def _open(path: Path) -> tuple[BinaryIO, bytes]:
    """``path`` open at its start, and its first bytes; SourceError (one
    line) if it cannot be read or is empty.

    Strategy: each file is opened once, so a pipe (``<(curl ...)``) is read
    once too: an input that cannot seek is read whole into memory, but only
    after its first bytes show a kind of file read here (a pipe of zeros is
    refused after 64 KiB)."""
    try:
        f: BinaryIO = path.open("rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        head = f.read(_HEAD)
        if not head:
            raise SourceError(f"{path}: empty file")
        if f.seekable():
            f.seek(0)
            return f, head
        rest = f.read() if file_kind(head) is not None else b""
        f.close()
        return io.BytesIO(head + rest), head
    except OSError as exc:
        f.close()
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except BaseException:
        f.close()
        raise


class NotFlowsError(SourceError):
    """A readable file that is no flow or HAR file; ``kind`` is what it is (see ``file_kind``)."""

    def __init__(self, message: str, kind: str | None) -> None:
        super().__init__(message)
        self.kind = kind


def read_flows(path: str | Path) -> list[Any]:
    """Every flow in a mitmproxy flow file or HAR file; SourceError with one
    line if not, or if the file is damaged anywhere (the line says where)."""
    read = read_flow_file(path)
    if read.damage is not None:
        raise SourceError(str(read.damage))
    return read.flows


def read_flow_file(path: str | Path) -> FlowFile:
    """The flows of a mitmproxy flow file or HAR file, as far as they can be read.

    Raises SourceError (one line; NotFlowsError for another kind of file)
    when not even the first flow can be read; a file that breaks off later
    gives the flows before the break and its ``Damage``.
    """
    path = Path(path)
    f, head = _open(path)
    with f:
        kind = file_kind(head)
        if kind not in ("flows", "json"):
            raise NotFlowsError(f"{path}: not a mitmproxy flow or HAR file", kind)
        return _flow_file(path, f, har=kind == "json")


def _flow_file(path: Path, f: BinaryIO, *, har: bool) -> FlowFile:
    try:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        if har:
            # mitmproxy takes a HAR only when "{" comes first (after a BOM);
            # JSON allows whitespace before it, and pretty-printers write some.
            body = f.read().removeprefix(BOM)
            f = io.BytesIO(body.lstrip(b" \t\r\n"))
            size = len(f.getbuffer())
        read = _read_flows(path, f, size, har=har)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if read.damage is not None and not read.flows:
        reason = read.damage.reason.removeprefix(_INVALID)
        raise SourceError(f"{path}: not a readable mitmproxy flow or HAR file: {reason}")
    return read


def _read_flows(path: Path, f: BinaryIO, size: int, *, har: bool) -> FlowFile:
    """Strategy: mitmproxy's FlowReader yields flows one by one and reads no
    further than each flow's end, so the file position before each ``next``
    is where the next flow starts; the first failure ends the read there."""
    # Imported here: the core stays free of mitmproxy; only file reading needs it.
    from mitmproxy.io import FlowReader

    flows: list[Any] = []
    reader = iter(FlowReader(f).stream())
    while True:
        offset = f.tell()
        try:
            flow = next(reader)
        except StopIteration:
            return FlowFile(flows)
        except OSError:
            raise
        except Exception as exc:  # FlowReadException, or anything a corrupt tnetstring raises
            if har:
                return FlowFile(flows, Damage(path, len(flows) + 1, None, size, _reason(exc)))
            f.seek(offset)
            reason = _cut_reason(f.read(13), offset, size) or _INVALID + _reason(exc)
            return FlowFile(flows, Damage(path, len(flows) + 1, offset, size, reason))
        flows.append(flow)


def _cut_reason(head: bytes, offset: int, size: int) -> str | None:
    """Why a flow at ``offset`` cannot be whole, when its length prefix runs
    past the end of the file (``head`` is its first bytes): the file was cut."""
    m = _TNETSTRING_LENGTH.match(head)
    if m is None:
        return None
    needed = len(m.group(0)) + int(m.group(1)) + 1  # prefix, payload, type byte
    if offset + needed <= size:
        return None
    return (f"the file ends inside this flow ({size - offset:,} of its {needed:,} bytes are there): "
            f"the file was cut")


def _reason(exc: BaseException) -> str:
    """One line for a read error, with the underlying error mitmproxy wraps."""
    text = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None:
        detail = " ".join(str(cause).split())
        if detail not in text:
            text += f" ({type(cause).__name__}: {detail})" if detail else f" ({type(cause).__name__})"
    return _MEMORY_REPR.sub("…", text)  # tnetstring quotes a memoryview: its address says nothing


def load(path: str | Path) -> list[Capture]:
    """Every stream in ``path``; raises SourceError with a one-line reason,
    also when the file is damaged anywhere (see ``read_captures``)."""
    read = read_captures(path)
    if read.damage is not None:
        raise SourceError(str(read.damage))
    return read.streams


def read_captures(path: str | Path) -> Captures:
    """Every stream in ``path`` that can be read, and where reading stopped
    if the file is damaged; raises SourceError with a one-line reason when
    nothing can be read."""
    path = Path(path)
    f, head = _open(path)
    with f:
        kind = file_kind(head)
        if kind == "flows":
            return _captures(path, _flow_file(path, f, har=False))
        if kind not in ("json", "sse", "eventstream", JSONARRAY):
            raise SourceError(
                f"{path}: not an SSE or NDJSON capture, nor an AWS event stream, a streamed JSON array, "
                "a mitmproxy flow or a HAR file"
            )
        try:
            body = f.read()
        except OSError as exc:
            raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if kind == "json" and _is_har(body, path):
        return _captures(path, _flow_file(path, io.BytesIO(body), har=True))
    return Captures([_capture(path, body, "ndjson" if kind == "json" else kind)])


def _capture(path: Path, body: bytes, framing: str) -> Capture:
    content_type = MEDIA_TYPES[framing]
    return Capture(
        label=str(path),
        body=body,
        chunks=[(body, None)],
        content_type=content_type,
        framing=JSONARRAY if framing == JSONARRAY else None,
        notes=["raw body capture: no request, headers or chunk timeline"],
    )


def _is_har(body: bytes, path: Path) -> bool:
    """Whether ``body`` is a HAR document. One that starts like a HAR but is
    not JSON is a SourceError, unless its first line is JSON by itself (an
    NDJSON stream whose objects have a "log" key)."""
    body = body.removeprefix(BOM)
    try:
        doc = json.loads(body)
    except ValueError as exc:
        if not _HAR_START.match(body) or _first_line_is_json(body):
            return False
        where = (f" at byte {exc.pos:,} (line {exc.lineno}, column {exc.colno})"
                 if isinstance(exc, json.JSONDecodeError) else "")
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else " ".join(str(exc).split())
        raise SourceError(f"{path}: looks like a HAR file but is not valid JSON: {reason}{where}") from None
    return isinstance(doc, dict) and isinstance(doc.get("log"), dict)


def _first_line_is_json(body: bytes) -> bool:
    try:
        json.loads(body.split(b"\n", 1)[0])
    except ValueError:
        return False
    return True


def _captures(path: Path, read: FlowFile) -> Captures:
    from mitmproxy import http

    streams = []
    for number, flow in enumerate(read.flows, 1):
        if isinstance(flow, http.HTTPFlow) and flow.response is not None:
            stream = stream_from_flow(flow, f"{path} #{number}")
            if stream is not None:
                streams.append(stream)
    return Captures(streams, read.damage)


def _request_wants_stream(content: bytes | None) -> bool:
    if not content or b'"stream"' not in content:
        return False
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("stream") is True


def stream_from_flow(flow: Any, label_prefix: str) -> Capture | None:
    """The stream in an HTTP flow's response, or None when it holds none."""
    request, response = flow.request, flow.response
    content_type = response.headers.get("content-type")
    raw = response.raw_content
    declared = framing_for_content_type(content_type)
    if declared is None and not _request_wants_stream(request.raw_content):
        guess = providers.detect_from_request(request.method, request.path, request.headers)
        json_array = providers.get(guess).json_array if guess else None
        if not raw or sniff_framing(raw[:_HEAD], json_array=json_array is not None and json_array(request.path)) is None:
            return None
    label = f"{label_prefix} {request.method} {request.pretty_url}"
    notes: list[str] = []
    if raw is None:
        notes.append("body was not stored (streamed without ssemedic): nothing to report")
        raw = b""
    body = raw
    encoding = response.headers.get("content-encoding")
    undecodable = problem(encoding) if encoding else None
    if encoding and undecodable is None:
        # Our decoder, not mitmproxy's: it reads every gzip member and zstd
        # frame, x-gzip, and a truncated body as far as it goes.
        try:
            decoded = StreamDecoder(encoding).feed(raw)
        except DecodeError as exc:
            undecodable = str(exc)
        else:
            if decoded != raw:
                body = decoded
                notes.append(f"body decoded from content-encoding {encoding}")
    chunks: list[tuple[bytes, float | None]] = [(body, None)] if body else []
    started_at: float | None = None
    closed_at: float | None = None
    recorded = recording.read(flow)
    if recorded.cut is not None:
        notes.append(recorded.cut.diagnosed())
    if undecodable is not None:
        notes.append(f"{undecodable}: body not inspected, so nothing is diagnosed from it")
    elif recorded.problem is not None:
        notes.append(f"{recorded.problem}: timings unavailable")
    else:
        try:
            timed = recorded.chunks
            if body is not raw:
                # Decode chunk by chunk, as the live addon does, so the timeline still applies.
                decoder = StreamDecoder(encoding)
                timed = [(decoder.feed(data), at) for data, at in timed]
            chunks = timed
            started_at = request.timestamp_start
            closed_at = recorded.ended_at
        except DecodeError as exc:
            notes.append(f"chunk timeline ignored: {exc}")
    return Capture(
        label=label,
        body=body,
        chunks=chunks,
        started_at=started_at,
        closed_at=closed_at,
        method=request.method,
        path=request.path,
        request_headers=dict(request.headers.items()),
        content_type=content_type,
        status=response.status_code,
        notes=notes,
        response_headers=dict(response.headers.items()),
        aborted=flow.error is not None,
        client_gone=is_client_disconnect(flow.error.msg if flow.error else None),
        cut=recorded.cut,
        undecodable=undecodable,
        recorded=recorded,
        request=telemetry.Request(request.method, request.path, request.host, request.port,
                                  telemetry.request_model(request.path, request.get_content(strict=False))),
    )
