"""A JSON array streamed element by element (Gemini ``:streamGenerateContent``
without ``alt=sse``): ssemedic.core.jsonarray.JSONArrayParser on its own, then
through a StreamSession, diagnosis and repair. Every case runs whole, byte by
byte and cut at every split point.

The payloads of ``LOUTER`` are real Gemini 2.5 Flash GenerateContentResponses,
published as an SSE recording in junjihashimoto/louter,
test-data/gemini/streaming_long/response.json (its last three ``data:``
payloads, verbatim). No recording of the array framing itself was found, so
the framing around them is built from Google's description of the non-SSE
stream: ``[`` then the first element, each further one after ``,\\r\\n``, and
a closing ``]``, served as ``application/json``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import helpers
from helpers import CHUNKING_FAULTS, chunkings, run_session, summary_without_timing
from hypothesis import given, settings
from hypothesis import strategies as st

from ssemedic.core.events import BOM, IssueKind, ServerSentEvent
from ssemedic.core.framing import JSONARRAY, sniff_framing
from ssemedic.core.jsonarray import JSONArrayParser
from ssemedic.core.repair import ALL_REPAIRS, TRUNCATION_MESSAGE, Repair, Repairer
from ssemedic.core.session import StreamSession

PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
HEADERS = {"content-type": "application/json; charset=UTF-8", "cache-control": "no-cache, no-transform",
           "x-accel-buffering": "no"}

LOUTER = [
    b'{"candidates": [{"content": {"parts": [{"text": "_piece`), and generates a new `next_piece`. It also checks for '
    b'`game_over` if the new piece spawns directly into a collision.\\n    *   **Drawing:** Calls all drawing functions '
    b'to update the screen.\\n    *"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 4,'
    b'"candidatesTokenCount": 5889,"totalTokenCount": 7935,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 4}],'
    b'"thoughtsTokenCount": 2042},"modelVersion": "gemini-2.5-flash","responseId": "IZI2acSKMoWl0-kPmYj2yQc"}',
    b'{"candidates": [{"content": {"parts": [{"text": "   `stdscr.refresh()`: Updates the physical terminal screen with '
    b"what's been drawn to the virtual screen.\\n\\nThis creates a functional, albeit basic, console Tetris game! You "
    b'could extend it with more features like ghost pieces"}],"role": "model"},"index": 0}],"usageMetadata": '
    b'{"promptTokenCount": 4,"candidatesTokenCount": 5936,"totalTokenCount": 7982,"promptTokensDetails": '
    b'[{"modality": "TEXT","tokenCount": 4}],"thoughtsTokenCount": 2042},"modelVersion": "gemini-2.5-flash",'
    b'"responseId": "IZI2acSKMoWl0-kPmYj2yQc"}',
    b'{"candidates": [{"content": {"parts": [{"text": ", hold functionality, sound, high scores, etc."}],"role": "model"},'
    b'"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 4,"candidatesTokenCount": 5947,'
    b'"totalTokenCount": 7993,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 4}],"thoughtsTokenCount": 2042},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "IZI2acSKMoWl0-kPmYj2yQc"}',
]
LOUTER_TEXT = "".join(json.loads(p)["candidates"][0]["content"]["parts"][0]["text"] for p in LOUTER)


def array(elements: list[bytes], *, close: bool = True) -> bytes:
    """Elements framed as Gemini streams them: ``[{…}``, ``,\\r\\n{…}``, ``]``."""
    return b"[" + b",\r\n".join(elements) + (b"]" if close else b"")


def element(text: str, finish: str | None = None) -> bytes:
    """A GenerateContentResponse built from the shape of LOUTER's (constructed: for characters it has none of)."""
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return json.dumps({"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}, ensure_ascii=False).encode()


def parse(chunks: list[bytes], **kwargs: Any) -> tuple[list[ServerSentEvent], JSONArrayParser]:
    parser = JSONArrayParser(**kwargs)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    events += parser.close()
    return events, parser


def every_chunking(data: bytes, **kwargs: Any) -> tuple[list[ServerSentEvent], JSONArrayParser]:
    """Parse ``data`` in every chunking; all must give the same events and issues."""
    first: tuple[list[ServerSentEvent], JSONArrayParser] | None = None
    for name, chunks in chunkings(data):
        events, parser = parse(chunks, **kwargs)
        if first is None:
            first = events, parser
        else:
            assert events == first[0], name
            assert parser.issues == first[1].issues, name
            assert parser.boundary == first[1].boundary, name
    assert first is not None
    return first


# -- the parser ----------------------------------------------------------------------


def test_one_event_per_element_of_a_real_body() -> None:
    events, parser = every_chunking(array(LOUTER))
    assert [e.data.encode() for e in events] == LOUTER
    assert parser.issues == []
    assert parser.closed_array


def test_raw_and_offsets_tile_the_body_between_the_brackets() -> None:
    body = array(LOUTER) + b"\r\n"
    events, parser = every_chunking(body)
    assert events[0].offset == 1 and events[0].raw == LOUTER[0]
    for before, after in zip(events, events[1:]):
        assert after.offset == before.offset + len(before.raw)
        assert after.raw == b",\r\n" + after.data.encode()
    assert b"[" + b"".join(e.raw for e in events) + b"]\r\n" == body
    assert parser.boundary == len(body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'[{"s": "a,]}{[\\"\\\\"}]', ['{"s": "a,]}{[\\"\\\\"}']),  # brackets, commas, escapes in a string
        (b'[{"a": [1, {"b": [[]]}]}, {"c": {}}]', ['{"a": [1, {"b": [[]]}]}', '{"c": {}}']),
        (b'[1, -2.5e3, true, null, "x]", [3]]', ["1", "-2.5e3", "true", "null", '"x]"', "[3]"]),
        (b"  \n[ ]\n", []),
        ('[{"t": "Привет 😊🚀"},{"t": "𝄞"}]'.encode(), ['{"t": "Привет 😊🚀"}', '{"t": "𝄞"}']),
        (b'[{"e": "\\u00e9\\ud83d\\ude0a"}]', ['{"e": "\\u00e9\\ud83d\\ude0a"}']),
    ],
    ids=["string-tricks", "nesting", "scalars", "empty", "multibyte", "unicode-escapes"],
)
def test_elements_in_every_chunking(body: bytes, expected: list[str]) -> None:
    events, parser = every_chunking(body)
    assert [e.data for e in events] == expected
    assert parser.issues == []


