"""Amazon Bedrock streams in AWS event-stream frames: ConverseStream (text,
reasoning, tool use, usage, stop reason, exceptions) and
InvokeModelWithResponseStream (a model's own events, base64 in ``chunk``),
through a StreamSession over every chunking."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_frames import chunk_frame, converse_text, event_frame, exception_frame, frame
from helpers import chunkings, run_session, summary_without_timing

from ssemedic.core import providers
from ssemedic.core.eventstream import EventStreamEvent, EventStreamParser
from ssemedic.core.parts import Reasoning
from ssemedic.core.pipeline import Pipeline
from ssemedic.core.repair import ALL_REPAIRS
from ssemedic.core.session import StreamSession

CONVERSE = "/model/anthropic.claude-3-7-sonnet-20250219-v1:0/converse-stream"
INVOKE = "/model/anthropic.claude-3-7-sonnet-20250219-v1:0/invoke-with-response-stream"
CT = "application/vnd.amazon.eventstream"


def same_in_every_chunking(body: bytes, **kwargs: Any) -> StreamSession:
    """The session of the whole body, after checking every chunking gives the same summary."""
    kwargs.setdefault("content_type", CT)
    expected = None
    session = None
    for name, chunks in chunkings(body, max_splits=120):
        session = run_session(chunks, **kwargs)
        summary = summary_without_timing(session)
        if expected is None:
            expected = summary
        assert summary == expected, name
    assert session is not None
    return session


def kinds(session: StreamSession) -> set[str]:
    return {f.kind for f in session.faults}


# -- detection ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CONVERSE, INVOKE, "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ax/converse-stream"])
def test_streaming_routes_are_bedrock(path: str) -> None:
    assert providers.detect_from_request("POST", path) == "bedrock"
    assert providers.get("bedrock").framing == "eventstream"


@pytest.mark.parametrize("path", ["/model/x/converse", "/model/x/invoke", "/v1/messages"])
def test_other_routes_are_not(path: str) -> None:
    assert providers.detect_from_request("POST", path) != "bedrock"


def test_payload_detects_bedrock_without_a_path() -> None:
    session = same_in_every_chunking(converse_text(["Hi"]), content_type=None)
    assert (session.provider, session.provider_source, session.framing) == ("bedrock", "payload", "eventstream")


# -- ConverseStream -------------------------------------------------------------------------


def test_converse_text_usage_and_stop_reason() -> None:
    session = same_in_every_chunking(converse_text(["Привет", ", ", "мир 🌍"]), path=CONVERSE)
    assert session.provider == "bedrock" and session.provider_source == "request"
    assert session.message.text == "Привет, мир 🌍"
    assert session.message.finish_reason == "end_turn"
    usage = session.message.usage
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"], usage["latencyMs"]) == (12, 34, 46, 789)
    assert session.complete
    assert kinds(session) <= {"event-split", "buffered-burst", "missing-no-transform", "missing-accel-buffering"}


def test_converse_reasoning_with_signature() -> None:
    session = same_in_every_chunking(converse_text(["42"], reasoning=("Let me ", "think.")), path=CONVERSE)
    assert session.message.reasoning == "Let me think."
    assert session.message.text == "42"


def test_converse_redacted_reasoning_is_hidden() -> None:
    (event,) = EventStreamParser().feed(event_frame(
        "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": "AAAA"}}}))
    assert providers.get("bedrock").interpreter().interpret(event) == [Reasoning("", hidden=True)]


def test_converse_tool_use_assembles_its_input() -> None:
    body = b"".join([
        event_frame("messageStart", {"role": "assistant"}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Checking."}}),
        event_frame("contentBlockStop", {"contentBlockIndex": 0}),
        event_frame("contentBlockStart", {"contentBlockIndex": 1,
                                          "start": {"toolUse": {"toolUseId": "tooluse_abc", "name": "get_weather"}}}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": "Par'}}}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": 'is"}'}}}),
        event_frame("contentBlockStop", {"contentBlockIndex": 1}),
        event_frame("messageStop", {"stopReason": "tool_use"}),
        event_frame("metadata", {"usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3},
                                 "metrics": {"latencyMs": 5}}),
    ])
    session = same_in_every_chunking(body, path=CONVERSE)
    (call,) = session.message.tool_calls.values()
    assert (call.id, call.name, json.loads(call.arguments)) == ("tooluse_abc", "get_weather", {"city": "Paris"})
    assert session.message.finish_reason == "tool_use" and session.complete
    assert "invalid-tool-arguments" not in kinds(session)


def test_converse_cut_before_message_stop_is_truncated() -> None:
    session = same_in_every_chunking(converse_text(["Half an ans"], stop=None), path=CONVERSE)
    assert not session.complete
    truncated = [f for f in session.faults if f.kind == "truncated"]
    assert truncated and "bedrock stream ended without its terminal signal" in truncated[0].detail


def test_converse_cut_inside_a_frame_is_truncated_mid_event() -> None:
    body = converse_text(["Hello"])
    session = run_session([body[:-7]], content_type=CT, path=CONVERSE)
    assert "truncated" in kinds(session)
    assert any(i.kind == "incomplete-event" for i in session.issues)


def test_metadata_after_message_stop_is_not_required() -> None:
    session = same_in_every_chunking(converse_text(["ok"], metadata=False), path=CONVERSE)
    assert session.complete and "truncated" not in kinds(session)


@pytest.mark.parametrize("exception", ["throttlingException", "modelStreamErrorException", "validationException",
                                       "internalServerException", "serviceUnavailableException"])
def test_exceptions_are_errors_in_the_stream(exception: str) -> None:
    body = b"".join([
        event_frame("messageStart", {"role": "assistant"}),
        event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Par"}}),
        exception_frame(exception, "Too many tokens, please wait before trying again."),
    ])
    session = same_in_every_chunking(body, path=CONVERSE)
    (error,) = session.message.errors
    assert (error.message, error.type) == ("Too many tokens, please wait before trying again.", exception)
    assert "error-in-stream" in kinds(session)
    assert "truncated" not in kinds(session)  # an error ended it, not a cut


def test_error_message_type_uses_its_headers() -> None:
    body = event_frame("messageStart", {"role": "assistant"}) + frame(
        [(":message-type", 7, "error"), (":error-code", 7, "InternalFailure"), (":error-message", 7, "boom")])
    session = run_session([body], content_type=CT, path=CONVERSE)
    (error,) = session.message.errors
    assert (error.message, error.code) == ("boom", "InternalFailure")


def test_a_corrupt_frame_mid_stream_is_an_issue_and_the_rest_is_read() -> None:
    body = bytearray(converse_text(["one ", "two ", "three"]))
    second_delta = body.index(b"two ")
    body[second_delta] ^= 0x20  # in the payload: the message CRC no longer matches
    session = same_in_every_chunking(bytes(body), path=CONVERSE)
    assert session.message.text == "one three"
    assert [i.kind for i in session.issues] == ["bad-message-crc"]
    assert session.complete and "corrupt-frame" in kinds(session)


def test_a_bad_prelude_stops_parsing_and_is_diagnosed() -> None:
    body = bytearray(converse_text(["one ", "two"]))
    second = len(event_frame("messageStart", {"role": "assistant"}))
    body[second + 2] ^= 0x01  # the second frame's length: its prelude CRC fails
    session = same_in_every_chunking(bytes(body), path=CONVERSE)
    assert [i.kind for i in session.issues] == ["bad-prelude-crc", "unparsed"]
    assert session.issues[0].offset == second
    assert session.message.text == "" and not session.complete
    assert {"corrupt-frame", "truncated"} <= kinds(session)


# -- InvokeModelWithResponseStream ------------------------------------------------------------


def anthropic_events(text_pieces: list[str], *, stop: bool = True) -> list[dict[str, Any]]:
    """Anthropic Messages events, as Bedrock wraps them for Claude."""
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_bdrk_01", "type": "message", "role": "assistant",
                                              "model": "claude-3-7-sonnet-20250219", "content": [],
                                              "stop_reason": None, "usage": {"input_tokens": 9, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
               for t in text_pieces]
    events.append({"type": "content_block_stop", "index": 0})
    if stop:
        events.append({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}})
        events.append({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": 9, "outputTokenCount": 7, "invocationLatency": 512, "firstByteLatency": 300}})
    return events


def test_invoke_model_reads_anthropic_events_inside() -> None:
    body = b"".join(chunk_frame(e) for e in anthropic_events(["Bonjour", " à ", "tous"]))
    session = same_in_every_chunking(body, path=INVOKE)
    assert session.provider == "bedrock"
    assert session.message.text == "Bonjour à tous"
    assert session.message.finish_reason == "end_turn"
    assert session.message.model == "claude-3-7-sonnet-20250219"
    usage = session.message.usage
    assert usage is not None and (usage["input_tokens"], usage["output_tokens"]) == (9, 7)
    assert usage["amazon-bedrock-invocationMetrics"]["invocationLatency"] == 512
    assert session.complete and "truncated" not in kinds(session)


def test_invoke_model_cut_before_message_stop_is_truncated() -> None:
    body = b"".join(chunk_frame(e) for e in anthropic_events(["Bonj"], stop=False))
    session = same_in_every_chunking(body, path=INVOKE)
    assert not session.complete and "truncated" in kinds(session)


def test_invoke_model_tool_use_inside() -> None:
    events = anthropic_events([])[:1] + [
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '{"q": '}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": '"x"}'}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ]
    session = same_in_every_chunking(b"".join(chunk_frame(e) for e in events), path=INVOKE)
    (call,) = session.message.tool_calls.values()
    assert (call.id, call.name, json.loads(call.arguments)) == ("toolu_01", "lookup", {"q": "x"})
    assert session.message.finish_reason == "tool_use" and session.complete


def test_invoke_model_nova_wraps_converse_events() -> None:
    events = [{"messageStart": {"role": "assistant"}},
              {"contentBlockDelta": {"delta": {"text": "Nova "}, "contentBlockIndex": 0}},
              {"contentBlockDelta": {"delta": {"text": "here"}, "contentBlockIndex": 0}},
              {"contentBlockStop": {"contentBlockIndex": 0}},
              {"messageStop": {"stopReason": "end_turn"}},
              {"metadata": {"usage": {"inputTokens": 3, "outputTokens": 2}}}]
    session = same_in_every_chunking(b"".join(chunk_frame(e) for e in events),
                                     path="/model/amazon.nova-lite-v1:0/invoke-with-response-stream")
    assert session.message.text == "Nova here" and session.complete


def test_invoke_model_llama_plain_json() -> None:
    events = [{"generation": "Hello", "prompt_token_count": 5, "generation_token_count": 1, "stop_reason": None},
              {"generation": " there", "prompt_token_count": None, "generation_token_count": 2, "stop_reason": "stop"}]
    session = same_in_every_chunking(b"".join(chunk_frame(e) for e in events),
                                     path="/model/meta.llama3-8b-instruct-v1:0/invoke-with-response-stream")
    assert session.message.text == "Hello there"
    assert session.message.finish_reason == "stop" and session.complete


def test_invoke_model_openai_chat_chunks_inside() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "openai.gpt-oss-20b-1:0",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hola"}), chunk({}, "stop")]
    session = same_in_every_chunking(b"".join(chunk_frame(e) for e in events),
                                     path="/model/openai.gpt-oss-20b-1:0/invoke-with-response-stream")
    assert session.message.text == "Hola" and session.message.finish_reason == "stop" and session.complete
    assert "missing-done" not in kinds(session)  # Bedrock's own end is the stream's: no [DONE] to miss


def test_invoke_model_bad_base64_is_malformed_not_a_crash() -> None:
    body = event_frame("chunk", {"bytes": "not base64!"}) + b"".join(chunk_frame(e) for e in anthropic_events(["ok"]))
    session = run_session([body], content_type=CT, path=INVOKE)
    assert session.message.text == "ok"
    assert session.malformed_events and session.malformed_events[0][0] == 0


def test_invoke_model_exception_inside_stream() -> None:
    body = chunk_frame(anthropic_events(["x"])[0]) + exception_frame("modelStreamErrorException", "model failed")
    session = run_session([body], content_type=CT, path=INVOKE)
    assert [e.type for e in session.message.errors] == ["modelStreamErrorException"]


# -- the error event and repair mode -----------------------------------------------------------


def test_error_event_is_an_exception_frame() -> None:
    data = providers.get("bedrock").error_event("eventstream", "cut")
    parser = EventStreamParser()
    (event,) = parser.feed(data)
    assert isinstance(event, EventStreamEvent) and parser.issues == []
    assert event.event == "internalServerException" and event.headers[":message-type"] == "exception"
    assert json.loads(event.data) == {"message": "cut"}


class _Sink:
    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


@pytest.mark.parametrize("injections", [None, {"cut": 0.0}])
def test_repair_mode_passes_a_binary_body_through_unchanged(injections: Any) -> None:
    from ssemedic.core.inject import Injection

    body = converse_text(["Hi ", "there"], stop=None)  # cut: the done repair would add an SSE error
    stream = Pipeline(flow_id="f", label="t", method="POST", path=CONVERSE, request_headers={}, status=200,
                      response_headers={"content-type": CT}, started_at=0.0, sink=_Sink(), clock=lambda: 1.0,
                      repairs=ALL_REPAIRS,
                      injections={Injection(k): v for k, v in injections.items()} if injections else None)
    out = []
    for i in range(len(body)):  # byte by byte: whatever the reframe repair would hold back
        out += stream(body[i : i + 1])
    out += stream(b"")
    assert b"".join(out) == body
    assert any("AWS event stream is binary" in note for note in stream.notes)
    assert stream.session.message.text == "Hi there" and "truncated" in kinds(stream.session)


def test_sniffed_on_a_bedrock_path_even_with_a_newline_in_the_prelude() -> None:
    # A prelude's length or CRC bytes may be 0x0A: sniffing must wait for the
    # whole prelude, not decide at that "line end".
    pad = next(p for p in range(2000) if b"\n" in event_frame("messageStart", {"role": "assistant", "p": "x" * p})[:11])
    body = event_frame("messageStart", {"role": "assistant", "p": "x" * pad}) + converse_text(["Hi"])
    stream = Pipeline(flow_id="f", label="t", method="POST", path=CONVERSE, request_headers={}, status=200,
                      response_headers={"content-type": "application/octet-stream"}, started_at=0.0, sink=_Sink(),
                      clock=lambda: 1.0, sniff=True)
    out = []
    for i in range(len(body)):
        out += stream(body[i : i + 1])
    out += stream(b"")
    assert b"".join(out) == body
    assert stream.announced and stream.session.framing == "eventstream"
    assert stream.session.message.text == "Hi" and stream.session.complete


def test_mitmweb_view_picks_and_reads_a_bedrock_flow() -> None:
    from mitmproxy import contentviews
    from mitmproxy.test import taddons, tflow

    from ssemedic.mitm.contentview import llm_stream_view

    flow = tflow.tflow(resp=True)
    flow.request.method, flow.request.path = "POST", CONVERSE
    flow.response.headers["content-type"] = CT
    flow.response.content = converse_text(["Hallo ", "Welt"])
    contentviews.add(llm_stream_view)
    try:
        with taddons.context():
            result = contentviews.prettify_message(flow.response, flow)
    finally:
        contentviews.registry._by_name.pop(llm_stream_view.name.lower(), None)  # as test_contentview undoes add()
    assert result.view_name == "LLM stream"
    assert "bedrock (eventstream)" in result.text and "Hallo Welt" in result.text


def test_an_untyped_bedrock_body_is_labelled_as_an_event_stream() -> None:
    from mitmproxy.test import tflow

    from ssemedic.mitm.addon import _implied_content_type

    flow = tflow.tflow()
    flow.request.method, flow.request.path = "POST", CONVERSE
    assert _implied_content_type(flow.request) == CT  # what the headers repair sets, not text/event-stream
    session = run_session([converse_text(["x"])], path=CONVERSE, response_headers={"Content-Type": "text/plain"})
    (wrong,) = [f for f in session.faults if f.kind == "wrong-content-type"]
    assert wrong.detail.endswith(f"expected {CT}")
