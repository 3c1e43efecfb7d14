"""The recording format: the packed chunk timeline, the Recorder and the reader."""

from __future__ import annotations

import pytest

from ssemedic.core import recording


def test_round_trip() -> None:
    packed = recording.pack([0, 10, 25], [1.5, 1.75, 2.0])
    assert isinstance(packed, bytes)
    assert recording.unpack(packed) == recording.Timeline((0, 10, 25), (1.5, 1.75, 2.0))


def test_empty_timeline_round_trips() -> None:
    assert recording.unpack(recording.pack([], [])) == recording.Timeline((), ())


def test_chunks_cut_the_body_back_as_it_arrived() -> None:
    tl = recording.unpack(recording.pack([0, 3, 5], [1.0, 2.0, 3.0]))
    assert tl.chunks(b"abcdefgh") == [(b"abc", 1.0), (b"de", 2.0), (b"fgh", 3.0)]


def test_timeline_longer_than_body_is_refused() -> None:
    tl = recording.unpack(recording.pack([0, 30], [1.0, 2.0]))
    with pytest.raises(recording.TimelineError, match="body has 8"):
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
    with pytest.raises(recording.TimelineError, match=message):
        recording.unpack(data)


def test_descending_offsets_are_refused() -> None:
    with pytest.raises(ValueError, match="ascend"):
        recording.pack([0, 5, 3], [1.0, 2.0, 3.0])


# -- Recorder and read(): the one writer and the one reader of the format ---------


def test_recorder_drops_the_chunk_that_crosses_the_cap_and_everything_after() -> None:
    rec = recording.Recorder(cap=10)
    assert rec.add(b"abcdef", 1.0) is None
    note = rec.add(b"ghijklmn", 2.0)  # does not fit: dropped whole, never half a chunk
    assert note is not None and note.startswith("recording cut at byte 6 (the 10-byte cap)")
    assert rec.add(b"op", 3.0) is None  # later small chunks that would fit are not spliced in
    assert bytes(rec.raw) == b"abcdef"
    assert list(rec.offsets) == [0] and list(rec.times) == [1.0]
    assert rec.passed == 16
    meta = rec.metadata(provider="generic", ended_at=3.5, notes=[note])
    assert meta["version"] == 2 and meta["recording_cut"] == 6 and meta["stream_bytes"] == 16


def test_recorder_that_fills_the_cap_exactly_is_not_cut() -> None:
    rec = recording.Recorder(cap=10)
    assert rec.add(b"abcde", 1.0) is None and rec.add(b"fghij", 2.0) is None
    assert not rec.cut and "recording_cut" not in rec.metadata(provider="generic", ended_at=None, notes=[])
    assert rec.add(b"k", 3.0) is not None and rec.cut and bytes(rec.raw) == b"abcdefghij"


def test_a_first_chunk_larger_than_the_cap_leaves_an_empty_recording_cut_at_byte_0() -> None:
    rec = recording.Recorder(cap=4)
    assert rec.add(b"abcdefgh", 1.0) is not None
    meta = rec.metadata(provider="generic", ended_at=2.0, notes=[])
    assert bytes(rec.raw) == b"" and meta["recording_cut"] == 0 and meta["stream_bytes"] == 8


def test_recorder_without_times_stores_no_timeline() -> None:
    rec = recording.Recorder()
    rec.add(b"data: 1\n\n", None)
    meta = rec.metadata(provider="generic", ended_at=None, notes=[])
    assert "timeline" not in meta and "ended_at" not in meta
    assert meta["version"] == recording.VERSION


def _saved_and_loaded(flow: object) -> object:
    import io

    from mitmproxy.io import FlowReader, FlowWriter

    buffer = io.BytesIO()
    FlowWriter(buffer).add(flow)
    buffer.seek(0)
    (loaded,) = list(FlowReader(buffer).stream())
    return loaded


def test_what_the_recorder_writes_read_gives_back_through_a_saved_file() -> None:
    from mitmproxy.test import tflow

    rec = recording.Recorder()
    for data, at in [(b"data: a\n", 10.0), (b"\ndata: b\n\n", 10.25)]:
        rec.add(data, at)
    flow = tflow.tflow(resp=True)
    flow.response.raw_content = bytes(rec.raw)
    recording.store(flow, rec.metadata(provider="openai-chat", ended_at=10.5, notes=["n"], repairs={"x": 2}))
    recording.add_header_repairs(flow, ["X-Accel-Buffering: no"])
    recording.add_redacted(flow, ["request header authorization"])
    recording.add_redacted(flow, ["request header authorization", "request URL key"])

    got = recording.read(_saved_and_loaded(flow))
    assert got.timed and got.problem is None
    assert got.chunks == [(b"data: a\n", 10.0), (b"\ndata: b\n\n", 10.25)]
    assert got.ended_at == 10.5 and got.provider == "openai-chat" and got.notes == ["n"]
    assert got.repairs == {"x": 2} and got.header_repairs == ["X-Accel-Buffering: no"]
    assert recording.entry(flow)["redacted"] == ["request header authorization", "request URL key"]


