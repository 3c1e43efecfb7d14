"""ssemedic_keepalive (mitm/keepalive.py): SSE comments for the client during
upstream silences, through a live mitmdump to HTTP/1.1 and HTTP/2 clients
with a read timeout shorter than the silence; and the feature detection
that refuses the option when mitmproxy's internals are not as expected.

The ``silence`` scenario of scripts/demo_upstream.py pauses 4 s after its
third event; every client here gives up after 2 s without a byte.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from e2e import Mitmdump, load_script, mitmdump
from httpx_sse import connect_sse
from mitmproxy import exceptions, io
from mitmproxy.addons import proxyserver
from mitmproxy.proxy import events, server
from mitmproxy.proxy.layers import http as layers
from mitmproxy.test import taddons, tflow
from test_repair_e2e import naive

from ssemedic.mitm import keepalive
from ssemedic.mitm.addon import Medic

demo = load_script("demo_upstream")

SILENCE = "4"
READ_TIMEOUT = httpx.Timeout(30, read=2)
MESSAGES = [{"role": "user", "content": "Почему ответ приходит по частям?"}]
CHAT = {"model": "silence", "stream": True, "messages": MESSAGES}
QUERY = {"silence": SILENCE, "delay": "0.01"}
COMMENT = b": keepalive\n\n"


@dataclass
class Proxies:
    off: Mitmdump
    on: Mitmdump  # ssemedic_keepalive=1
    jsonl: Path
    saved: Path


@pytest.fixture(scope="module")
def proxies(upstream: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxies]:
    workdir = tmp_path_factory.mktemp("keepalive")
    jsonl, saved = workdir / "on.jsonl", workdir / "on.flows"
    # A confdir of its own: mitmproxy makes its CA there, for the HTTP/2 (TLS) client.
    common = ("--set", f"confdir={workdir / 'conf'}", "--set", "ssemedic_log=summary")
    with (
        mitmdump(upstream, workdir, *common, name="off") as off,
        mitmdump(upstream, workdir, *common, "--set", "ssemedic_keepalive=1", "--set", f"ssemedic_jsonl={jsonl}",
                 "-w", str(saved), name="on") as on,
    ):
        yield Proxies(off, on, jsonl, saved)


def target(proxy: Mitmdump, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{proxy.port}/v1/chat/completions?silence={SILENCE}&delay=0.01"


def chat_text(body: bytes) -> str:
    """The text of a chat stream, read the way the spec says (comments are skipped)."""
    text = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                for choice in json.loads(line[6:]).get("choices") or ():
                    text.append(choice["delta"].get("content") or "")
    return "".join(text)


def read_body(url: str, **client: Any) -> tuple[bytes, str]:
    with httpx.Client(timeout=READ_TIMEOUT, **client) as c, c.stream("POST", url, json=CHAT) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw()), response.http_version


class H2First(ssl.SSLContext):
    """httpx offers ALPN http/1.1 before h2, and mitmproxy follows the client's
    order: offering h2 first makes the client connection HTTP/2."""

    def set_alpn_protocols(self, alpn_protocols: Any) -> None:
        super().set_alpn_protocols(sorted(alpn_protocols, key=lambda p: p != "h2"))


def h2_context() -> ssl.SSLContext:
    context = H2First(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # mitmproxy's own CA, made for this test
    return context


# -- live: the silence kills the client, keepalives keep it ---------------------------


def test_a_client_that_dies_in_the_silence_gets_the_whole_text_with_keepalive_over_http1(proxies: Proxies) -> None:
    with pytest.raises(httpx.ReadTimeout):
        read_body(target(proxies.off))
    body, version = read_body(target(proxies.on))
    assert version == "HTTP/1.1"
    assert chat_text(body) == demo.HEALTHY_TEXT and body.endswith(b"data: [DONE]\n\n")
    assert 2 <= body.count(COMMENT) <= 4  # one a second in a 4 s silence
    # Only between events, and the upstream's bytes are all there, in order.
    assert body.replace(COMMENT, b"") == b"".join(demo.healthy_events("silence"))
    assert all(not piece or piece.endswith(b"\n\n") for piece in body.split(COMMENT)[:-1])


@pytest.mark.parametrize("mode", [("--set", "ssemedic_worker=true"),
                                  ("--set", "ssemedic_worker=true", "--set", "ssemedic_repair=true")],
                         ids=["worker", "worker-repair"])
def test_keepalive_with_the_inspection_worker(upstream: int, tmp_path: Path, mode: tuple[str, ...]) -> None:
    """With ssemedic_worker the keepalives still come from the proxy, between
    events, and the worker's report counts them as the proxy's would."""
    jsonl = tmp_path / "on.jsonl"
    with mitmdump(upstream, tmp_path, "--set", "ssemedic_log=summary", "--set", "ssemedic_keepalive=1",
                  "--set", f"ssemedic_jsonl={jsonl}", *mode) as proxy:
        body, version = read_body(target(proxy))
    assert version == "HTTP/1.1"
    assert chat_text(body) == demo.HEALTHY_TEXT and 2 <= body.count(COMMENT) <= 4
    assert body.replace(COMMENT, b"") == b"".join(demo.healthy_events("silence"))
    assert all(not piece or piece.endswith(b"\n\n") for piece in body.split(COMMENT)[:-1])
    [summary] = [s for s in map(json.loads, jsonl.read_text(encoding="utf-8").splitlines()) if s["type"] == "summary"]
    [note] = [n for n in summary["notes"] if n.startswith("keepalive:")]
    assert f"sent the client {body.count(COMMENT)} `: keepalive` comments" in note
    assert [f["kind"] for f in summary["faults"] if f["severity"] != "info"] == []


def test_a_silence_before_the_first_event_is_kept_alive_too(proxies: Proxies) -> None:
    """A reasoning model's usual silence: headers, then nothing for 4 s."""
    url = f"http://127.0.0.1:{{}}/v1/chat/completions?silence={SILENCE}&delay=0.01"
    chat = {**CHAT, "model": "silence-first"}
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=READ_TIMEOUT) as client, \
            client.stream("POST", url.format(proxies.off.port), json=chat) as response:
        b"".join(response.iter_raw())
    with httpx.Client(timeout=READ_TIMEOUT) as client, \
            client.stream("POST", url.format(proxies.on.port), json=chat) as response:
        body = b"".join(response.iter_raw())
    assert body.startswith(COMMENT) and 2 <= body.count(COMMENT) <= 4
    assert body.replace(COMMENT, b"") == b"".join(demo.healthy_events("silence-first"))
    assert chat_text(body) == demo.HEALTHY_TEXT


