"""Inline repair without a network: parse_repairs, the Repairer behind a
Pipeline, and the addon through mitmproxy's test helpers, fed the demo
upstream's own scenarios in the writes they go out in; plus a property: any
valid stream in any chunking comes out as the same events, whole."""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from e2e import load_script
from helpers import chunkings, sse_event
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import exceptions
from mitmproxy.test import taddons
from test_addon import BODY, Clock, cut, llm_flow, stream_through

from ssemedic.mitm.addon import Medic
from ssemedic.core.faults import Fault
from ssemedic.core.pipeline import Pipeline
from ssemedic.core.repair import ALL_REPAIRS, TRUNCATION_MESSAGE, Repair, Repairer, parse_repairs
from ssemedic.core.session import EventRecord
from ssemedic.core.sse import SSEParser

demo = load_script("demo_upstream")

CHAT_PATH = "/v1/chat/completions"
LETTA_PATH = "/v1/agents/agent-1/messages/stream"


# -- helpers ------------------------------------------------------------------


def writes(scenario: str, model: str = "gpt-4o") -> list[bytes]:
    """A scenario's body in the writes the demo upstream sends it in."""
    reply = demo.SCENARIOS[scenario](demo.Call(model, True, 0.0))
    return [data for _, data in reply.chunks]


def whole_events(piece: bytes) -> list[tuple[str, str]]:
    """The events in ``piece``, asserting it holds only whole events."""
    parser = SSEParser()
    events = parser.feed(piece)
    assert parser.pending_bytes == b"", f"a piece ends inside an event: {piece[-60:]!r}"
    return [(e.event, e.data) for e in events]


def events_of(body: bytes) -> list[tuple[str, str]]:
    parser = SSEParser()
    events = parser.feed(body) + parser.close()
    return [(e.event, e.data) for e in events]


def chat_text(body: bytes) -> str:
    """The assistant text as an OpenAI client assembles it from a whole body."""
    text = []
    for _, data in events_of(body):
        if data != "[DONE]":
            payload = json.loads(data)
            for choice in payload.get("choices") or ():
                text.append(choice["delta"].get("content") or "")
    return "".join(text)


class NullSink:
    """A live.Sink that ignores everything (the property test needs no log)."""

    def started(self, stream: Pipeline) -> None: ...
    def first_chunk(self, stream: Pipeline, data: bytes) -> None: ...
    def event(self, stream: Pipeline, record: EventRecord) -> None: ...
    def progress(self, stream: Pipeline) -> None: ...
    def finished(self, stream: Pipeline, error: str | None) -> None: ...
    def internal_error(self, stream: Pipeline, exc: BaseException) -> None: ...
    def fault(self, stream: Pipeline, fault: Fault) -> None: ...


def live_stream(repairs: frozenset[Repair] = ALL_REPAIRS, *, path: str = CHAT_PATH,
                headers: dict[str, str] | None = None) -> Pipeline:
    """A Pipeline built the way the addon builds one."""
    return Pipeline(
        flow_id="f00d", label=f"POST {path}", method="POST", path=path, request_headers={}, status=200,
        response_headers=headers or {"content-type": "text/event-stream"}, started_at=0.0, sink=NullSink(),
        clock=Clock(0.0), repairs=repairs,
    )


def through_live(chunks: list[bytes], stream: Pipeline) -> list[bytes]:
    """Every piece the stream callable hands mitmproxy, end included."""
    sent: list[bytes] = []
    for chunk in chunks:
        sent += stream(chunk)
    return sent + stream(b"")


@pytest.fixture
def medic() -> Any:
    addon = Medic(console=None, clock=Clock(1_700_000_000.0))
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ssemedic_log="off")
        yield addon, tctx


def repaired(medic: Any, chunks: list[bytes], *, repairs: str = "all", headers: dict[str, str] | None = None,
             **flow: Any) -> tuple[list[bytes], Any]:
    """Stream ``chunks`` through the addon with repair on; the pieces sent and the flow."""
    addon, tctx = medic
    tctx.configure(addon, ssemedic_repair="true", ssemedic_repairs=repairs)
    f = llm_flow(**flow)
    f.response.headers.update(headers or {})
    return stream_through(addon, f, chunks), f


