"""A collector that is down or never answers costs the streams nothing:
no latency beyond the noise, one log line (and one when export recovers),
and mitmdump still stops within a bounded time."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from e2e import free_port, mitmdump, wait_for_port
from otlp import hanging_collector, receiver, wait_until

from ssemedic.files.otel import SHUTDOWN_SECONDS

pytest.importorskip("opentelemetry.sdk")

HEALTHY = "/s/healthy/v1/chat/completions?delay=0.002"
CHAT = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "Привет!"}]}
ROUNDS = 12
#: What a blocked event loop would cost at the least: one export attempt of a
#: hanging collector lasts the exporter's timeout (OTEL_EXPORTER_OTLP_TIMEOUT).
EXPORT_TIMEOUT = 2
#: How much slower than the plain proxy's a stream's median may be: the
#: noise of this shared machine, far below one export attempt.
NOISE = 0.1


@pytest.fixture
def fast_export(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK exports often and gives up soon, through its standard variables."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "300")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", str(EXPORT_TIMEOUT))
    yield


def stream_seconds(client: httpx.Client, base: str) -> float:
    began = time.monotonic()
    with client.stream("POST", base + HEALTHY, json=CHAT) as response:
        assert response.status_code == 200
        body = b"".join(response.iter_raw())
    assert body.endswith(b"data: [DONE]\n\n")
    return time.monotonic() - began


def stop_seconds(proc: object) -> float:
    import signal
    import subprocess

    assert isinstance(proc, subprocess.Popen)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    return time.monotonic() - began


def test_dead_or_hanging_collector_adds_no_latency_and_mitmdump_stops_promptly(
        upstream: int, tmp_path: Path, fast_export: None) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connections are refused
    with ExitStack() as stack:
        hanging = stack.enter_context(hanging_collector())
        proxies = {
            "plain": stack.enter_context(mitmdump(upstream, tmp_path, "--set", "ssemedic_log=summary", name="plain")),
            "dead": stack.enter_context(mitmdump(upstream, tmp_path, "--set", "ssemedic_log=summary",
                                                 "--set", f"ssemedic_otlp={dead}", name="dead")),
            "hanging": stack.enter_context(mitmdump(upstream, tmp_path, "--set", "ssemedic_log=summary",
                                                    "--set", f"ssemedic_otlp={hanging}", name="hanging")),
        }
        seconds: dict[str, list[float]] = {name: [] for name in proxies}
        with httpx.Client(timeout=30) as client:
            for name, proxy in proxies.items():
                stream_seconds(client, proxy.base)  # warm up each
            for round_ in range(ROUNDS):
                order = list(proxies)[round_ % 3:] + list(proxies)[:round_ % 3]  # rotate, as bench_proxy does
                for name in order:
                    seconds[name].append(stream_seconds(client, proxies[name].base))
        # Exports were tried, and failed, while the streams ran.
        assert wait_until(lambda: "OpenTelemetry export of spans" in proxies["dead"].output(), timeout=10)
        stopped = {name: stop_seconds(proxy.proc) for name, proxy in proxies.items()}
        logs = {name: proxy.output() for name, proxy in proxies.items()}
    plain = statistics.median(seconds["plain"])
    for name in ("dead", "hanging"):
        assert statistics.median(seconds[name]) < plain + NOISE, (name, seconds)
        assert max(seconds[name]) < max(seconds["plain"]) + EXPORT_TIMEOUT, (name, seconds)
        # Stopping flushes for at most SHUTDOWN_SECONDS, then gives up.
        assert stopped[name] < SHUTDOWN_SECONDS + 4, (name, stopped)
        assert "Traceback" not in logs[name], logs[name]
    assert stopped["plain"] < 4
    # One line per signal says export fails, however many batches failed.
    dead_lines = [line for line in logs["dead"].splitlines() if "OpenTelemetry export of" in line]
    assert len([line for line in dead_lines if "of spans" in line and " fails" in line]) == 1, dead_lines
    assert len([line for line in dead_lines if "of metrics" in line and " fails" in line]) == 1, dead_lines
    assert "([Errno 111] Connection refused)" in dead_lines[0]  # the cause, in a few words
    for name in ("dead", "hanging"):  # and not the SDK's own line per failed batch
        assert not any(word in logs[name] for word in ("Transient error", "Failed to export")), logs[name]


def test_export_failure_is_logged_once_and_the_recovery_once(upstream: int, tmp_path: Path,
                                                             fast_export: None) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with mitmdump(upstream, tmp_path, "--set", "ssemedic_log=summary", "--set", f"ssemedic_otlp={url}") as mitm:
        with httpx.Client(timeout=30) as client:
            for _ in range(3):
                stream_seconds(client, mitm.base)
            assert wait_until(lambda: "OpenTelemetry export of spans" in mitm.output(), timeout=15), mitm.output()
            with receiver(port) as (_, received):
                wait_for_port(port)
                stream_seconds(client, mitm.base)
                assert wait_until(lambda: "spans to" in mitm.output() and "works again" in mitm.output(),
                                  timeout=15), mitm.output()
                assert wait_until(lambda: len(received.spans()) >= 1, timeout=10)
                assert wait_until(lambda: received.metric("gen_ai.client.operation.duration") is not None,
                                  timeout=10)
                log = mitm.output()
    lines = [line for line in log.splitlines() if "OpenTelemetry export of spans" in line]
    assert [(" fails" in line, "works again" in line) for line in lines] == [(True, False), (False, True)], lines
    assert f"to {url} fails" in lines[0] and "traffic is not affected" in lines[0]
