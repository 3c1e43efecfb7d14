"""Measure the per-event latency and CPU time that ssemedic adds to mitmdump streaming.

Usage: .venv/bin/python scripts/bench_proxy.py [--events 200] [--interval-ms 20]
       [--concurrency 50] [--rounds 5]
       [--modes plain,summary,full,repair,summary-worker,full-worker,repair-worker] [--burst]
       [--json] [--keep] [--ssemedic-set KEY=VALUE ...]

Strategy: a stdlib upstream, run as a subprocess of this script so that it
never competes with the client for a GIL, streams OpenAI chat.completion.chunk
events as HTTP/1.1 chunk frames, one event per write, on a fixed schedule.
Each event carries ``x_sent_ns``, the upstream's time.perf_counter_ns() (on
Linux CLOCK_MONOTONIC, so it is comparable across processes) taken right
before its write. The client, asyncio streams with h11 in this process, stamps
perf_counter_ns() as soon as a read returns the bytes that complete an event;
latency is that stamp minus ``x_sent_ns``: the upstream's write, one proxy
hop, and the client's read. Every configuration is a real ``mitmdump``
subprocess in reverse mode in front of the same upstream:

- plain: plain streaming (a two-line addon sets ``flow.response.stream``),
- summary: ``-s addons/medic.py --set ssemedic_log=summary``,
- full: ``-s addons/medic.py`` with default options (the full live event log),
- repair: the full log with ``ssemedic_repair=true`` (every chunk is
  inspected and repaired before it goes out),
- summary-worker and full-worker: summary and full with
  ``ssemedic_worker=true``: mitmdump's event loop only records and forwards
  each chunk and writes it to one worker process it starts (a child of
  mitmdump), which does the inspection. A worker mode whose mitmdump has no
  child process after its first stream fails the benchmark: mitmproxy
  silently defers an option no addon declares, so an ssemedic without the
  option would otherwise be measured as the in-process mode under the
  worker's name.
- repair-worker: repair with ``ssemedic_worker=true``: each chunk is still
  parsed and repaired in mitmdump (its client gets the repaired bytes), and
  also written to the worker, which reports it.

The difference between a configuration and plain is what ssemedic adds;
everything else (upstream, loopback, client) is common to all. All proxies
run side by side and runs are interleaved, the proxy order rotating each
round, so that a slow patch of this shared machine hurts all of them alike.
The CPU figure is the median over rounds of each round's own figure, and the
ratio is the median of each round's added CPU over plain's in that same
round; latency percentiles pool every sample of every round (nearest rank),
and per-round values are shown too, to show the noise. Concurrent streams start staggered
over one interval, as independent users would (``--burst`` starts them
together, the worst case).

CPU time is read from /proc (each thread's time on a CPU, in ns; see cpu_ns)
right before and after every measured run, and divided by the events the run
carried, in three figures per mode:

- proxy: mitmdump's own process. This is the figure the targets (issue 16)
  are about, and the only one the added-CPU ratios are judged on: it is the
  process of mitmproxy's event loop, which every flow's bytes wait for, so
  what ssemedic adds there is what it takes from the traffic. The worker
  modes are judged against their in-process twins' targets (summary-worker
  against summary's, full-worker against full's);
- worker: the processes descending from mitmdump (found through
  /proc/<pid>/task/*/children, recursively), i.e. the worker. A descendant
  that starts during a run counts from 0; one that ends during a run is
  lost from that run's figure (its last reading is unknown) and the report
  counts those, so a short figure shows as such;
- total: both, what the machine pays. The worker's CPU is not hidden: every
  ratio and target line prints the total's ratio to plain's beside the
  proxy process's, and the table shows all three (each the median of its
  own rounds, so total need not be proxy + worker exactly).

A descendant still running after its mitmdump has stopped is killed, with a
warning.

ssemedic's live log goes to mitmdump's stderr (``-q`` does not hide it: it
writes there directly), which goes to a temporary file here, as a terminal
would take it (a worker's too: it inherits that stderr). Any ssemedic
internal error there fails the benchmark: it
would mean ssemedic stopped inspecting and the numbers flatter it.

This is a measurement, not a test: it exits 0 whether or not the targets are
met (a miss prints ``TARGET MISSED``), and 1 only when a step fails. Everything
binds 127.0.0.1 and every subprocess is terminated on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

import h11
from procs import free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
MEDIC = ROOT / "addons" / "medic.py"
MITMDUMP = Path(sys.executable).with_name("mitmdump")
HOST = "127.0.0.1"
PATH = "/v1/chat/completions"

#: What ssemedic may add over plain mitmdump (issue 16): CPU per event of
#: mitmdump's own process under the concurrent scenario, as a fraction of
#: plain's in the same round...
TARGET_ADDED_CPU_RATIO = {"summary": 0.10, "full": 0.25, "repair": 0.25}
#: ... and latency at p50 for one stream, in ms.
TARGET_ADDED_P50_MS = {"repair": 0.1, "repair-worker": 0.1}
#: The configurations, in the order they start each round before rotating.
MODES = ("plain", "summary", "full", "repair", "summary-worker", "full-worker", "repair-worker")
#: The modes that hand inspection to a worker process, and must have one.
WORKER_MODES = ("summary-worker", "full-worker", "repair-worker")
#: The CPU target each mode is judged against: a worker mode against its in-process twin's.
TARGET_OF = {"summary": "summary", "full": "full", "repair": "repair",
             "summary-worker": "summary", "full-worker": "full", "repair-worker": "repair"}

#: Bounds on what the upstream accepts, so a typo cannot hold it for hours.
MAX_EVENTS = 100_000
MAX_INTERVAL_MS = 1000.0
MAX_REQUEST_BODY = 1 << 16
#: How long a proxy or the upstream may take to start listening.
START_TIMEOUT = 30.0
#: Pause around each measured run, so the proxy has finished the previous
#: flows (their response hooks, ssemedic's end-of-stream panel) before and
#: after its CPU time is read.
SETTLE_SECONDS = 0.4
#: The temporary folder for proxy scripts, logs and profiles.
WORKDIR_PREFIX = "ssemedic-bench-"
WARMUP_EVENTS = 25

BASELINE_ADDON = '''\
"""Plain mitmdump streaming, for bench_proxy.py's plain configuration."""


