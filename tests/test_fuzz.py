"""The fuzz campaign (scripts/fuzz.py), a slice of it: generated valid,
hostile, mutated and random streams in random chunkings through the live
pipeline in every mode, plus a hypothesis property over random bytes; then
what the full campaign found, one test each, and proof that its checks can fail.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ndjson_line, sse_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import fuzz  # a script, not a package

from ssemedic.core import repair
from ssemedic.core.inject import Injection
from ssemedic.core.repair import ALL_REPAIRS, Repair


def test_a_slice_of_the_campaign_passes() -> None:
    result = fuzz.campaign(cases=1_000, seed=7, jobs=1)
    assert not result.failures, "\n".join(f"case {n} [{m}] {p}" for n, m, p in result.failures[:20])
    assert set(result.runs) == {m.name for m in fuzz.MODES}, "every mode ran"
    assert set(result.cases) == {"valid", "hostile", "mutated", "random"}
    assert result.measured > 0 and result.peak <= fuzz.MEMORY_BUDGET


def test_cases_are_reproducible_from_the_seed() -> None:
    a, b = fuzz.make_case(3, 41), fuzz.make_case(3, 41)
    assert (a.body, a.chunks, a.modes) == (b.body, b.chunks, b.modes)
    assert fuzz.make_case(4, 41).body != a.body


def test_every_provider_has_valid_streams() -> None:
    assert {t.provider for t in fuzz.templates()} >= {
        "openai-chat", "openai-responses", "anthropic", "letta", "ollama", "gemini", "generic"}


CHUNKS = st.lists(st.integers(min_value=1, max_value=64), max_size=40)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600) | st.sampled_from([b"data: NaN\n\n", b'data: "\\ud800"\n\n', b"data: [[[[\n\n"]),
       CHUNKS, st.sampled_from(fuzz.MODES), st.sampled_from(sorted(fuzz.PATHS)))
def test_any_bytes_in_any_chunking_and_mode(body: bytes, sizes: list[int], mode: fuzz.Mode, provider: str) -> None:
    chunks, at = [], 0
    for size in sizes:
        if at < len(body):
            chunks.append(body[at : at + size])
            at += size
    if at < len(body):
        chunks.append(body[at:])
    framing = "ndjson" if provider == "ollama" else "sse"
    case = fuzz.Case(0, "random", provider, framing, fuzz.PATHS[provider],
                     "application/x-ndjson" if framing == "ndjson" else "text/event-stream",
                     body, "hypothesis", chunks, [fuzz.INSPECT, mode])
    result = fuzz.Result()
    fuzz.run_case(case, result)
    assert not result.failures, result.failures


# -- what the campaign found (each test fails on the code before its fix) --------------


def run(body: bytes, mode: fuzz.Mode, *, provider: str = "openai-chat", chunks: list[bytes] | None = None) -> list[str]:
    framing = "ndjson" if provider == "ollama" else "sse"
    case = fuzz.Case(0, "hostile", provider, framing, fuzz.PATHS[provider],
                     "application/x-ndjson" if framing == "ndjson" else "text/event-stream",
                     body, "whole", chunks or [body], [fuzz.INSPECT, mode])
    result = fuzz.Result()
    fuzz.run_case(case, result)
    return [f"[{m}] {p}" for _, m, p in result.failures]


ANTHROPIC_START = sse_event({"type": "message_start", "message": {"id": "m", "content": []}}, "message_start")
ANTHROPIC_END = (sse_event({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, "message_delta")
                 + sse_event({"type": "message_stop"}, "message_stop"))


@pytest.mark.parametrize("field", ["text", "thinking"])
def test_an_anthropic_delta_of_the_wrong_type_is_malformed_not_an_internal_error(field: str) -> None:
    kind = {"text": "text_delta", "thinking": "thinking_delta", "signature": "signature_delta"}[field]
    delta = sse_event({"type": "content_block_delta", "index": 0, "delta": {"type": kind, field: {"x": 1}}},
                      "content_block_delta")
    assert run(ANTHROPIC_START + delta + ANTHROPIC_END, fuzz.ALL, provider="anthropic") == []


def test_an_anthropic_type_that_is_not_a_string_does_not_stop_detection() -> None:
    body = sse_event({"type": {"a": 1}}) + ANTHROPIC_START + ANTHROPIC_END
    assert run(body, fuzz.INSPECT, provider="anthropic") == []


@pytest.mark.parametrize("last", [b'{"x": 1}', b'{"x": 1}\r'])  # a bare CR ends no NDJSON line
def test_the_done_repair_ends_an_ndjson_last_line_before_its_error(last: bytes) -> None:
    body = ndjson_line({"model": "m", "message": {"role": "assistant", "content": "hi"}, "done": False}) + last
    assert run(body, fuzz.Mode("repair done", frozenset({Repair.DONE})), provider="ollama") == []


def test_error_done_injects_an_ndjson_error_line_into_ndjson() -> None:
    body = b"".join(ndjson_line({"model": "m", "message": {"role": "assistant", "content": str(i)}, "done": False})
                    for i in range(8)) + ndjson_line({"model": "m", "done": True})
    assert run(body, fuzz.Mode("inject error-done", injection=Injection.ERROR_DONE), provider="ollama") == []


def test_error_done_at_the_end_is_not_swallowed_by_an_unfinished_event() -> None:
    body = sse_event({"token": "a"}) + b"data: {\"unfinished\": "
    assert run(body, fuzz.Mode("inject error-done", injection=Injection.ERROR_DONE), provider="generic") == []


# -- the checks can fail --------------------------------------------------------------


def test_the_campaign_sees_a_repair_that_loses_an_event(monkeypatch: pytest.MonkeyPatch) -> None:
    original = repair.Repairer._event

    def lossy(self: Any, provider: Any, record: Any) -> bytes:
        return b"" if record.index == 1 else original(self, provider, record)

    monkeypatch.setattr(repair.Repairer, "_event", lossy)
    body = sse_event({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "a"}}]}) * 3
    assert any("never arrived" in f for f in run(body, fuzz.Mode("repair reframe", frozenset({Repair.REFRAME}))))


def test_the_campaign_sees_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any, *args: Any) -> bytes:
        raise RuntimeError("boom")

    monkeypatch.setattr(repair.Repairer, "feed", broken)
    failures = run(sse_event({"a": 1}), fuzz.ALL)
    assert any("internal error: RuntimeError('boom')" in f for f in failures)


def test_the_campaign_sees_a_changed_byte_in_inspect_only_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fuzz.drive

    def tampered(case: fuzz.Case, mode: fuzz.Mode, *, measure: bool) -> fuzz.Run:
        got = real(case, mode, measure=measure)
        got.sent = got.sent[:-1] + b"!"
        return got

    monkeypatch.setattr(fuzz, "drive", tampered)
    assert any("did not get the upstream's bytes" in f for f in run(sse_event({"a": 1}), fuzz.INSPECT))


def test_the_campaign_sees_memory_over_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fuzz, "MEMORY_BUDGET", 1)
    case = fuzz.make_case(1, 0)  # case 0 is measured (every MEMORY_EVERY-th)
    result = fuzz.Result()
    fuzz.run_case(case, result)
    assert any("over the budget" in p for _, _, p in result.failures)


def test_repair_all_keeps_a_stream_with_every_hostile_value() -> None:
    chunk = sse_event({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "a"}}]})
    hostile = b"".join(f"data: {v}\n\n".encode() for v in
                       ["NaN", "[" * 5000, "9" * 5000, "1e999", '"\\ud800"', '{"choices": [{"delta": 5}]}'])
    body = chunk + hostile + sse_event({"object": "chat.completion.chunk",
                                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    for mode in (fuzz.INSPECT, fuzz.ALL, fuzz.Mode("gzip, repair all", ALL_REPAIRS, gzip=True)):
        assert run(body, mode) == [], mode.name
