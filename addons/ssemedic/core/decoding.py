"""Incremental Content-Encoding decoders, so a compressed stream can still be
inspected chunk by chunk. The bytes forwarded to the client are never touched here.

gzip (and x-gzip) and deflate use zlib; br uses ``brotli`` and zstd uses
``compression.zstd`` (Python 3.14+) or ``backports.zstd`` before it: the
libraries mitmproxy 12.3 itself decodes with. A library that cannot be
imported makes its encoding unsupported (see ``problem``), never an exception.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Protocol


class DecodeError(Exception):
    """Compressed data that cannot be decoded, or an encoding that cannot be."""


class StreamDecoder:
    """Feed compressed pieces, get decompressed bytes; ``None`` encoding passes through.

    Raises DecodeError (one line) for an unsupported encoding, a missing
    library, or data that does not decode."""

    def __init__(self, encoding: str | None) -> None:
        self.encoding = _name(encoding)
        self._decompress = _make(self.encoding)

    def feed(self, data: bytes) -> bytes:
        try:
            return self._decompress(data)
        except Exception as exc:  # each library raises its own error type
            raise DecodeError(f"cannot decode {self.encoding} data: {_one_line(exc)}") from exc


def supported(encoding: str | None) -> bool:
    """Whether ``encoding`` can be decoded here (its library is importable)."""
    return problem(encoding) is None


def problem(encoding: str | None) -> str | None:
    """Why ``encoding`` cannot be decoded (one line), or None when it can."""
    try:
        _make(_name(encoding))
    except DecodeError as exc:
        return str(exc)
    return None


def _name(encoding: str | None) -> str:
    return (encoding or "identity").strip().lower()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _Member(Protocol):
    """A decompressor that stops at the end of one gzip member or zstd frame
    (zlib's decompress objects and ``ZstdDecompressor`` both are one)."""

    def decompress(self, data: bytes, /) -> bytes: ...

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...


def _make(encoding: str) -> Callable[[bytes], bytes]:
    if encoding in ("identity", "none", ""):
        return bytes
    if encoding in ("gzip", "x-gzip"):
        return _Members(lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)).decompress
    if encoding == "deflate":
        return _Deflate().decompress
    if encoding == "br":
        try:
            import brotli
        except ImportError as exc:
            raise DecodeError("br needs the brotli package, which cannot be imported") from exc
        decompressor = brotli.Decompressor()
        return lambda data: bytes(decompressor.process(data))
    if encoding == "zstd":
        try:
            new = _zstd_decompressor()
        except ImportError as exc:
            library = "compression.zstd" if sys.version_info >= (3, 14) else "the backports.zstd package"
            raise DecodeError(f"zstd needs {library}, which cannot be imported") from exc
        return _Members(new).decompress
    raise DecodeError(f"unsupported content-encoding {encoding!r}")


def _zstd_decompressor() -> Callable[[], _Member]:
    if sys.version_info >= (3, 14):
        from compression.zstd import ZstdDecompressor
    else:
        from backports.zstd import ZstdDecompressor
    return ZstdDecompressor


class _Members:
    """One body made of several gzip members (RFC 1952 §2.2) or zstd frames
    (RFC 8878 §3), one after the other.

    Strategy: a decompressor stops at the end of its member and keeps the
    bytes after it in ``unused_data``; a fresh decompressor takes those on.
    Each turn of the loop consumes at least the finished member's bytes, so
    the loop ends."""

    def __init__(self, new: Callable[[], _Member]) -> None:
        self._new = new
        self._obj = new()

    def decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            if self._obj.eof:
                self._obj = self._new()
            out.append(self._obj.decompress(data))
            rest = self._obj.unused_data if self._obj.eof else b""
            if len(rest) >= len(data):
                raise DecodeError("decompressor made no progress")
            data = rest
        return b"".join(out)


class _Deflate:
    """HTTP "deflate" is zlib-wrapped by the RFC but raw in some servers: try both."""

    def __init__(self) -> None:
        self._obj: zlib._Decompress | None = None
        self._head = b""

    def decompress(self, data: bytes) -> bytes:
        if self._obj is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            data, self._head = self._head, b""
            wrapped = (data[0] & 0x0F) == 8 and int.from_bytes(data[:2], "big") % 31 == 0
            self._obj = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        return self._obj.decompress(data)
