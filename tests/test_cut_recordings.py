"""Recordings cut by the recording cap: what is saved is a prefix of the stream
made of whole chunks, marked as cut, and every reader (the session, ``ssemedic
report``, the addon's ``-nr`` path, the mitmweb view and live replay) says so
and diagnoses only what came before the cut.

The cap is made test-sized through the Pipeline's Recorder; the streams go
through the addon's real hooks, so what is saved is what mitmdump would save."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import pytest
from helpers import chunkings, ndjson_line, sse_event
from mitmproxy import contentviews
from mitmproxy.io import FlowReader, FlowWriter
from mitmproxy.test import taddons, tflow

from ssemedic.core import recording
from ssemedic.core.recording import Recorder
from ssemedic.core.session import StreamSession
from ssemedic.files import replay
from ssemedic.files.cli import main
from ssemedic.mitm import contentview
from ssemedic.mitm.addon import Medic

T0 = 1_700_000_000.0


def chat(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    return sse_event({"object": "chat.completion.chunk", "model": "gpt-4o",
                      "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})


#: An OpenAI stream with a fault early on (an event whose JSON is invalid)
#: and a long last text event, inside which the recording is cut.
SSE_BODY = (chat({"role": "assistant", "content": "Привет"}) + b"data: {\"choices\": [oops\n\n"
            + chat({"content": ", мир"}) + chat({"content": " и всё, что в нём есть. " * 4})
            + chat({}, "stop") + b"data: [DONE]\n\n")
SSE_TEXT = "Привет, мир"


def ollama(content: str, done: bool = False) -> bytes:
    line: dict[str, Any] = {"model": "qwen3:8b", "created_at": "2025-06-01T10:00:00Z",
                            "message": {"role": "assistant", "content": content}, "done": done}
    if done:
        line["done_reason"] = "stop"
    return ndjson_line(line)


NDJSON_BODY = ollama("Привет") + ollama(", мир") + ollama(" и всё, что в нём есть. " * 4) + ollama("", True)


@dataclass(frozen=True)
class Case:
    name: str
    body: bytes
    path: str
    content_type: str
    #: Where in the body the cap falls: inside this event, the long one.
    cut_inside: bytes
    text: str
    #: Faults from before the cut, which must still be found.
    before: frozenset[str]
    encoding: str | None = None

    @property
    def issues_before(self) -> list[tuple[str, int]]:
        """The one malformed event before the cut, as (kind, event index)."""
        return [("invalid-json", 1)] if "invalid-json" in self.before else []


CASES = [
    Case("sse", SSE_BODY, "/v1/chat/completions", "text/event-stream", " и всё".encode(), SSE_TEXT,
         frozenset({"invalid-json"})),
    Case("ndjson", NDJSON_BODY, "/api/chat", "application/x-ndjson", " и всё".encode(), SSE_TEXT, frozenset()),
    Case("gzip", SSE_BODY, "/v1/chat/completions", "text/event-stream", b"", SSE_TEXT,
         frozenset({"invalid-json", "compressed-stream"}), encoding="gzip"),
]
#: What a reader invents when it takes the cut for the stream's end.
INVENTED_FAULTS = {"truncated", "missing-done", "empty-response", "invalid-tool-arguments"}
CHUNK = 16


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        self.now += 0.01
        return self.now


@dataclass(frozen=True)
class Cut:
    flow: Any
    #: What passed, as it passed.
    wire: bytes
    chunks: list[bytes]
    cap: int
    case: Case

    @property
    def kept(self) -> int:
        """Whole chunks up to the cap: where the recording must end."""
        total = 0
        for chunk in self.chunks:
            if total + len(chunk) > self.cap:
                return total
            total += len(chunk)
        raise AssertionError("the cap does not cut this stream")


def encoded(case: Case) -> bytes:
    if case.encoding == "gzip":
        return gzip.compress(case.body, mtime=0)
    return case.body


def gzip_cap(wire: bytes) -> int:
    """A cap that keeps the whole chunks of ``wire`` (gzip) that decode to the
    start of the long event, but not to the stream's end."""
    for end in range(CHUNK, len(wire), CHUNK):
        decoded = zlib.decompressobj(31).decompress(wire[:end])
        if '{"content": " и'.encode() in decoded:
            assert b"[DONE]" not in decoded
            return end + 5
    raise AssertionError("no such cut")


