"""The frames between the proxy and its inspection worker (sans-IO).

Every frame is a 17-byte header and a payload::

    kind (1 byte) · stream (u32) · time (f64, NaN: none) · length (u32) · payload

The proxy sends OPEN (the stream's Pipeline arguments), CHUNK (the upstream's
bytes as they came), FED (a keepalive went to the client), BEHIND (nothing
more of the stream will come), END and SETTINGS; the worker sends LOG (a log
record: stream is its level) and RESULT (what the stream amounted to). CHUNK
payloads are the raw bytes; the others are pickled plain values: both ends
are this package, talking over a pipe only they hold.
"""

from __future__ import annotations

import math
import pickle
import struct
from collections.abc import Iterator
from typing import Any, NamedTuple

OPEN, CHUNK, FED, BEHIND, END, SETTINGS = b"O", b"C", b"F", b"B", b"E", b"S"
LOG, RESULT = b"L", b"R"
KINDS = frozenset((OPEN, CHUNK, FED, BEHIND, END, SETTINGS, LOG, RESULT))

HEADER = struct.Struct("!cIdI")
#: The largest payload a frame may carry: the proxy sends no bigger chunk (its
#: stream falls behind instead), the worker clips a longer log line.
MAX_PAYLOAD = 16 * 1024 * 1024


class Frame(NamedTuple):
    kind: bytes
    stream: int
    at: float | None
    payload: bytes

    def value(self) -> Any:
        """The payload of a pickled frame."""
        return pickle.loads(self.payload)


class WireError(ValueError):
    """The bytes are no frame (the other end is not this package, or broke)."""


def frame(kind: bytes, stream: int, at: float | None = None, payload: bytes = b"") -> bytes:
    """One frame, as bytes (for CHUNK, prefer header + payload: no copy)."""
    return header(kind, stream, at, len(payload)) + payload


def header(kind: bytes, stream: int, at: float | None, length: int) -> bytes:
    return HEADER.pack(kind, stream, math.nan if at is None else at, length)


def value_frame(kind: bytes, stream: int, value: Any, at: float | None = None) -> bytes:
    """A frame whose payload is ``value``, pickled."""
    return frame(kind, stream, at, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


class Reader:
    """Bytes in, whole frames out; holds at most one unfinished frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame]:
        buffer = self._buffer
        buffer += data
        size = HEADER.size
        start = 0
        end = len(buffer)
        try:
            while end - start >= size:
                kind, stream, at, length = HEADER.unpack_from(buffer, start)
                if kind not in KINDS or length > MAX_PAYLOAD:
                    raise WireError(f"not an ssemedic worker frame at byte {start} (kind {kind!r}, "
                                    f"length {length})")
                if end - start - size < length:
                    break
                payload = bytes(buffer[start + size:start + size + length])
                start += size + length
                yield Frame(kind, stream, None if at != at else at, payload)
        finally:
            del buffer[:start]

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held."""
        return len(self._buffer)
