"""`ssemedic replay`: recorded chunks go out again as the same chunk frames,
with the recorded pauses; misses, aborts, untimed flows and bad files."""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import httpx
import openai
import pytest
from e2e import ROOT, free_port, load_script, mitmdump, wait_for_port
from helpers import sse_event
from mitmproxy import flow as mitmflow
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.io import FlowReader, FlowWriter
from mitmproxy.test import tflow

from ssemedic.core import recording
from ssemedic.files import replay

CHAT = "/v1/chat/completions"
T0 = 1_763_700_000.0
TTFB = 0.1
GAPS = (0.05, 0.15, 0.3)
#: Allowed timing error per gap; the gaps themselves are >= 50 ms, so each
#: recorded chunk also arrives in a read of its own.
TOLERANCE = 0.04
EVENTS = [sse_event({"choices": [{"delta": {"content": word}}]}) for word in ("Привет", ", ", "мир", "! 🌍")]


# -- building recordings ----------------------------------------------------------


def recorded_flow(
    chunks: Sequence[bytes],
    gaps: Sequence[float] = GAPS,
    *,
    path: str = CHAT,
    ttfb: float = TTFB,
    aborted: bool = False,
    timed: bool = True,
    encoding: str | None = None,
) -> Any:
    """A POST flow as ssemedic records it: raw chunked body plus its timeline."""
    assert len(gaps) == len(chunks) - 1
    f = tflow.tflow(resp=True)
    f.request.method, f.request.path = "POST", path
    f.request.content = b'{"model": "gpt-4o", "stream": true, "messages": []}'
    f.request.timestamp_start = T0
    f.response.timestamp_start = T0 + ttfb / 2
    del f.response.headers["content-length"]
    f.response.headers["content-type"] = "text/event-stream"
    f.response.headers["transfer-encoding"] = "chunked"
    if encoding:
        f.response.headers["content-encoding"] = encoding
    f.response.raw_content = b"".join(chunks)
    if timed:
        offsets = [sum(map(len, chunks[:i])) for i in range(len(chunks))]
        times = [T0 + ttfb + sum(gaps[:i]) for i in range(len(chunks))]
        f.metadata["ssemedic"] = {"timeline": recording.pack(offsets, times), "ended_at": times[-1] + 0.01}
    if aborted:
        f.error = mitmflow.Error("Connection closed by upstream")
    return f


def write_flows(path: Path, flows: Sequence[Any]) -> Path:
    with path.open("wb") as f:
        writer = FlowWriter(f)
        for one in flows:
            writer.add(one)
    return path


@contextmanager
def replaying(source: Any, **kwargs: Any) -> Iterator[int]:
    server, thread = replay.serve(source, port=0, **kwargs)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join(timeout=5)


# -- a raw client -------------------------------------------------------------------


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    #: One item per chunk frame (per read when the body is not chunked).
    chunks: list[bytes]
    #: Seconds after the request was sent when each chunk's first byte arrived.
    arrivals: list[float]
    #: Whether the body ended properly (0-chunk or full length), not by a cut.
    complete: bool

    @property
    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:])]


def fetch(port: int, target: str = CHAT, method: str = "POST", body: bytes = b"{}") -> Fetched:
    """One request on a raw socket; h11 (not us) reads the chunk frames, so
    boundaries are exact however TCP packs them."""
    conn = h11.Connection(h11.CLIENT)
    headers = [("Host", f"127.0.0.1:{port}"), ("Content-Type", "application/json"),
               ("Content-Length", str(len(body)))]
    got = Fetched(0, {}, [], [], False)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.send(h11.Request(method=method, target=target, headers=headers))
                     + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        start = time.monotonic()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return got  # cut mid-body
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                got.status = event.status_code
                got.headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                if event.chunk_start or "transfer-encoding" not in got.headers or not got.chunks:
                    got.chunks.append(event.data)
                    got.arrivals.append(time.monotonic() - start)
                else:
                    got.chunks[-1] += event.data
            elif isinstance(event, h11.EndOfMessage):
                got.complete = True
                return got
            else:
                return got


# -- chunks and timing ----------------------------------------------------------------


def test_each_recorded_chunk_is_its_own_chunk_frame_with_the_recorded_pauses() -> None:
    with replaying([recorded_flow(EVENTS)]) as port:
        got = fetch(port)
    assert got.status == 200 and got.complete
    assert got.chunks == EVENTS
    assert got.headers["content-type"] == "text/event-stream"
    assert got.headers["transfer-encoding"] == "chunked" and "content-length" not in got.headers
    assert got.arrivals[0] == pytest.approx(TTFB, abs=TOLERANCE)
    for measured, recorded in zip(got.gaps, GAPS, strict=True):
        assert measured == pytest.approx(recorded, abs=TOLERANCE)