def test_a_bom_is_reported_and_skipped() -> None:
    events, parser = every_chunking(BOM + array(LOUTER[:1]))
    assert [e.data.encode() for e in events] == LOUTER[:1]
    assert [i.kind for i in parser.issues] == [IssueKind.BOM]


def test_invalid_utf8_is_replaced_and_reported() -> None:
    events, parser = every_chunking(b'[{"t": "\xff"}]')
    assert events[0].data == '{"t": "\ufffd"}'
    assert [(i.kind, i.offset) for i in parser.issues] == [(IssueKind.INVALID_UTF8, 8)]


def test_an_array_without_its_bracket_is_incomplete() -> None:
    events, parser = every_chunking(array(LOUTER, close=False))
    assert len(events) == 3
    assert [i.kind for i in parser.issues] == [IssueKind.INCOMPLETE_EVENT]
    assert "closing ]" in parser.issues[0].detail


@pytest.mark.parametrize("cut", [10, 200, len(LOUTER[1]) - 1])
def test_a_cut_element_is_incomplete_and_not_dispatched(cut: int) -> None:
    body = array([LOUTER[0], LOUTER[1][:cut]], close=False)
    events, parser = every_chunking(body)
    assert [e.data.encode() for e in events] == LOUTER[:1]
    assert [(i.kind, i.offset) for i in parser.issues] == [(IssueKind.INCOMPLETE_EVENT, 1 + len(LOUTER[0]) + 3)]
    assert parser.boundary == 1 + len(LOUTER[0])


