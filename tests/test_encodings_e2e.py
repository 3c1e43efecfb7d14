"""Compressed streams end to end: an upstream streams a compressed OpenAI chat
SSE body, flushed per event, through real mitmdumps with ssemedic to an httpx
client reading the raw bytes; then the saved flows are read offline.

- inspect only: the client gets the upstream's compressed bytes exactly, and
  the JSONL summary has the decoded text;
- ``decompress`` repair: no Content-Encoding and exactly the decoded body;
- the ``-w`` flow files: ``ssemedic report`` and ``mitmdump -nr`` show the text.

One mitmdump per mode serves every encoding (on its own path), and every
request and offline run happens once, in the module fixture.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import MEDIC, ROOT, Mitmdump, mitmdump, run_mitmdump
from test_decoding import BODY, COMPRESSORS, EVENTS

NAMES = ["gzip", "deflate-zlib", "deflate-raw", "br", "zstd", "zstd-frames"]
TEXT = "Привет, мир! 🌍 ok"
CHAT = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
PIECE_GAP = 0.03  # seconds between flushed events, so they arrive as separate chunks


def path_for(name: str) -> str:
    return f"/v1/chat/completions/{name}"


class Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        #: Path -> (Content-Encoding, the compressed pieces sent, one per event).
        self.bodies = {path_for(n): (COMPRESSORS[n][0], COMPRESSORS[n][1](EVENTS)) for n in NAMES}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: Upstream

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path not in self.server.bodies:
            self.send_error(404)
            return
        encoding, pieces = self.server.bodies[self.path]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Encoding", encoding)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in pieces:  # one chunk per event, flushed
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
            time.sleep(PIECE_GAP)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Received:
    headers: httpx.Headers
    chunks: list[bytes]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class Results:
    upstream: dict[str, tuple[str, list[bytes]]]
    inspect: dict[str, Received] = field(default_factory=dict)
    decompress: dict[str, Received] = field(default_factory=dict)
    #: Source -> name -> the summary for that encoding's stream.
    summaries: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: Source -> the output of the run that read it.
    outputs: dict[str, str] = field(default_factory=dict)


def fetch_raw(proxy: Mitmdump, name: str) -> Received:
    with httpx.Client(timeout=20) as client, client.stream("POST", proxy.base + path_for(name), json=CHAT) as r:
        assert r.status_code == 200
        return Received(r.headers, [chunk for chunk in r.iter_raw() if chunk])


def by_name(summaries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The summaries keyed by the encoding named at the end of their URL."""
    out: dict[str, dict[str, Any]] = {}
    for summary in summaries:
        name = str(summary.get("source", "")).rsplit("/", 1)[-1]
        assert name not in out, f"two streams for {name}"
        out[name] = summary
    return out


def jsonl_summaries(path: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return by_name([x for x in lines if x.get("type") == "summary"])


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Results]:
    workdir = tmp_path_factory.mktemp("encodings")
    server = Upstream()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    port = server.server_address[1]
    out = Results({path.rsplit("/", 1)[-1]: body for path, body in server.bodies.items()})
    flows = {"inspect": workdir / "inspect.flows", "decompress": workdir / "decompress.flows"}
    try:
        with (
            mitmdump(port, workdir, "--set", f"ssemedic_jsonl={workdir / 'inspect.jsonl'}",
                     "-w", str(flows["inspect"]), name="inspect") as inspect,
            mitmdump(port, workdir, "--set", "ssemedic_repair=true", "--set", "ssemedic_repairs=decompress",
                     "-w", str(flows["decompress"]), name="decompress") as decompress,
        ):
            for name in NAMES:
                out.inspect[name] = fetch_raw(inspect, name)
                out.decompress[name] = fetch_raw(decompress, name)
        # The mitmdumps stopped on SIGINT, so their -w files and JSONL are complete.
        out.outputs["live inspect"] = inspect.output()
        out.outputs["live decompress"] = decompress.output()
        out.summaries["live"] = jsonl_summaries(workdir / "inspect.jsonl")
        for mode, flow_file in flows.items():
            report = subprocess.run(
                [sys.executable, "-m", "ssemedic", "report", "--json", str(flow_file)],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
            )
            out.outputs[f"report {mode}"] = f"exit {report.returncode}\n{report.stdout}{report.stderr}"
            out.summaries[f"report {mode}"] = by_name(json.loads(report.stdout)) if report.returncode == 0 else {}
            jsonl = workdir / f"nr-{mode}.jsonl"
            nr = run_mitmdump(["-nr", str(flow_file), "-s", str(MEDIC), "--set", f"ssemedic_jsonl={jsonl}"])
            out.outputs[f"-nr {mode}"] = f"exit {nr.returncode}\n{nr.stdout}{nr.stderr}"
            out.summaries[f"-nr {mode}"] = jsonl_summaries(jsonl) if jsonl.exists() else {}
        yield out
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize("name", NAMES)
def test_inspect_only_forwards_the_compressed_bytes_exactly(results: Results, name: str) -> None:
    encoding, pieces = results.upstream[name]
    received = results.inspect[name]
    assert received.headers["content-encoding"] == encoding
    assert received.body == b"".join(pieces)
    assert len(received.chunks) > 1, "the stream must arrive in several chunks, not buffered"


@pytest.mark.parametrize("name", NAMES)
def test_inspect_only_summary_has_the_decoded_text(results: Results, name: str) -> None:
    assert name in results.summaries["live"], results.outputs["live inspect"][-2000:]
    summary = results.summaries["live"][name]
    assert summary["text"] == TEXT
    assert summary["provider"] == "openai-chat" and summary["finish_reason"] == "stop"
    assert summary["complete"] is True
    assert any(f["kind"] == "compressed-stream" for f in summary["faults"])


@pytest.mark.parametrize("name", NAMES)
def test_decompress_repair_forwards_the_exact_decoded_body(results: Results, name: str) -> None:
    received = results.decompress[name]
    assert "content-encoding" not in received.headers
    assert received.body == BODY
    assert len(received.chunks) > 1, "the decoded stream must still stream"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("source", ["report inspect", "report decompress", "-nr inspect", "-nr decompress"])
def test_saved_flow_reads_back_with_the_text(results: Results, source: str, name: str) -> None:
    assert name in results.summaries[source], results.outputs[source][-2000:]
    summary = results.summaries[source][name]
    assert summary["text"] == TEXT
    assert summary["finish_reason"] == "stop" and summary["complete"] is True
    assert not summary.get("issues")


@pytest.mark.parametrize("source", ["live inspect", "live decompress", "report inspect", "report decompress", "-nr inspect", "-nr decompress"])
def test_no_traceback_anywhere(results: Results, source: str) -> None:
    output = results.outputs[source]
    if not source.startswith("live"):
        assert output.startswith("exit 0\n"), output[-2000:]
    assert "Traceback" not in output and "internal error" not in output
