"""Incremental Content-Encoding decoders, so a compressed stream can still be
inspected chunk by chunk. The bytes forwarded to the client are never touched here.

gzip and deflate use zlib; br and zstd use the brotli and zstandard packages
that mitmproxy itself depends on.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable


class DecodeError(Exception):
    """Compressed data that cannot be decoded."""


class StreamDecoder:
    """Feed compressed pieces, get decompressed bytes; ``None`` encoding passes through."""

    def __init__(self, encoding: str | None) -> None:
        self.encoding = (encoding or "identity").strip().lower()
        self._decompress = _make(self.encoding)

    def feed(self, data: bytes) -> bytes:
        try:
            return self._decompress(data)
        except Exception as exc:  # each library raises its own error type
            raise DecodeError(f"cannot decode {self.encoding} data: {exc}") from exc


def supported(encoding: str | None) -> bool:
    try:
        _make((encoding or "identity").strip().lower())
    except DecodeError:
        return False
    return True


def _make(encoding: str) -> Callable[[bytes], bytes]:
    if encoding in ("identity", "none", ""):
        return bytes
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress
    if encoding == "deflate":
        return _Deflate().decompress
    if encoding == "br":
        import brotli

        decompressor = brotli.Decompressor()
        return lambda data: bytes(decompressor.process(data))
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress  # type: ignore[no-any-return,unused-ignore]
    raise DecodeError(f"unsupported content-encoding {encoding!r}")


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