def test_garbage_between_elements_is_an_issue_and_parsing_goes_on() -> None:
    body = b'[{"a": 1} oops, {"b": 2}]'
    events, parser = every_chunking(body)
    assert [e.data for e in events] == ['{"a": 1}', '{"b": 2}']
    assert [(i.kind, i.offset) for i in parser.issues] == [(IssueKind.UNEXPECTED_DATA, 10)]
    assert parser.issues[0].detail == "unexpected bytes between array elements, from 'o'"


def test_missing_comma_and_bytes_after_the_array_are_issues() -> None:
    events, parser = every_chunking(b'[{"a": 1} {"b": 2}] trailing')
    assert [e.data for e in events] == ['{"a": 1}', '{"b": 2}']
    assert [i.kind for i in parser.issues] == [IssueKind.UNEXPECTED_DATA, IssueKind.UNEXPECTED_DATA]
    assert "without a comma" in parser.issues[0].detail and "after the array" in parser.issues[1].detail


def test_a_body_that_is_one_object_is_one_event() -> None:
    error = b'{\n  "error": {\n    "code": 429,\n    "message": "Resource exhausted",\n    "status": "RESOURCE_EXHAUSTED"\n  }\n}\n'
    events, parser = every_chunking(error)
    assert [e.data.encode() for e in events] == [error.strip()]
    assert parser.issues == []


def test_an_oversized_element_is_skipped_and_the_next_parsed() -> None:
    big = b'{"t": "' + b"x" * 500 + b'"}'
    events, parser = every_chunking(array([big, b'{"n": 1}']), max_event_size=100)
    assert [e.data for e in events] == ['{"n": 1}']
    assert [(i.kind, i.offset) for i in parser.issues] == [(IssueKind.OVERSIZED_EVENT, 1)]


def test_memory_stays_bounded_while_feeding_a_huge_element() -> None:
    parser = JSONArrayParser(max_event_size=1000)
    parser.feed(b'[{"t": "')
    for _ in range(1000):
        parser.feed(b"y" * 1000)
    assert sum(len(p) for p in parser._pieces) <= 1000
    parser.feed(b'"}, {"n": 2}]')
    assert parser.close() == [] and parser.closed_array


def test_feed_after_close_raises() -> None:
    parser = JSONArrayParser()
    parser.close()
    with pytest.raises(RuntimeError):
        parser.feed(b"[")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\x00", b"")), max_size=8), st.data())
def test_any_bytes_any_chunking_matches_single_feed(pieces: list[bytes], data: st.DataObject) -> None:
    body = b"[" + b",".join(pieces) + b'{"z": "\\"]"}]'
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(body) - 1)), max_size=6)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    whole, p1 = parse([body])
    split, p2 = parse(chunks)
    assert whole == split and p1.issues == p2.issues and p1.boundary == p2.boundary


# -- choosing the framing ----------------------------------------------------------------


def test_sniffing_an_array_needs_a_provider_that_streams_arrays() -> None:
    assert sniff_framing(b'[{"candidates": [', json_array=True) == JSONARRAY
    assert sniff_framing(b"[\n", json_array=True) == JSONARRAY
    assert sniff_framing(b"[1, 2]", json_array=True) is None
    assert sniff_framing(b'[{"candidates": [') is None


@pytest.mark.parametrize(
    ("path", "kwargs", "framing"),
    [
        (PATH, {"content_type": "application/json; charset=UTF-8"}, JSONARRAY),
        (PATH + "?key=k", {"provider": "gemini"}, JSONARRAY),
        ("/v1/projects/p/locations/us/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
         {"content_type": "text/event-stream"}, "sse"),
        ("/proxy/gemini", {"provider": "gemini"}, "sse"),
    ],
)
def test_the_framing_follows_the_path_and_the_content_type(path: str, kwargs: dict[str, Any], framing: str) -> None:
    session = StreamSession(path=path, **kwargs)
    session.feed(array(LOUTER[:1]) if framing == JSONARRAY else b"data: " + LOUTER[0] + b"\n\n")
    assert session.framing == framing


