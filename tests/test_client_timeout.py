"""The client-timeout fault (core/diagnose.py): a client that hangs up on an
unfinished stream during a silence, as against a silence the upstream ends
itself (a stall) and a hang-up after a complete stream (no fault)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import mitmdump
from test_diagnose import CHAT_PATH, chat, chat_events, hung_up, kinds, live, session_for, the

from ssemedic.core.diagnose import CLIENT_TIMEOUT_SECONDS, is_client_disconnect
from ssemedic.core.faults import FaultKind

OPENING = chat_events()[:3]  # role, two deltas: an answer under way
TIMES = [0.2, 0.3, 0.4]


def test_hang_up_after_a_silence_is_a_client_timeout_but_not_while_the_answer_flows() -> None:
    session = hung_up(OPENING, TIMES, at=2.4)
    assert kinds(session) == ["client-timeout"]
    fault = the(session, FaultKind.CLIENT_TIMEOUT)
    assert fault.detail == "the client hung up 2.0 s after the last upstream bytes"
    assert fault.offset == len(b"".join(OPENING))
    assert kinds(hung_up(OPENING, TIMES, at=0.4 + CLIENT_TIMEOUT_SECONDS / 2)) == []  # a user who stopped it


def test_hang_up_after_a_complete_stream_is_no_fault_however_late() -> None:
    events = chat_events()
    times = [0.2 + 0.05 * i for i in range(len(events))]
    assert kinds(hung_up(events[:-3], times[:-3], at=60.0)) == ["client-timeout"]  # before its finish_reason
    assert kinds(hung_up(events, times, at=60.0)) == []


def test_hang_up_after_an_upstream_error_is_no_client_timeout() -> None:
    error = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    assert kinds(hung_up([*OPENING, chat({"content": "и"})], [*TIMES, 0.5], at=10.0)) == ["client-timeout"]
    session = hung_up([*OPENING, error], [*TIMES, 0.5], at=10.0)
    assert kinds(session) == ["error-in-stream"]


def test_hang_up_before_any_byte_counts_from_the_request() -> None:
    session = hung_up([], [], at=3.0)
    assert the(session, FaultKind.CLIENT_TIMEOUT).detail == (
        "the client hung up 3.0 s after the request, before any upstream byte")


def test_a_silence_the_upstream_ends_itself_stays_a_stall() -> None:
    events = chat_events()
    times = [0.2, 0.3, 0.4, 12.9, 13.0, 13.1, 13.2, 13.3, 13.4]
    assert kinds(live(CHAT_PATH, events, times=times)) == ["stall"]
    # The same silence, but the client gave up in it: the upstream never ended it.
    assert kinds(hung_up(events[:3], times[:3], at=12.0)) == ["client-timeout"]


def test_silence_counts_from_the_last_keepalive_ssemedic_sent() -> None:
    session = session_for(CHAT_PATH)
    for chunk, at in zip(OPENING, TIMES, strict=True):
        session.feed(chunk, at)
    session.diagnoser.client_fed(4.4)
    session.close(6.5, clean=False, client_gone=True)
    assert the(session, FaultKind.CLIENT_TIMEOUT).detail == "the client hung up 2.1 s after the last keepalive"


def test_a_keepalive_ssemedic_sent_does_not_end_an_upstream_stall() -> None:
    session = session_for(CHAT_PATH)
    events, times = chat_events(), [0.2, 0.3, 0.4, 12.9, 13.0, 13.1, 13.2, 13.3, 13.4]
    for i, (chunk, at) in enumerate(zip(events, times, strict=True)):
        if i == 3:
            session.diagnoser.client_fed(12.0)
        session.feed(chunk, at)
    session.close(13.5)
    assert kinds(session) == ["stall"]


@pytest.mark.parametrize("cut", [False, True])
def test_a_recording_cut_says_nothing_about_the_client(cut: bool) -> None:
    session = session_for(CHAT_PATH)
    for chunk, at in zip(OPENING, TIMES, strict=True):
        session.feed(chunk, at)
    session.close(9.0, clean=False, client_gone=True, recording_cut=cut)
    assert kinds(session) == ([] if cut else ["client-timeout"])


@pytest.mark.parametrize("timed", [False, True])
def test_an_untimed_stream_cannot_tell_a_timeout(timed: bool) -> None:
    session = session_for(CHAT_PATH)
    session.feed(b"".join(OPENING), 0.4 if timed else None)
    session.close(9.0 if timed else None, clean=False, client_gone=True)
    assert kinds(session) == (["client-timeout"] if timed else [])


@pytest.mark.parametrize("client_gone", [False, True])
def test_a_broken_connection_is_truncated_unless_the_client_left(client_gone: bool) -> None:
    session = session_for(CHAT_PATH)
    session.feed(chat({"content": "Hi"}), 0.2)
    session.close(9.0, clean=False, client_gone=client_gone)
    assert kinds(session) == (["client-timeout"] if client_gone else ["truncated"])


def test_which_errors_say_the_client_went_away() -> None:
    said = {
        "Client disconnected.": True,  # HTTP/1 client connection
        "stream reset by client (CANCEL)": True,  # HTTP/2 client stream
        "client disconnected (peer closed connection)": True,  # HTTP/2 client connection, as the addon says it
        "peer closed connection": False,  # mitmproxy says so for a server too
        "Server disconnected.": False,
    }
    assert {error: is_client_disconnect(error) for error in said} == said
    assert not is_client_disconnect(None)


# -- live, through mitmdump --------------------------------------------------------


@pytest.mark.parametrize("where", [(), ("--set", "ssemedic_worker=true")], ids=["in-proxy", "worker"])
def test_live_a_client_read_timeout_in_a_silence_is_named_and_a_hang_up_after_the_end_is_not(
        upstream: int, tmp_path: Path, where: tuple[str, ...]) -> None:
    jsonl = tmp_path / "events.jsonl"
    chat = {"model": "silence", "stream": True, "messages": [{"role": "user", "content": "?"}]}
    with mitmdump(upstream, tmp_path, "--set", f"ssemedic_jsonl={jsonl}", "--set", "ssemedic_log=summary",
                  *where) as proxy:
        base = f"{proxy.base}/v1/chat/completions"
        # A client that gives up after 2 s without a byte, on a stream silent for 4 s.
        with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=httpx.Timeout(30, read=2)) as client:
            with client.stream("POST", f"{base}?silence=4", json={**chat, "model": "silence"}) as response:
                for _ in response.iter_raw():
                    pass
        # A client that hangs up once it has [DONE], while the upstream holds the body open.
        with httpx.Client(timeout=30) as client, \
                client.stream("POST", f"{base}?silence=3", json={**chat, "model": "silence-after-done"}) as response:
            for chunk in response.iter_raw():
                if b"data: [DONE]" in chunk:
                    break
        summaries = wait_for_summaries(jsonl, 2)
    timed_out, finished = summaries
    assert timed_out["aborted"] == "Client disconnected."
    [fault] = [f for f in timed_out["faults"] if f["kind"] == "client-timeout"]
    assert fault["detail"].startswith("the client hung up 2.") and fault["severity"] == "error"
    assert finished["aborted"] == "Client disconnected." and finished["complete"]
    assert [f["kind"] for f in finished["faults"] if f["severity"] != "info"] == []


def wait_for_summaries(jsonl: Path, count: int, seconds: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        lines = jsonl.read_text(encoding="utf-8").splitlines() if jsonl.exists() else []
        summaries = [s for s in map(json.loads, lines) if s["type"] == "summary"]
        if len(summaries) >= count or time.monotonic() > deadline:
            return summaries
        time.sleep(0.1)