def record(case: Case, cap: int | None = 0) -> Cut:
    """Stream ``case`` through the addon's hooks with a test-sized recording
    cap (0: half-way into the long event, or into the gzip body; None: the
    default cap)."""
    wire = encoded(case)
    if cap == 0:
        cap = wire.index(case.cut_inside) + 9 if case.cut_inside else gzip_cap(wire)
    chunks = [wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK)]
    addon = Medic(console=io.StringIO(), clock=Clock())
    with taddons.context(addon):
        f = tflow.tflow(resp=True)
        f.request.method, f.request.path = "POST", case.path
        f.request.content = b'{"model": "gpt-4o", "stream": true}'
        f.request.timestamp_start = T0
        f.response.headers["content-type"] = case.content_type
        if case.encoding:
            f.response.headers["content-encoding"] = case.encoding
        f.response.content = None
        del f.response.headers["content-length"]
        addon.responseheaders(f)
        if cap is not None:
            addon.streams[f.id].recorder = Recorder(cap=cap)
        sent = [piece for chunk in chunks for piece in f.response.stream(chunk)] + f.response.stream(b"")
        addon.response(f)
    assert b"".join(sent) == wire  # the stream itself passed whole
    return Cut(f, wire, chunks, cap or recording.MAX_RECORDED_BYTES, case)


def saved_and_loaded(flow: Any, tmp_path: Path) -> tuple[Any, Path]:
    path = tmp_path / "cut.flows"
    with path.open("wb") as out:
        FlowWriter(out).add(flow)
    with path.open("rb") as src:
        (loaded,) = list(FlowReader(src).stream())
    return loaded, path


def kinds(items: list[dict[str, Any]]) -> set[str]:
    return {item["kind"] for item in items}


def issues(report: dict[str, Any]) -> list[tuple[str, int]]:
    return [(issue["kind"], issue.get("event_index", issue.get("offset"))) for issue in report["issues"]]


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def cut(request: pytest.FixtureRequest) -> Iterator[Cut]:
    yield record(request.param)


# -- the recording -------------------------------------------------------------------


def test_the_saved_body_is_the_whole_chunks_before_the_cap_and_nothing_after(cut: Cut) -> None:
    body = cut.flow.response.raw_content
    assert body == cut.wire[: cut.kept] and len(body) < cut.cap
    got = recording.read(cut.flow)
    assert [data for data, _ in got.chunks] == cut.chunks[: len(got.chunks)]
    assert got.cut == recording.Cut(cut.kept, len(cut.wire))


def test_the_same_stream_under_the_default_cap_is_whole_and_not_marked_cut() -> None:
    whole = record(CASES[0], cap=None)
    assert whole.flow.response.raw_content == whole.wire
    assert recording.read(whole.flow).cut is None and "recording_cut" not in recording.entry(whole.flow)


# -- the session -----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES[:2], ids=[c.name for c in CASES[:2]])
def test_a_session_closed_at_a_cut_diagnoses_only_what_came_before(case: Case) -> None:
    prefix = case.body[: case.body.index(case.cut_inside) + 9]
    for how, chunks in chunkings(prefix, max_splits=60):
        session = StreamSession(path=case.path, content_type=case.content_type)
        for chunk in chunks:
            session.feed(chunk)
        session.close(recording_cut=True)
        summary = session.summary()
        assert kinds(summary["faults"]) & INVENTED_FAULTS == set(), how
        assert issues(summary) == case.issues_before, how
        assert case.before - {"compressed-stream"} <= kinds(summary["faults"]), how
        assert summary["text"] == case.text and not summary["complete"], how


def test_the_same_prefix_closed_as_the_streams_end_is_truncated() -> None:
    """The control: without ``recording_cut``, the prefix is judged a stream that ended there."""
    case = CASES[1]
    session = StreamSession(path=case.path, content_type=case.content_type)
    session.feed(case.body[: case.body.index(case.cut_inside) + 9])
    session.close()
    assert {"truncated", "invalid-json"} <= kinds(session.summary()["faults"])


# -- ssemedic report -------------------------------------------------------------------