def test_a_silence_inside_an_event_takes_no_comment_unless_the_stream_is_reframed(
        upstream: int, tmp_path: Path) -> None:
    """The upstream pauses in the middle of an event: without repair the
    client's body is mid-event, so the client times out and the summary says
    why no keepalive came; with ssemedic_repair the half event is held back
    and the comments go between whole events."""
    url = "/v1/chat/completions?silence=4&delay=0.01"
    chat = {**CHAT, "model": "silence-mid-event"}
    for repair in (False, True):
        jsonl = tmp_path / f"repair-{repair}.jsonl"
        extra = ("--set", "ssemedic_repair=true") if repair else ()
        with mitmdump(upstream, tmp_path, "--set", "ssemedic_log=summary", "--set", "ssemedic_keepalive=1",
                      "--set", f"ssemedic_jsonl={jsonl}", *extra, name=f"mid-{repair}") as proxy, \
                httpx.Client(timeout=READ_TIMEOUT) as client:
            if repair:
                with client.stream("POST", proxy.base + url, json=chat) as response:
                    body = b"".join(response.iter_raw())
            else:
                with pytest.raises(httpx.ReadTimeout), client.stream("POST", proxy.base + url, json=chat) as response:
                    b"".join(response.iter_raw())
        [summary] = [s for s in map(json.loads, jsonl.read_text(encoding="utf-8").splitlines())
                     if s["type"] == "summary"]
        notes = [n for n in summary["notes"] if n.startswith("keepalive:")]
        kinds = [f["kind"] for f in summary["faults"] if f["severity"] == "error"]
        if repair:
            assert chat_text(body) == demo.HEALTHY_TEXT and 2 <= body.count(COMMENT) <= 4
            assert body.replace(COMMENT, b"") == b"".join(demo.healthy_events("silence-mid-event"))
            assert kinds == [] and len(notes) == 1 and "sent the client" in notes[0]
        else:
            assert kinds == ["client-timeout"]
            assert len(notes) == 1 and "came inside an event" in notes[0] and "reframe" in notes[0]


