"""Where offline streams come from: raw body captures, mitmproxy flow files and HAR.

The kind of a file is sniffed from its first bytes, never from its name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.decoding import DecodeError, StreamDecoder, supported
from ..core.diagnose import is_client_disconnect
from ..core.events import BOM
from ..core.eventstream import valid_prelude
from ..core.framing import MEDIA_TYPES, framing_for_content_type, sniff_framing
from ..core.session import EventRecord, StreamSession
from ..core import recording
from ..core.recording import METADATA_KEY

__all__ = ["METADATA_KEY", "SourceError", "Capture", "load", "read_flows", "read_head", "file_kind", "stream_from_flow"]

_TNETSTRING_START = re.compile(rb"^\d{1,12}:")
_HEAD = 64 * 1024


class SourceError(Exception):
    """A file that cannot be read as a stream source; the message says why."""


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

    def session(self, *, provider: str | None = None) -> StreamSession:
        """Run a new session over the whole stream and return it, closed."""
        return self.run(provider=provider, keep=0)[0]

    def run(self, *, provider: str | None = None, keep: int | None = None) -> tuple[StreamSession, list[EventRecord]]:
        """Run a new session over the whole stream; return it, closed, with the
        first ``keep`` event records (all when None)."""
        session = StreamSession(
            provider=provider,
            method=self.method,
            path=self.path,
            request_headers=self.request_headers,
            content_type=self.content_type,
            started_at=self.started_at,
            response_headers=self.response_headers,
        )
        records: list[EventRecord] = []

        def take(new: list[EventRecord]) -> None:
            records.extend(new if keep is None else new[: max(keep - len(records), 0)])

        for data, at in self.chunks:
            take(session.feed(data, at))
        # A close time only when the chunks were timed: never mix known and unknown times.
        closed_at = self.closed_at if self.chunks and self.chunks[-1][1] is not None else None
        take(session.close(closed_at, clean=not self.aborted, client_gone=self.client_gone))
        return session, records


def file_kind(head: bytes) -> str | None:
    """``flows``, ``json`` (HAR or NDJSON), ``sse``, ``eventstream`` or None for a file's first bytes."""
    if _TNETSTRING_START.match(head):
        return "flows"
    if valid_prelude(head):
        return "eventstream"  # binary, so before the NUL check
    if b"\0" in head[:4096]:
        return None
    if head.removeprefix(BOM).lstrip(b" \t\r\n").startswith(b"{"):
        return "json"
    return sniff_framing(head)


def read_head(path: Path) -> bytes:
    """The first bytes of ``path`` (enough to sniff it); SourceError if unreadable or empty."""
    try:
        with path.open("rb") as f:
            head = f.read(_HEAD)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not head:
        raise SourceError(f"{path}: empty file")
    return head


def read_flows(path: str | Path) -> list[Any]:
    """Every flow in a mitmproxy flow file or HAR file; SourceError with one line if not."""
    # Imported here: the core stays free of mitmproxy; only file reading needs it.
    from mitmproxy.io import FlowReader

    path = Path(path)
    if file_kind(read_head(path)) not in ("flows", "json"):
        raise SourceError(f"{path}: not a mitmproxy flow or HAR file")
    try:
        with path.open("rb") as f:
            return list(FlowReader(f).stream())
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except Exception as exc:  # FlowReadException, or anything a corrupt tnetstring raises
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SourceError(f"{path}: not a readable mitmproxy flow or HAR file: {reason}") from None


def load(path: str | Path) -> list[Capture]:
    """Every stream in ``path``; raises SourceError with a one-line reason."""
    path = Path(path)
    head = read_head(path)
    kind = file_kind(head)
    if kind == "flows":
        return list(_from_flow_file(path))
    if kind == "json":
        body = path.read_bytes()
        if _is_har(body):
            return list(_from_flow_file(path))
        return [_capture(path, body, "ndjson")]
    if kind in ("sse", "eventstream"):
        return [_capture(path, path.read_bytes(), kind)]
    raise SourceError(
        f"{path}: not an SSE or NDJSON capture, nor an AWS event stream, a mitmproxy flow or a HAR file"
    )


def _capture(path: Path, body: bytes, framing: str) -> Capture:
    content_type = MEDIA_TYPES[framing]
    return Capture(
        label=str(path),
        body=body,
        chunks=[(body, None)],
        content_type=content_type,
        notes=["raw body capture: no request, headers or chunk timeline"],
    )


def _is_har(body: bytes) -> bool:
    try:
        doc = json.loads(body.removeprefix(b"\xef\xbb\xbf"))
    except ValueError:
        return False
    return isinstance(doc, dict) and isinstance(doc.get("log"), dict)


def _from_flow_file(path: Path) -> Iterator[Capture]:
    from mitmproxy import http

    flows = read_flows(path)
    for number, flow in enumerate(flows, 1):
        if isinstance(flow, http.HTTPFlow) and flow.response is not None:
            stream = stream_from_flow(flow, f"{path} #{number}")
            if stream is not None:
                yield stream


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
        if not raw or sniff_framing(raw[:_HEAD]) is None:
            return None
    label = f"{label_prefix} {request.method} {request.pretty_url}"
    notes: list[str] = []
    if raw is None:
        notes.append("body was not stored (streamed without ssemedic): nothing to report")
        raw = b""
    body = raw
    encoding = response.headers.get("content-encoding")
    decoded: bytes | None = None
    if encoding and supported(encoding):
        # Our decoder, not mitmproxy's: it reads every gzip member and zstd
        # frame, x-gzip, and a truncated body as far as it goes.
        try:
            decoded = StreamDecoder(encoding).feed(raw)
        except DecodeError as exc:
            notes.append(f"{exc}: body shown undecoded")
    elif encoding:
        decoded = response.get_content(strict=False)
    if decoded is not None and decoded != raw:
        body = decoded
        notes.append(f"body decoded from content-encoding {encoding}")
    chunks: list[tuple[bytes, float | None]] = [(body, None)] if body else []
    started_at: float | None = None
    closed_at: float | None = None
    recorded = recording.read(flow)
    if recorded.cut_at is not None:
        notes.append(f"recording cut after {recorded.cut_at} bytes: the stream went on, so its end is unknown")
    if recorded.problem is not None:
        notes.append(f"{recorded.problem}: timings unavailable")
    elif body is raw or supported(encoding):
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
    else:
        notes.append("chunk timeline not applied to a decoded body: timings unavailable")
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
    )
