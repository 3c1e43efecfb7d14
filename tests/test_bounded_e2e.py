"""A live mitmdump with ssemedic under streams faster than inspection: a healthy
stream beside a large one is not held up, and stopping mitmdump while a fast
stream runs is prompt and still saves what was recorded."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from e2e import mitmdump

from mitmproxy import io as flow_io

CHAT = "/v1/chat/completions"
#: The upstream stops writing after this long, whatever the client does.
UPSTREAM_DEADLINE = 120.0
BIG_EVENT = 4 * 1024 * 1024


def _chunk(content: str) -> bytes:
    payload = {"object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {"content": content}}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


class Upstream(BaseHTTPRequestHandler):
    """/healthy: 40 small events 25 ms apart; /big?events=N: N events of 4 MB
    in 1 KB writes; /firehose?bytes=N&event=E: events of about E bytes (200
    by default) as fast as the client reads, in 64 KB writes, N bytes or
    until the client goes."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + UPSTREAM_DEADLINE
        try:
            if url.path.endswith("/healthy"):
                for i in range(40):
                    self._write(_chunk(f"word{i} "))
                    time.sleep(0.025)
            elif url.path.endswith("/big"):
                head = b'data: {"object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {"content": "'
                tail = b'"}}]}\n\n'
                for _ in range(int(query["events"][0])):
                    event = head + b"a" * (BIG_EVENT - len(head) - len(tail)) + tail
                    for i in range(0, len(event), 1024):
                        self._write(event[i : i + 1024])
            else:
                size = int(query.get("event", ["200"])[0])
                block = _chunk("token " * ((size - 100) // 6))
                block *= 65536 // len(block)  # about 64 KB of events of about ``size`` bytes
                sent, limit = 0, min(int(query.get("bytes", [8 << 30])[0]), 8 << 30)
                while time.monotonic() < deadline and sent < limit:
                    self._write(block)
                    sent += len(block)
            self._write(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass  # the client or the proxy went away

    def _write(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


@pytest.fixture(scope="module")
def fast_upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _post(client: httpx.Client, base: str, path: str) -> httpx.Response:
    return client.post(base + path, json={"model": "m", "stream": True, "messages": []})


def _healthy_seconds(base: str) -> float:
    with httpx.Client(timeout=60) as client:
        start = time.monotonic()
        response = _post(client, base, CHAT + "/healthy")
        assert response.status_code == 200 and response.content.endswith(b"data: [DONE]\n\n")
        return time.monotonic() - start


@pytest.mark.parametrize("other", ["/big?events=12", "/firehose?bytes=1000000000&event=4096"],
                         ids=["4 MB events in 1 KB chunks", "1 GB of 4 KB events"])
def test_a_healthy_stream_beside_a_large_one_is_not_held_up(fast_upstream: int, tmp_path: Path, other: str) -> None:
    with mitmdump(fast_upstream, tmp_path) as proxy:
        _healthy_seconds(proxy.base)  # warm up
        alone = min(_healthy_seconds(proxy.base) for _ in range(2))
        big: dict[str, object] = {}

        def fetch_big() -> None:
            with httpx.Client(timeout=120) as client, client.stream(
                "POST", proxy.base + CHAT + other, json={"model": "m", "stream": True}
            ) as response:
                size = 0
                for piece in response.iter_raw():
                    size += len(piece)
                    big.setdefault("first", time.monotonic())
                big["size"] = size
                big["end"] = time.monotonic()

        thread = threading.Thread(target=fetch_big)
        thread.start()
        deadline = time.monotonic() + 30
        while "first" not in big and time.monotonic() < deadline:
            time.sleep(0.01)
        beside = _healthy_seconds(proxy.base)
        overlapped = "end" not in big
        # Alone the healthy stream takes about 1 s; beside the large one it
        # may share the CPU, but must not wait for that one's inspection.
        assert beside < 2.5 * alone + 0.5, (alone, beside)
        thread.join(timeout=120)
        assert big.get("size", 0) >= 4 * BIG_EVENT
        log = proxy.output()
    assert overlapped, "the large stream ended before the healthy one: nothing was measured"
    assert "internal error" not in log


def test_stopping_mitmdump_during_a_fast_stream_is_prompt_and_saves_the_flow(fast_upstream: int, tmp_path: Path) -> None:
    saved = tmp_path / "flows"
    with mitmdump(fast_upstream, tmp_path, "-w", str(saved)) as proxy:
        received = 0
        with httpx.Client(timeout=60) as client, client.stream(
            "POST", proxy.base + CHAT + "/firehose", json={"model": "m", "stream": True}
        ) as response:
            start = time.monotonic()
            for piece in response.iter_raw():
                received += len(piece)
                if received >= 150_000_000 or time.monotonic() - start > 30:
                    break
            proxy.proc.send_signal(signal.SIGINT)
            began = time.monotonic()
            try:
                proxy.proc.wait(timeout=30)
            except Exception:
                pass
            stopped = time.monotonic() - began
        log = proxy.output()
    assert stopped < 10, f"mitmdump took {stopped:.1f} s to stop"
    with saved.open("rb") as f:
        flows = list(flow_io.FlowReader(f).stream())
    assert len(flows) == 1, log[-2000:]
    flow = flows[0]
    assert flow.response is not None and len(flow.response.raw_content or b"") >= 1_000_000
    assert "ssemedic" in flow.metadata
    assert "internal error" not in log