def test_speed_two_halves_every_pause() -> None:
    with replaying([recorded_flow(EVENTS)], speed=2.0) as port:
        got = fetch(port)
    assert got.chunks == EVENTS
    assert got.arrivals[0] == pytest.approx(TTFB / 2, abs=TOLERANCE)
    for measured, recorded in zip(got.gaps, GAPS, strict=True):
        assert measured == pytest.approx(recorded / 2, abs=TOLERANCE)


def test_no_delay_sends_at_once_with_the_same_chunk_frames() -> None:
    with replaying([recorded_flow(EVENTS)], delay=False) as port:
        got = fetch(port)
    assert got.chunks == EVENTS and got.complete
    assert got.arrivals[-1] < 0.15  # the recording lasts 0.6 s


def test_compressed_body_goes_out_raw_with_its_content_encoding() -> None:
    raw = gzip.compress(b"".join(EVENTS))
    pieces = [raw[:10], raw[10:25], raw[25:]]
    with replaying([recorded_flow(pieces, (0.05, 0.05), encoding="gzip")], delay=False) as port:
        got = fetch(port)
        decoded = httpx.post(f"http://127.0.0.1:{port}{CHAT}", json={}).content
    assert got.headers["content-encoding"] == "gzip"
    assert got.chunks == pieces
    assert decoded == b"".join(EVENTS)


# -- matching ------------------------------------------------------------------------------


def test_exact_query_first_then_path_and_several_matches_take_turns() -> None:
    first = recorded_flow([b"data: 1\n\n"], (), path=f"{CHAT}?n=1")
    second = recorded_flow([b"data: 2\n\n"], (), path=f"{CHAT}?n=2")
    with replaying([first, second], delay=False) as port:
        exact = [fetch(port, f"{CHAT}?n=2").chunks for _ in range(2)]
        loose = [fetch(port, CHAT).chunks for _ in range(3)]
    assert exact == [[b"data: 2\n\n"]] * 2
    assert loose == [[b"data: 1\n\n"], [b"data: 2\n\n"], [b"data: 1\n\n"]]


def test_unmatched_request_gets_a_404_json_listing_the_recording() -> None:
    with replaying([recorded_flow(EVENTS)], delay=False) as port:
        response = httpx.get(f"http://127.0.0.1:{port}/v1/models")
        wrong_method = httpx.get(f"http://127.0.0.1:{port}{CHAT}")
    assert response.status_code == 404 and wrong_method.status_code == 404
    body = response.json()
    assert "GET /v1/models" in body["error"]["message"]
    assert body["recorded"] == [f"POST {CHAT}"]


# -- ends, untimed flows, framing ------------------------------------------------------


def test_aborted_recording_is_cut_after_its_last_chunk_without_the_final_chunk() -> None:
    with replaying([recorded_flow(EVENTS[:2], (0.05,), aborted=True)]) as port:
        got = fetch(port)
        received: list[bytes] = []
        with (
            httpx.Client(timeout=10) as client,
            client.stream("POST", f"http://127.0.0.1:{port}{CHAT}") as r,
            pytest.raises(httpx.RemoteProtocolError),
        ):
            received.extend(r.iter_raw())
    assert not got.complete and got.chunks == EVENTS[:2]
    assert b"".join(received) == b"".join(EVENTS[:2])


@pytest.mark.parametrize("kind", ["flow", "har"])
def test_flow_without_timeline_is_served_whole_in_one_chunk(kind: str, tmp_path: Path) -> None:
    f = recorded_flow(EVENTS, timed=False)
    if kind == "har":
        path = tmp_path / "browser.har"
        path.write_text(json.dumps(SaveHar().make_har([f])), encoding="utf-8")
    else:
        path = write_flows(tmp_path / "plain.flows", [f])
    with replaying(path) as port:
        got = fetch(port)
    assert got.status == 200 and got.complete
    assert got.chunks == [b"".join(EVENTS)]
    [served] = replay.load(path).responses
    assert not served.timed and any("no chunk timeline" in note for note in served.notes)