def test_an_array_body_on_an_sse_path_is_sniffed_for_gemini() -> None:
    session = run_session([array(LOUTER)], path=PATH + "?alt=sse")
    assert session.framing == JSONARRAY and session.message.text == LOUTER_TEXT


# -- through a session: meaning and diagnosis ---------------------------------------------


def run_everywhere(data: bytes, **kwargs: Any) -> StreamSession:
    kwargs.setdefault("path", PATH)
    kwargs.setdefault("response_headers", HEADERS)
    return helpers.run_everywhere(data, **kwargs)


def kinds(session: StreamSession) -> list[str]:
    return [str(f.kind) for f in session.faults if f.kind not in CHUNKING_FAULTS]


def test_a_whole_array_is_a_complete_gemini_answer_without_faults() -> None:
    session = run_everywhere(array(LOUTER))
    summary = summary_without_timing(session)
    assert (summary["provider"], summary["framing"], summary["events"]) == ("gemini", "jsonarray", 3)
    assert summary["text"] == LOUTER_TEXT
    assert summary["finish_reason"] == "STOP"
    assert summary["usage"]["output_tokens"] == 5947
    assert summary["complete"] is True
    assert summary["issues"] == [] and summary["faults"] == []


def test_multibyte_text_in_every_chunking() -> None:
    session = run_everywhere(array([element("Привет! "), element("Как дела? 😊🚀", "STOP")]))
    assert session.message.text == "Привет! Как дела? 😊🚀"
    assert session.complete and kinds(session) == []


def test_an_array_cut_after_its_last_element_is_truncated() -> None:
    session = run_everywhere(array(LOUTER, close=False))
    assert session.message.finish_reason == "STOP"
    assert "truncated" in kinds(session)


def test_an_array_cut_inside_an_element_is_truncated() -> None:
    session = run_everywhere(array([LOUTER[0], LOUTER[1][:300]], close=False))
    assert not session.complete
    assert kinds(session) == ["truncated"]
    assert next(f for f in session.faults if str(f.kind) == "truncated").detail == (
        "the stream ended in the middle of an event")


def test_garbage_between_elements_is_an_issue_never_an_error() -> None:
    session = run_everywhere(b"[" + LOUTER[0] + b",\r\n<html>oops</html>,\r\n" + LOUTER[2] + b"]")
    assert session.message.finish_reason == "STOP"
    assert [i["kind"] for i in summary_without_timing(session)["issues"]] == ["unexpected-data"]


def test_served_as_event_stream_it_is_the_wrong_content_type() -> None:
    session = run_session([array(LOUTER)], path=PATH, provider="gemini",
                          response_headers={**HEADERS, "content-type": "application/octet-stream"})
    fault = next(f for f in session.faults if str(f.kind) == "wrong-content-type")
    assert fault.detail.endswith("expected application/json")


# -- repair ----------------------------------------------------------------------------------


def repair(body: bytes, repairs: frozenset[Repair] = ALL_REPAIRS) -> tuple[bytes, Repairer]:
    """``body`` through a StreamSession and a Repairer byte by byte, as the pipeline wires them."""
    stream, repairer, out = StreamSession(path=PATH, content_type="application/json"), Repairer(repairs), []
    for i in range(len(body)):
        repairer.hold(body[i : i + 1])
        records = stream.feed(body[i : i + 1])
        out.append(repairer.feed(body[i : i + 1], records, stream.boundary, stream.rules))
    out.append(repairer.end(stream.close(), stream.outcome(), clean=True))
    return b"".join(out), repairer


def test_every_repair_passes_a_whole_array_unchanged() -> None:
    body = array(LOUTER)
    out, repairer = repair(body, ALL_REPAIRS - {Repair.NORMALISE})
    assert out == body
    assert set(repairer.changes) <= {"partial event held back until whole"}  # fed byte by byte


