"""Secrets are never saved: real mitmdump (and mitmweb) with ssemedic, ``-w`` and
``ssemedic_jsonl``, across healthy, failed, aborted, unselected and internally
failing flows. Every file written and everything printed is searched for every
credential the client sent or the upstream set; the upstream still received
them all and the client still got the upstream's headers unchanged."""

from __future__ import annotations

import base64
import http.server
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from e2e import MEDIC, MITMDUMP, ROOT, free_port, mitmdump, stop, wait_for_port

# What the client sends: each a credential in one place of the request.
BEARER = "sk-proj-Cl1entBearerK3yAbCdEfGhIjKlMnOpQrSt"
X_API_KEY = "sk-ant-api03-Cl1entXApiK3y-AbCdEfGhIjKlMnOpQrStUvWx"
GOOG_KEY = "AIzaSyCl1entG00gHeaderK3yAbCdEfGhIjKlMn"
AZURE_KEY = "az-cl1ent-4p1-k3y-0f9e8d7c6b5a4938"
URL_KEY = "AIzaSyCl1entUrlQueryK3yAbCdEfGhIjKlMnOp"
BODY_KEY = "b0dy-4p1-k3y-cl1ent-1a2b3c4d5e"
COOKIE = "cl1ent-s3ss10n-c00k1e-9f8e7d"
PROXY_BASIC = base64.b64encode(b"alice:pr0xy-p4ssw0rd-cl1ent-77aa").decode()
# What the upstream sends back in response headers.
SET_COOKIE = "upstr3am-s3ss10n-6b7c8d5e"
RELAY_TOKEN = "r3lay-t0k3n-upstr3am-4d5e6f7a8b"  # as "Bearer ..." under a harmless name
# The model echoes a key in its answer: hidden in the log, the JSONL and the view.
ECHOED = "sk-Ech0edByTheM0delAbCdEfGhIjKlMnOpQrSt"

CLIENT_SECRETS = [BEARER, X_API_KEY, GOOG_KEY, AZURE_KEY, URL_KEY, BODY_KEY, COOKIE, PROXY_BASIC]
UPSTREAM_SECRETS = [SET_COOKIE, RELAY_TOKEN]
SECRETS = CLIENT_SECRETS + UPSTREAM_SECRETS

HEADERS = {
    "Authorization": f"Bearer {BEARER}",
    "x-api-key": X_API_KEY,
    "x-goog-api-key": GOOG_KEY,
    "api-key": AZURE_KEY,
    "Cookie": f"sid={COOKIE}; theme=dark",
    "Proxy-Authorization": f"Basic {PROXY_BASIC}",
}


def _chat(stream: bool) -> dict[str, object]:
    return {"model": "m", "stream": stream, "api_key": BODY_KEY, "messages": [{"role": "user", "content": "hi"}]}


def _sse(delta: dict[str, object], finish: str | None = None) -> bytes:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "m",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


ANSWER = [_sse({"role": "assistant", "content": ""}), _sse({"content": f"Your key is {ECHOED}, "}),
          _sse({"content": "keep it safe."}), _sse({}, "stop"), b"data: [DONE]\n\n"]


# -- the upstream: records what it received --------------------------------------------