def test_an_http2_client_gets_the_whole_text_with_keepalive(proxies: Proxies) -> None:
    with pytest.raises(httpx.ReadTimeout):
        read_body(target(proxies.off, "https"), http2=True, verify=h2_context())
    body, version = read_body(target(proxies.on, "https"), http2=True, verify=h2_context())
    assert version == "HTTP/2"
    assert chat_text(body) == demo.HEALTHY_TEXT and COMMENT in body
    assert body.replace(COMMENT, b"") == b"".join(demo.healthy_events("silence"))


def test_the_openai_sdk_ignores_the_comments_and_gets_the_exact_text(proxies: Proxies) -> None:
    def text(proxy: Mitmdump) -> str:
        # The SDK's own Timeout: from openai 3.63 on it is built on httpx2 and refuses an httpx.Timeout.
        client = openai.OpenAI(base_url=f"{proxy.base}/v1", api_key="sk-test", max_retries=0,
                               timeout=openai.Timeout(30, read=2))
        stream = client.chat.completions.create(model="silence", messages=MESSAGES, stream=True,  # type: ignore[call-overload]
                                                extra_query=QUERY)
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

    with pytest.raises(openai.APITimeoutError):
        text(proxies.off)
    assert text(proxies.on) == demo.HEALTHY_TEXT


def test_httpx_sse_ignores_the_comments_and_gets_the_exact_text(proxies: Proxies) -> None:
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=READ_TIMEOUT) as client, \
            connect_sse(client, "POST", target(proxies.off), json=CHAT) as source:
        list(source.iter_sse())
    with httpx.Client(timeout=READ_TIMEOUT) as client, \
            connect_sse(client, "POST", target(proxies.on), json=CHAT) as source:
        events = list(source.iter_sse())
    payloads = [json.loads(e.data) for e in events if e.data != "[DONE]"]
    text = "".join(c["delta"].get("content") or "" for p in payloads for c in p["choices"])
    assert text == demo.HEALTHY_TEXT
    assert len(events) == len(demo.healthy_events("silence"))  # no event made of a comment


def test_the_naive_client_ignores_the_comments_and_gets_the_exact_text(proxies: Proxies) -> None:
    got = naive(target(proxies.on), CHAT)
    assert got.text == demo.HEALTHY_TEXT and got.done
    assert COMMENT in got.body


def test_keepalives_are_counted_in_the_summary_and_the_recording_not_stored_as_upstream_bytes(
        proxies: Proxies) -> None:
    read_body(target(proxies.on))
    summaries = [json.loads(line) for line in proxies.jsonl.read_text(encoding="utf-8").splitlines()]
    notes = [n for s in summaries if s["type"] == "summary" for n in s["notes"] if n.startswith("keepalive:")]
    assert notes and all("`: keepalive` comments during silences of 1 s" in n for n in notes)
    assert all(s["timing"]["keepalives"] == 0 for s in summaries if s["type"] == "summary")  # none from upstream
    with proxies.saved.open("rb") as file:
        flows = [f for f in io.FlowReader(file).stream() if f.response is not None]
    assert flows
    for f in flows:
        model = json.loads(f.request.content)["model"]  # the scenario: other tests use this proxy too
        assert f.response.raw_content == b"".join(demo.healthy_events(model))
        assert any(n.startswith("keepalive: ssemedic sent the client") for n in f.metadata["ssemedic"]["notes"])


