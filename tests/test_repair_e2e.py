"""Repair end to end: real clients through real mitmdumps in front of the demo
upstream. For every repair, a client that fails (or gets the wrong text)
through the plain proxy gets the exact full text through the repairing one.

The clients are the openai SDK, httpx-sse, and ``naive()``: the broken
pattern users actually had, which decodes each received chunk on its own
with strict UTF-8 and parses the lines that start with ``data: ``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from e2e import Mitmdump, load_script, mitmdump
from httpx_sse import ServerSentEvent, connect_sse

from ssemedic.core.repair import TRUNCATION_MESSAGE
from ssemedic.core.sse import SSEParser

demo = load_script("demo_upstream")

FAST = {"delay": "0.002"}
MESSAGES = [{"role": "user", "content": "Почему ответ приходит по частям?"}]
CHAT = {"model": "gpt-4o", "stream": True, "messages": MESSAGES}
LETTA = "/v1/agents/agent-1/messages/stream"


@dataclass
class Proxies:
    plain: Mitmdump  # inspects only
    repair: Mitmdump  # --set ssemedic_repair=true
    reframe: Mitmdump  # the same, with --set ssemedic_repairs=reframe


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxies]:
    workdir = tmp_path_factory.mktemp("repair")
    server, thread = demo.serve("127.0.0.1", 0)
    port = server.server_address[1]
    try:
        with (
            mitmdump(port, workdir, name="plain") as plain,
            mitmdump(port, workdir, "--set", "ssemedic_repair=true", name="repair") as repair,
            mitmdump(port, workdir, "--set", "ssemedic_repair=true", "--set", "ssemedic_repairs=reframe",
                     name="reframe") as reframe,
        ):
            yield Proxies(plain, repair, reframe)
    finally:
        server.shutdown()
        thread.join(timeout=10)


def url(proxy: Mitmdump, scenario: str, delay: str = FAST["delay"]) -> str:
    return f"{proxy.base}/s/{scenario}/v1/chat/completions?delay={delay}"


# -- clients ----------------------------------------------------------------------


@dataclass
class Naive:
    """What the naive client got before the stream ended (or it gave up)."""

    payloads: list[Any] = field(default_factory=list)
    done: bool = False  # it saw data: [DONE]
    chunks: list[bytes] = field(default_factory=list)
    headers: httpx.Headers = field(default_factory=httpx.Headers)

    @property
    def text(self) -> str:
        return "".join((c["delta"].get("content") or "") for p in self.payloads for c in p.get("choices") or ())

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def naive(target: str, payload: dict[str, Any] = CHAT) -> Naive:
    """Each raw chunk decoded alone with strict UTF-8, split on "\\n", every
    ``data: `` line parsed as JSON until ``[DONE]``. Raises what that raises
    (UnicodeDecodeError, json.JSONDecodeError: both ValueErrors)."""
    got = Naive()
    with httpx.Client(timeout=30) as client, client.stream("POST", target, json=payload) as response:
        assert response.status_code == 200
        got.headers = response.headers
        for chunk in response.iter_raw():
            got.chunks.append(chunk)
            for line in chunk.decode("utf-8").split("\n"):
                if line.startswith("data: "):
                    data = line[len("data: "):]
                    if data == "[DONE]":
                        got.done = True
                        return got
                    got.payloads.append(json.loads(data))
    return got


def naive_succeeds(target: str, expected: str) -> bool:
    """Whether the naive client gets ``expected`` and its [DONE]; it waits for
    [DONE], so a stream without one fails it too."""
    try:
        got = naive(target)
    except ValueError:
        return False
    return got.done and got.text == expected


def sdk_text(proxy: Mitmdump, scenario: str) -> str:
    client = openai.OpenAI(base_url=f"{proxy.base}/s/{scenario}/v1", api_key="sk-test", max_retries=0, timeout=30)
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True, extra_query=FAST)
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def sse_events(target: str, payload: dict[str, Any] = CHAT) -> list[ServerSentEvent]:
    """Every event as httpx-sse reads it."""
    with httpx.Client(timeout=30) as client, connect_sse(client, "POST", target, json=payload) as source:
        return list(source.iter_sse())


def whole_events_only(chunks: list[bytes]) -> bool:
    """Whether every chunk, parsed on its own, is whole events and nothing more."""
    for chunk in chunks:
        parser = SSEParser()
        if not parser.feed(chunk) or parser.pending_bytes:
            return False
    return True


# -- reframe ------------------------------------------------------------------------


def test_reframe_naive_client_breaks_on_split_characters_and_lines_without_repair(proxies: Proxies) -> None:
    with pytest.raises(ValueError):
        naive(url(proxies.plain, "healthy"))


@pytest.mark.parametrize("proxy", ["repair", "reframe"])
def test_reframe_naive_client_gets_the_exact_text_in_whole_events(proxies: Proxies, proxy: str) -> None:
    got = naive(url(getattr(proxies, proxy), "healthy"))
    assert got.text == demo.HEALTHY_TEXT and got.done
    assert whole_events_only(got.chunks)
    assert len(got.chunks) > 10  # still streamed


# -- normalise ----------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["cr-lines", "crlf-mixed"])
def test_normalise_naive_client_fails_on_cr_line_endings_without_it(proxies: Proxies, scenario: str) -> None:
    assert not naive_succeeds(url(proxies.plain, scenario), demo.HEALTHY_TEXT)
    assert not naive_succeeds(url(proxies.reframe, scenario), demo.HEALTHY_TEXT)  # whole events are not enough


@pytest.mark.parametrize("scenario", ["cr-lines", "crlf-mixed"])
def test_normalise_naive_client_gets_the_exact_text_with_lf_and_no_bom(proxies: Proxies, scenario: str) -> None:
    got = naive(url(proxies.repair, scenario))
    assert got.text == demo.HEALTHY_TEXT and got.done
    assert b"\r" not in got.body and demo.BOM not in got.body
    assert whole_events_only(got.chunks)


# -- headers ------------------------------------------------------------------------


def buffering_intermediary_may_hold_it(headers: httpx.Headers) -> bool:
    """What nginx and compressing CDNs go by: they buffer unless told
    X-Accel-Buffering: no, and transform unless told no-transform; and a
    Content-Length makes a body something to collect, not a stream."""
    return ("content-length" in headers or headers.get("x-accel-buffering") != "no"
            or "no-transform" not in headers.get("cache-control", ""))


@pytest.mark.parametrize("scenario", ["healthy", "content-length"])
def test_headers_without_repair_invite_buffering(proxies: Proxies, scenario: str) -> None:
    with httpx.Client(timeout=30) as client, client.stream("POST", url(proxies.plain, scenario), json=CHAT) as r:
        r.read()
    assert buffering_intermediary_may_hold_it(r.headers)
    assert "no-transform" not in r.headers["cache-control"] and "x-accel-buffering" not in r.headers
    assert ("content-length" in r.headers) == (scenario == "content-length")


@pytest.mark.parametrize("scenario", ["healthy", "content-length"])
def test_headers_with_repair_ask_for_streaming_and_the_text_is_exact(proxies: Proxies, scenario: str) -> None:
    got = naive(url(proxies.repair, scenario))
    assert not buffering_intermediary_may_hold_it(got.headers)
    assert got.headers["cache-control"] == "no-cache, no-transform" and got.headers["x-accel-buffering"] == "no"
    assert "content-length" not in got.headers
    assert got.text == demo.HEALTHY_TEXT and got.done
    assert sdk_text(proxies.repair, scenario) == demo.HEALTHY_TEXT


# -- decompress ---------------------------------------------------------------------


def test_decompress_naive_client_cannot_read_gzip_without_it(proxies: Proxies) -> None:
    with pytest.raises(ValueError):
        naive(url(proxies.plain, "gzip"))
    assert sdk_text(proxies.plain, "gzip") == demo.HEALTHY_TEXT  # a decompressing client copes


def test_decompress_naive_client_gets_plain_bytes_and_the_exact_text(proxies: Proxies) -> None:
    got = naive(url(proxies.repair, "gzip"))
    assert "content-encoding" not in got.headers
    assert got.text == demo.HEALTHY_TEXT and got.done
    assert whole_events_only(got.chunks)


# -- sanitize -----------------------------------------------------------------------

#: The answer of invalid-json without its garbage event, from the scenario's tokens.
VALID_TEXT = "".join(demo.tokens(demo.HEALTHY_TEXT))
#: The answer of invalid-utf8 with its stray byte replaced, from the scenario's pieces.
REPLACED_TEXT = b"".join(demo.invalid_utf8_pieces()).decode("utf-8", "replace")


@pytest.mark.parametrize(("scenario", "error"), [("invalid-json", json.JSONDecodeError),
                                                 ("invalid-utf8", UnicodeDecodeError)])
def test_sanitize_clients_raise_on_broken_events_without_it(proxies: Proxies, scenario: str,
                                                            error: type[Exception]) -> None:
    with pytest.raises(error):
        sdk_text(proxies.plain, scenario)
    with pytest.raises(error):
        naive(url(proxies.reframe, scenario))  # whole events: only the broken one can fail it


@pytest.mark.parametrize(("scenario", "expected"), [("invalid-json", VALID_TEXT), ("invalid-utf8", REPLACED_TEXT)])
def test_sanitize_clients_get_every_valid_event_and_the_text(proxies: Proxies, scenario: str, expected: str) -> None:
    got = naive(url(proxies.repair, scenario))
    assert got.text == expected and got.done
    assert len(got.payloads) == len(demo.healthy_events("gpt-4o")) - 1  # all but [DONE]
    assert sdk_text(proxies.repair, scenario) == expected


# -- done ---------------------------------------------------------------------------


def test_done_after_an_error_looks_like_a_normal_end_without_repair(proxies: Proxies) -> None:
    got = naive(url(proxies.reframe, "error-then-done"))  # whole events, but no done repair
    assert got.done and got.payloads[-1] == {"error": demo.ERROR_OBJECT}
    *_, error, done = sse_events(url(proxies.plain, "error-then-done"))
    assert json.loads(error.data) == {"error": demo.ERROR_OBJECT} and done.data == "[DONE]"


def test_done_repair_sends_no_done_after_the_error(proxies: Proxies) -> None:
    got = naive(url(proxies.repair, "error-then-done"))
    assert not got.done and got.payloads[-1] == {"error": demo.ERROR_OBJECT}
    events = sse_events(url(proxies.repair, "error-then-done"))
    assert json.loads(events[-1].data) == {"error": demo.ERROR_OBJECT}
    assert "[DONE]" not in [e.data for e in events]
    with pytest.raises(openai.APIError, match=demo.ERROR_OBJECT["message"]):
        sdk_text(proxies.repair, "error-then-done")


def test_done_missing_leaves_the_naive_client_waiting_without_repair(proxies: Proxies) -> None:
    got = naive(url(proxies.reframe, "no-done"))  # whole events, but no done repair
    assert got.text == demo.HEALTHY_TEXT and not got.done
    assert not naive_succeeds(url(proxies.plain, "no-done"), demo.HEALTHY_TEXT)


def test_done_repair_appends_the_missing_done(proxies: Proxies) -> None:
    got = naive(url(proxies.repair, "no-done"))
    assert got.text == demo.HEALTHY_TEXT and got.done
    assert got.body.endswith(b"\n\ndata: [DONE]\n\n")


@pytest.mark.parametrize("scenario", ["truncated", "truncated-close"])
def test_done_truncation_is_a_silent_cut_without_repair(proxies: Proxies, scenario: str) -> None:
    events = sse_events(url(proxies.plain, scenario))  # no exception: the half event is dropped
    payloads = [json.loads(e.data) for e in events]
    text = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads)
    assert text and demo.HEALTHY_TEXT.startswith(text) and text != demo.HEALTHY_TEXT
    assert not any("error" in p for p in payloads)  # and [DONE] would not have parsed


@pytest.mark.parametrize("scenario", ["truncated", "truncated-close"])
def test_done_repair_ends_a_cut_stream_with_an_error_the_sdk_raises(proxies: Proxies, scenario: str) -> None:
    with pytest.raises(openai.APIError) as raised:
        sdk_text(proxies.repair, scenario)
    assert raised.value.message == TRUNCATION_MESSAGE
    events = sse_events(url(proxies.repair, scenario))
    assert json.loads(events[-1].data) == {
        "error": {"message": TRUNCATION_MESSAGE, "type": "upstream_error", "code": "upstream_truncated"}}
    assert "[DONE]" not in [e.data for e in events]
    got = naive(url(proxies.repair, scenario))
    assert "error" in got.payloads[-1] and not got.done
    assert whole_events_only(got.chunks)


# -- letta --------------------------------------------------------------------------


def assistant_text(proxy: Mitmdump) -> str:
    """What a client that shows only assistant_message events shows."""
    events = sse_events(f"{proxy.base}{LETTA}?delay=0.002", {"messages": MESSAGES})
    payloads = [json.loads(e.data) for e in events if e.data != "[DONE]"]
    return "".join(p["content"] for p in payloads if p["message_type"] == "assistant_message")


def test_letta_reply_in_send_message_shows_only_with_repair(proxies: Proxies) -> None:
    assert assistant_text(proxies.plain) == ""
    assert assistant_text(proxies.repair) == demo.HEALTHY_TEXT


# -- the two stories -------------------------------------------------------------------


def test_long_answer_breaks_the_naive_client_without_repair(proxies: Proxies) -> None:
    assert len(demo.LONG_TEXT.split()) >= 1500
    assert not naive_succeeds(url(proxies.plain, "long"), demo.LONG_TEXT)


def test_long_answer_arrives_whole_and_ends_with_done_with_repair(proxies: Proxies) -> None:
    got = naive(url(proxies.repair, "long"))
    assert got.text == demo.LONG_TEXT and got.done
    assert got.body.endswith(b"data: [DONE]\n\n")
    assert whole_events_only(got.chunks)
    assert len(got.chunks) > 100


@pytest.mark.parametrize("scenario", ["healthy", "cr-lines", "crlf-mixed", "content-length", "no-done"])
def test_openai_sdk_still_gets_the_exact_text_with_repair(proxies: Proxies, scenario: str) -> None:
    assert sdk_text(proxies.repair, scenario) == demo.HEALTHY_TEXT


def test_logs_name_the_repairs(proxies: Proxies) -> None:
    naive(url(proxies.repair, "no-done"))
    deadline = time.monotonic() + 10
    while "missing [DONE]" not in proxies.repair.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = proxies.repair.output()
    assert "repaired: " in log and "missing [DONE]" in log  # the panel may wrap the note
    assert "ssemedic repaired headers: Cache-Control: no-cache, no-transform; X-Accel-Buffering: no" in log
    assert "repaired" not in proxies.plain.output()