# -- parse_repairs and the options ----------------------------------------------


def test_all_means_every_repair() -> None:
    assert parse_repairs("all") == parse_repairs(" ALL ") == ALL_REPAIRS == frozenset(Repair)


def test_a_list_picks_those_repairs() -> None:
    assert parse_repairs("reframe, Done,letta") == {Repair.REFRAME, Repair.DONE, Repair.LETTA}


def test_normalize_is_normalise() -> None:
    assert parse_repairs("normalize") == parse_repairs("normalise") == {Repair.NORMALISE}


def test_unknown_repair_is_named() -> None:
    with pytest.raises(ValueError, match="unknown repair 'keepalive'; known: all, reframe"):
        parse_repairs("reframe,keepalive")


def test_all_inside_a_list_means_every_repair() -> None:
    assert parse_repairs("all,done") == ALL_REPAIRS


def test_bad_repairs_option_is_an_options_error_naming_it(medic: Any) -> None:
    addon, tctx = medic
    with pytest.raises(exceptions.OptionsError, match="ssemedic_repairs: unknown repair 'sanitise'"):
        tctx.configure(addon, ssemedic_repairs="reframe,sanitise")


def test_repair_off_forwards_the_same_bytes_in_the_same_chunks(medic: Any) -> None:
    addon, tctx = medic
    tctx.configure(addon, ssemedic_repairs="all")  # chosen, but ssemedic_repair stays off
    chunks = writes("cr-lines")
    f = llm_flow()
    f.response.headers["content-length"] = str(sum(map(len, chunks)))
    assert stream_through(addon, f, chunks) == chunks
    assert f.response.headers["content-length"] == str(sum(map(len, chunks)))
    assert "x-accel-buffering" not in f.response.headers


# -- each repair --------------------------------------------------------------------


@pytest.mark.parametrize("repairs", ["all", "reframe"])
def test_reframe_sends_only_whole_events_in_every_chunking(medic: Any, repairs: str) -> None:
    expected = events_of(BODY)
    for name, chunks in chunkings(BODY, max_splits=80):
        sent, _ = repaired(medic, chunks, repairs=repairs)
        assert [e for piece in sent for e in whole_events(piece)] == expected, name
        assert b"".join(sent) == BODY, name


def test_reframe_holds_back_only_up_to_the_last_whole_event(medic: Any) -> None:
    addon, tctx = medic
    tctx.configure(addon, ssemedic_repair="true")
    f = llm_flow()
    addon.responseheaders(f)
    first = sse_event({"choices": [{"index": 0, "delta": {"content": "Привет"}}]})
    assert f.response.stream(first[:-9]) == []
    assert f.response.stream(first[-9:] + b"data: {") == [first]


def test_healthy_scenario_reaches_the_client_as_whole_events_with_the_same_text(medic: Any) -> None:
    chunks = writes("healthy")
    sent, _ = repaired(medic, chunks)
    assert len(sent) > len(chunks) // 2  # still streamed, event by event
    for piece in sent:
        piece.decode("utf-8")  # a naive client's strict decode of each piece works
        whole_events(piece)
    assert chat_text(b"".join(sent)) == demo.HEALTHY_TEXT
    assert b"".join(sent) == b"".join(chunks)


@pytest.mark.parametrize("scenario", ["cr-lines", "crlf-mixed"])
def test_normalise_sends_lf_line_endings_and_no_bom(medic: Any, scenario: str) -> None:
    chunks = writes(scenario)
    sent, f = repaired(medic, chunks)
    body = b"".join(sent)
    assert b"\r" not in body and not body.startswith(demo.BOM)
    assert events_of(body) == events_of(b"".join(chunks))
    assert chat_text(body) == demo.HEALTHY_TEXT
    assert f.metadata["ssemedic"]["repairs"]["line endings normalised to LF"] >= 1


def test_without_normalise_the_line_endings_stay(medic: Any) -> None:
    sent, _ = repaired(medic, writes("cr-lines"), repairs="reframe")
    assert b"".join(sent) == b"".join(writes("cr-lines"))


