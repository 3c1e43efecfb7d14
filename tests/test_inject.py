"""Fault injection: unit level through the Injector, and end to end through a
chain client → mitmdump (ssemedic, inspecting) → mitmdump (ssemedic,
injecting) → demo upstream, where the inspecting proxy must name the fault."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from e2e import free_port, load_script, mitmdump, wait_for_port
from helpers import sse_event

from ssemedic.core.inject import INJECTED_ERROR, STRIKE_AFTER_EVENTS, Injection, Injector, parse_injections
from ssemedic.core.sse import SSEParser

upstream_mod = load_script("demo_upstream")
HEALTHY_TEXT: str = upstream_mod.HEALTHY_TEXT
CHAT = {"model": "healthy", "stream": True, "messages": [{"role": "user", "content": "Привет"}]}


def chat_event(text: str) -> bytes:
    return sse_event({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]})


BODY = b"".join(chat_event(t) for t in ["Пр", "ивет ", "👋 ", "мир", "!", " 🌍", "…"]) + b"data: [DONE]\n\n"


def inject(spec: str, chunks: list[bytes], times: list[float] | None = None) -> list[bytes]:
    injector = Injector(parse_injections(spec))
    times = times or [float(i) for i in range(len(chunks))]
    pieces = [p for chunk, at in zip(chunks, times) for p in injector.feed(chunk, at)]
    return pieces + injector.end(times[-1] if times else None)


def events(data: bytes) -> list[str]:
    parser = SSEParser()
    return [e.data for e in parser.feed(data) + parser.close()]


# -- unit ------------------------------------------------------------------------


def test_parse_injections_reads_names_and_stall_seconds() -> None:
    assert parse_injections("split-utf8, stall=2.5,cut") == {
        Injection.SPLIT_UTF8: 0.0, Injection.STALL: 2.5, Injection.CUT: 0.0}
    assert parse_injections("") == {}


@pytest.mark.parametrize(("spec", "message"), [
    ("explode", "unknown injection 'explode'"),
    ("stall=soon", "stall needs a number of seconds"),
    ("stall=0", "stall needs a number of seconds"),
    ("cut=3", "injection 'cut' takes no value"),
])
def test_parse_injections_names_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_injections(spec)


def test_split_utf8_cuts_pieces_inside_characters_and_keeps_every_byte() -> None:
    pieces = inject("split-utf8", [BODY])
    assert b"".join(pieces) == BODY
    assert any(p[-1] >= 0xC0 for p in pieces)  # a piece ends right after a lead byte


def test_split_events_cuts_pieces_inside_events_and_keeps_every_byte() -> None:
    pieces = inject("split-events", [BODY])
    assert b"".join(pieces) == BODY
    assert all(not p.endswith(b"\n\n") for p in pieces[::2])


def test_cr_turns_line_endings_into_bare_cr() -> None:
    out = b"".join(inject("cr", [BODY]))
    assert b"\n" not in out and events(out) == events(BODY)


def test_drop_done_removes_only_the_done_event() -> None:
    out = b"".join(inject("drop-done", [BODY]))
    assert events(out) == events(BODY)[:-1]


def test_error_done_strikes_after_the_fifth_event_and_sends_nothing_more() -> None:
    out = b"".join(inject("error-done", [BODY]))
    got = events(out)
    assert got[:STRIKE_AFTER_EVENTS] == events(BODY)[:STRIKE_AFTER_EVENTS]
    assert json.loads(got[STRIKE_AFTER_EVENTS]) == INJECTED_ERROR and got[-1] == "[DONE]"
    assert len(got) == STRIKE_AFTER_EVENTS + 2


def test_burst_sends_everything_as_one_piece_at_the_end() -> None:
    chunks = [BODY[i : i + 10] for i in range(0, len(BODY), 10)]
    injector = Injector(parse_injections("burst"))
    assert all(injector.feed(c, float(i)) == [] for i, c in enumerate(chunks))
    assert injector.end(99.0) == [BODY]


def test_stall_holds_events_back_until_the_time_has_passed() -> None:
    blocks = [chat_event(t) for t in "abcdef"]
    injector = Injector(parse_injections("stall=3"))
    assert injector.feed(blocks[0], 0.0) == [blocks[0]]
    assert injector.feed(blocks[1], 1.0) == [] and injector.feed(blocks[2], 2.0) == []
    assert injector.feed(blocks[3], 3.5) == [blocks[1], blocks[2], blocks[3]]
    assert injector.feed(blocks[4], 4.0) == [blocks[4]]  # stalls once


def test_cut_stops_inside_an_event() -> None:
    out = b"".join(inject("cut", [BODY]))
    assert events(BODY)[:STRIKE_AFTER_EVENTS] == events(out)
    assert not out.endswith(b"\n\n") and BODY.startswith(out)


# -- end to end: the injected fault is diagnosed by a second ssemedic ------------


def chain_faults(upstream: int, workdir: Path, spec: str, query: str = "?delay=0.005") -> tuple[set[str], list[bytes]]:
    """Fault kinds the inspecting proxy reports for one chat, and the client's raw chunks."""
    jsonl = workdir / "inspect.jsonl"
    with mitmdump(upstream, workdir, "--set", f"ssemedic_inject={spec}", "--set", "ssemedic_log=off",
                  name="injecting") as injecting:
        with mitmdump(injecting.port, workdir, "--set", f"ssemedic_jsonl={jsonl}", "--set", "ssemedic_stall=0.4",
                      name="inspecting") as inspecting:
            with httpx.Client(timeout=30) as client, client.stream(
                "POST", f"{inspecting.base}/v1/chat/completions{query}", json=CHAT
            ) as response:
                chunks = list(response.iter_raw())
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and '"type": "summary"' not in (
                jsonl.read_text(encoding="utf-8") if jsonl.exists() else ""
            ):
                time.sleep(0.1)
    objects = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    return {o["kind"] for o in objects if o["type"] == "fault"}, chunks


