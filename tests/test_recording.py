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


def test_recorder_keeps_a_prefix_when_the_cap_is_reached() -> None:
    rec = recording.Recorder(cap=10)
    assert rec.add(b"abcdef", 1.0) is None
    note = rec.add(b"ghijklmn", 2.0)  # crosses the cap: only "ghij" fits
    assert note is not None and "recording cut at 10 bytes" in note
    assert rec.add(b"op", 3.0) is None  # later small chunks are not spliced in
    assert bytes(rec.raw) == b"abcdefghij"
    assert list(rec.offsets) == [0, 6] and list(rec.times) == [1.0, 2.0]
    assert rec.passed == 16
    meta = rec.metadata(provider="generic", ended_at=3.5, notes=[note])
    assert meta["recording_cut"] == 10


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
    keys = ("\"timeline\"", "\"ended_at\"", "\"header_repairs\"", "\"recording_cut\"", "\"redacted\"", "METADATA_KEY]")
    offenders = [
        f"{path.name}: {key}"
        for path in package.rglob("*.py")
        if path.name != "recording.py"
        for key in keys
        if key in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