def test_normalise_covers_blank_lines_after_the_last_event(medic: Any) -> None:
    body = sse_event(demo.chat_chunk("m", {}, "stop"), eol="\r\n") + b"data: [DONE]\r\n\r\n\r\n"
    sent, _ = repaired(medic, [body])
    assert b"\r" not in b"".join(sent)


def test_headers_repair_asks_intermediaries_not_to_buffer_and_drops_content_length(medic: Any) -> None:
    addon, tctx = medic
    tctx.configure(addon, ssemedic_repair="true", ssemedic_repairs="headers")
    f = llm_flow()
    f.response.headers["cache-control"] = "no-cache"
    f.response.headers["content-length"] = str(len(BODY))
    chunks = cut(BODY, 11)
    assert stream_through(addon, f, chunks) == chunks  # headers only: the body is untouched
    headers = f.response.headers
    assert "no-transform" in headers["cache-control"] and headers["x-accel-buffering"] == "no"
    assert "content-length" not in headers
    assert f.metadata["ssemedic"]["header_repairs"] == [
        "Content-Length removed", "Cache-Control: no-cache, no-transform", "X-Accel-Buffering: no"]


def test_headers_already_right_are_left_alone(medic: Any) -> None:
    addon, tctx = medic
    tctx.configure(addon, ssemedic_repair="true")
    f = llm_flow()
    f.response.headers["cache-control"] = "private, no-transform"
    f.response.headers["x-accel-buffering"] = "no"
    addon.responseheaders(f)
    assert f.response.headers["cache-control"] == "private, no-transform"
    assert "header_repairs" not in f.metadata.get("ssemedic", {})


def test_decompress_in_the_live_stream_forwards_plain_whole_events() -> None:
    compressed = writes("gzip")
    stream = live_stream(headers={"content-type": "text/event-stream", "content-encoding": "gzip"})
    sent = through_live(compressed, stream)
    assert b"".join(sent) == b"".join(writes("healthy"))
    for piece in sent:
        whole_events(piece)
    assert bytes(stream.raw) == b"".join(compressed)


def test_without_decompress_a_compressed_stream_passes_unchanged(medic: Any) -> None:
    addon, tctx = medic
    tctx.configure(addon, ssemedic_repair="true", ssemedic_repairs="reframe,normalise,sanitize,done,headers")
    f = llm_flow()
    f.response.headers["content-encoding"] = "gzip"
    chunks = cut(gzip.compress(BODY), 16)
    assert stream_through(addon, f, chunks) == chunks
    assert f.response.headers["content-encoding"] == "gzip"
    assert f.response.headers["x-accel-buffering"] == "no"


def test_decompress_through_the_addon_forwards_the_plain_body(medic: Any) -> None:
    addon, tctx = medic
    tctx.configure(addon, ssemedic_repair="true")
    f = llm_flow()
    f.response.headers["content-encoding"] = "gzip"
    addon.responseheaders(f)
    assert "content-encoding" not in f.response.headers  # the headers the client gets
    sent = [piece for chunk in cut(gzip.compress(BODY), 16) for piece in f.response.stream(chunk)]
    assert b"".join(sent + f.response.stream(b"")) == BODY


def test_saved_flow_of_a_decompressed_stream_still_decodes_to_the_upstream_body(medic: Any) -> None:
    compressed = gzip.compress(BODY)
    _, f = repaired(medic, cut(compressed, 16), headers={"content-encoding": "gzip"})
    assert f.response.raw_content == compressed
    assert f.response.get_content(strict=False) == BODY


def test_sanitize_drops_the_event_with_invalid_json(medic: Any) -> None:
    chunks = writes("invalid-json")
    sent, f = repaired(medic, chunks)
    body = b"".join(sent)
    assert demo.INVALID_JSON_EVENT not in body
    upstream = events_of(b"".join(chunks))
    assert events_of(body) == [e for e in upstream if e[1] != "{not json"]
    assert chat_text(body) == "".join(demo.tokens(demo.HEALTHY_TEXT))
    assert f.metadata["ssemedic"]["repairs"]["event with invalid JSON dropped"] == 1


