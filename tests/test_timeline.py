"""The packed chunk timeline kept in flow metadata."""

from __future__ import annotations

import pytest

from ssemedic import timeline


def test_round_trip() -> None:
    packed = timeline.pack([0, 10, 25], [1.5, 1.75, 2.0])
    assert isinstance(packed, bytes)
    assert timeline.unpack(packed) == timeline.Timeline((0, 10, 25), (1.5, 1.75, 2.0))


def test_empty_timeline_round_trips() -> None:
    assert timeline.unpack(timeline.pack([], [])) == timeline.Timeline((), ())


def test_chunks_cut_the_body_back_as_it_arrived() -> None:
    tl = timeline.unpack(timeline.pack([0, 3, 5], [1.0, 2.0, 3.0]))
    assert tl.chunks(b"abcdefgh") == [(b"abc", 1.0), (b"de", 2.0), (b"fgh", 3.0)]


def test_timeline_longer_than_body_is_refused() -> None:
    tl = timeline.unpack(timeline.pack([0, 30], [1.0, 2.0]))
    with pytest.raises(timeline.TimelineError, match="body has 8"):
        tl.chunks(b"abcdefgh")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not packed bytes"),
        (b"\x02\x00\x00\x00\x00", "version 2"),
        (b"\x01\x02\x00\x00\x00" + b"\x00" * 8, "should be 37 bytes"),
        ("text", "not packed bytes"),
    ],
)
def test_bad_packed_data_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(timeline.TimelineError, match=message):
        timeline.unpack(data)


def test_descending_offsets_are_refused() -> None:
    with pytest.raises(ValueError, match="ascend"):
        timeline.pack([0, 5, 3], [1.0, 2.0, 3.0])