# -- where comments may go ---------------------------------------------------------


@pytest.mark.parametrize(("tail", "boundary"), [
    (b"", True),
    (b"}\n\n", True),
    (b"}\r\n\r\n", True),
    (b"}\r\r\n", True),
    (b"\n", True),  # a body that began with a blank line
    (b"}\n", False),  # inside an event, after one line
    (b"}\r\n", False),
    (b"}\r\r", False),  # a CR that an LF may still follow
    (b"\n\r", False),
    (b"ata:", False),
])
def test_comments_go_only_at_event_boundaries(tail: bytes, boundary: bool) -> None:
    assert keepalive.at_event_boundary(tail) is boundary


def live_flow(content_type: str) -> Any:
    f = tflow.tflow(resp=True)
    f.live = True
    f.response.headers["content-type"] = content_type
    del f.response.headers["content-length"]
    return f


def run_keepalive(f: Any, pieces: list[bytes], wait: float) -> tuple[keepalive.Keepalive, list[bytes], bytes]:
    """A Keepalive at 10 ms in a running loop: the pieces it passed on, and
    what it would write once ``wait`` seconds passed after them."""

    async def main() -> tuple[keepalive.Keepalive, list[bytes], bytes]:
        # Its timer is due in 10 s: what due() says is asked here, without a proxy to write to.
        k = keepalive.Keepalive(f, lambda data: [data] if data else [], 10.0, notes=[], clock=lambda: 0.0)
        k.every = 0.01
        out = [piece for data in pieces for piece in k(data)]  # type: ignore[union-attr]
        await asyncio.sleep(wait)
        return k, out, k.due()

    return asyncio.run(main())


def test_a_body_inside_an_event_gets_no_comment_and_says_why_once() -> None:
    k, out, due = run_keepalive(live_flow("text/event-stream"), [b"data: {\"a\":", b" 1}\n"], 0.03)
    assert out == [b"data: {\"a\":", b" 1}\n"] and due == b"" and k.sent == 0
    assert k.due() == b""  # asked again in the same silence: still nothing, and no second note
    assert k.notes == ["keepalive: a silence over 0.01 s came inside an event (the upstream paused mid-event), "
                       "where no comment can go, so none was sent then; with `ssemedic_repair` (repair "
                       "`reframe`) the client gets whole events only, and comments fit between them"]


def test_a_body_at_an_event_boundary_gets_a_comment_and_counts_it() -> None:
    k, _, due = run_keepalive(live_flow("text/event-stream"), [b"data: 1\n\n"], 0.03)
    assert due == COMMENT and k.sent == 1
    assert k.notes == ["keepalive: ssemedic sent the client 1 `: keepalive` comment during silences of 0.01 s "
                       "(not upstream bytes)"]


def first_silence(f: Any, data: bytes) -> keepalive.Keepalive:
    """A Keepalive at 10 ms after one piece ``data``, once its timer fired."""

    async def main() -> keepalive.Keepalive:
        k = keepalive.Keepalive(f, lambda data: [data], 0.01, notes=[], clock=lambda: 0.0)
        k(data)
        await asyncio.sleep(0.1)
        return k

    return asyncio.run(main())


@pytest.mark.parametrize(("content_type", "reason"), [
    ("application/x-ndjson", "a application/x-ndjson body has no comment syntax"),
    ("text/plain", "the client's body is served as text/plain, not text/event-stream"),
])
def test_other_framings_are_left_alone_with_a_note(content_type: str, reason: str) -> None:
    k = first_silence(live_flow(content_type), b'{"a": 1}\n')
    assert k.sent == 0 and k.ended
    assert k.notes == [f"keepalive: none sent: {reason}"]


def test_a_compressed_body_is_left_alone_with_a_note() -> None:
    f = live_flow("text/event-stream")
    f.response.headers["content-encoding"] = "gzip"
    k = first_silence(f, b"\x1f\x8b")
    assert k.notes == ["keepalive: none sent: the client's body is compressed (gzip)"]