def test_sanitize_replaces_invalid_utf8(medic: Any) -> None:
    chunks = writes("invalid-utf8")
    sent, f = repaired(medic, chunks)
    body = b"".join(sent)
    body.decode("utf-8")
    assert chat_text(body) == b"".join(demo.invalid_utf8_pieces()).decode("utf-8", "replace")
    assert f.metadata["ssemedic"]["repairs"]["invalid UTF-8 replaced"] == 1


def content_repairs(f: Any) -> dict[str, int]:
    """What the repairs changed, beside reframing (which holds back partial events)."""
    repairs: dict[str, int] = f.metadata["ssemedic"]["repairs"]
    return {k: v for k, v in repairs.items() if not k.startswith("partial event held back")}


def test_reframe_is_recorded_when_it_held_a_partial_event_back(medic: Any) -> None:
    _, f = repaired(medic, writes("healthy"))
    assert f.metadata["ssemedic"]["repairs"]["partial event held back until whole"] > 0


def test_done_is_not_sent_after_an_error(medic: Any) -> None:
    sent, f = repaired(medic, writes("error-then-done"))
    last = events_of(b"".join(sent))[-1]
    assert json.loads(last[1]) == {"error": demo.ERROR_OBJECT}
    assert content_repairs(f) == {"[DONE] after an error suppressed": 1}


def test_missing_done_is_appended(medic: Any) -> None:
    chunks = writes("no-done")
    sent, f = repaired(medic, chunks)
    assert b"".join(sent) == b"".join(chunks) + b"data: [DONE]\n\n"
    assert content_repairs(f) == {"missing [DONE] appended": 1}


@pytest.mark.parametrize("scenario", ["truncated", "truncated-close"])
def test_a_silent_cut_ends_with_an_error_event_in_openai_shape(medic: Any, scenario: str) -> None:
    chunks = writes(scenario)
    sent, _ = repaired(medic, chunks)
    body = b"".join(sent)
    for piece in sent:
        whole_events(piece)
    *rest, last = events_of(body)
    assert json.loads(last[1]) == {"error": {"message": TRUNCATION_MESSAGE, "type": "upstream_error",
                                             "code": "upstream_truncated"}}
    assert demo.HEALTHY_TEXT.startswith(chat_text(body)) and chat_text(body)
    assert "[DONE]" not in [data for _, data in rest]


def test_a_stream_ended_by_done_gets_no_error_after_it(medic: Any) -> None:
    body = sse_event({"choices": [{"index": 0, "delta": {"content": "Да"}}]}) + b"data: [DONE]\n\n"
    sent, _ = repaired(medic, [body])
    assert b"".join(sent) == body


def test_done_is_left_alone_for_an_unknown_format(medic: Any) -> None:
    body = b"event: tick\ndata: 1\n\nevent: tick\ndata: 2\n\n"
    sent, _ = repaired(medic, [body[:7], body[7:]], path="/events", request=b"{}")
    assert b"".join(sent) == body


# -- the Repairer itself, sans-IO: values in, bytes out ---------------------------------------


def repair(body: bytes, repairs: frozenset[Repair] = ALL_REPAIRS, shape: str = "letta",
           **session: Any) -> tuple[bytes, Repairer]:
    """``body`` through a StreamSession and a Repairer, one byte at a time, as the pipeline wires them."""
    from ssemedic.core.session import StreamSession

    stream, repairer, out = StreamSession(**session), Repairer(repairs, shape), []
    for i in range(len(body)):
        repairer.hold(body[i : i + 1])
        records = stream.feed(body[i : i + 1])
        out.append(repairer.feed(body[i : i + 1], records, stream.boundary, stream.rules))
    out.append(repairer.end(stream.close(), stream.outcome(), clean=True))
    return b"".join(out), repairer


CHAT_NDJSON = b"".join(json.dumps(p).encode() + b"\n" for p in (
    {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}}]},
    {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))


def test_the_end_marker_is_appended_in_the_streams_own_framing() -> None:
    out, repairer = repair(CHAT_NDJSON, path=CHAT_PATH, content_type="application/x-ndjson")
    assert out == CHAT_NDJSON + b"[DONE]\n"  # a line, not an SSE block in an NDJSON body
    assert repairer.changes["missing [DONE] appended"] == 1
    sse = b"".join(sse_event(json.loads(line)) for line in CHAT_NDJSON.splitlines())
    assert repair(sse, path=CHAT_PATH)[0] == sse + b"data: [DONE]\n\n"


