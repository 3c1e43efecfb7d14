"""Redaction fails closed in the addon's hooks: every flow, selected or not,
complete, failed or in flight, loses its credentials before mitmproxy's save
addon sees it, whatever else raised; and what ssemedic prints or writes
(event lines, previews, JSONL, the view) hides a key the model echoed."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import sse_event
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import flow as mflow
from mitmproxy.contentviews import Metadata
from mitmproxy.test import taddons, tflow

from ssemedic.core import recording
from ssemedic.files import redact
from ssemedic.mitm.addon import SEND_WAIT_SECONDS, Medic
from ssemedic.mitm.contentview import llm_stream_view

BEARER = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_Zq7-Wk0"
URL_KEY = "AIzaSyD4x7Kq2mPz9Lw5Rt8Yv1Nb3Hc6Jf0Gs4E"
BODY_KEY = "b0dy-4p1-k3y-0a1b2c3d4e5f"
COOKIE = "s3ss10n-c00k1e-v4lu3-9f8e7d6c"
SET_COOKIE = "r3sp0nse-s3ss10n-6b7c8d"
RELAY = "r3lay-t0k3n-4d5e6f7a8b9c"
ECHOED = "sk-Ech0edByTheM0delAbCdEfGhIjKlMnOpQrSt"
SECRETS = [BEARER, URL_KEY, BODY_KEY, COOKIE, SET_COOKIE, RELAY]

CHUNKS = [
    {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f"Your key: {ECHOED}"}}]},
    {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
]
BODY = b"".join(sse_event(c) for c in CHUNKS) + b"data: [DONE]\n\n"


def llm_flow(*, path: str = "/v1/chat/completions", stream: bool = True, resp: bool = True) -> Any:
    f = tflow.tflow(resp=resp)
    f.request.method = "POST"
    f.request.path = f"{path}?key={URL_KEY}&alt=sse"
    f.request.headers["authorization"] = f"Bearer {BEARER}"
    f.request.headers["cookie"] = f"sid={COOKIE}"
    f.request.content = json.dumps({"model": "m", "stream": stream, "api_key": BODY_KEY}).encode()
    if resp:
        f.response.headers["set-cookie"] = f"rsid={SET_COOKIE}; Path=/"
        f.response.headers["x-relay"] = f"Bearer {RELAY}"
        if stream:
            f.response.headers["content-type"] = "text/event-stream"
            f.response.content = None  # a live response: headers only so far
            del f.response.headers["content-length"]
        else:
            f.response.headers["content-type"] = "application/json"
            f.response.content = b'{"object": "list"}'
    return f


def saved(f: Any) -> bytes:
    """The flow as mitmproxy's save addon would write it."""
    return repr(f.get_state()).encode()


def leaks(f: Any) -> list[str]:
    state = saved(f)
    return [s for s in SECRETS if s.encode() in state]


@pytest.fixture
def medic() -> Iterator[tuple[Medic, io.StringIO, Any]]:
    console = io.StringIO()
    addon = Medic(console=console)
    with taddons.context(addon) as tctx:
        yield addon, console, tctx


def stream(addon: Medic, f: Any, body: bytes = BODY) -> bytes:
    addon.responseheaders(f)
    sent = b"".join(f.response.stream(body)) + b"".join(f.response.stream(b""))
    addon.response(f)
    return sent


# -- every flow is redacted, whatever happened to it ------------------------------------


def test_a_flow_whose_upstream_connection_failed_is_redacted() -> None:
    with taddons.context(Medic(console=io.StringIO())) as tctx:
        addon = tctx.master.addons.get("medic")
        f = llm_flow(resp=False)
        f.error = mflow.Error("Connection refused")
        addon.error(f)
    assert leaks(f) == []
    assert "key=REDACTED" in f.request.path and b'"api_key": "[REDACTED]"' in f.request.content