@dataclass
class Upstream:
    port: int
    received: list[bytes] = field(default_factory=list)  # each request: head and body, as received

    def got(self, secret: str) -> bool:
        return any(secret.encode() in r for r in self.received)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.server.record.received.append(f"{self.requestline}\r\n{self.headers}".encode() + body)
        path = self.path.split("?")[0]
        if path.endswith("/hang"):
            self.server.stopping.wait(20)  # still waiting when mitmdump stops
            return
        streamed = json.loads(body or b"{}").get("stream") is True
        self.send_response(200)
        self.send_header("Set-Cookie", f"rsid={SET_COOKIE}; Path=/; HttpOnly")
        self.send_header("X-Relay-Auth", f"Bearer {RELAY_TOKEN}")
        if not streamed:
            payload = json.dumps({"object": "list", "data": [{"embedding": [0.1, 0.2]}]}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = ANSWER[:2] if path.endswith("/abort") else ANSWER
        for event in events:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            time.sleep(0.01)
        if path.endswith("/abort"):
            self.connection.shutdown(socket.SHUT_RDWR)  # dies mid-stream: no last chunk
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    record: Upstream
    stopping: threading.Event


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.record, server.stopping = Upstream(server.server_address[1]), threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.record
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the upstream did not stop"


# -- a test addon that makes ssemedic fail inside its own hooks --------------------------

BREAKER = '''
"""Test addon: ssemedic's store step raises on /store-fails/, its redaction on /redact-fails/."""
from ssemedic.core import recording
from ssemedic.files import redact

_store, _redact_flow = recording.store, redact.redact_flow

def store(flow, metadata):
    if "/store-fails/" in flow.request.path:
        raise RuntimeError("injected store failure")
    return _store(flow, metadata)

def redact_flow(flow, **kwargs):
    if "/redact-fails/" in flow.request.path:
        raise RuntimeError("injected redaction failure")
    return _redact_flow(flow, **kwargs)

recording.store, redact.redact_flow = store, redact_flow
'''

# (path, streamed request): what each flow is and why it is there.
FLOWS = [
    ("/v1/chat/completions", True),  # healthy stream, the model echoes a key
    ("/v1/abort", True),  # the upstream dies mid-stream
    ("/v1/embeddings", False),  # not a stream: ssemedic does not select it
    ("/other/chat/completions", True),  # a stream excluded by ssemedic_filter
    ("/store-fails/v1/chat/completions", True),  # ssemedic's store step raises
    ("/redact-fails/v1/chat/completions", True),  # the redaction itself raises: fields dropped
    ("/redact-fails/v1/embeddings", False),
]


def _send(base: str, path: str, streamed: bool) -> httpx.Response | None:
    url = f"{base}{path}?key={URL_KEY}&alt=sse"
    try:
        with httpx.Client(timeout=30) as client, client.stream("POST", url, json=_chat(streamed),
                                                               headers=HEADERS) as response:
            response.read()
            return response
    except httpx.HTTPError:
        return None  # the aborted stream


def _written(tmp_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and p.name != "breaker.py"}


def _leaks(files: dict[str, bytes], secrets: list[str]) -> list[str]:
    return [f"{secret} in {name}" for name, data in files.items() for secret in secrets if secret.encode() in data]


@pytest.mark.parametrize("where", [(), ("--set", "ssemedic_worker=true")], ids=["in-proxy", "worker"])
def test_no_credential_is_saved_logged_or_written_whatever_happens_to_the_flow(
    upstream: Upstream, tmp_path: Path, where: tuple[str, ...]
) -> None:
    (tmp_path / "breaker.py").write_text(BREAKER)
    flows, jsonl = tmp_path / "saved.flows", tmp_path / "events.jsonl"
    upstream.received.clear()
    with mitmdump(upstream.port, tmp_path, "-w", str(flows), "-s", str(tmp_path / "breaker.py"),
                  "--set", f"ssemedic_jsonl={jsonl}", "--set", "ssemedic_filter=~u /v1/", *where) as mitm:
        responses = {path: _send(mitm.base, path, streamed) for path, streamed in FLOWS}
    files = _written(tmp_path)
    assert set(files) == {"saved.flows", "events.jsonl", "mitmdump.log"}
    assert _leaks(files, SECRETS) == []
    assert _leaks({k: v for k, v in files.items() if k != "saved.flows"}, [ECHOED]) == []
    # The traffic passed unchanged: the upstream got every credential of each
    # flow, the client every response header, and the stream itself.
    assert len(upstream.received) == len(FLOWS)
    for secret in CLIENT_SECRETS:
        assert all(secret.encode() in r for r in upstream.received), secret
    for path, response in responses.items():
        if path == "/v1/abort":
            continue
        assert response is not None and response.status_code == 200, path
        assert response.headers["set-cookie"] == f"rsid={SET_COOKIE}; Path=/; HttpOnly", path
        assert response.headers["x-relay-auth"] == f"Bearer {RELAY_TOKEN}", path
    healthy = responses["/v1/chat/completions"]
    assert healthy is not None and healthy.content == b"".join(ANSWER)
    # Every flow was saved, redacted rather than left out; the saved body is the evidence.
    saved = files["saved.flows"]
    assert saved.count(b"key=REDACTED") == 5 and saved.count(b"Bearer sk-proj-[REDACTED]") == 5
    assert saved.count(b"redaction failed: credential fields dropped") == 2
    assert ECHOED.encode() in saved
    log = files["mitmdump.log"].decode("utf-8", "replace")
    assert "sk-[REDACTED]" in log and "injected store failure" in log


def test_a_flow_whose_upstream_is_down_is_saved_redacted(tmp_path: Path) -> None:
    flows, jsonl = tmp_path / "saved.flows", tmp_path / "events.jsonl"
    down = free_port()  # nothing listens there
    with mitmdump(down, tmp_path, "-w", str(flows), "--set", f"ssemedic_jsonl={jsonl}",
                  "--set", "connection_strategy=lazy") as mitm:
        response = _send(mitm.base, "/v1/chat/completions", True)
    assert response is not None and response.status_code == 502
    files = _written(tmp_path)
    assert b"key=REDACTED" in files["saved.flows"]
    assert _leaks(files, CLIENT_SECRETS) == []


def test_a_flow_still_in_flight_when_mitmdump_stops_is_saved_redacted(upstream: Upstream, tmp_path: Path) -> None:
    flows = tmp_path / "saved.flows"
    with mitmdump(upstream.port, tmp_path, "-w", str(flows)) as mitm:
        client = threading.Thread(target=_send, args=(mitm.base, "/v1/hang", True), daemon=True)
        client.start()
        deadline = time.monotonic() + 10
        while not any(b"/v1/hang" in r for r in upstream.received) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(b"/v1/hang" in r for r in upstream.received)
    client.join(timeout=30)
    files = _written(tmp_path)
    assert b"/v1/hang?key=REDACTED" in files["saved.flows"]  # saved unfinished by the save addon's done
    assert _leaks(files, CLIENT_SECRETS) == []


def test_redaction_off_keeps_every_credential(upstream: Upstream, tmp_path: Path) -> None:
    flows = tmp_path / "saved.flows"
    with mitmdump(upstream.port, tmp_path, "-w", str(flows), "--set", "ssemedic_redact=false") as mitm:
        _send(mitm.base, "/v1/chat/completions", True)
        _send(mitm.base, "/v1/embeddings", False)
    saved = flows.read_bytes()
    assert all(secret.encode() in saved for secret in SECRETS)
    assert ECHOED in (tmp_path / "mitmdump.log").read_text(encoding="utf-8", errors="replace")


# -- mitmweb: its Save is GET /flows/dump on its REST API ---------------------------------


def test_mitmweb_save_holds_no_credential(upstream: Upstream, tmp_path: Path) -> None:
    port, web_port, password = free_port(), free_port(), "t3st-w3b-p4ss"
    args = [str(Path(MITMDUMP).with_name("mitmweb")), "--listen-host", "127.0.0.1", "-p", str(port),
            "--web-host", "127.0.0.1", "--web-port", str(web_port), "--set", "web_open_browser=false",
            "--set", f"web_password={password}", "-s", str(MEDIC),
            "--mode", f"reverse:http://127.0.0.1:{upstream.port}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TERM": "dumb"}
    with (tmp_path / "mitmweb.log").open("wb") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        wait_for_port(port, proc)
        wait_for_port(web_port, proc)
        base = f"http://127.0.0.1:{port}"
        responses = [_send(base, path, streamed) for path, streamed in FLOWS[:4]]
        with httpx.Client(timeout=30) as client:
            dump = b""
            deadline = time.monotonic() + 10
            while dump.count(b"key=REDACTED") < 4 and time.monotonic() < deadline:
                time.sleep(0.1)  # the last flow's response headers are redacted once they went out
                dump = client.get(f"http://127.0.0.1:{web_port}/flows/dump", params={"token": password}).content
    finally:
        stop(proc)
    assert dump.count(b"key=REDACTED") == 4
    assert [secret for secret in SECRETS if secret.encode() in dump] == []
    for response in (responses[0], responses[2]):
        assert response is not None and response.headers["set-cookie"] == f"rsid={SET_COOKIE}; Path=/; HttpOnly"
    log = (tmp_path / "mitmweb.log").read_text(encoding="utf-8", errors="replace")
    assert [secret for secret in SECRETS + [ECHOED] if secret in log] == []
