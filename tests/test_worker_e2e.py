"""``ssemedic_worker`` through a live mitmdump: the same bytes reach the
client, the same log, JSONL and saved flows come out as with inspection in
the proxy, and a worker that dies costs no byte (mitm/offload.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import mitmdump, run_mitmdump
from mitmproxy import io

from ssemedic.core.recording import METADATA_KEY

ROUTES = ("healthy", "truncated", "error-then-done", "letta-send-message", "ollama", "anthropic", "gemini")
PATHS = {
    "letta-send-message": "/v1/agents/agent-1/messages/stream",
    "ollama": "/api/chat",
    "anthropic": "/v1/messages",
    "gemini": "/v1beta/models/gemini:streamGenerateContent?alt=sse",
}
WORKER = ("--set", "ssemedic_worker=true")


def _url(base: str, route: str, delay: float = 0.001) -> str:
    path = PATHS.get(route, "/v1/chat/completions")
    return f"{base}/s/{route}{path}{'&' if '?' in path else '?'}delay={delay}"


def _fetch(client: httpx.Client, url: str) -> bytes:
    body = bytearray()
    try:
        with client.stream("POST", url, json={"model": "m", "stream": True, "messages": []}) as response:
            for piece in response.iter_raw():
                body += piece
    except httpx.HTTPError:
        pass  # a body the upstream cuts ends the read with an error: what came is compared
    return bytes(body)


def _run(upstream: int, tmp_path: Path, name: str, *extra: str) -> tuple[dict[str, bytes], str, Path, Path]:
    flows, jsonl = tmp_path / f"{name}.flows", tmp_path / f"{name}.jsonl"
    with mitmdump(upstream, tmp_path, "--set", f"ssemedic_jsonl={jsonl}", "-w", str(flows), *extra,
                  name=name) as proxy, httpx.Client(trust_env=False, timeout=20) as client:
        bodies = {route: _fetch(client, _url(proxy.base, route)) for route in ROUTES}
        time.sleep(0.3)  # the last summary
    return bodies, proxy.output(), flows, jsonl


def _saved(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        found = {}
        for flow in io.FlowReader(f).stream():
            meta = {k: v for k, v in flow.metadata[METADATA_KEY].items() if k not in ("timeline", "ended_at")}
            found[flow.request.path.split("/")[2]] = (flow.marked, flow.comment, meta)
        return found


def _records(path: Path) -> list[dict[str, Any]]:
    """The JSONL records without what differs from run to run (flow ids, times, durations)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        for key in ("flow", "t", "timing", "source"):
            record.pop(key, None)
        out.append(record)
    return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))


def _lines(log: str) -> list[str]:
    """ssemedic's log lines with flow ids and times taken out, in order per flow."""
    by_flow: dict[str, list[str]] = {}
    for line in log.splitlines():
        m = re.match(r"\[([0-9a-f]{6})\] (.*)", line)
        if m:
            text = re.sub(r" \+\d+\.\d{3}s", "", m.group(2))
            by_flow.setdefault(m.group(1), []).append(text)
    return sorted("\n".join(lines) for lines in by_flow.values())


@pytest.mark.parametrize("mode", [(), ("--set", "ssemedic_repair=true")], ids=["inspect", "repair"])
def test_the_worker_says_what_the_proxy_says(upstream: int, tmp_path: Path, mode: tuple[str, ...]) -> None:
    """Inspect-only streams are inspected in the worker alone; repaired ones
    are repaired in the proxy and reported by the worker (Tee)."""
    here, here_log, here_flows, here_jsonl = _run(upstream, tmp_path, "proxy", *mode)
    there, there_log, there_flows, there_jsonl = _run(upstream, tmp_path, "worker", *WORKER, *mode)
    assert there == here and all(here.values())
    assert "Traceback" not in there_log and "internal error" not in there_log, there_log
    assert _lines(there_log) == _lines(here_log)
    assert there_log.count("╭─") == here_log.count("╭─") == len(ROUTES)  # every summary panel
    assert _records(there_jsonl) == _records(here_jsonl)
    saved = _saved(there_flows)
    assert saved == _saved(here_flows)
    assert saved["truncated"][:2] == (":warning:", "ssemedic: truncated")
    assert saved["letta-send-message"][2]["provider"] == "letta"
    if mode:
        assert "repaired: " in there_log and saved["error-then-done"][2].get("repairs"), there_log


def _worker_pid(proxy_pid: int) -> int:
    for task in os.listdir(f"/proc/{proxy_pid}/task"):
        children = Path(f"/proc/{proxy_pid}/task/{task}/children").read_text().split()
        if children:
            return int(children[0])
    raise AssertionError("mitmdump has no worker process")


def test_a_worker_that_dies_costs_no_byte_and_the_next_stream_gets_a_new_one(upstream: int, tmp_path: Path) -> None:
    with mitmdump(upstream, tmp_path, "--set", "ssemedic_log=summary", *WORKER) as proxy, \
            httpx.Client(trust_env=False, timeout=30) as client:
        direct = _fetch(client, _url(f"http://127.0.0.1:{upstream}", "healthy", delay=0.02))
        first = _worker_pid(proxy.proc.pid)
        body = bytearray()
        with client.stream("POST", _url(proxy.base, "healthy", delay=0.02),
                           json={"model": "m", "stream": True, "messages": []}) as response:
            for i, piece in enumerate(response.iter_raw()):
                body += piece
                if i == 10:
                    os.kill(first, signal.SIGKILL)
        after = _fetch(client, _url(proxy.base, "truncated"))
        second = _worker_pid(proxy.proc.pid)
        log = _wait_for(proxy, "FAULT truncated")  # inspected by the new worker
    assert bytes(body) == direct
    assert log.count("inspection worker stopped") == 1, log
    assert "1 streams in flight pass through uninspected" in log, log
    assert second != first
    assert after and "FAULT truncated" in log, log


def _wait_for(proxy: Any, text: str, seconds: float = 15.0) -> str:
    deadline = time.monotonic() + seconds
    while text not in (log := proxy.output()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return log


def test_a_bad_value_is_refused_in_one_line(tmp_path: Path) -> None:
    result = run_mitmdump(["-n", "-s", str(Path(__file__).parents[1] / "addons" / "medic.py"),
                           "--set", "ssemedic_worker=maybe"], timeout=30)
    assert result.returncode == 1
    errors = [line.split("] ", 1)[-1] for line in (result.stdout + result.stderr).splitlines()
              if "ssemedic_worker" in line]
    assert errors == ["ssemedic_worker: 'maybe' is not true or false (yes/no, on/off, 1/0)"], result.stderr
