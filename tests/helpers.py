"""Shared test helpers: build streams and feed them in every chunking."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from ssemedic.core.session import StreamSession


def sse_event(payload: Any, event: str | None = None, *, eol: str = "\n") -> bytes:
    """One SSE block; ``payload`` is JSON-encoded unless it is already a str."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    head = f"event: {event}{eol}" if event else ""
    return f"{head}data: {data}{eol}{eol}".encode()


def ndjson_line(payload: Any) -> bytes:
    return (json.dumps(payload, ensure_ascii=False) + "\n").encode()


def chunkings(data: bytes, *, max_splits: int | None = 400) -> Iterator[tuple[str, list[bytes]]]:
    """The three ways every parser/session test runs: whole, byte by byte,
    and cut in two at every split point (including inside multi-byte
    characters). For long inputs, ``max_splits`` evenly spaced points plus
    every point inside a multi-byte character are used."""
    yield "whole", [data]
    yield "bytewise", [data[i : i + 1] for i in range(len(data))]
    points: Sequence[int] = range(1, len(data))
    if max_splits is not None and len(data) > max_splits:
        step = len(data) // max_splits + 1
        inside_chars = {i for i in points if data[i] & 0xC0 == 0x80}
        points = sorted(set(range(1, len(data), step)) | inside_chars)
    for i in points:
        yield f"split@{i}", [data[:i], data[i:]]


def run_session(chunks: list[bytes], **kwargs: Any) -> StreamSession:
    """Feed chunks to a new session (one millisecond apart) and close it."""
    kwargs.setdefault("started_at", 0.0)
    session = StreamSession(**kwargs)
    t = 0.0
    for chunk in chunks:
        t += 0.001
        session.feed(chunk, at=t)
    session.close(at=t + 0.001)
    return session


#: Faults that describe the chunking or timing itself, not the stream's content.
CHUNKING_FAULTS = {"utf8-split", "event-split", "buffered-burst", "stall"}


def summary_without_timing(session: StreamSession) -> dict[str, Any]:
    """What must not depend on chunking: everything but the timeline and the
    faults that are about chunking."""
    out = session.summary()
    out.pop("timing")
    out["faults"] = [f for f in out["faults"] if f["kind"] not in CHUNKING_FAULTS]
    return out


def run_everywhere(data: bytes, **kwargs: Any) -> StreamSession:
    """Run ``data`` through a StreamSession whole, bytewise and split in two
    (at every point inside a multi-byte character, and at up to 150 others),
    check that the summaries agree, and return the whole run."""
    whole: StreamSession | None = None
    for name, chunks in chunkings(data, max_splits=150):
        session = run_session(chunks, **kwargs)
        if whole is None:
            whole = session
        else:
            assert summary_without_timing(session) == summary_without_timing(whole), name
    assert whole is not None
    return whole
