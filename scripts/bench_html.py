"""How long ``ssemedic report --html`` takes on a 100,000-event stream.

Usage: .venv/bin/python scripts/bench_html.py [--events 100000] [--limit 5] [--keep DIR]

It writes one mitmproxy flow file holding a recorded OpenAI chat stream of
``--events`` events (one to three per chunk, a 12 s stall, a burst of 40
events in one chunk, then ``[DONE]``), with ssemedic's chunk timeline, then
runs ``python -m ssemedic report --html`` on it as a user would (a fresh
process: start-up and imports count) and prints the seconds and the page's
size. Exits 1 when it took longer than ``--limit`` seconds (of CPU time, or
of wall-clock time when that is less: on a busy machine the wall clock
counts other processes' turns), or failed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def event(n: int) -> bytes:
    payload = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "gpt-4o",
               "choices": [{"index": 0, "delta": {"content": f" word{n}"}}]}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def make_flows(path: Path, events: int, *, seed: int = 14) -> None:
    """Write a flow file with one recorded stream of ``events`` events."""
    sys.path.insert(0, str(ROOT / "addons"))
    from mitmproxy import http
    from mitmproxy.io import FlowWriter
    from mitmproxy.test import tflow

    from ssemedic.core import recording

    rng = random.Random(seed)
    recorder = recording.Recorder()
    start = 1_700_000_000.0
    at = start + 0.3
    n = 0
    burst = stall = False
    while n < events:
        take = rng.randint(1, 3)
        if not burst and n >= events // 3:
            burst, take = True, 40
        block = b"".join(event(i) for i in range(n, min(n + take, events)))
        n += take
        if not stall and n >= events // 2:
            stall = True
            at += 12.0
        at += rng.uniform(0.0005, 0.004)
        recorder.add(block, at)
    for tail in (b'data: {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "gpt-4o", '
                 b'"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n', b"data: [DONE]\n\n"):
        at += 0.001
        recorder.add(tail, at)
    flow = tflow.tflow(req=http.Request.make("POST", "http://127.0.0.1/v1/chat/completions",
                                             json.dumps({"model": "gpt-4o", "stream": True}).encode(),
                                             {"content-type": "application/json"}))
    flow.request.timestamp_start = start
    flow.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    flow.response.raw_content = recorder.raw
    recording.store(flow, recorder.metadata(provider="openai-chat", ended_at=at + 0.001, notes=[]))
    with path.open("wb") as f:
        FlowWriter(f).add(flow)


def measure(flows: Path, out: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds ``ssemedic report --html`` takes on
    ``flows`` (a fresh process). On a shared machine the wall clock counts
    the other processes' turns too; the CPU time is what it costs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ssemedic", "report", "--html", str(out), str(flows)],
                          cwd=ROOT / "addons", capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"report --html failed ({done.returncode}): {done.stderr.strip()}")
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--limit", type=float, default=5.0, help="seconds allowed (default 5)")
    parser.add_argument("--keep", type=Path, help="write the flow file and the page here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        flows, page = where / "big.flows", where / "big.html"
        make_flows(flows, args.events)
        try:
            took, cpu = measure(flows, page)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"bench_html: {exc}", file=sys.stderr)
            return 1
        size = page.stat().st_size
    met = min(took, cpu) <= args.limit
    print(f"report --html on {args.events:,} events: {took:.2f} s wall clock, {cpu:.2f} s CPU "
          f"(limit {args.limit:g} s), page {size / 1e6:.2f} MB: {'ok' if met else 'TARGET MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