def test_a_cut_recording_survives_a_saved_file_with_plain_metadata() -> None:
    from mitmproxy.test import tflow

    rec = recording.Recorder(cap=20)
    for data, at in [(b"data: a\n\n", 10.0), (b"data: bb\n", 10.25), (b"\ndata: ccc\n\n", 10.5)]:
        rec.add(data, at)
    flow = tflow.tflow(resp=True)
    flow.response.raw_content = bytes(rec.raw)
    recording.store(flow, rec.metadata(provider="generic", ended_at=11.0, notes=[]))
    assert all(type(v) in (int, float, str, bytes, list, dict) for v in recording.entry(flow).values())

    got = recording.read(_saved_and_loaded(flow))
    assert got.cut == recording.Cut(18, 30)
    assert got.chunks == [(b"data: a\n\n", 10.0), (b"data: bb\n", 10.25)]
    assert got.cut.message() == "recording cut at byte 18 of 30: the stream went on, but the rest was not saved"


@pytest.mark.parametrize(
    ("meta", "cut"),
    [
        ({"version": 2}, None),
        ({"version": 2, "recording_cut": 40, "stream_bytes": 90}, recording.Cut(40, 90)),
        # version 1 after the cut was marked: the crossing chunk's first bytes were kept
        ({"version": 1, "recording_cut": 40, "notes": ["recording cut at 40 bytes; the stream itself..."]},
         recording.Cut(40, None)),
        # version 1 before that: later chunks were spliced in, only a note says so
        ({"version": 1, "notes": ["recording cut at 67108864 bytes; the stream itself was forwarded whole"]},
         recording.Cut(None)),
        ({"version": 1, "notes": ["served as 'text/plain', but the body is an event stream"]}, None),
        ({"version": 2, "recording_cut": True}, None),
        ({"version": 2, "recording_cut": 40, "stream_bytes": 10}, recording.Cut(40, None)),
        ({"version": 2, "recording_cut": -1}, None),
    ],
)
def test_read_finds_the_cut_in_every_layout_that_had_one(meta: dict[str, object], cut: object) -> None:
    from mitmproxy.test import tflow

    flow = tflow.tflow(resp=True)
    flow.metadata[recording.METADATA_KEY] = meta
    assert recording.read(flow).cut == cut


def test_a_cut_of_unknown_place_says_the_body_may_be_spliced() -> None:
    message = recording.Cut(None).message()
    assert message.startswith("recording cut by an older ssemedic at an unknown byte")
    assert message.endswith("this body is not a prefix of the stream")


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        (None, "no chunk timeline in this flow"),
        ("not a dict", "no chunk timeline in this flow"),
        ({"timeline": b"\x01"}, "chunk timeline ignored: timeline is not packed bytes"),
        ({"timeline": recording.pack([0], [float("nan")])}, "chunk timeline has unknown times"),
        ({"timeline": recording.pack([0, 99], [1.0, 2.0])}, "chunk timeline ignored: timeline covers 99+ bytes"),
    ],
)
def test_read_says_why_a_timeline_cannot_be_used(meta: object, problem: str) -> None:
    from mitmproxy.test import tflow

    flow = tflow.tflow(resp=True)
    flow.response.raw_content = b"data: 1\n\n"
    if meta is not None:
        flow.metadata[recording.METADATA_KEY] = meta
    got = recording.read(flow)
    assert not got.timed and got.problem is not None and got.problem.startswith(problem)
    assert got.chunks == [(b"data: 1\n\n", None)]


def test_only_recording_py_knows_the_metadata_layout() -> None:
    """No other module reads or writes the keys of flow.metadata["ssemedic"]."""
    from pathlib import Path

    package = Path(recording.__file__).parent
    keys = ("\"timeline\"", "\"ended_at\"", "\"header_repairs\"", "\"recording_cut\"", "\"stream_bytes\"",
            "\"redacted\"", "METADATA_KEY]")
    offenders = [
        f"{path.name}: {key}"
        for path in package.rglob("*.py")
        if path.name != "recording.py"
        for key in keys
        if key in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
