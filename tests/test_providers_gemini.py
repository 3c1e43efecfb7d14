"""Gemini ``streamGenerateContent?alt=sse`` streams through a whole StreamSession."""

from __future__ import annotations

import json
from typing import Any

from helpers import chunkings, run_everywhere, run_session, sse_event, summary_without_timing

from ssemedic.core.parts import Error, Meta
from ssemedic.core.session import StreamSession

PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
MODEL = "gemini-2.5-flash"
RESPONSE_ID = "mKdzaPKiI5CmnvgPmeCf-Ak"
SIGNATURE = "CiQBcsjafE2mKx7Qe1Yb0Jt9"

RUSSIAN = "Привет! Как дела? 😊🚀"
RUSSIAN_DELTAS = ["Привет", "! Как", " дела", "? 😊", "🚀"]


def usage(prompt: int, candidates: int | None = None, thoughts: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"promptTokenCount": prompt}
    if candidates is not None:
        out["candidatesTokenCount"] = candidates
    if thoughts is not None:
        out["thoughtsTokenCount"] = thoughts
    out["totalTokenCount"] = prompt + (candidates or 0) + (thoughts or 0)
    out["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    return out


def chunk(parts: list[dict[str, Any]], finish_reason: str | None = None, *, usage_metadata: dict[str, Any]) -> bytes:
    """One GenerateContentResponse as Gemini frames it: ``data:`` lines ended by CRLF."""
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish_reason is not None:
        candidate["finishReason"] = finish_reason
    payload = {
        "candidates": [candidate],
        "usageMetadata": usage_metadata,
        "modelVersion": MODEL,
        "responseId": RESPONSE_ID,
    }
    return sse_event(payload, eol="\r\n")


def russian_stream(*, finish: bool = True) -> bytes:
    chunks = [chunk([{"text": d}], usage_metadata=usage(9)) for d in RUSSIAN_DELTAS[:-1]]
    last = chunk([{"text": RUSSIAN_DELTAS[-1]}], "STOP" if finish else None, usage_metadata=usage(9, 11))
    return b"".join([*chunks, last])


def test_russian_emoji_same_in_every_chunking() -> None:
    data = russian_stream()
    whole = run_session([data], path=PATH)
    expected_usage = {**usage(9, 11), "input_tokens": 9, "output_tokens": 11, "total_tokens": 20}
    for name, chunks in chunkings(data):
        session = run_session(chunks, path=PATH)
        assert session.message.text == RUSSIAN, name
        assert session.message.finish_reason == "STOP", name
        assert session.message.usage == expected_usage, name
        assert summary_without_timing(session) == summary_without_timing(whole), name
    summary = summary_without_timing(whole)
    assert summary["provider"] == "gemini"
    assert summary["model"] == MODEL
    assert summary["complete"] is True
    assert summary["issues"] == []
    assert whole.message.response_id == RESPONSE_ID


def test_thought_parts_are_reasoning_and_thoughts_stay_out_of_output_tokens() -> None:
    data = b"".join(
        [
            chunk([{"text": "**Считаю сумму**\n\n", "thought": True}], usage_metadata=usage(12, thoughts=40)),
            chunk([{"text": "2 + 2 = 4.", "thought": True}], usage_metadata=usage(12, thoughts=64)),
            chunk([{"text": "Ответ: 4", "thoughtSignature": SIGNATURE}], usage_metadata=usage(12, 3, 64)),
            chunk([{"text": ""}], "STOP", usage_metadata=usage(12, 3, 64)),
        ]
    )
    session = run_everywhere(data, path=PATH)
    assert session.message.reasoning == "**Считаю сумму**\n\n2 + 2 = 4."
    assert session.message.text == "Ответ: 4"
    assert session.message.usage is not None
    assert session.message.usage["output_tokens"] == 3
    assert session.message.usage["total_tokens"] == 79
    assert session.message.usage["thoughtsTokenCount"] == 64


def test_two_function_calls_in_one_chunk() -> None:
    calls: list[dict[str, Any]] = [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Москва", "unit": "celsius"}},
            "thoughtSignature": SIGNATURE,
        },
        {"functionCall": {"name": "get_time", "args": {"timezone": "Europe/Paris"}}},
    ]
    session = run_everywhere(chunk(calls, "STOP", usage_metadata=usage(30, 24)), path=PATH)
    assembled = session.message.tool_calls
    assert list(assembled) == ["0", "1"]
    assert [c.name for c in assembled.values()] == ["get_weather", "get_time"]
    assert json.loads(assembled["0"].arguments) == {"city": "Москва", "unit": "celsius"}
    assert json.loads(assembled["1"].arguments) == {"timezone": "Europe/Paris"}
    assert "Москва" in assembled["0"].arguments  # not \u-escaped
    assert session.complete


