"""The client-timeout fault (core/diagnose.py): a client that hangs up on an
unfinished stream during a silence, as against a silence the upstream ends
itself (a stall) and a hang-up after a complete stream (no fault)."""

from __future__ import annotations

import pytest
from test_diagnose import CHAT_PATH, chat, chat_events, hung_up, kinds, live, session_for, the

from ssemedic.core.diagnose import CLIENT_TIMEOUT_SECONDS, is_client_disconnect
from ssemedic.core.faults import FaultKind

OPENING = chat_events()[:3]  # role, two deltas: an answer under way
TIMES = [0.2, 0.3, 0.4]


def test_hang_up_after_a_silence_is_a_client_timeout() -> None:
    session = hung_up(OPENING, TIMES, at=2.4)
    assert kinds(session) == ["client-timeout"]
    fault = the(session, FaultKind.CLIENT_TIMEOUT)
    assert fault.detail == "the client hung up 2.0 s after the last upstream bytes"
    assert fault.offset == len(b"".join(OPENING))


def test_hang_up_while_the_answer_flows_is_no_fault() -> None:
    assert kinds(hung_up(OPENING, TIMES, at=0.4 + CLIENT_TIMEOUT_SECONDS / 2)) == []


def test_hang_up_after_a_complete_stream_is_no_fault_however_late() -> None:
    events = chat_events()
    assert kinds(hung_up(events, [0.2 + 0.05 * i for i in range(len(events))], at=60.0)) == []


def test_hang_up_after_an_upstream_error_is_no_client_timeout() -> None:
    error = b'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    session = hung_up([*OPENING, error], [*TIMES, 0.5], at=10.0)
    assert "client-timeout" not in kinds(session) and "error-in-stream" in kinds(session)


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


def test_a_recording_cut_says_nothing_about_the_client() -> None:
    session = session_for(CHAT_PATH)
    for chunk, at in zip(OPENING, TIMES, strict=True):
        session.feed(chunk, at)
    session.close(9.0, clean=False, client_gone=True, recording_cut=True)
    assert "client-timeout" not in kinds(session)


def test_an_untimed_stream_cannot_tell_a_timeout() -> None:
    session = session_for(CHAT_PATH)
    session.feed(b"".join(OPENING))
    session.close(None, clean=False, client_gone=True)
    assert kinds(session) == []


def test_an_upstream_that_breaks_is_truncated_not_a_client_timeout() -> None:
    session = session_for(CHAT_PATH)
    session.feed(chat({"content": "Hi"}), 0.2)
    session.close(9.0, clean=False)
    assert kinds(session) == ["truncated"]


@pytest.mark.parametrize(("error", "client"), [
    ("Client disconnected.", True),  # HTTP/1 client connection
    ("stream reset by client (CANCEL)", True),  # HTTP/2 client stream
    ("client disconnected (peer closed connection)", True),  # HTTP/2 client connection, as the addon says it
    ("peer closed connection", False),  # mitmproxy says so for a server too
    ("Server disconnected.", False),
    (None, False),
])
def test_which_errors_say_the_client_went_away(error: str | None, client: bool) -> None:
    assert is_client_disconnect(error) is client