def responseheaders(flow):
    flow.response.stream = True
'''

# -- the upstream -----------------------------------------------------------

#: The answer the upstream streams, cut into tokens (Cyrillic, emoji, symbols).
TEXT = (
    "Привет! 👋 Ответ появляется по частям, потому что сервер отправляет его потоком: "
    "каждое событие несёт маленький кусочек текста 🧩. Клиент склеивает кусочки по мере "
    "прихода, поэтому слова печатаются прямо у вас на глазах ✨. Если поток оборвётся или "
    "прокси начнёт копить данные, ssemedic покажет, где именно 🩺. "
)


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion.chunk",
        "created": 1763700000,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_f9f4fb6dbf",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def event_templates(count: int) -> list[tuple[bytes, bytes]]:
    """(prefix, suffix) of ``count`` events; the send time goes between them.

    The JSON is built by json.dumps once; only the number is put in at send
    time, so that no serialising happens between the stamp and the write.
    """
    words = TEXT.split(" ")
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": "", "refusal": None}]
    deltas += [{"content": " " + words[i % len(words)]} for i in range(max(count - 2, 0))]
    payloads = [_chunk(d) for d in deltas[: count - 1]] + [_chunk({}, "stop")]
    out = []
    for payload in payloads:
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        out.append((b"data: " + text[:-1].encode() + b',"x_sent_ns":', b"}\n\n"))
    return out


def chunk_frame(data: bytes) -> bytes:
    """One HTTP/1.1 chunk: size in hex, CRLF, data, CRLF (data is never empty here)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class UpstreamHandler(BaseHTTPRequestHandler):
    """Streams ``x_events`` events, one every ``x_interval_ms``, as chunk frames."""

    protocol_version = "HTTP/1.1"
    # Small writes must leave at once, not wait for the previous one's ACK.
    disable_nagle_algorithm = True
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 <= length <= MAX_REQUEST_BODY:
                raise ValueError("bad length")
            request = json.loads(self.rfile.read(length))
            count = int(request["x_events"])
            interval_ms = float(request["x_interval_ms"])
            if not (1 <= count <= MAX_EVENTS and 0 <= interval_ms <= MAX_INTERVAL_MS):
                raise ValueError("out of range")
        except (ValueError, KeyError, TypeError):
            self.send_error(400, "expected JSON with x_events and x_interval_ms in range")
            return
        templates = event_templates(count)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        interval_ns = int(interval_ms * 1e6)
        # A fixed schedule from the start, so sleep overshoot does not drift.
        start = time.perf_counter_ns()
        try:
            for k, (prefix, suffix) in enumerate(templates, 1):
                wait = start + k * interval_ns - time.perf_counter_ns()
                if wait > 0:
                    time.sleep(wait / 1e9)
                data = prefix + b"%d" % time.perf_counter_ns() + suffix
                self.wfile.write(chunk_frame(data))
                self.wfile.flush()
            self.wfile.write(chunk_frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client went away


def serve_upstream() -> int:
    """The upstream subprocess: prints its port, serves until stdin closes."""
    ThreadingHTTPServer.request_queue_size = 128  # 50 streams connect at once: no SYN drops
    server = ThreadingHTTPServer((HOST, 0), UpstreamHandler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)

    def watch_parent() -> None:
        sys.stdin.read()  # EOF: the benchmark closed the pipe, or died
        server.shutdown()

    threading.Thread(target=watch_parent, daemon=True).start()
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


# -- processes ----------------------------------------------------------------


class BenchError(Exception):
    """A step of the benchmark failed; the message says which."""


def wait_until_listening(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    try:
        wait_for_port(port, proc, START_TIMEOUT)
    except (RuntimeError, TimeoutError) as exc:
        raise BenchError(f"{what}: {exc}:\n{tail(log)}") from None


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty log)"


def start_upstream(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    log = workdir / "upstream.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-upstream"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
        )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
    line = proc.stdout.readline() if ready else b""
    if not line.strip().isdigit():
        stop(proc)
        raise BenchError(f"the upstream did not report its port:\n{tail(log)}")
    port = int(line)
    wait_until_listening(port, proc, "the upstream", log)
    return proc, port


def cpu_ticks(pid: int) -> int:
    """utime + stime of a whole process (all its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        # The command name may hold spaces; the fields after it do not.
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def cpu_ns(pid: int) -> int:
    """CPU time of a process's live threads in ns, from the scheduler's own
    accounting (/proc/<pid>/task/*/schedstat, first field): utime and stime
    come in clock ticks, 10 ms here, too coarse for one stream of 200 events.
    Without schedstat (a kernel built without it), the ticks."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                continue  # the thread ended between listing and reading
    except FileNotFoundError:
        return cpu_ticks(pid) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    """The pids of a process's children: every thread's /proc/<pid>/task/<tid>/children
    (a child is listed under the thread that forked it), or, on a kernel without
    those files, every process in /proc whose parent is ``pid``. A process that
    has ended lists none."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as f:
                found.extend(int(child) for child in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{task}"):
                continue  # the thread ended between listing and reading
            return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and parent(int(entry)) == pid]
    return found


def _stat_fields(pid: int) -> list[bytes]:
    """/proc/<pid>/stat from field 3 (state) on; [] once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The command name may hold spaces and parentheses; the fields after it do not.
            return f.read().rsplit(b")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return []


def parent(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else 0


#: A process as (pid, start time in clock ticks since boot): a pid the kernel
#: reuses during a run is another process.
ProcessId = tuple[int, int]


def descendants_cpu(pid: int) -> dict[ProcessId, int]:
    """cpu_ns of each live descendant of ``pid`` (children, their children...).

    Zombies count too (their threads' time stays readable until they are
    reaped); a process that has been reaped is gone, with the CPU it used
    since the last reading.
    """
    out: dict[ProcessId, int] = {}
    todo, seen = children(pid), {pid}
    while todo:
        child = todo.pop()
        if child in seen:
            continue
        seen.add(child)
        fields = _stat_fields(child)
        if not fields:
            continue  # it ended after its parent listed it
        try:
            out[(child, int(fields[19]))] = cpu_ns(child)  # field 22 of proc(5): starttime
        except (FileNotFoundError, ProcessLookupError):
            continue
        todo.extend(children(child))
    return out


@dataclass(frozen=True)
class CpuReading:
    """A mitmdump's CPU time at one moment: its own process's and each descendant's."""

    proxy: int
    workers: dict[ProcessId, int]

    @classmethod
    def of(cls, pid: int) -> CpuReading:
        return cls(cpu_ns(pid), descendants_cpu(pid))

    def until(self, end: CpuReading) -> tuple[int, int, int]:
        """(proxy ns, descendants' ns, descendants that ended) from this reading
        to ``end``: a descendant that started in between counts from 0; one that
        ended in between counts for nothing (its last figure is unknown), so the
        count of those says when the worker figure falls short."""
        worker = sum(ns - self.workers.get(key, 0) for key, ns in end.workers.items())
        return end.proxy - self.proxy, worker, len(self.workers.keys() - end.workers.keys())


@dataclass
class Proxy:
    """One mitmdump configuration and, once started, its process."""

    name: str
    args: list[str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    #: Every descendant process seen at a reading, to stop any left behind.
    seen: dict[ProcessId, int] = field(default_factory=dict)

    def command(self, upstream_port: int) -> list[str]:
        return [
            str(MITMDUMP), "--mode", f"reverse:http://{HOST}:{upstream_port}",
            "--listen-host", HOST, "-p", str(self.port), "-q", *self.args,
        ]

    def start(self, upstream_port: int, workdir: Path, wrapper: list[str] | None = None) -> None:
        self.port = free_port()
        self.log = workdir / f"{self.name}.log"
        command = self.command(upstream_port)
        if wrapper is not None:
            command = [*wrapper, *command[1:]]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=ROOT)
        wait_until_listening(self.port, self.proc, f"mitmdump ({self.name})", self.log)

    def measure(self, streams: int, args: argparse.Namespace, events: int | None = None) -> list[int]:
        """Run one measurement through this proxy; a proxy that died says why."""
        try:
            return measure(self.port, streams, events or args.events, args.interval_ms, args.burst)
        except BenchError as exc:
            assert self.proc is not None and self.log is not None
            if self.proc.poll() is None:
                raise
            raise BenchError(f"mitmdump ({self.name}) exited with status {self.proc.returncode}: "
                             f"{exc}\n{tail(self.log)}") from None


# -- the client -------------------------------------------------------------


def request_body(events: int, interval_ms: float) -> bytes:
    return json.dumps({
        "model": "gpt-4o", "stream": True,
        "messages": [{"role": "user", "content": "Почему ответ появляется по частям?"}],
        "x_events": events, "x_interval_ms": interval_ms,
    }, ensure_ascii=False).encode()


async def read_stream(port: int, body: bytes) -> list[tuple[int, bytes]]:
    """POST through the proxy; return (arrival ns, raw event block) for every event.

    h11 on an asyncio stream, rather than httpx: it is the same parser
    without httpx's async layers, which cost about a third more client CPU
    per event here, and on two cores the client's CPU is taken from the proxy.
    """
    conn = h11.Connection(h11.CLIENT)
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        headers = [("Host", f"{HOST}:{port}"), ("Content-Type", "application/json"),
                   ("Content-Length", str(len(body)))]
        writer.write(conn.send(h11.Request(method="POST", target=PATH, headers=headers)) or b"")
        writer.write(conn.send(h11.Data(data=body)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        arrived: list[tuple[int, bytes]] = []
        status, buf, now = 0, b"", 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                now = time.perf_counter_ns()
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                buf += event.data
                if status == 200 and b"\n\n" in buf:
                    *blocks, buf = buf.split(b"\n\n")
                    arrived.extend((now, block) for block in blocks)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # ConnectionClosed or PAUSED: the body ended early
                raise BenchError(f"port {port}: the response ended early ({type(event).__name__})")
        if status != 200:
            raise BenchError(f"port {port}: HTTP {status}: {buf[:300].decode('utf-8', 'replace')}")
        return arrived
    except h11.ProtocolError as exc:
        raise BenchError(f"port {port}: bad HTTP from the proxy: {exc}") from None
    finally:
        writer.close()


async def one_stream(port: int, events: int, interval_ms: float, delay: float) -> list[int]:
    """Latencies in ns of one stream's events, in order."""
    await asyncio.sleep(delay)
    arrived = await read_stream(port, request_body(events, interval_ms))
    if events > 2 and len({now for now, _ in arrived}) == 1:
        raise BenchError(f"port {port}: the whole stream arrived in one read, so the proxy buffered it "
                         "(did its addon load?)")
    # Decoding waits until the stream is over, to keep the client cheap while it times.
    latencies = []
    for now, block in arrived:
        if block == b"data: [DONE]":
            continue
        try:
            sent = json.loads(block.removeprefix(b"data: "))["x_sent_ns"]
        except (ValueError, KeyError) as exc:
            raise BenchError(f"port {port}: an event arrived mangled ({exc}): {block[:120]!r}") from None
        latencies.append(now - sent)
    if len(latencies) != events:
        raise BenchError(f"port {port}: {len(latencies)} of {events} events arrived")
    return latencies


async def run_streams(port: int, streams: int, events: int, interval_ms: float, burst: bool) -> list[int]:
    """Run ``streams`` concurrent streams; return every event's latency in ns."""
    stagger = 0.0 if burst else interval_ms / 1000 / streams
    tasks = [one_stream(port, events, interval_ms, i * stagger) for i in range(streams)]
    bound = (events + 1) * interval_ms / 1000 + 60
    try:
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=bound)
    except TimeoutError:
        raise BenchError(f"port {port}: {streams} streams did not finish within {bound:.0f} s") from None
    except OSError as exc:
        raise BenchError(f"port {port}: {exc}") from None
    return [latency for result in results for latency in result]


def measure(port: int, streams: int, events: int, interval_ms: float, burst: bool) -> list[int]:
    # The collector stays off while timing: its pauses would land in the stamps.
    gc.collect()
    gc.disable()
    try:
        return asyncio.run(run_streams(port, streams, events, interval_ms, burst))
    finally:
        gc.enable()


# -- statistics -------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, -(-round(q * 1000) * len(sorted_values) // 1000))  # ceil(q * n) without float error
    return sorted_values[rank - 1]


def latency_stats(latencies_ns: list[int]) -> dict[str, float]:
    ms = sorted(v / 1e6 for v in latencies_ns)
    return {"p50_ms": percentile(ms, 0.50), "p99_ms": percentile(ms, 0.99), "max_ms": ms[-1], "events": len(ms)}


@dataclass
class Cell:
    """Everything measured for one proxy in one scenario."""

    samples: list[int] = field(default_factory=list)
    rounds: list[dict[str, float]] = field(default_factory=list)
    client_seconds: float = 0.0
    upstream_ticks: int = 0

    def add(self, latencies: list[int], cpu: tuple[int, int, int], client_seconds: float,
            upstream_ticks: int) -> None:
        """One run: its latencies, CpuReading.until's (proxy ns, worker ns, workers ended), the rest."""
        proxy_ns, worker_ns, ended = cpu
        self.samples.extend(latencies)
        self.rounds.append({**latency_stats(latencies), "proxy_cpu_ns": proxy_ns, "worker_cpu_ns": worker_ns,
                            "workers_ended": ended, "events": len(latencies)})
        self.client_seconds += client_seconds
        self.upstream_ticks += upstream_ticks

    def cpu_per_round(self) -> dict[str, list[float]]:
        """µs per event of each round: the proxy process, its descendants, both."""
        proxy = [r["proxy_cpu_ns"] / r["events"] / 1e3 for r in self.rounds]
        worker = [r["worker_cpu_ns"] / r["events"] / 1e3 for r in self.rounds]
        return {"proxy": proxy, "worker": worker, "total": [a + b for a, b in zip(proxy, worker)]}

    def summary(self, clk_tck: int) -> dict[str, Any]:
        events = len(self.samples)
        per_round = self.cpu_per_round()
        return {
            **latency_stats(self.samples),
            # Each the median of its own rounds: the total's median need not be the sum of the other two.
            "cpu_us_per_event": {part: statistics.median(values) for part, values in per_round.items()},
            "cpu_us_per_event_per_round": per_round,
            "workers_ended_during_runs": sum(int(r["workers_ended"]) for r in self.rounds),
            # The rest of the machine's work per event, to tell when it, not the proxy, is the limit.
            "client_cpu_us_per_event": self.client_seconds / events * 1e6,
            "upstream_cpu_us_per_event": self.upstream_ticks / clk_tck / events * 1e6,
            "rounds": self.rounds,
        }


# -- the benchmark ------------------------------------------------------------


def configurations(args: argparse.Namespace, workdir: Path) -> list[Proxy]:
    plain_addon = workdir / "plain_stream.py"
    plain_addon.write_text(BASELINE_ADDON)
    # One --set per option: mitmproxy silently skips a script whose own option
    # is given twice (the OptionsError is raised where no one logs it).
    options = dict(value.partition("=")[::2] for value in args.ssemedic_set)

    def sets(**override: str) -> list[str]:
        return [arg for key, value in {**options, **override}.items() for arg in ("--set", f"{key}={value}")]

    every = {
        "plain": ["-s", str(plain_addon)],
        "summary": ["-s", str(MEDIC), *sets(ssemedic_log="summary")],
        "full": ["-s", str(MEDIC), *sets()],
        "repair": ["-s", str(MEDIC), *sets(ssemedic_repair="true")],
        "summary-worker": ["-s", str(MEDIC), *sets(ssemedic_log="summary", ssemedic_worker="true")],
        "full-worker": ["-s", str(MEDIC), *sets(ssemedic_worker="true")],
        "repair-worker": ["-s", str(MEDIC), *sets(ssemedic_repair="true", ssemedic_worker="true")],
    }
    return [Proxy(name, every[name]) for name in args.modes]


def stop_leftovers(proxies: list[Proxy], grace: float = 5.0) -> list[str]:
    """Terminate the descendants seen during the runs that outlive their stopped
    mitmdump (a worker should end with it); return what was left, as "name's pid N"."""
    left = {key: proxy.name for proxy in proxies for key in proxy.seen}
    deadline = time.monotonic() + grace
    while left and time.monotonic() < deadline:
        left = {key: name for key, name in left.items() if _alive(key)}
        if left:
            time.sleep(0.1)
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return [f"{name}'s pid {pid}" for (pid, _), name in left.items()]


def _alive(key: ProcessId) -> bool:
    """Whether the process is still running (not a zombie), and is the same one, not a reused pid."""
    fields = _stat_fields(key[0])
    return bool(fields) and fields[0] != b"Z" and int(fields[19]) == key[1]


def check_log(proxy: Proxy) -> dict[str, int]:
    """Fail on an ssemedic internal error; count the live log's lines."""
    assert proxy.log is not None
    text = proxy.log.read_text("utf-8", "replace")
    if "internal error" in text or "Traceback" in text:
        raise BenchError(f"mitmdump ({proxy.name}) logged an error, so its numbers are void:\n{tail(proxy.log, 30)}")
    lines = text.splitlines()
    return {"log_lines": len(lines), "event_lines": sum(1 for line in lines if re.match(r"\[\w+\] #\d+", line))}


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    clk_tck = os.sysconf("SC_CLK_TCK")
    load_start = os.getloadavg()[0]
    scenarios = {"1 stream": 1, f"{args.concurrency} streams": args.concurrency}
    proxies = configurations(args, workdir)
    upstream: subprocess.Popen[bytes] | None = None
    try:
        upstream, upstream_port = start_upstream(workdir)
        for proxy in proxies:
            proxy.start(upstream_port, workdir)
        for proxy in proxies:  # imports, provider detection, first connections; a worker mode's worker
            proxy.measure(1, args, events=min(args.events, WARMUP_EVENTS))
            assert proxy.proc is not None
            proxy.seen.update(descendants_cpu(proxy.proc.pid))
            if proxy.name in WORKER_MODES and not proxy.seen:
                # mitmproxy defers an option no addon declares, silently: without this check
                # an ssemedic without the option would be measured as its in-process twin.
                raise BenchError(f"mitmdump ({proxy.name}) runs no worker process after its first stream: "
                                 f"this ssemedic has no ssemedic_worker option, or its worker did not start")
        cells = {s: {p.name: Cell() for p in proxies} for s in scenarios}
        for r in range(args.rounds):
            for scenario, streams in scenarios.items():
                for proxy in proxies[r % len(proxies):] + proxies[: r % len(proxies)]:
                    assert proxy.proc is not None
                    time.sleep(SETTLE_SECONDS)
                    before, upstream_cpu = CpuReading.of(proxy.proc.pid), cpu_ticks(upstream.pid)
                    client_cpu = time.process_time()
                    latencies = proxy.measure(streams, args)
                    client_cpu = time.process_time() - client_cpu
                    time.sleep(SETTLE_SECONDS)
                    after = CpuReading.of(proxy.proc.pid)
                    upstream_cpu = cpu_ticks(upstream.pid) - upstream_cpu
                    proxy.seen.update(after.workers)
                    cells[scenario][proxy.name].add(latencies, before.until(after), client_cpu, upstream_cpu)
        logs = {p.name: {**check_log(p), "worker_processes": len(p.seen)} for p in proxies}
    finally:
        for proxy in proxies:
            stop(proxy.proc)
        left = stop_leftovers(proxies)
        if upstream is not None:
            if upstream.stdin is not None:
                upstream.stdin.close()
            stop(upstream)
        if left:
            print(f"warning: still running after mitmdump stopped, so killed: {', '.join(left)}", file=sys.stderr)

    results: dict[str, Any] = {}
    for scenario, by_proxy in cells.items():
        summaries = {name: cell.summary(clk_tck) for name, cell in by_proxy.items()}
        base = summaries["plain"]
        added = {}
        for name, s in summaries.items():
            if name == "plain":
                continue
            # Against plain's own process in both cases (plain has no worker; if it had, its total).
            ratios = {part: [(a - b) / b for a, b in zip(s["cpu_us_per_event_per_round"][part],
                                                          base["cpu_us_per_event_per_round"][part]) if b > 0]
                      for part in ("proxy", "total")}
            added[name] = {
                "p50_ms": s["p50_ms"] - base["p50_ms"],
                "p99_ms": s["p99_ms"] - base["p99_ms"],
                "cpu_us_per_event": {part: s["cpu_us_per_event"][part] - base["cpu_us_per_event"][part]
                                     for part in ("proxy", "worker", "total")},
                "cpu_ratio": {part: statistics.median(r) if r else float("nan") for part, r in ratios.items()},
                "cpu_ratio_per_round": ratios,
                "has_worker": any(s["cpu_us_per_event_per_round"]["worker"]),
                "per_round_p50_ms": [a["p50_ms"] - b["p50_ms"] for a, b in zip(s["rounds"], base["rounds"])],
                "per_round_p99_ms": [a["p99_ms"] - b["p99_ms"] for a, b in zip(s["rounds"], base["rounds"])],
            }
        results[scenario] = {"streams": scenarios[scenario], "proxies": summaries, "added": added}

    targets = []
    concurrent, single = results[f"{args.concurrency} streams"], results["1 stream"]
    for name, added in concurrent["added"].items():
        limit = TARGET_ADDED_CPU_RATIO[TARGET_OF[name]]
        ratio = added["cpu_ratio"]
        text = (f"{name} added CPU per event ({args.concurrency} streams), "
                f"proxy process {ratio['proxy']:+.1%} of plain's")
        targets.append({"text": f"{text} <= {limit:.0%}{_with_worker(added)}", "met": ratio["proxy"] <= limit,
                        "mode": name, "target_of": TARGET_OF[name], "limit": limit, "cpu_ratio": ratio})
    for name, limit_ms in TARGET_ADDED_P50_MS.items():
        if name in single["added"]:
            ms = single["added"][name]["p50_ms"]
            targets.append({"text": f"{name} added p50 (1 stream) {ms:+.3f} ms <= {limit_ms:g} ms",
                            "met": ms <= limit_ms})
    return {
        "python": sys.version.split()[0],
        "versions": {name: package_version(name) for name in ("mitmproxy", "ssemedic", "h11")},
        "revision": source_revision(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "clock_ticks_per_s": clk_tck,
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "events_per_stream": args.events,
        "interval_ms": args.interval_ms,
        "event_bytes": event_bytes(),
        "rounds": args.rounds,
        "stagger": not args.burst,
        "aggregation": "pooled samples of all rounds, nearest-rank percentiles",
        "proxies": {p.name: p.args for p in proxies},
        "logs": logs,
        "results": results,
        "targets": targets,
    }


def event_bytes() -> int:
    prefix, suffix = event_templates(3)[1]
    return len(prefix) + len(b"%d" % time.perf_counter_ns()) + len(suffix)


def source_revision() -> str:
    """The checkout's commit, marked when files differ: ssemedic changes fast."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "addons"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" (addons/ modified)" if dirty else "")


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _shown(arg: str) -> str:
    """A command-line argument as printed: paths relative to the checkout, the
    temporary folder as <workdir>, so that no machine's paths are shown."""
    path = Path(arg)
    if not path.is_absolute():
        return arg
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    if path.parent.name.startswith(WORKDIR_PREFIX):
        return f"<workdir>/{path.name}"
    return arg


def print_report(s: dict[str, Any], out: IO[str]) -> None:
    v = s["versions"]
    load = s["load_average"]
    print(f"Python {s['python']}, mitmproxy {v['mitmproxy']}, ssemedic {v['ssemedic']} at {s['revision']}, "
          f"h11 {v['h11']}", file=out)
    print(f"{s['platform']}, {s['cpus']} CPUs, load average {load['start']:.2f} at start, {load['end']:.2f} at end",
          file=out)
    print(f"upstream: {s['events_per_stream']} events per stream, one every {s['interval_ms']:g} ms, "
          f"{s['event_bytes']} bytes each, one HTTP/1.1 chunk per event", file=out)
    print(f"{s['rounds']} interleaved rounds; percentiles pool all samples (nearest rank); concurrent streams "
          f"{'staggered over one interval' if s['stagger'] else 'started together (--burst)'}", file=out)
    print("latency = client read stamp - upstream send stamp (perf_counter_ns); cpu = CPU time / events, "
          "median of rounds, of mitmdump's own process (proxy: its event loop, what the targets are about), "
          "of its descendant processes (worker) and of both (total)", file=out)
    for name, proxy_args in s["proxies"].items():
        print(f"  {name:<14} mitmdump ... {' '.join(map(_shown, proxy_args))}", file=out)
    for scenario, result in s["results"].items():
        print(f"\n== {scenario} ==", file=out)
        print(f"{'mode':<15}{'events':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  cpu µs/ev:{'proxy':>7}{'worker':>8}"
              f"{'total':>8}   per round proxy[+worker] µs/ev", file=out)
        for name, p in result["proxies"].items():
            cpu, rounds = p["cpu_us_per_event"], p["cpu_us_per_event_per_round"]
            per_round = " ".join(f"{a:.1f}+{b:.1f}" if b else f"{a:.1f}"
                                 for a, b in zip(rounds["proxy"], rounds["worker"]))
            ended = p["workers_ended_during_runs"]
            note = f"  ({ended} worker process(es) ended during runs: their last CPU is missing)" if ended else ""
            print(f"{name:<15}{p['events']:>7}{p['p50_ms']:>9.3f}{p['p99_ms']:>9.3f}{p['max_ms']:>9.2f}"
                  f"{'':>12}{cpu['proxy']:>7.1f}{cpu['worker']:>8.1f}{cpu['total']:>8.1f}   {per_round}{note}",
                  file=out)
        others = list(result["proxies"].values())
        client = sum(p["client_cpu_us_per_event"] for p in others) / len(others)
        upstream = sum(p["upstream_cpu_us_per_event"] for p in others) / len(others)
        print(f"(outside the proxy, per event: client {client:.0f} µs, upstream {upstream:.0f} µs of CPU)", file=out)
        for name, a in result["added"].items():
            rounds = "  ".join(f"{x:+.3f}/{y:+.3f}" for x, y in zip(a["per_round_p50_ms"], a["per_round_p99_ms"]))
            ratios = " ".join(f"{r:+.0%}" for r in a["cpu_ratio_per_round"]["proxy"])
            print(f"added by {name}: proxy process cpu {a['cpu_us_per_event']['proxy']:+.1f} µs/event, "
                  f"{a['cpu_ratio']['proxy']:+.1%} of plain's (per round {ratios}){_with_worker(a, True)}; "
                  f"p50 {a['p50_ms']:+.3f} ms, p99 {a['p99_ms']:+.3f} ms;  per round p50/p99 {rounds}", file=out)
    print(file=out)
    for name, log in s["logs"].items():
        workers = f", {log['worker_processes']} worker process(es)" if log["worker_processes"] else ""
        print(f"{name} log: {log['log_lines']} lines, {log['event_lines']} per-event lines{workers}", file=out)
    for t in s["targets"]:
        print(f"target met: {t['text']}" if t["met"] else f"TARGET MISSED: {t['text']}", file=out)


def _with_worker(added: dict[str, Any], detail: bool = False) -> str:
    """The added CPU with the worker process's, beside the proxy process's
    figure, for a mode that has a worker; nothing for one that has none."""
    if not added["has_worker"]:
        return ""
    total = added["cpu_ratio"]["total"]
    if not detail:
        return f"; with the worker process {total:+.1%}"
    ratios = " ".join(f"{r:+.0%}" for r in added["cpu_ratio_per_round"]["total"])
    return (f"; with the worker process {added['cpu_us_per_event']['total']:+.1f} µs/event, {total:+.1%} "
            f"(per round {ratios})")


def _modes(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown mode {unknown[0]!r}: the modes are {', '.join(MODES)}")
    return [name for name in MODES if name in {"plain", *names}]


def _set_value(text: str) -> str:
    if not re.fullmatch(r"\w+=.*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=200, help="events per stream (default 200)")
    ap.add_argument("--interval-ms", type=float, default=20.0, help="pause between events, ms (default 20)")
    ap.add_argument("--concurrency", type=int, default=50, help="streams in the concurrent scenario (default 50)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--modes", type=_modes, default=list(MODES),
                    help=f"comma-separated configurations to run, plain always among them (default {','.join(MODES)})")
    ap.add_argument("--burst", action="store_true", help="start concurrent streams together instead of staggered")
    ap.add_argument(
        "--ssemedic-set", action="append", default=[], metavar="KEY=VALUE", type=_set_value,
        help="pass --set KEY=VALUE to every ssemedic mitmdump (repeatable), e.g. ssemedic_max_text=0",
    )
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder with the proxies' logs")
    ap.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_upstream:
        return serve_upstream()
    if not 1 <= args.events <= MAX_EVENTS or not 0 <= args.interval_ms <= MAX_INTERVAL_MS:
        ap.error(f"--events must be 1..{MAX_EVENTS} and --interval-ms 0..{MAX_INTERVAL_MS:g}")
    if args.concurrency < 1 or args.rounds < 1:
        ap.error("--concurrency and --rounds must be at least 1")
    if not sys.platform.startswith("linux"):
        ap.error("this benchmark reads /proc and needs Linux")
    if not MITMDUMP.exists():
        print(f"error: no mitmdump next to {sys.executable}; run it with the venv's python", file=sys.stderr)
        return 1

    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    try:
        summary = run_benchmark(args, workdir)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print_report(summary, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