@pytest.mark.parametrize("name", ["anthropic", "gemini", "letta", "ollama", "openai-chat", "openai-responses"])
def test_a_silent_cut_ends_with_the_providers_own_error_event(name: str) -> None:
    from ssemedic.core import providers

    framing = providers.get(name).framing
    out, repairer = repair(b"\n", provider=name)
    assert out == b"\n" + providers.get(name).error_event(framing, TRUNCATION_MESSAGE)
    assert repairer.changes["silent cut turned into an error event"] == 1


def test_the_letta_rewrite_starts_when_the_payload_shows_letta() -> None:
    letta = sse_event({"message_type": "assistant_message", "id": "m1", "content": "hi"})
    out, repairer = repair(letta + b"data: [DONE]\n\n", shape="openai", path=CHAT_PATH)
    chunks = [json.loads(data) for _, data in events_of(out) if data != "[DONE]"]
    assert [c["choices"][0]["delta"] for c in chunks] == [{"content": "hi"}, {}]
    assert chunks[0]["message_type"] == "assistant_message" and chunks[1]["choices"][0]["finish_reason"] == "stop"
    without = frozenset(ALL_REPAIRS - {Repair.LETTA})
    assert repair(letta + b"data: [DONE]\n\n", without, shape="openai", path=CHAT_PATH)[0] == (
        letta + b"data: [DONE]\n\n")


def test_a_bad_letta_shape_is_refused_when_the_repairer_is_made() -> None:
    with pytest.raises(ValueError, match="letta_shape must be 'openai' or 'letta', not 'auto'"):
        Repairer(ALL_REPAIRS, "auto")


def test_letta_reply_in_send_message_also_arrives_as_assistant_message(medic: Any) -> None:
    chunks = writes("letta-send-message")
    sent, f = repaired(medic, chunks, path=LETTA_PATH, request=b'{"messages": []}')
    body = b"".join(sent)
    payloads = [json.loads(data) for _, data in events_of(body) if data != "[DONE]"]
    assistant = [p for p in payloads if p["message_type"] == "assistant_message"]
    assert "".join(p["content"] for p in assistant) == demo.HEALTHY_TEXT
    assert [p for p in payloads if p["message_type"] != "assistant_message"] == [
        json.loads(data) for _, data in events_of(b"".join(chunks)) if data != "[DONE]"]
    assert content_repairs(f) == {"assistant_message added for send_message text": 1}


def test_letta_repair_does_not_touch_openai_streams(medic: Any) -> None:
    sent, _ = repaired(medic, cut(BODY, 5), repairs="letta")
    assert b"".join(sent) == BODY


# -- records and failures -------------------------------------------------------------


def test_repairs_are_recorded_and_the_saved_body_is_the_raw_upstream_body(medic: Any) -> None:
    chunks = writes("cr-lines")
    _, f = repaired(medic, chunks)
    meta = f.metadata["ssemedic"]
    assert meta["repairs"]["BOM stripped"] == 1
    assert set(content_repairs(f)) == {"BOM stripped", "line endings normalised to LF"}
    assert any(note.startswith("repaired: ") and "BOM stripped ×1" in note for note in meta["notes"])
    assert f.response.raw_content == b"".join(chunks)


def break_on_call(monkeypatch: pytest.MonkeyPatch, method: str, n: int) -> None:
    """Make Repairer.<method> raise on its n-th call and work otherwise."""
    original = getattr(Repairer, method)
    calls = 0

    def failing(self: Repairer, *args: Any) -> bytes:
        nonlocal calls
        calls += 1
        if calls == n:
            raise RuntimeError("repairer broke")
        return original(self, *args)  # type: ignore[no-any-return]

    monkeypatch.setattr(Repairer, method, failing)