def test_function_calls_across_chunks_keep_their_ids_and_counter_keys() -> None:
    data = b"".join(
        [
            chunk(
                [{"functionCall": {"id": "fc-7d1c2b9e", "name": "get_weather", "args": {"city": "Рим"}}}],
                usage_metadata=usage(30),
            ),
            chunk(
                [{"functionCall": {"id": "fc-0a4e8f31", "name": "list_files"}}],
                "STOP",
                usage_metadata=usage(30, 20),
            ),
        ]
    )
    assembled = run_everywhere(data, path=PATH).message.tool_calls
    assert [(k, c.id, c.name) for k, c in assembled.items()] == [
        ("0", "fc-7d1c2b9e", "get_weather"),
        ("1", "fc-0a4e8f31", "list_files"),
    ]
    assert json.loads(assembled["0"].arguments) == {"city": "Рим"}
    assert json.loads(assembled["1"].arguments) == {}


def test_error_object_mid_stream_is_recorded_and_incomplete() -> None:
    error: dict[str, Any] = {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}
    data = chunk([{"text": "Начнём"}], usage_metadata=usage(9)) + sse_event({"error": error}, eol="\r\n")
    session = run_everywhere(data, path=PATH)
    assert session.message.text == "Начнём"
    assert session.message.errors == [Error(error["message"], "UNAVAILABLE", "503")]
    assert not session.complete


def test_blocked_prompt_is_an_error_and_ends_the_stream() -> None:
    payload = {
        "promptFeedback": {
            "blockReason": "SAFETY",
            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}],
        },
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        "modelVersion": MODEL,
        "responseId": RESPONSE_ID,
    }
    session = run_everywhere(sse_event(payload, eol="\r\n"), path=PATH)
    assert [(e.type, e.code) for e in session.message.errors] == [("blocked", "SAFETY")]
    assert session.message.text == ""
    assert session.complete


def test_meta_reported_once_not_on_every_chunk() -> None:
    session = StreamSession(path=PATH)
    records = session.feed(russian_stream(), at=0.001) + session.close(at=0.002)
    metas = [p for r in records for p in r.parts if isinstance(p, Meta)]
    assert metas == [Meta(MODEL, RESPONSE_ID)]


def test_detected_from_path_alone() -> None:
    session = StreamSession(method="POST", path=PATH)
    assert session.provider == "gemini"
    assert session.framing == "sse"


def test_detected_from_vertex_generate_content_path() -> None:
    path = "/v1/projects/my-project/locations/us-central1/publishers/google/models/gemini-2.5-pro:streamGenerateContent"
    assert StreamSession(method="POST", path=path).provider == "gemini"
    assert StreamSession(method="POST", path="/v1beta/models/gemini-2.5-pro:generateContent").provider == "gemini"


def test_detected_from_first_payload_without_path() -> None:
    session = run_everywhere(russian_stream())
    assert session.provider == "gemini"
    assert session.message.text == RUSSIAN
    assert session.complete


def test_invalid_json_is_malformed_and_stream_goes_on() -> None:
    data = chunk([{"text": "A"}], usage_metadata=usage(9)) + b'data: {"candidates": [{"content":\r\n\r\n'
    data += chunk([{"text": "B"}], "STOP", usage_metadata=usage(9, 2))
    session = run_everywhere(data, path=PATH)
    assert [(i, m.kind) for i, m in session.malformed_events] == [(1, "invalid-json")]
    assert session.message.text == "AB"
    assert session.complete


def test_wrong_shape_is_malformed_unexpected_shape() -> None:
    bad = [
        {"candidates": "x"},
        {"candidates": [{"content": {"parts": "x"}}]},
        {"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": "x"}}]}}]},
        {"candidates": [{"content": {"parts": [{"text": "A"}]}}], "usageMetadata": 5},
    ]
    data = b"".join(sse_event(p, eol="\r\n") for p in bad) + chunk([{"text": "B"}], "STOP", usage_metadata=usage(9, 2))
    session = run_everywhere(data, path=PATH)
    assert [m.kind for _, m in session.malformed_events] == ["unexpected-shape"] * 4
    assert session.message.text == "B"
    assert session.complete


def test_cut_before_finish_reason_is_incomplete() -> None:
    session = run_everywhere(russian_stream(finish=False), path=PATH)
    assert session.message.text == RUSSIAN
    assert not session.complete