def test_report_says_where_the_recording_was_cut_and_invents_no_end(
    cut: Cut, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = saved_and_loaded(cut.flow, tmp_path)
    assert main(["report", "--json", str(path)]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert kinds(report["faults"]) & INVENTED_FAULTS == set()
    assert issues(report) == cut.case.issues_before
    assert cut.case.before <= kinds(report["faults"])
    assert report["recording"] == {"cut_at": cut.kept, "stream_bytes": len(cut.wire)}
    assert any(note.startswith(f"recording cut at byte {cut.kept:,} of {len(cut.wire):,}:")
               for note in report["notes"])
    assert report["text"] == cut.case.text
    assert report["timing"]["bytes"] < len(cut.case.body)

    assert main(["report", str(path)]) == 0
    panel = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert f"not recorded: the recording was cut at byte {cut.kept:,} before the stream ended" in panel
    assert "truncated" not in panel and "incomplete-event" not in panel


# -- the addon's -nr path ------------------------------------------------------------------


def test_the_nr_path_says_the_recording_was_cut_before_its_events_and_invents_no_end(
    cut: Cut, tmp_path: Path
) -> None:
    loaded, _ = saved_and_loaded(cut.flow, tmp_path)
    console = io.StringIO()
    addon = Medic(console=console, clock=Clock())
    with taddons.context(addon):
        addon.responseheaders(loaded)  # a flow -nr loads brings its whole body
        addon.response(loaded)
    log = console.getvalue()
    assert "FAULT truncated" not in log and "FAULT missing-done" not in log
    assert "incomplete" not in log and "missing-final-newline" not in log
    if "invalid-json" in cut.case.before:
        assert "FAULT invalid-json" in log
    said = f"recording cut at byte {cut.kept:,} of {len(cut.wire):,}"
    assert said in log and log.index(said) < log.index("#0 ")
    assert "completed:" not in log and "recording ends: " in log  # its end was never seen


# -- the mitmweb view ------------------------------------------------------------------------


def test_the_view_says_where_the_recording_was_cut_and_invents_no_end(cut: Cut, tmp_path: Path) -> None:
    loaded, _ = saved_and_loaded(cut.flow, tmp_path)
    contentviews.add(contentview.llm_stream_view)
    try:
        with taddons.context():  # make_metadata reads ctx.options
            result = contentviews.prettify_message(loaded.response, loaded)
    finally:
        contentviews.registry._by_name.pop("llm-stream", None)  # as test_contentview.py undoes it
    assert result.view_name == "LLM stream"
    text = result.text
    assert "truncated" not in text and "incomplete-event" not in text and "missing-final-newline" not in text
    lines = text.splitlines()
    for kind in cut.case.before:
        assert any(line.startswith(f"  - ") and f" {kind}: " in line for line in lines)
    assert "complete: false  # end not recorded (recording cut)" in lines
    (said,) = [line for line in lines if line.startswith("recording: ")]
    assert said.startswith(f"recording: 'recording cut at byte {cut.kept:,} of {len(cut.wire):,}:")
    assert text.count(f"recording cut at byte {cut.kept:,}") == 1


# -- live replay --------------------------------------------------------------------------------


def test_replay_sends_what_was_saved_says_where_it_was_cut_and_does_not_end_the_body(
    cut: Cut, tmp_path: Path
) -> None:
    loaded, _ = saved_and_loaded(cut.flow, tmp_path)
    served = replay.Recording.from_flows([loaded])
    server, thread = replay.serve(served, port=0, delay=False)
    try:
        received, ended = fetch(server.server_address[1], cut.case.path)
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert not ended  # the recorded stream did not end there: the replay does not claim it did
    assert received == cut.wire[: cut.kept]
    (rec,) = served.responses
    assert rec.summary().endswith(f"recording cut at byte {cut.kept:,}: closed there")
    assert any(note.startswith(f"recording cut at byte {cut.kept:,} of {len(cut.wire):,}:") for note in rec.notes)
    assert any(f"recording cut at byte {cut.kept:,}" in line for line in replay._listing(served))


def fetch(port: int, target: str) -> tuple[bytes, bool]:
    """The body h11 reads, and whether it ended properly (not by a closed connection)."""
    import socket

    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method="POST", target=target,
                          headers=[("Host", f"127.0.0.1:{port}"), ("Content-Length", "2")])
    body = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.send(request) + conn.send(h11.Data(data=b"{}")) + conn.send(h11.EndOfMessage()))
        for _ in range(10_000):
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return body, False
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return body, True
    raise AssertionError("the replay never finished")