def test_normalise_only_turns_crlf_between_elements_into_lf() -> None:
    body = array(LOUTER)
    out, repairer = repair(body)
    assert out == body.replace(b"\r\n", b"\n")  # JSON whitespace: the same array
    assert repairer.changes["line endings normalised to LF"] == 2


def test_crlf_between_elements_is_normalised_and_stays_json() -> None:
    out, _ = repair(array(LOUTER) + b"\r\n", frozenset({Repair.NORMALISE}))
    assert [json.dumps(e) for e in json.loads(out)] == [json.dumps(json.loads(p)) for p in LOUTER]


def test_a_cut_array_gets_an_error_element_and_its_bracket_not_done() -> None:
    out, repairer = repair(array([LOUTER[0], LOUTER[1][:300]], close=False))
    elements = json.loads(out)  # still one JSON array: no SSE [DONE], no data: line
    assert elements[0] == json.loads(LOUTER[0])
    assert elements[1]["error"]["message"] == TRUNCATION_MESSAGE
    assert len(elements) == 2 and b"[DONE]" not in out
    assert repairer.changes["silent cut turned into an error element"] == 1


def test_a_cut_before_any_element_gets_an_array_with_the_error() -> None:
    out, _ = repair(b'[{"candidates": [{"content": ')
    assert [e["error"]["message"] for e in json.loads(out)] == [TRUNCATION_MESSAGE]


def test_an_invalid_element_dropped_by_sanitize_leaves_a_valid_array() -> None:
    out, repairer = repair(array([LOUTER[0], b'{"candidates": [1, 2,]}', LOUTER[2]]))
    assert json.loads(out) == [json.loads(LOUTER[0]), json.loads(LOUTER[2])]
    assert repairer.changes["event with invalid JSON dropped"] == 1


# -- through the addon: a live flow served as application/json ------------------------------


def test_a_live_gemini_array_is_inspected_and_repair_passes_it_unchanged() -> None:
    from mitmproxy.test import taddons
    from test_addon import Clock, llm_flow, stream_through

    from ssemedic.mitm.addon import Medic

    addon = Medic(console=None, clock=Clock(1_700_000_000.0))
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ssemedic_log="off", ssemedic_repair="true")
        f = llm_flow("application/json; charset=UTF-8", path=PATH + "?key=k", request=b'{"contents": []}')
        chunks = [b"[" + LOUTER[0], b",\r\n" + LOUTER[1], b",\r\n" + LOUTER[2], b"]"]
        sent = stream_through(addon, f, chunks)
    body = b"".join(chunks)
    assert b"".join(sent) == body.replace(b"\r\n", b"\n")  # normalise: JSON whitespace, the same array
    assert json.loads(b"".join(sent)) == json.loads(body)
    meta = f.metadata["ssemedic"]
    assert meta["provider"] == "gemini", meta


def test_memory_stays_bounded_between_elements() -> None:
    parser = JSONArrayParser(max_event_size=1000)
    parser.feed(b'[{"a": 1},')
    for _ in range(1000):
        parser.feed(b" " * 1000)
    assert sum(len(p) for p in parser._pieces) <= 1000
    events = parser.feed(b'{"b": 2}]')
    assert [e.data for e in events] == ['{"b": 2}']
    raw, offset = events[0].raw, events[0].offset
    assert raw.endswith(b' {"b": 2}') and len(raw) <= 1008 and offset + len(raw) == parser.boundary - 1  # then ]


def test_the_headers_repair_labels_an_untyped_array_as_json_not_sse() -> None:
    from mitmproxy.test import taddons
    from test_addon import Clock, llm_flow, stream_through

    from ssemedic.mitm.addon import Medic

    addon = Medic(console=None, clock=Clock(1_700_000_000.0))
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ssemedic_log="off", ssemedic_repair="true")
        f = llm_flow("", path=PATH, request=b'{"contents": []}')
        del f.response.headers["content-type"]
        stream_through(addon, f, [array(LOUTER)])
    assert f.response.headers["content-type"] == "application/json"