def test_a_body_with_a_content_length_is_left_alone_with_a_note() -> None:
    f = live_flow("text/event-stream")
    f.response.headers["content-length"] = "9"
    k = first_silence(f, b"data: 1\n\n")
    assert k.notes == ["keepalive: none sent: the client's body has a Content-Length"]


def test_outside_a_running_proxy_nothing_is_sent_and_every_byte_passes() -> None:
    k = keepalive.Keepalive(tflow.tflow(resp=True), lambda data: [data], 1.0, notes=[], clock=lambda: 0.0)
    assert k(b"data: 1\n\n") == [b"data: 1\n\n"]
    assert k.notes == ["keepalive: none sent: no event loop runs (not in a live proxy)"]


# -- the option and the feature detection ----------------------------------------------


def test_this_mitmproxy_has_every_internal_keepalive_uses() -> None:
    # Fails loudly when a mitmproxy upgrade moves what mitm/keepalive.py relies on.
    assert keepalive.problem() is None


def test_keepalive_is_off_by_default_and_takes_seconds() -> None:
    medic = Medic()
    with taddons.context(medic) as tctx:
        assert medic.keepalive == 0
        tctx.configure(medic, ssemedic_keepalive="2.5")
        assert medic.keepalive == 2.5
        tctx.configure(medic, ssemedic_keepalive="off")
        assert medic.keepalive == 0


@pytest.mark.parametrize("value", ["-1", "soon", "inf"])
def test_a_bad_keepalive_is_refused_in_one_line(value: str) -> None:
    medic = Medic()
    with taddons.context(medic) as tctx:
        with pytest.raises(exceptions.OptionsError) as refused:
            tctx.configure(medic, ssemedic_keepalive=value)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("ssemedic_keepalive: ") and repr(value) in message
    assert medic.keepalive == 0


def _no_annotation(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> None:
    monkeypatch.setattr(cls, "__annotations__", {k: v for k, v in cls.__annotations__.items() if k != name})


INTERNALS_GONE = {
    "Wakeup": (lambda mp: mp.delattr(events, "Wakeup"), "mitmproxy.proxy.events.Wakeup is missing"),
    "command_sources": (lambda mp: _no_annotation(mp, layers.HttpLayer, "command_sources"),
                        "HttpLayer has no command_sources"),
    "connections": (lambda mp: _no_annotation(mp, proxyserver.Proxyserver, "connections"),
                    "Proxyserver has no connections"),
    "server_event": (lambda mp: mp.setattr(server.ConnectionHandler, "server_event", lambda self, event: None),
                     "ConnectionHandler.server_event is not a coroutine function"),
    "ResponseData": (lambda mp: mp.setattr(layers, "ResponseData", type("ResponseData", (), {
        "__init__": lambda self, data, stream_id: None})), "is not ResponseData(stream_id, data)"),
    "state_stream_response_body": (lambda mp: mp.delattr(layers.HttpStream, "state_stream_response_body"),
                                   "HttpStream.state_stream_response_body is missing"),
}


@pytest.mark.parametrize("gone", list(INTERNALS_GONE))
def test_the_option_is_refused_in_one_line_when_mitmproxy_internals_change(
        monkeypatch: pytest.MonkeyPatch, gone: str) -> None:
    take_away, reason = INTERNALS_GONE[gone]
    medic = Medic()
    with taddons.context(medic) as tctx:
        tctx.configure(medic, ssemedic_stall="5")
        take_away(monkeypatch)
        with pytest.raises(exceptions.OptionsError) as refused:
            tctx.configure(medic, ssemedic_keepalive="1", ssemedic_stall="7")
        message = str(refused.value)
        assert "\n" not in message and message.startswith("ssemedic_keepalive: cannot send keepalives")
        assert reason in message
        # Nothing else changes: neither this option nor the others set with it.
        assert medic.keepalive == 0 and medic.stall_after == 5
        tctx.configure(medic, ssemedic_keepalive="0")  # off needs no internals
