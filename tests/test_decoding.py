"""ssemedic.core.decoding: every Content-Encoding decoded incrementally, whole, byte
by byte and cut at every split point; bad data and unsupported encodings
give one-line errors, a missing library a note and pass-through. Then the
decoder where it is used: a live stream, and a saved flow read back."""

from __future__ import annotations

import gzip
import io
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import brotli
import pytest
from helpers import chunkings, sse_event
from mitmproxy.test import taddons, tflow

from ssemedic.core import recording
from ssemedic.mitm.addon import Medic
from ssemedic.core.decoding import DecodeError, StreamDecoder, problem, supported
from ssemedic.files.sources import stream_from_flow

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

TEXTS = ["Привет, ", "мир! 🌍", " ok"]
EVENTS = [
    sse_event({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": t}}]})
    for t in TEXTS
] + [
    sse_event({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    b"data: [DONE]\n\n",
]
BODY = b"".join(EVENTS)


def _zlib_pieces(wbits: int) -> Callable[[list[bytes]], list[bytes]]:
    def pieces(events: list[bytes]) -> list[bytes]:
        c = zlib.compressobj(6, zlib.DEFLATED, wbits)
        out = [c.compress(e) + c.flush(zlib.Z_SYNC_FLUSH) for e in events]
        out[-1] += c.flush()
        return out

    return pieces


def _br_pieces(events: list[bytes]) -> list[bytes]:
    c = brotli.Compressor()
    out = [c.process(e) + c.flush() for e in events]
    out[-1] += c.finish()
    return out


def _zstd_pieces(events: list[bytes]) -> list[bytes]:
    """One frame, a block flushed per event (how a streaming server sends zstd)."""
    c = zstd.ZstdCompressor()
    out = [c.compress(e, zstd.ZstdCompressor.FLUSH_BLOCK) for e in events]
    out[-1] += c.flush(zstd.ZstdCompressor.FLUSH_FRAME)
    return out


def _zstd_frames(events: list[bytes]) -> list[bytes]:
    """One complete frame per event (RFC 8878 §3: frames may follow one another)."""
    return [zstd.compress(e) for e in events]


def _gzip_members(events: list[bytes]) -> list[bytes]:
    """One complete gzip member per event (RFC 1952 §2.2)."""
    return [gzip.compress(e) for e in events]


#: Test name -> (Content-Encoding, compressor giving one piece per event, each
#: flushed so it decodes on its own). Shared with test_encodings_e2e.py.
COMPRESSORS: dict[str, tuple[str, Callable[[list[bytes]], list[bytes]]]] = {
    "gzip": ("gzip", _zlib_pieces(16 + zlib.MAX_WBITS)),
    "x-gzip": ("x-gzip", _zlib_pieces(16 + zlib.MAX_WBITS)),
    "gzip-members": ("gzip", _gzip_members),
    "deflate-zlib": ("deflate", _zlib_pieces(zlib.MAX_WBITS)),
    "deflate-raw": ("deflate", _zlib_pieces(-zlib.MAX_WBITS)),
    "br": ("br", _br_pieces),
    "zstd": ("zstd", _zstd_pieces),
    "zstd-frames": ("zstd", _zstd_frames),
    "identity": ("identity", list),
}


def decode(encoding: str | None, chunks: list[bytes]) -> bytes:
    decoder = StreamDecoder(encoding)
    return b"".join(decoder.feed(chunk) for chunk in chunks)


@pytest.mark.parametrize("name", COMPRESSORS)
def test_decodes_in_every_chunking(name: str) -> None:
    encoding, compress = COMPRESSORS[name]
    data = b"".join(compress(EVENTS))
    assert supported(encoding)
    for how, chunks in chunkings(data, max_splits=None):
        assert decode(encoding, chunks) == BODY, how


@pytest.mark.parametrize("name", COMPRESSORS)
def test_each_flushed_piece_decodes_when_it_arrives(name: str) -> None:
    encoding, compress = COMPRESSORS[name]
    decoder = StreamDecoder(encoding)
    assert [decoder.feed(piece) for piece in compress(EVENTS)] == EVENTS


def test_zstd_frames_are_really_several() -> None:
    data = b"".join(_zstd_frames(EVENTS))
    assert data.count(b"\x28\xb5\x2f\xfd") == len(EVENTS)  # the frame magic number
    assert decode("zstd", [data]) == BODY


@pytest.mark.parametrize("name", ["gzip", "x-gzip", "gzip-members", "deflate-zlib", "br", "zstd", "zstd-frames"])
def test_garbage_is_one_line_decode_error(name: str) -> None:
    encoding, _ = COMPRESSORS[name]
    with pytest.raises(DecodeError) as caught:
        decode(encoding, [b"\x00\x01this is not compressed at all\n\x02" * 4])
    message = str(caught.value)
    assert message.startswith(f"cannot decode {encoding} data: ")
    assert "\n" not in message


def test_garbage_after_the_last_zstd_frame_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="zstd"):
        decode("zstd", [zstd.compress(BODY) + b"trailing junk"])


@pytest.mark.parametrize("encoding", [None, "", "identity", "IDENTITY", "none"])
def test_identity_passes_through(encoding: str | None) -> None:
    assert supported(encoding)
    assert decode(encoding, [BODY[:5], BODY[5:]]) == BODY


def test_encoding_names_ignore_case_and_spaces() -> None:
    assert decode(" GZip ", [gzip.compress(BODY)]) == BODY


@pytest.mark.parametrize("encoding", ["compress", "gzip, br", "x-custom"])
def test_unsupported_encoding_is_named_in_one_line(encoding: str) -> None:
    assert not supported(encoding)
    assert problem(encoding) == f"unsupported content-encoding {encoding!r}"
    with pytest.raises(DecodeError, match="unsupported content-encoding"):
        StreamDecoder(encoding)


@pytest.fixture
def no_compression_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make brotli and both zstd modules unimportable (None in sys.modules)."""
    for module in ("brotli", "compression.zstd", "backports.zstd"):
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.usefixtures("no_compression_libraries")
@pytest.mark.parametrize(("encoding", "library"), [("br", "brotli"), ("zstd", "zstd")])
def test_missing_library_makes_the_encoding_unsupported(encoding: str, library: str) -> None:
    assert not supported(encoding)
    reason = problem(encoding)
    assert reason is not None and library in reason and "cannot be imported" in reason
    assert "\n" not in reason
    with pytest.raises(DecodeError):
        StreamDecoder(encoding)
    assert supported("gzip")  # zlib is always there


@pytest.fixture
def medic() -> Iterator[tuple[Medic, io.StringIO]]:
    console = io.StringIO()
    addon = Medic(console=console)
    with taddons.context(addon):
        yield addon, console


def live_flow(encoding: str) -> Any:
    f = tflow.tflow(resp=True)
    f.request.method = "POST"
    f.request.path = "/v1/chat/completions"
    f.request.content = b'{"model": "gpt-4o", "stream": true}'
    f.response.headers["content-type"] = "text/event-stream"
    f.response.headers["content-encoding"] = encoding
    f.response.content = None
    del f.response.headers["content-length"]
    return f


@pytest.mark.parametrize("name", ["gzip", "deflate-raw", "br", "zstd", "zstd-frames"])
def test_live_stream_is_inspected_and_forwarded_unchanged(medic: Any, name: str) -> None:
    addon, console = medic
    encoding, compress = COMPRESSORS[name]
    pieces = compress(EVENTS)
    f = live_flow(encoding)
    addon.responseheaders(f)
    assert callable(f.response.stream), "the stream must be streamed, not buffered"
    sent = [out for piece in pieces for out in f.response.stream(piece)] + f.response.stream(b"")
    addon.response(f)
    assert sent == pieces
    assert "Привет, мир! 🌍 ok" in console.getvalue()


@pytest.mark.usefixtures("no_compression_libraries")
def test_missing_library_passes_the_stream_through_with_a_note(medic: Any) -> None:
    addon, console = medic
    pieces = _zstd_pieces(EVENTS)
    f = live_flow("zstd")
    addon.responseheaders(f)
    assert callable(f.response.stream)
    sent = [out for piece in pieces for out in f.response.stream(piece)] + f.response.stream(b"")
    addon.response(f)
    assert sent == pieces
    out = console.getvalue()
    assert "zstd needs" in out and "passed through uninspected" in out
    assert "Traceback" not in out


def saved_flow(name: str, *, timed: bool) -> Any:
    """A flow as ``-w`` saves it: the compressed body, with ssemedic's chunk
    timeline or (as plain mitmdump saves it) without one."""
    encoding, compress = COMPRESSORS[name]
    pieces = compress(EVENTS)
    f = live_flow(encoding)
    f.response.raw_content = b"".join(pieces)
    if timed:
        recorder = recording.Recorder()
        for i, piece in enumerate(pieces):
            recorder.add(piece, f.request.timestamp_start + 0.1 * (i + 1))
        recording.store(f, recorder.metadata(provider="openai-chat", ended_at=None, notes=[]))
    return f


@pytest.mark.parametrize("timed", [True, False], ids=["timed", "untimed"])
@pytest.mark.parametrize("name", COMPRESSORS)
def test_saved_flow_reads_back_decoded(name: str, timed: bool) -> None:
    stream = stream_from_flow(saved_flow(name, timed=timed), "test")
    assert stream is not None
    assert stream.body == BODY
    session, _ = stream.run()
    assert session.summary()["text"] == "".join(TEXTS)
    assert (stream.started_at is not None) == timed