def test_cut_inside_the_last_event_is_incomplete() -> None:
    data = russian_stream()
    session = run_everywhere(data[: data.rindex(b'"STOP"')], path=PATH)
    assert session.message.text == "Привет! Как дела? 😊"
    assert [i["kind"] for i in session.summary()["issues"]] == ["incomplete-event"]
    assert not session.complete


# Vertex with streamFunctionCallArguments: the shapes of vercel/ai's recorded
# Vertex streams (packages/google/src/__fixtures__/google-stream-tool-call-
# arguments.chunks.txt): name + willContinue, partialArgs pieces, then {}.
def fc(**call: Any) -> dict[str, Any]:
    return {"functionCall": call}


def piece(path: str, goes_on: bool = False, **value: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"jsonPath": path, **value}
    if goes_on:
        entry["willContinue"] = True
    return fc(partialArgs=[entry], willContinue=True)


STREAMED_ARGS = [
    [fc(name="get_weather", willContinue=True)],
    [piece("$.city", True, stringValue="Моск")],
    [piece("$.city", True, stringValue="ва")],
    [piece("$.city", stringValue="")],
    [piece("$.days", numberValue=3)],
    [piece("$.hourly", boolValue=True), piece("$.units['temp']", stringValue="C")],
    [piece("$.stops[1].name", stringValue="Тверь")],
    [fc()],
    [fc(name="get_time", willContinue=True)],
    [fc(partialArgs=[{"jsonPath": "$.tz", "nullValue": "NULL_VALUE"}], name="get_time", willContinue=False)],
]


def streamed_stream(groups: list[list[dict[str, Any]]], finish: str | None = "STOP") -> bytes:
    out = [chunk(parts, usage_metadata=usage(30)) for parts in groups[:-1]]
    out.append(chunk(groups[-1], finish, usage_metadata=usage(30, 12)))
    return b"".join(out)


def test_streamed_function_call_arguments_are_assembled_into_one_call() -> None:
    session = run_everywhere(streamed_stream(STREAMED_ARGS), path=PATH)
    calls = session.message.tool_calls
    assert [(k, c.name) for k, c in calls.items()] == [("0", "get_weather"), ("1", "get_time")]
    assert json.loads(calls["0"].arguments) == {
        "city": "Москва",
        "days": 3,
        "hourly": True,
        "units": {"temp": "C"},
        "stops": [None, {"name": "Тверь"}],
    }
    assert json.loads(calls["1"].arguments) == {"tz": None}
    assert session.complete
    assert [f.kind for f in session.faults if f.kind not in ("buffered-burst", "utf8-split", "event-split")] == []


def test_finish_reason_closes_a_streamed_call_without_its_closing_piece() -> None:
    groups = [[fc(name="lookup", willContinue=True)], [piece("$.q", True, stringValue="a")], [piece("$.q", True, stringValue="b")]]
    calls = run_everywhere(streamed_stream(groups), path=PATH).message.tool_calls
    assert [(c.name, json.loads(c.arguments)) for c in calls.values()] == [("lookup", {"q": "ab"})]


def test_a_new_name_closes_the_open_streamed_call() -> None:
    groups = [
        [fc(name="first", willContinue=True)],
        [piece("$.a", numberValue=1)],
        [fc(name="second", willContinue=True)],
        [fc(partialArgs=[{"jsonPath": "$.b", "numberValue": 2.5}])],
    ]
    calls = run_everywhere(streamed_stream(groups), path=PATH).message.tool_calls
    assert [(c.name, json.loads(c.arguments)) for c in calls.values()] == [("first", {"a": 1}), ("second", {"b": 2.5})]


def test_cut_inside_a_streamed_call_keeps_the_name_and_is_incomplete() -> None:
    session = run_everywhere(streamed_stream(STREAMED_ARGS[:3], finish=None), path=PATH)
    assert [(c.name, c.arguments) for c in session.message.tool_calls.values()] == [("get_weather", "")]
    assert not session.complete


def test_bad_json_path_is_malformed_and_stream_goes_on() -> None:
    groups = [[fc(name="f", willContinue=True)], [piece("city", stringValue="x")], [piece("$.ok", boolValue=False)], [fc()]]
    session = run_everywhere(streamed_stream(groups), path=PATH)
    assert [m.kind for _, m in session.malformed_events] == ["unexpected-shape"]
    assert json.loads(session.message.tool_calls["0"].arguments) == {"ok": False}