def test_recorded_content_length_is_kept_and_hop_by_hop_headers_are_not() -> None:
    f = recorded_flow(EVENTS[:2], (0.05,))
    del f.response.headers["transfer-encoding"]
    f.response.headers["content-length"] = str(len(b"".join(EVENTS[:2])))
    f.response.headers["connection"] = "keep-alive"
    f.response.headers["keep-alive"] = "timeout=5"
    with replaying([f], delay=False) as port:
        got = fetch(port)
    assert got.complete and b"".join(got.chunks) == b"".join(EVENTS[:2])
    assert got.headers["content-length"] == f.response.headers["content-length"]
    assert "transfer-encoding" not in got.headers and "keep-alive" not in got.headers
    assert "connection" not in got.headers


def test_client_hang_up_is_one_log_line_not_a_traceback(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="ssemedic.files.replay")
    events = EVENTS * 3
    with replaying([recorded_flow(events, [0.05] * (len(events) - 1), ttfb=0.0)]) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
            assert sock.recv(65536)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "client went away" not in caplog.text:
            time.sleep(0.05)
    assert "client went away after" in caplog.text
    assert "Traceback" not in capsys.readouterr().err


# -- the command line ---------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    replay.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\x02 not a flow", "not a mitmproxy flow or HAR file"),
        (b"data: hello\n\n", "raw body capture"),
        (b"12:not a tnetstring", "not a readable mitmproxy flow"),
        (b"", "empty file"),
    ],
)
def test_bad_file_is_one_error_line_and_exit_2(
    content: bytes, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.flows"
    path.write_bytes(content)
    code = replay.run(parse(str(path)))
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("ssemedic: error: ") and message in err


def test_non_loopback_host_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_flows(tmp_path / "s.flows", [recorded_flow(EVENTS)])
    assert replay.run(parse(str(path), "--host", "0.0.0.0")) == 2
    assert "loopback" in capsys.readouterr().err
    with pytest.raises(ValueError, match="loopback"):
        replay.serve(path, host="0.0.0.0")


def test_speed_and_no_delay_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        parse("x.flows", "--speed", "2", "--no-delay")
    with pytest.raises(SystemExit):
        parse("x.flows", "--speed", "0")


def test_script_serves_logs_one_line_per_request_and_stops_by_itself(tmp_path: Path) -> None:
    path = write_flows(tmp_path / "s.flows", [recorded_flow(EVENTS)])
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "replay_upstream.py"), str(path),
         "--port", str(port), "--speed", "4", "--max-seconds", "1.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )
    try:
        wait_for_port(port, None, timeout=10)
        got = fetch(port)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert got.chunks == EVENTS
    text = err.decode()
    assert f"POST {CHAT} -> #1 POST {CHAT}: 200, 4 chunks" in text and "speed 4x" in text
    assert "replay stopped" in text and "Traceback" not in text


# -- end to end: recorded live through mitmdump, replayed ------------------------------


def test_live_recording_replays_with_its_chunks_and_the_openai_sdk_reads_it(tmp_path: Path) -> None:
    upstream_mod = load_script("demo_upstream")
    upstream, thread = upstream_mod.serve("127.0.0.1", 0)
    flows = tmp_path / "live.flows"
    chat = {"model": "healthy", "stream": True, "messages": [{"role": "user", "content": "Почему по частям?"}]}
    try:
        with (
            mitmdump(upstream.server_address[1], tmp_path, "-w", str(flows)) as mitm,
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{mitm.base}{CHAT}?delay=0.05", json=chat) as response,
        ):
            assert response.status_code == 200
            live = b"".join(response.iter_raw())
    finally:
        upstream.shutdown()
        thread.join(timeout=10)
    with flows.open("rb") as f:
        [recorded] = list(FlowReader(f).stream())
    tl = recording.unpack(recorded.metadata["ssemedic"]["timeline"])
    recorded_chunks = [data for data, _ in tl.chunks(recorded.response.raw_content)]
    assert b"".join(recorded_chunks) == live and len(recorded_chunks) > 20

    with replaying(flows, speed=4.0) as port:
        got = fetch(port, f"{CHAT}?delay=0.05", body=json.dumps(chat).encode())
    assert got.complete and got.chunks == recorded_chunks
    recorded_span = tl.times[-1] - recorded.request.timestamp_start
    assert got.arrivals[-1] == pytest.approx(recorded_span / 4, abs=0.2)

    with replaying(flows, delay=False) as port:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0, timeout=30)
        text, reasoning = [], []
        for chunk in client.chat.completions.create(stream=True, model="healthy", messages=chat["messages"]):
            if chunk.choices:
                delta = chunk.choices[0].delta
                text.append(delta.content or "")
                reasoning.append(getattr(delta, "reasoning_content", None) or "")
    assert "".join(text) == upstream_mod.HEALTHY_TEXT
    assert "".join(reasoning) == upstream_mod.HEALTHY_REASONING