@pytest.mark.parametrize("broken", ["store", "metadata"])
def test_a_flow_is_redacted_even_when_storing_the_recording_raises(
    medic: Any, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    addon, _, _ = medic

    def fail(*args: Any) -> Any:
        raise RuntimeError("injected")

    if broken == "store":
        monkeypatch.setattr(recording, "store", fail)
    else:
        monkeypatch.setattr("ssemedic.core.pipeline.Pipeline.metadata", fail)
    f = llm_flow()
    with pytest.raises(RuntimeError, match="injected"):
        stream(addon, f)  # mitmproxy logs the error and goes on to the save addon
    assert leaks(f) == []


def test_an_aborted_stream_is_redacted_when_its_store_step_raises(medic: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    addon, _, _ = medic
    monkeypatch.setattr(recording, "store", lambda *a: 1 / 0)
    f = llm_flow()
    addon.responseheaders(f)
    f.response.stream(BODY[:40])
    f.error = mflow.Error("peer closed connection")
    with pytest.raises(ZeroDivisionError):
        addon.error(f)
    assert leaks(f) == []


@pytest.mark.parametrize("why", ["not a stream", "excluded by the filter"])
def test_a_flow_ssemedic_does_not_select_is_redacted_too(medic: Any, why: str) -> None:
    addon, _, tctx = medic
    if why == "not a stream":
        f = llm_flow(path="/v1/embeddings", stream=False)
    else:
        tctx.configure(addon, ssemedic_filter="~u /v1/messages")
        f = llm_flow()
        f.response.content = BODY
    addon.responseheaders(f)
    assert not f.response.stream  # not selected
    addon.response(f)
    assert leaks(f) == []


def test_response_headers_mitmproxy_has_yet_to_send_go_out_unchanged_and_are_redacted_once_sent(
    medic: Any,
) -> None:
    addon, _, _ = medic
    f = llm_flow(path="/v1/embeddings", stream=False)

    async def hooks() -> None:
        addon.response(f)
        assert leaks(f) == []  # as the save addon, after ssemedic in the response hook, writes it
        addon.update([f])  # after every response hook, before mitmproxy sends the response
        for _ in range(3):
            await asyncio.sleep(0)
        assert f.response.headers["set-cookie"] == f"rsid={SET_COOKIE}; Path=/"
        assert f.response.headers["x-relay"] == f"Bearer {RELAY}"
        assert f.request.headers["authorization"] == "Bearer sk-proj-[REDACTED]"  # the request went out already
        f.live = False  # sent
        await asyncio.sleep(SEND_WAIT_SECONDS * 3)
        assert leaks(f) == []

    asyncio.run(hooks())


def test_outside_an_event_loop_restored_headers_are_redacted_again_at_once(medic: Any) -> None:
    addon, _, _ = medic
    f = llm_flow(path="/v1/embeddings", stream=False)
    addon.response(f)
    addon.update([f])
    assert leaks(f) == []


def test_restoring_keeps_what_another_addon_changed_in_the_response(medic: Any) -> None:
    addon, _, _ = medic
    f = llm_flow(path="/v1/embeddings", stream=False)

    async def hooks() -> None:
        addon.response(f)
        f.response.headers["x-added-later"] = "1"  # e.g. modifyheaders, after ssemedic in the chain
        addon.update([f])
        assert f.response.headers["set-cookie"] == f"rsid={SET_COOKIE}; Path=/"
        assert f.response.headers["x-added-later"] == "1"

    asyncio.run(hooks())


def test_two_cookies_redacted_alike_are_restored_each_to_its_own_value(medic: Any) -> None:
    addon, _, _ = medic
    f = llm_flow(path="/v1/embeddings", stream=False)
    f.response.headers.set_all("set-cookie", ["a=1st-s3cr3t; Path=/", "a=2nd-s3cr3t; Path=/"])

    async def hooks() -> None:
        addon.response(f)
        assert f.response.headers.get_all("set-cookie") == ["a=[REDACTED]; Path=/"] * 2
        f.response.headers["x-added-later"] = "1"
        addon.update([f])
        assert f.response.headers.get_all("set-cookie") == ["a=1st-s3cr3t; Path=/", "a=2nd-s3cr3t; Path=/"]

    asyncio.run(hooks())


def test_flows_still_in_flight_at_done_are_redacted_before_the_save_addon_writes_them(medic: Any) -> None:
    addon, _, _ = medic
    f = llm_flow(resp=False)
    addon.requestheaders(f)
    assert BEARER in f.request.headers["authorization"]  # not yet: the request has yet to go out
    addon.done()
    assert leaks(f) == []


def test_a_websocket_flow_is_redacted_when_it_ends(medic: Any) -> None:
    addon, _, _ = medic
    f = tflow.twebsocketflow()
    f.request.headers["authorization"] = f"Bearer {BEARER}"
    addon.websocket_end(f)
    assert leaks(f) == []


def test_redaction_off_leaves_every_flow_as_it_was(medic: Any) -> None:
    addon, _, tctx = medic
    tctx.configure(addon, ssemedic_redact="false")
    streamed, plain = llm_flow(), llm_flow(path="/v1/embeddings", stream=False)
    stream(addon, streamed)
    addon.response(plain)
    addon.update([plain])
    assert all(s.encode() in saved(plain) for s in SECRETS)
    assert all(s.encode() in saved(streamed) for s in SECRETS)


# -- if the redaction itself raises, the fields are dropped --------------------------------


def test_when_redaction_raises_the_credential_fields_are_dropped(
    medic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    addon, _, _ = medic

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected redaction failure")

    monkeypatch.setattr(redact, "redact_flow", broken)
    f = llm_flow()
    f.response.headers["x-request-id"] = "req-123"
    assert stream(addon, f) == BODY  # the traffic is untouched
    assert leaks(f) == []
    assert "authorization" not in f.request.headers and "set-cookie" not in f.response.headers
    assert f.request.path == "/v1/chat/completions" and f.request.raw_content == b""
    assert f.request.headers["header"] == "qvalue" and f.response.headers["x-request-id"] == "req-123"  # the rest kept
    assert "redaction failed: credential fields dropped" in recording.entry(f)["redacted"]


def test_dropping_survives_a_failing_step_by_dropping_more(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def search(self, *args: Any) -> Any:
            raise RuntimeError("injected")

        sub = search

    monkeypatch.setattr(redact, "_KEY", Broken())
    f = llm_flow()
    redact.drop_secrets(f)
    assert leaks(f) == []
    assert f.request.path == "/" and not f.request.headers and not f.response.headers  # all of each dropped


# -- header values that look like a key, whatever the header's name ---------------------


@pytest.mark.parametrize("value", [f"Bearer {RELAY}", BEARER, f"token={BEARER}", URL_KEY,
                                   "sk-ant-api03-Qw3rTy6uIo9pAs2dFg5hJk8lZx1cVb4nM7-Ab0CdEfGhAA"])
def test_a_header_whose_value_looks_like_a_key_is_redacted_whatever_its_name(value: str) -> None:
    headers = {"x-debug-upstream": value, "x-request-id": "req_8f7e6d5c4b3a"}
    assert redact.redact_headers(headers) == ["x-debug-upstream"]
    assert redact.MARK in headers["x-debug-upstream"] and headers["x-request-id"] == "req_8f7e6d5c4b3a"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*"aAkKsS0-_=?&;@:/. \"'\n", "://", "sk-", "key", "bearer ", "token", "cookie",
                                  "AIza", "x" * 20, "1234567890"]), max_size=30).map("".join))
