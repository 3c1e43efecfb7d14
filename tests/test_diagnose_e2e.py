"""Diagnosis through a real mitmdump in front of the demo upstream: the faults
that depend on the wire (chunking, timing, HTTP framing), as the JSONL file,
the stream summaries and the live log report them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import load_script, mitmdump

from ssemedic.core.faults import CATALOGUE, QUIET, FaultKind

upstream_mod = load_script("demo_upstream")

FAST = "?delay=0.002"
CHAT = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Почему по частям?"}]}
LETTA = {"messages": [{"role": "user", "content": "Привет!"}]}
OLLAMA = {"model": "qwen3:8b", "messages": [{"role": "user", "content": "Привет!"}]}

#: name -> (path, request body). ``buffered`` keeps its default delay: its
#: single write comes after the whole generation time, as a buffering hop sends it.
REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "buffered": ("/s/buffered/v1/chat/completions", CHAT),
    "healthy": (f"/s/healthy/v1/chat/completions{FAST}", CHAT),
    "truncated": (f"/s/truncated/v1/chat/completions{FAST}", CHAT),
    "truncated-close": (f"/s/truncated-close/v1/chat/completions{FAST}", CHAT),
    "no-done": (f"/s/no-done/v1/chat/completions{FAST}", CHAT),
    "error-then-done": (f"/s/error-then-done/v1/chat/completions{FAST}", CHAT),
    "letta-send-message": (f"/v1/agents/agent-1/messages/stream{FAST}", LETTA),
    "ollama": (f"/api/chat{FAST}", OLLAMA),
}


@dataclass
class Run:
    """One scenario as the client and ssemedic saw it."""

    body: bytes
    summary: dict[str, Any]
    faults: list[dict[str, Any]]  # the JSONL "fault" objects, in order
    events: list[dict[str, Any]]  # the JSONL "event" objects, in order

    @property
    def kinds(self) -> list[str]:
        return [f["kind"] for f in self.faults]

    def fault(self, kind: str) -> dict[str, Any]:
        [found] = [f for f in self.faults if f["kind"] == kind]
        return found


@dataclass
class Proxied:
    runs: dict[str, Run]
    log: str


@pytest.fixture(scope="module")
def proxied(upstream: int, tmp_path_factory: pytest.TempPathFactory) -> Proxied:
    """Every scenario once through one mitmdump, read with a raw httpx client
    (which reads to the end and never hangs up early)."""
    workdir = tmp_path_factory.mktemp("diagnose")
    jsonl = workdir / "events.jsonl"
    bodies: dict[str, bytes] = {}
    with mitmdump(upstream, workdir, "--set", f"ssemedic_jsonl={jsonl}") as mitm:
        with httpx.Client(timeout=30) as client:
            for name, (path, payload) in REQUESTS.items():
                with client.stream("POST", mitm.base + path, json=payload) as response:
                    assert response.status_code == 200, name
                    bodies[name] = b"".join(response.iter_raw())
        objects = wait_for_summaries(jsonl, len(REQUESTS))
        log = mitm.output()
    runs = {}
    for name, (path, _) in REQUESTS.items():
        [summary] = [o for o in objects if o["type"] == "summary" and o["source"].endswith(path)]
        mine = [o for o in objects if o["flow"] == summary["flow"]]
        runs[name] = Run(bodies[name], summary, [o for o in mine if o["type"] == "fault"],
                         [o for o in mine if o["type"] == "event"])
    return Proxied(runs, log)


def wait_for_summaries(jsonl: Path, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = jsonl.read_text(encoding="utf-8").splitlines() if jsonl.exists() else []
        objects = [json.loads(line) for line in lines]
        if sum(o["type"] == "summary" for o in objects) >= count or time.monotonic() > deadline:
            return objects
        time.sleep(0.1)


def test_single_buffered_write_is_a_buffered_burst(proxied: Proxied) -> None:
    run = proxied.runs["buffered"]
    assert "buffered-burst" in run.kinds
    assert run.summary["events"] >= 6
    assert "truncated" not in run.kinds and "missing-done" not in run.kinds


def test_healthy_stream_shows_its_splits_and_header_hints_but_no_truncation(proxied: Proxied) -> None:
    run = proxied.runs["healthy"]
    assert {"utf8-split", "event-split", "missing-no-transform", "missing-accel-buffering"} <= set(run.kinds)
    assert not {"truncated", "missing-done", "buffered-burst", "invalid-json", "invalid-utf8"} & set(run.kinds)
    assert run.summary["text"] == upstream_mod.HEALTHY_TEXT
    for kind in ("utf8-split", "event-split"):
        assert 0 < run.fault(kind)["offset"] < len(run.body)


def test_chunked_body_ending_mid_event_is_truncated(proxied: Proxied) -> None:
    run = proxied.runs["truncated"]
    fault = run.fault("truncated")
    assert fault["detail"] == "the stream ended in the middle of an event"
    assert fault["offset"] == len(run.body)


def test_closed_connection_mid_event_is_truncated(proxied: Proxied) -> None:
    run = proxied.runs["truncated-close"]
    fault = run.fault("truncated")
    assert fault["detail"] == "the stream ended in the middle of an event"
    assert fault["offset"] == len(run.body)


def test_stream_ending_after_finish_reason_is_missing_done_not_truncated(proxied: Proxied) -> None:
    run = proxied.runs["no-done"]
    assert run.fault("missing-done")["offset"] == len(run.body)
    assert "truncated" not in run.kinds
    assert run.summary["complete"] is True


def test_error_then_done_is_error_in_stream_and_done_after_error_at_their_events(proxied: Proxied) -> None:
    run = proxied.runs["error-then-done"]
    [error_index] = [e["index"] for e in run.events if any(p["kind"] == "error" for p in e["parts"])]
    [done_index] = [e["index"] for e in run.events if any(p["kind"] == "done" for p in e["parts"])]
    error = run.fault("error-in-stream")
    assert error["event_index"] == error_index
    assert error["detail"] == upstream_mod.ERROR_OBJECT["message"]
    assert run.fault("done-after-error")["event_index"] == done_index == error_index + 1
    assert "truncated" not in run.kinds


def test_letta_send_message_reply_is_text_in_tool_call(proxied: Proxied) -> None:
    run = proxied.runs["letta-send-message"]
    assert run.summary["provider"] == "letta"
    assert run.fault("text-in-tool-call")["detail"] == "reply text arrived via send_message"
    assert run.summary["text"] == upstream_mod.HEALTHY_TEXT
    assert "truncated" not in run.kinds


def test_ollama_ndjson_stream_is_not_truncated(proxied: Proxied) -> None:
    run = proxied.runs["ollama"]
    assert (run.summary["provider"], run.summary["framing"]) == ("ollama", "ndjson")
    assert not {"truncated", "invalid-json", "wrong-content-type", "empty-response"} & set(run.kinds)
    assert run.summary["complete"] is True


def test_fault_objects_carry_the_catalogue_entry(proxied: Proxied) -> None:
    for name, run in proxied.runs.items():
        for fault in run.faults:
            entry = CATALOGUE[FaultKind(fault["kind"])]
            assert (fault["message"], fault["hint"], fault["severity"]) == (
                entry.message, entry.hint, str(entry.severity)), name


def test_summary_faults_are_the_fault_objects_of_the_flow(proxied: Proxied) -> None:
    for name, run in proxied.runs.items():
        summary_faults = run.summary["faults"]
        assert [f["kind"] for f in summary_faults] == run.kinds, name
        for live, final in zip(run.faults, summary_faults, strict=True):
            assert {k: v for k, v in final.items() if k != "count"} == {
                k: v for k, v in live.items() if k not in ("type", "flow")}, name
            assert final["count"] >= 1


def test_live_log_names_each_fault_and_its_fix(proxied: Proxied) -> None:
    seen = {kind for run in proxied.runs.values() for kind in run.kinds}
    assert {"buffered-burst", "utf8-split", "event-split", "truncated", "missing-done", "error-in-stream",
            "done-after-error", "text-in-tool-call"} <= seen
    for kind in seen:
        if FaultKind(kind) in QUIET:  # normal on real servers: one note line per stream
            assert f"FAULT {kind}" not in proxied.log, kind
            assert any(line.split("note: ", 1)[-1].startswith(kind) or f", {kind}" in line
                       for line in proxied.log.splitlines() if " note: " in line), kind
            continue
        assert f"FAULT {kind}" in proxied.log, kind
        assert f"fix: {CATALOGUE[FaultKind(kind)].hint}" in proxied.log, kind
