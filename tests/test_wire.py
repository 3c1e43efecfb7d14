"""The frames between the proxy and its inspection worker (core/wire.py):
they survive any cut of the pipe, and bytes that are no frame are refused."""

from __future__ import annotations

import random

import pytest

from ssemedic.core import wire


def _frames() -> list[bytes]:
    return [
        wire.value_frame(wire.OPEN, 1, {"path": "/v1/chat/completions", "headers": {"a": "б"}}),
        wire.frame(wire.CHUNK, 1, 12.5, "data: Привет 👋\n\n".encode()),
        wire.frame(wire.CHUNK, 1, None, b""),
        wire.frame(wire.FED, 1, 13.0),
        wire.value_frame(wire.END, 1, {"error": None, "notes": []}, at=14.25),
        wire.value_frame(wire.RESULT, 1, {"provider": "openai-chat"}),
        wire.frame(wire.LOG, 40, None, "a line".encode()),
    ]


def test_frames_come_back_whole_however_the_pipe_cuts_them() -> None:
    data = b"".join(_frames())
    whole = list(wire.Reader().feed(data))
    assert [f.kind for f in whole] == [wire.OPEN, wire.CHUNK, wire.CHUNK, wire.FED, wire.END, wire.RESULT, wire.LOG]
    assert whole[0].value() == {"path": "/v1/chat/completions", "headers": {"a": "б"}}
    assert whole[1].payload.decode() == "data: Привет 👋\n\n" and whole[1].at == 12.5
    assert whole[2].at is None and whole[2].payload == b""  # NaN on the wire: no time
    assert whole[4].at == 14.25 and whole[6].stream == 40
    rng = random.Random(7)
    for _ in range(50):
        reader = wire.Reader()
        got, start = [], 0
        while start < len(data):
            end = start + rng.randint(1, 40)
            got += reader.feed(data[start:end])
            start = end
        assert got == whole
        assert reader.pending == 0
    reader = wire.Reader()
    assert list(reader.feed(data[:20])) == [] and reader.pending == 20  # one unfinished frame held


@pytest.mark.parametrize("bad", [
    b"X" + bytes(16),  # no such kind
    wire.header(wire.CHUNK, 1, None, wire.MAX_PAYLOAD + 1),  # longer than any frame
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not this package on the other end
])
def test_bytes_that_are_no_frame_are_refused(bad: bytes) -> None:
    with pytest.raises(wire.WireError, match="not an ssemedic worker frame at byte 0"):
        list(wire.Reader().feed(bad))