def test_the_quick_check_never_skips_text_the_patterns_would_change(text: str) -> None:
    assert redact.redact_text(text) == redact._redact_text(text)


# -- what ssemedic prints and writes hides an echoed key -----------------------------------


def test_an_echoed_key_is_hidden_in_event_lines_preview_jsonl_and_summary(medic: Any, tmp_path: Any) -> None:
    addon, console, tctx = medic
    jsonl = tmp_path / "events.jsonl"
    tctx.configure(addon, ssemedic_jsonl=str(jsonl))
    f = llm_flow()
    addon.responseheaders(f)
    f.response.stream(BODY)
    f.response.stream(b"")
    addon.response(f)
    addon.done()
    log, written = console.getvalue(), jsonl.read_text(encoding="utf-8")
    assert ECHOED not in log and ECHOED not in written
    assert "first chunk" in log and "sk-[REDACTED]" in log
    for line in written.splitlines():
        json.loads(line)  # still JSON
    assert '"type": "event"' in written and "sk-[REDACTED]" in written


def test_an_echoed_key_is_shown_when_redaction_is_off(medic: Any) -> None:
    addon, console, tctx = medic
    tctx.configure(addon, ssemedic_redact="false")
    stream(addon, llm_flow())
    addon.reporter.close()
    assert ECHOED in console.getvalue()


def test_the_report_command_hides_an_echoed_key(medic: Any) -> None:
    addon, console, _ = medic
    f = llm_flow()
    f.response.content = BODY
    addon.report([f])
    assert "Your key" in console.getvalue() and ECHOED not in console.getvalue()


@pytest.mark.parametrize(("option", "shown"), [("true", False), ("false", True)])
def test_the_llm_stream_view_hides_an_echoed_key_unless_redaction_is_off(option: str, shown: bool) -> None:
    with taddons.context(Medic(console=io.StringIO())) as tctx:
        tctx.configure(tctx.master.addons.get("medic"), ssemedic_redact=option)
        f = llm_flow()
        f.response.content = BODY
        text = llm_stream_view.prettify(BODY, Metadata(flow=f, http_message=f.response,
                                                        content_type="text/event-stream"))
    assert "Your key" in text and (ECHOED in text) is shown
