"""The ``headers`` repair end to end: an event stream served as text/plain
(a server's fallback type) is refused by httpx-sse through the plain proxy
and read in full through the repairing one, whose mitmdump relabels it at
``responseheaders``, before the body goes out."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from e2e import Mitmdump, mitmdump
from httpx_sse import SSEError, connect_sse

DELTAS = ["Привет", ", мир", "! 🌍"]
TEXT = "".join(DELTAS)
CHAT = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Привет"}]}


def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    payload = {"object": "chat.completion.chunk", "model": "gpt-4o",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


BODY = b"".join([*(chunk({"content": d}) for d in DELTAS), chunk({}, "stop"), b"data: [DONE]\n\n"])


class TextPlainUpstream(BaseHTTPRequestHandler):
    """Answers every POST with a healthy chat stream labelled text/plain,
    close-delimited (HTTP/1.0), one write per event."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        for event in BODY.split(b"\n\n")[:-1]:
            self.wfile.write(event + b"\n\n")
            self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mitmdump, Mitmdump]]:
    workdir = tmp_path_factory.mktemp("content-type")
    server = ThreadingHTTPServer(("127.0.0.1", 0), TextPlainUpstream)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        with (
            mitmdump(port, workdir, name="plain") as plain,
            mitmdump(port, workdir, "--set", "ssemedic_repair=true", "--set", "ssemedic_repairs=headers",
                     name="headers") as repair,
        ):
            yield plain, repair
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def sse_text(proxy: Mitmdump) -> tuple[str, str]:
    """The reply text httpx-sse reads through ``proxy``, and the Content-Type it saw."""
    with httpx.Client(timeout=30) as client, connect_sse(
        client, "POST", f"{proxy.base}/v1/chat/completions", json=CHAT,
    ) as source:
        content_type = source.response.headers.get("content-type", "")
        text = ""
        for event in source.iter_sse():
            if event.data != "[DONE]":
                text += "".join(c["delta"].get("content") or "" for c in event.json()["choices"])
        return text, content_type


def test_httpx_sse_refuses_a_text_plain_stream_without_the_headers_repair(
    proxies: tuple[Mitmdump, Mitmdump],
) -> None:
    plain, _ = proxies
    with pytest.raises(SSEError, match="text/event-stream"):
        sse_text(plain)


def test_headers_repair_relabels_it_and_httpx_sse_gets_the_exact_text(proxies: tuple[Mitmdump, Mitmdump]) -> None:
    _, repair = proxies
    text, content_type = sse_text(repair)
    assert text == TEXT and content_type == "text/event-stream"
    repaired = "repaired headers: Content-Type: text/event-stream (was text/plain; charset=utf-8)"
    deadline = time.monotonic() + 10
    while repaired not in repair.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert repaired in repair.output()