def test_a_failing_repairer_forwards_everything_unrepaired_and_logs_once(
    medic: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    chunks = writes("healthy")
    break_on_call(monkeypatch, "feed", 8)
    with caplog.at_level(logging.ERROR, logger="ssemedic"):
        sent, f = repaired(medic, chunks)
    assert b"".join(sent) == b"".join(chunks)
    assert sent[-len(chunks) + 8 :] == chunks[8:]  # after the failure: passed through as it came
    errors = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(errors) == 1 and "repairer broke" in errors[0].getMessage()
    assert f.response.raw_content == b"".join(chunks)


def test_a_repairer_failing_inside_an_event_loses_no_bytes(medic: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = writes("healthy")
    break_on_call(monkeypatch, "_event", 10)
    sent, _ = repaired(medic, chunks)
    assert b"".join(sent) == b"".join(chunks)


def test_with_repair_on_the_upstreams_header_faults_are_still_diagnosed(medic: Any) -> None:
    addon, tctx = medic
    tctx.configure(addon, ssemedic_repair="true")
    f = llm_flow()
    addon.responseheaders(f)
    stream = addon.streams[f.id]
    stream(BODY)
    kinds = {str(fault.kind) for fault in stream.session.faults}
    assert {"missing-no-transform", "missing-accel-buffering"} <= kinds


# -- property -----------------------------------------------------------------------

_TEXT = st.lists(
    st.one_of(st.text(st.characters(codec="utf-8"), max_size=3),
              st.sampled_from(["ж", "Ё", "🙂", "👩‍💻", "🇷🇺", "\n", "\r\n", '"', "\\"])),
    max_size=6,
).map("".join)
_EOL = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def valid_streams(draw: Callable[..., Any]) -> bytes:
    """An OpenAI chat stream, ended by a finish chunk and [DONE], in any line endings."""
    texts = draw(st.lists(_TEXT, min_size=1, max_size=30))
    payloads = [{"object": "chat.completion.chunk", "model": "m",
                 "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]} for text in texts]
    payloads.append({"object": "chat.completion.chunk", "model": "m",
                     "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events = [sse_event(p) for p in payloads] + [b"data: [DONE]\n\n"]
    events = [event.replace(b"\n", draw(_EOL)) for event in events]
    return (demo.BOM if draw(st.booleans()) else b"") + b"".join(events)


@settings(max_examples=200, deadline=None)
@given(body=valid_streams(), data=st.data())
def test_any_valid_stream_in_any_chunking_comes_out_as_the_same_whole_events(body: bytes, data: Any) -> None:
    cuts = data.draw(st.lists(st.integers(1, len(body) - 1), max_size=40))
    points = sorted(set(cuts))
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    sent = through_live(chunks, live_stream())
    assert [e for piece in sent for e in whole_events(piece)] == events_of(body)
    assert events_of(b"".join(sent)) == events_of(body)
    assert b"\r" not in b"".join(sent)


# llama.cpp's server sends a stream's error as an SSE "error:" field, which no
# client reads, then "data: [DONE]" (tools/server/server.cpp); built from that code.
LLAMA_ERROR = (sse_event({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"}}]})
               + b'error: {"code":400,"message":"the request exceeds the available context size",'
                 b'"type":"exceed_context_size_error"}\n\n'
               + b"data: [DONE]\n\n")


@pytest.mark.parametrize(("name", "chunks"), list(chunkings(LLAMA_ERROR)), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("repairs", [frozenset({Repair.DONE}), ALL_REPAIRS], ids=["done", "all"])
def test_done_after_an_error_field_is_dropped_and_nothing_is_invented(
        name: str, chunks: list[bytes], repairs: frozenset[Repair]) -> None:
    stream = Pipeline(
        flow_id="f00d", label="POST /v1/chat/completions", method="POST", path="/v1/chat/completions",
        request_headers={}, status=200, response_headers={"content-type": "text/event-stream"},
        started_at=0.0, sink=_Quiet(), clock=lambda: 1.0, repairs=repairs,
    )
    sent = b"".join(piece for chunk in chunks for piece in stream(chunk)) + b"".join(stream(b""))
    assert sent == LLAMA_ERROR.removesuffix(b"data: [DONE]\n\n")  # no [DONE], no invented cut or end marker
    assert "[DONE] after an error suppressed ×1" in stream.notes[-1]


class _Quiet:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None
