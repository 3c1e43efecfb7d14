"""Stream one large response (1 GB by default) through plain mitmdump and
through mitmdump with ssemedic, and measure what ssemedic costs.

Usage: .venv/bin/python scripts/bench_big.py [--gigabytes 1] [--event-bytes 200,4096]
       [--frame-bytes 65536] [--only plain,ssemedic,summary] [--ssemedic-set KEY=VALUE ...]
       [--json] [--keep]

Strategy: the upstream is a subprocess of this script (so it never competes
with the client for a GIL) that answers one request per connection with an
SSE body of OpenAI chat.completion.chunk events of about ``--event-bytes``
each, written as HTTP/1.1 chunk frames of about ``--frame-bytes`` (a fast
server with a write buffer), then a finish event and ``data: [DONE]``. It
stamps time.monotonic() (CLOCK_MONOTONIC, comparable across processes) right
after the last byte went out and reports it on its stdout. The client, raw
sockets in this process, reads everything and stamps its last read. Each
configuration is a fresh ``mitmdump`` subprocess in reverse mode:

- plain: a two-line addon sets ``flow.response.stream``,
- ssemedic: ``-s addons/medic.py`` (inspect-only, the default full log),
- summary: the same with ``--set ssemedic_log=summary``.

Per run it prints the throughput (body bytes / time from request to last
byte), its ratio to plain's for the same event size, mitmdump's peak RSS
growth (VmHWM after the run, reset through /proc/PID/clear_refs before it,
minus VmRSS before it; without the reset, VmHWM minus VmRSS, an upper bound),
the delay of the client's last byte after the upstream's last write, and how
long mitmdump took to stop on SIGINT. ssemedic's log goes to a temporary
file; its "fell behind" lines are counted.

This is a measurement, not a test: it exits 0 whether or not the targets are
met (a miss prints ``TARGET MISSED``), and 1 only when a step fails.
Everything binds 127.0.0.1 and every subprocess is stopped on the way out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from procs import HOST, free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
MEDIC = ROOT / "addons" / "medic.py"
MITMDUMP = Path(sys.executable).with_name("mitmdump")
PATH = "/v1/chat/completions"

#: Targets (issue #11), for summary mode against plain mitmdump.
TARGET_RSS_MB = 100.0
TARGET_LAST_BYTE_S = 1.0
TARGET_RATIO = 0.5
#: Bounds, so a typo cannot hold the machine for hours.
MAX_GIGABYTES = 8.0
#: The client gives up on a stream after this long without a byte.
READ_TIMEOUT = 120.0
#: How long the upstream lives at most.
UPSTREAM_LIFETIME = 3 * 3600

PLAIN_ADDON = '''\
"""Plain mitmdump streaming, for bench_big.py."""


def responseheaders(flow):
    flow.response.stream = True
'''

# The upstream, run as ``python -c UPSTREAM PORT``. One request per
# connection; the request line carries the size: /v1/chat/completions?bytes=N&event=E&frame=F.
UPSTREAM = r'''
import json, socket, sys, threading, time
from urllib.parse import parse_qs, urlsplit

def event(size, i):
    chunk = {"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk",
             "created": 1763700000, "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_f9f4fb6dbf",
             "choices": [{"index": 0, "delta": {"content": ""}, "logprobs": None, "finish_reason": None}]}
    bare = len(b"data: " + json.dumps(chunk).encode() + b"\n\n")
    words = ("Hello ", "world, ", "streamed ", "token ", "by ", "token. ")
    text = ""
    while len(text.encode()) < size - bare:
        text += words[(i + len(text)) % len(words)]
    chunk["choices"][0]["delta"]["content"] = text[: max(1, size - bare)]
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"

def frame(data):
    return b"%x\r\n%s\r\n" % (len(data), data)

def serve(conn):
    with conn:
        request = b""
        while b"\r\n\r\n" not in request:
            piece = conn.recv(65536)
            if not piece:
                return
            request += piece
            if len(request) > 65536:
                return
        head, _, rest = request.partition(b"\r\n\r\n")
        target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            piece = conn.recv(65536)
            if not piece:
                return
            rest += piece
        query = parse_qs(urlsplit(target).query)
        total = min(int(query["bytes"][0]), 8 << 30)
        size = int(query.get("event", ["200"])[0])
        frame_bytes = int(query.get("frame", ["65536"])[0])
        events = [event(size, i) for i in range(16)]
        block = b"".join(events)
        per_frame = max(1, frame_bytes // len(block))
        body = frame(block * per_frame)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                     b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        sent = 0
        step = len(block) * per_frame
        while sent + step <= total:
            conn.sendall(body)
            sent += step
        finish = json.loads(events[0][6:])
        finish["choices"][0]["delta"] = {}
        finish["choices"][0]["finish_reason"] = "stop"
        tail = b"data: " + json.dumps(finish).encode() + b"\n\ndata: [DONE]\n\n"
        conn.sendall(frame(tail) + b"0\r\n\r\n")
        sent += len(tail)
        end = time.monotonic()
        print(json.dumps({"end": end, "body": sent}), flush=True)
        try:
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(10)
            while conn.recv(65536):
                pass
        except OSError:
            pass

server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
server.settimeout(1.0)
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        conn, _ = server.accept()
    except socket.timeout:
        continue
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
'''


@dataclass
class Run:
    config: str
    event_bytes: int
    body_bytes: int
    seconds: float
    mb_per_s: float
    rss_growth_mb: float
    rss_exact: bool
    last_byte_delay_s: float
    stop_seconds: float
    behind_lines: int
    log_lines: int


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def fetch(port: int, total: int, event_bytes: int, frame_bytes: int) -> tuple[int, float, float]:
    """One streamed request through the proxy on ``port``: (bytes read, start, last byte) in monotonic time."""
    body = json.dumps({"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    target = f"{PATH}?bytes={total}&event={event_bytes}&frame={frame_bytes}"
    request = (f"POST {target} HTTP/1.1\r\nhost: {HOST}:{port}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\n\r\n").encode() + body
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    got = 0
    tail = b""
    with socket.create_connection((HOST, port), timeout=READ_TIMEOUT) as sock:
        start = time.monotonic()
        sock.sendall(request)
        last = start
        while True:
            n = sock.recv_into(view)
            if not n:
                break
            last = time.monotonic()
            got += n
            tail = (tail + bytes(view[max(0, n - 8) : n]))[-8:]
            if tail.endswith(b"\r\n0\r\n\r\n"):
                break
    if not tail.endswith(b"\r\n0\r\n\r\n"):
        raise RuntimeError(f"the stream ended after {got:,} bytes without its last chunk")
    return got, start, last


class Upstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", UPSTREAM, str(self.port), str(UPSTREAM_LIFETIME)],
            stdout=subprocess.PIPE, text=True,
        )
        wait_for_port(self.port, None)

    def end_stamp(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the upstream exited without reporting its end")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def run_one(config: str, upstream: Upstream, workdir: Path, total: int, event_bytes: int,
            frame_bytes: int, extra: list[str]) -> Run:
    port = free_port()
    args = [str(MITMDUMP), "-q", "--listen-host", HOST, "-p", str(port),
            "--mode", f"reverse:http://{HOST}:{upstream.port}"]
    if config == "plain":
        args += ["-s", str(workdir / "plain_stream.py")]
    else:
        args += ["-s", str(MEDIC)]
        if config == "summary":
            args += ["--set", "ssemedic_log=summary"]
        for setting in extra:
            args += ["--set", setting]
    log = workdir / f"{config}-{event_bytes}.log"
    env = {**os.environ, "TERM": "dumb"}
    with log.open("wb") as sink:
        proc = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        wait_for_port(port, proc)  # type: ignore[arg-type]
        fetch(port, 1 << 20, event_bytes, frame_bytes)  # warm up: imports, first flow
        upstream.end_stamp()
        time.sleep(0.5)
        exact = reset_peak(proc.pid)
        before = rss_kib(proc.pid, "VmRSS")
        got, start, last = fetch(port, total, event_bytes, frame_bytes)
        upstream_end = upstream.end_stamp()["end"]
        time.sleep(0.5)  # let the response hook and the summary run
        peak = rss_kib(proc.pid, "VmHWM")
        began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        stopped = time.monotonic() - began
    finally:
        stop(proc)  # type: ignore[arg-type]
    text = log.read_text(encoding="utf-8", errors="replace")
    if "internal error" in text:
        raise RuntimeError(f"ssemedic reported an internal error; see {log}")
    seconds = last - start
    return Run(
        config=config, event_bytes=event_bytes, body_bytes=got, seconds=round(seconds, 3),
        mb_per_s=round(got / seconds / 1e6, 1), rss_growth_mb=round((peak - before) / 1024, 1), rss_exact=exact,
        last_byte_delay_s=round(last - upstream_end, 3), stop_seconds=round(stopped, 2),
        behind_lines=text.count("inspection fell behind"), log_lines=text.count("\n"),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gigabytes", type=float, default=1.0, help="body size per stream (default 1)")
    parser.add_argument("--event-bytes", default="200,4096", help="event sizes, one stream each (default 200,4096)")
    parser.add_argument("--frame-bytes", type=int, default=65536, help="bytes per upstream write (default 65536)")
    parser.add_argument("--only", default="plain,ssemedic,summary", help="configurations to run")
    parser.add_argument("--ssemedic-set", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra --set for the ssemedic runs (repeatable)")
    parser.add_argument("--json", action="store_true", help="also print the runs as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    opts = parser.parse_args()
    if not 0 < opts.gigabytes <= MAX_GIGABYTES:
        parser.error(f"--gigabytes must be > 0 and <= {MAX_GIGABYTES:g}")
    configs = [c.strip() for c in opts.only.split(",") if c.strip()]
    if not set(configs) <= {"plain", "ssemedic", "summary"}:
        parser.error("--only takes plain, ssemedic and summary")
    sizes = [int(s) for s in opts.event_bytes.split(",")]
    if any(not 120 <= s <= 1 << 20 for s in sizes):
        parser.error("--event-bytes must be between 120 and 1048576")
    total = int(opts.gigabytes * 1e9)

    print(f"Python {platform.python_version()}, {platform.platform()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print(f"stream: {total:,} bytes of OpenAI chat chunks per run, written in chunk frames of about "
          f"{opts.frame_bytes:,} bytes; MB = 10^6 bytes")
    if opts.ssemedic_set:
        print("ssemedic runs with: " + " ".join(f"--set {s}" for s in opts.ssemedic_set))
    workdir = Path(tempfile.mkdtemp(prefix="ssemedic-bench-big-"))
    (workdir / "plain_stream.py").write_text(PLAIN_ADDON)
    upstream = Upstream()
    runs: list[Run] = []
    try:
        for size in sizes:
            for config in configs:
                run = run_one(config, upstream, workdir, total, size, opts.frame_bytes, opts.ssemedic_set)
                runs.append(run)
                print(f"  done: {config} {size} B events, {run.seconds} s", flush=True)
    except (RuntimeError, OSError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        upstream.close()
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print("config    event B      MB/s  vs plain  RSS +MB  last byte s  stop s  behind  log lines")
    plain = {r.event_bytes: r for r in runs if r.config == "plain"}
    for r in runs:
        base = plain.get(r.event_bytes)
        ratio = f"{r.mb_per_s / base.mb_per_s:8.2f}" if base is not None else "       —"
        rss = f"{r.rss_growth_mb:7.1f}" + ("" if r.rss_exact else "*")
        print(f"{r.config:<9} {r.event_bytes:>7} {r.mb_per_s:>9.1f} {ratio}  {rss}  {r.last_byte_delay_s:>11.3f}"
              f"  {r.stop_seconds:>6.2f}  {r.behind_lines:>6}  {r.log_lines:>9}")
    if any(not r.rss_exact for r in runs):
        print("* VmHWM could not be reset: growth is measured from the startup peak's RSS (an upper bound)")
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    for r in runs:
        if r.config == "plain":
            continue
        checks = [("RSS growth", r.rss_growth_mb, TARGET_RSS_MB, "MB"),
                  ("last-byte delay", r.last_byte_delay_s, TARGET_LAST_BYTE_S, "s")]
        for name, value, target, unit in checks:
            verdict = "target met" if value <= target else "TARGET MISSED"
            print(f"{verdict}: {r.config} {r.event_bytes} B events {name} {value} {unit} <= {target:g} {unit}")
        base = plain.get(r.event_bytes)
        if r.config == "summary" and base is not None:
            ratio_value = r.mb_per_s / base.mb_per_s
            verdict = "target met" if ratio_value >= TARGET_RATIO else "TARGET MISSED"
            print(f"{verdict}: summary {r.event_bytes} B events throughput {ratio_value:.2f} of plain >= {TARGET_RATIO:g}")
    if opts.json:
        print(json.dumps([asdict(r) for r in runs], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
