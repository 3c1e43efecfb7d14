"""No fault hint promises a repair that does nothing: for every fault kind
whose hint names a repair (`ssemedic_repair`, "repair `X`"), a stream that
shows the fault is sent through that repair in the addon, the way a live
flow is, and what the client then receives is diagnosed again."""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from mitmproxy.test import taddons, tflow
from test_diagnose import (
    CHAT_PATH,
    LETTA_PATH,
    REPLY,
    SSE_TYPE,
    chat_cut_mid_event,
    chat_error_then_done,
    chat_events,
    chat_without_done,
    good_headers,
    letta_send_message_events,
    steps_messages_only,
)

from ssemedic.mitm.addon import Medic
from ssemedic.core.faults import CATALOGUE, FaultKind
from ssemedic.core.parts import Text
from ssemedic.core.repair import Repair
from ssemedic.core.session import StreamSession

#: How a hint names a repair.
NAMED_REPAIR = re.compile(r"repair `([a-z]+)`")


class Case(NamedTuple):
    """A response that shows a fault: its path, headers and body chunks."""

    path: str
    headers: dict[str, str]
    chunks: list[bytes]
    #: For a stream the repair leaves as it is: the words by which the hint
    #: says so (a hint may not promise what the repair does not do).
    unrepaired: str | None = None


def chat(chunks: list[bytes], unrepaired: str | None = None, **headers: str) -> Case:
    return Case(CHAT_PATH, {**good_headers(SSE_TYPE), **headers}, chunks, unrepaired)


def done_without_finish_reason() -> list[bytes]:
    events = chat_events()
    del events[-3]  # the finish_reason chunk: a router dropped it and still wrote [DONE]
    return events


def compressed_stream(encoding: str) -> Case:
    data = b"".join(chat_events())
    compressed = gzip.compress(data) if encoding == "gzip" else zlib.compress(data)
    return chat([compressed[i : i + 64] for i in range(0, len(compressed), 64)], **{"Content-Encoding": encoding})


#: For every kind whose hint names a repair, the streams that show it.
CASES: dict[FaultKind, list[Case]] = {
    FaultKind.MISSING_DONE: [chat([chat_without_done()])],
    FaultKind.DONE_AFTER_ERROR: [chat(chat_error_then_done())],
    FaultKind.TRUNCATED: [chat([chat_cut_mid_event()]), chat(chat_events()[:3]),
                          chat(done_without_finish_reason(),
                               unrepaired="a [DONE] that came without any finish_reason is passed on as it is")],
    FaultKind.COMPRESSED_STREAM: [compressed_stream("gzip"), compressed_stream("deflate")],
    FaultKind.MISSING_NO_TRANSFORM: [chat(chat_events(), **{"Cache-Control": "no-cache"})],
    FaultKind.MISSING_ACCEL_BUFFERING: [chat(chat_events(), **{"X-Accel-Buffering": "yes"})],
    FaultKind.WRONG_CONTENT_TYPE: [chat(chat_events(), **{"Content-Type": "text/plain; charset=utf-8"}),
                                   chat(chat_events(), **{"Content-Type": "application/octet-stream"})],
    FaultKind.TEXT_IN_TOOL_CALL: [Case(LETTA_PATH, good_headers(SSE_TYPE), letta_send_message_events()),
                                  Case(LETTA_PATH, good_headers(SSE_TYPE), [steps_messages_only()])],
}


def named_repairs(kind: FaultKind) -> list[Repair]:
    return [Repair(name) for name in NAMED_REPAIR.findall(CATALOGUE[kind].hint)]


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.05
        return self.now


@pytest.fixture
def proxy() -> Iterator[Callable[[Case, Repair | None], tuple[dict[str, str], bytes]]]:
    """Send a case through the addon with one repair (or none); return the
    headers and the body the client receives."""
    addon = Medic(console=None, clock=Clock())
    with taddons.context(addon) as tctx:
        def send(case: Case, repair: Repair | None) -> tuple[dict[str, str], bytes]:
            tctx.configure(addon, ssemedic_log="off", ssemedic_repair="false" if repair is None else "true",
                           ssemedic_repairs="all" if repair is None else str(repair))
            f = tflow.tflow(resp=True)
            f.request.method = "POST"
            f.request.path = case.path
            f.request.content = b'{"model": "gpt-4o", "stream": true}'
            f.response.content = None
            f.response.headers.clear()
            for name, value in case.headers.items():
                f.response.headers[name] = value
            addon.responseheaders(f)
            sent_headers = dict(f.response.headers.items())  # they go out before the body
            sent: list[bytes] = []
            assert callable(f.response.stream)
            for chunk in case.chunks:
                sent += f.response.stream(chunk)
            sent += f.response.stream(b"")
            addon.response(f)
            return sent_headers, b"".join(sent)
        yield send


def diagnose(case: Case, headers: dict[str, str], body: bytes) -> StreamSession:
    """What a client downstream of the proxy receives, diagnosed."""
    session = StreamSession(method="POST", path=case.path, response_headers=headers, started_at=0.0)
    session.feed(body, 1.0)  # one piece: the chunking of the original is not the point here
    session.close(1.1)
    return session


def text_outside_tool_calls(session: StreamSession, body: bytes) -> str:
    """The reply text that arrived as plain assistant text, not via a tool call or steps_messages."""
    probe = StreamSession(method="POST", path=LETTA_PATH, content_type=SSE_TYPE)
    return "".join(p.text for r in probe.feed(body) + probe.close() for p in r.parts
                   if isinstance(p, Text) and p.via is None)


def test_every_hint_that_mentions_ssemedic_repair_names_an_existing_repair() -> None:
    for kind, entry in CATALOGUE.items():
        if "ssemedic_repair" in entry.hint:
            assert named_repairs(kind), kind  # which repair does it, not just "ssemedic_repair"


def test_every_kind_whose_hint_names_a_repair_has_a_stream_to_check_it() -> None:
    assert {kind for kind in FaultKind if named_repairs(kind)} == set(CASES)


CHECKS = [(kind, repair, i) for kind, cases in CASES.items() for repair in named_repairs(kind)
          for i in range(len(cases))]


@pytest.mark.parametrize(("kind", "repair", "i"), CHECKS, ids=[f"{k}-{r}-{i}" for k, r, i in CHECKS])
def test_the_repair_a_hint_names_removes_its_fault(proxy: Any, kind: FaultKind, repair: Repair, i: int) -> None:
    case = CASES[kind][i]
    before = diagnose(case, *proxy(case, None))
    assert kind in {f.kind for f in before.faults}  # the case shows the fault through a plain proxy
    headers, body = proxy(case, repair)
    after = diagnose(case, headers, body)
    if case.unrepaired is not None:
        assert kind in {f.kind for f in after.faults}  # still there: so the hint must say so
        assert case.unrepaired in CATALOGUE[kind].hint
    elif kind == FaultKind.TEXT_IN_TOOL_CALL:
        # The repair may keep the tool call as it is (the fault stays true of
        # the stream); what it promises is the reply as assistant text.
        assert text_outside_tool_calls(after, body) == REPLY
    else:
        assert kind not in {f.kind for f in after.faults}, [str(f.kind) for f in after.faults]
