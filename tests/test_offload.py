"""The proxy's side of the inspection worker (mitm/offload.py), with a real
worker process: what it finds in every recording is what the proxy finds
inline; a full backlog makes a stream fall behind, not the proxy; a dead
worker costs no byte, is logged once and replaced; one that keeps dying is
given up; one that cannot start says why in one line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from ssemedic.core.pipeline import Pipeline, Quiet, Tee
from ssemedic.core.repair import ALL_REPAIRS
from ssemedic.files import sources
from ssemedic.mitm import offload as offload_module
from ssemedic.mitm.marking import comment_line
from ssemedic.mitm.offload import Offload, WorkerError

RECORDINGS = sorted((Path(__file__).resolve().parent.parent / "recordings").glob("*.flows"))
BODY = (b'data: {"id":"1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
        b'"delta":{"content":"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"},"finish_reason":null}]}\n\n')
CUT = BODY  # no finish_reason, no [DONE]: a truncated stream
SETTINGS = {"level": "summary", "max_text": 200, "console": False, "jsonl": None, "redact": True, "otlp": None}


def _spec(capture: sources.Capture | None = None) -> dict[str, Any]:
    return dict(
        flow_id="f",
        label=capture.label if capture else "POST http://up/v1/chat/completions",
        method=capture.method if capture else "POST",
        path=capture.path if capture else "/v1/chat/completions",
        request_headers=capture.request_headers if capture else {},
        status=capture.status if capture else 200,
        response_headers=(capture.response_headers if capture else None) or {"content-type": "text/event-stream"},
        started_at=capture.started_at if capture else 0.0,
    )


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _remote(offload: Offload, spec: dict[str, Any], clock: _Clock | None = None
            ) -> tuple[Pipeline, asyncio.Future[dict[str, Any] | None]]:
    stream = Pipeline(**spec, sink=Quiet(), channel=offload, clock=clock or _Clock())
    assert stream.remote
    return stream, offload.open(stream, spec)


@pytest.fixture
def worker() -> Any:
    made: list[Offload] = []

    def make(**kwargs: Any) -> Offload:
        offload = Offload(**kwargs)
        offload.configure(SETTINGS)
        offload.start()
        made.append(offload)
        return offload

    yield make
    for offload in made:
        offload.stop()


def test_the_worker_finds_in_every_recording_what_the_proxy_finds(worker: Any) -> None:
    captures = [c for path in RECORDINGS for c in sources.load(path)
                if c.response_headers is not None and c.undecodable is None]
    assert len(captures) >= 30
    # (spec, chunks, end time, upstream error): every recording, and a stream its client hung up on
    streams = [(_spec(c), c.chunks, c.closed_at, "connection closed" if c.aborted else None) for c in captures]
    streams.append((_spec(), [(CUT[:40], 1.0), (CUT[40:], 1.5)], 4.0, "client disconnected"))

    async def run() -> list[tuple[str | None, str | None]]:
        offload = worker()
        assert offload.ready()
        got = []
        for spec, chunks, closed_at, error in streams:
            clock = _Clock()
            stream, result = _remote(offload, spec, clock)
            for data, at in chunks:
                clock.now = at if at is not None else clock.now
                assert stream(data) == [data]  # forwarded as it came
            clock.now = closed_at or clock.now
            if error is not None:
                stream.end(clock.now, error)
            else:
                assert stream(b"") == []
            answer = await asyncio.wait_for(result, 10)
            assert answer is not None, spec["label"]
            got.append((answer["provider"], answer["comment"]))
        return got

    remote = asyncio.run(run())
    inline = []
    for spec, chunks, closed_at, error in streams:
        stream = Pipeline(**spec, sink=Quiet())
        for data, at in chunks:
            stream.receive(data, at)
        stream.end(closed_at, error)
        inline.append((stream.session.provider, comment_line(stream.session.faults)))
    assert remote == inline
    assert sum(comment is not None for _, comment in inline) >= 10  # faults were found, not only clean streams
    assert inline[-1][1] is not None and "client-timeout" in inline[-1][1], inline[-1]


def test_a_repaired_stream_is_repaired_here_and_reported_by_the_worker(worker: Any) -> None:
    """With every repair on, each recording's client gets the very bytes an
    in-proxy repair gives it, and the worker's copy, repairing the same
    chunks, finds the same provider, verdict and repairs."""
    captures = [c for path in RECORDINGS for c in sources.load(path)
                if c.response_headers is not None and c.undecodable is None]

    def spec(capture: sources.Capture) -> dict[str, Any]:
        return {**_spec(capture), "repairs": ALL_REPAIRS}

    async def run() -> list[tuple[bytes, str | None, str | None, list[str]] | None]:
        offload = worker()
        assert offload.ready()
        got = []
        for capture in captures:
            clock = _Clock()
            stream = Pipeline(**spec(capture), sink=Quiet(), channel=offload, clock=clock)
            result = offload.open(stream, spec(capture)) if stream.remote else None
            client = b""
            for data, at in capture.chunks:
                clock.now = at if at is not None else clock.now
                client += b"".join(stream(data))
            clock.now = capture.closed_at or clock.now
            client += b"".join(stream(b""))
            if not isinstance(stream.forward, Tee):  # one the repairs leave alone (binary, compressed): Remote
                got.append(None)
                continue
            assert result is not None
            answer = await asyncio.wait_for(result, 10)
            assert answer is not None, capture.label
            got.append((client, answer["provider"], answer["comment"],
                        [n for n in answer["notes"] if n.startswith("repaired: ")]))
        return got

    remote = asyncio.run(run())
    assert sum(r is not None for r in remote) >= 30
    assert sum(bool(r[3]) for r in remote if r is not None) >= 10  # streams were changed, not only passed
    for capture, got in zip(captures, remote, strict=True):
        if got is None:
            continue
        client, provider, comment, repaired = got
        stream = Pipeline(**spec(capture), sink=Quiet())
        inline = b""
        for data, at in capture.chunks:
            inline += b"".join(stream.pass_on(data, at))
        stream.end(capture.closed_at)
        inline += b"".join(stream.final())
        assert client == inline, capture.label
        assert (provider, comment) == (stream.session.provider, comment_line(stream.session.faults)), capture.label
        assert repaired == [n for n in stream.notes if n.startswith("repaired: ")], capture.label


def test_a_full_backlog_makes_the_stream_fall_behind(worker: Any) -> None:
    async def run() -> tuple[Pipeline, dict[str, Any] | None]:
        offload = worker(per_flow=len(BODY) + 17)
        assert offload.ready()
        stream, result = _remote(offload, _spec())
        stream(BODY)  # fits
        stream(BODY)  # the same loop turn: nothing written yet, over the flow's budget
        stream(b"")
        return stream, await asyncio.wait_for(result, 10)

    stream, answer = asyncio.run(run())
    assert stream.behind_at == len(BODY) and stream.unparsed == len(BODY)
    assert answer is not None
    assert any("inspection fell behind" in note for note in answer["notes"]), answer["notes"]


def test_a_killed_worker_costs_no_byte_is_logged_once_and_replaced(worker: Any,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> tuple[list[bytes], dict[str, Any] | None, dict[str, Any] | None, Pipeline]:
        offload = worker()
        assert offload.ready()
        first, first_result = _remote(offload, _spec())
        sent = first(BODY)
        await asyncio.sleep(0.05)
        assert offload.process is not None
        pid = offload.process.pid
        os.kill(pid, signal.SIGKILL)
        lost = await asyncio.wait_for(first_result, 10)
        sent += first(BODY) + first(b"")  # still forwarded
        assert offload.ready() and offload.process is not None and offload.process.pid != pid
        second, second_result = _remote(offload, _spec())
        second(CUT)
        second(b"")
        return sent, lost, await asyncio.wait_for(second_result, 10), first

    with caplog.at_level(logging.ERROR, logger="ssemedic"):
        sent, lost, answer, first = asyncio.run(run())
    assert sent == [BODY, BODY]
    assert lost is None
    assert any("passed through uninspected" in note for note in first.notes)
    stopped = [r.getMessage() for r in caplog.records if "inspection worker stopped" in r.getMessage()]
    assert len(stopped) == 1, stopped
    assert "1 streams in flight pass through uninspected, the next ones get a new worker" in stopped[0]
    assert answer is not None and answer["provider"] == "openai-chat"
    assert answer["comment"] is not None and "truncated" in answer["comment"]


def test_a_worker_that_keeps_dying_is_given_up(worker: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> Offload:
        offload = worker()
        for _ in range(offload_module.MAX_RESTARTS):
            assert offload.ready() and offload.process is not None
            killed = offload.process
            killed.kill()
            for _ in range(500):  # until the proxy saw it die (and started the next one)
                await asyncio.sleep(0.01)
                if offload.process is not killed:
                    break
        return offload

    with caplog.at_level(logging.ERROR, logger="ssemedic"):
        offload = asyncio.run(run())
    assert offload.gone is not None
    assert not offload.ready()
    assert "streams are inspected in the proxy from now on" in caplog.records[-1].getMessage()


@pytest.mark.parametrize(("command", "said"), [
    ([sys.executable, "-c", "import sys; sys.exit(3)"], "the inspection worker exited at once (status 3"),
    (["/nonexistent/ssemedic-python"], "cannot start /nonexistent/ssemedic-python: "),
])
def test_a_worker_that_cannot_start_says_why_in_one_line(command: list[str], said: str) -> None:
    offload = Offload(command=command)
    with pytest.raises(WorkerError) as caught:
        offload.start()
    assert str(caught.value).startswith(said) and "\n" not in str(caught.value)
    assert offload.process is None