@pytest.mark.parametrize(("spec", "fault", "query"), [
    ("split-utf8", "utf8-split", "?delay=0.005"),
    ("split-events", "event-split", "?delay=0.005"),
    ("cr", "cr-line-endings", "?delay=0.005"),
    ("drop-done", "missing-done", "?delay=0.005"),
    ("error-done", "done-after-error", "?delay=0.005"),
    ("burst", "buffered-burst", "?delay=0.005"),
    ("stall=0.6", "stall", "?delay=0.02"),
    ("cut", "truncated", "?delay=0.005"),
])
def test_injected_fault_is_named_by_the_inspecting_proxy(
    upstream: int, tmp_path: Path, spec: str, fault: str, query: str
) -> None:
    faults, _ = chain_faults(upstream, tmp_path, spec, query)
    assert fault in faults


def test_naive_client_breaks_on_injected_split_characters(upstream: int, tmp_path: Path) -> None:
    _, chunks = chain_faults(upstream, tmp_path, "split-utf8")
    with pytest.raises(UnicodeDecodeError):
        for chunk in chunks:
            chunk.decode("utf-8")  # the per-chunk decoding routers used to do
    assert "Привет! " in b"".join(chunks).decode("utf-8")  # whole, the bytes are intact


def test_openai_sdk_reports_the_injected_error(upstream: int, tmp_path: Path) -> None:
    with mitmdump(upstream, tmp_path, "--set", "ssemedic_inject=error-done", "--set", "ssemedic_log=off") as mitm:
        client = openai.OpenAI(base_url=f"{mitm.base}/v1", api_key="sk-test", max_retries=0, timeout=30)
        with pytest.raises(openai.APIError, match="injected by ssemedic"):
            for _ in client.chat.completions.create(stream=True, model="healthy", messages=CHAT["messages"]):
                pass


def test_port_helpers_are_bounded() -> None:
    port = free_port()
    with pytest.raises(TimeoutError):
        wait_for_port(port, timeout=0.3)


def test_injection_is_off_by_default_and_bad_values_are_refused(tmp_path: Path, upstream: int) -> None:
    from e2e import run_mitmdump

    done = run_mitmdump(["-n", "-s", "addons/medic.py", "--set", "ssemedic_inject=explode"], timeout=30)
    assert "ssemedic_inject: unknown injection 'explode'" in done.stdout + done.stderr
