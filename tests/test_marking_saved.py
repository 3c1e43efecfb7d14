"""Live capture with ``-w`` saves broken streams marked (mitm/addon.py,
Pipeline.finish_now): mitmproxy's save addon writes a flow in its response
(or error) hook, after ssemedic's, while a live stream's end is diagnosed a
turn later; with save_stream_file set, the end is diagnosed in the hook."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import ROOT, mitmdump, run_mitmdump
from mitmproxy import flowfilter, io

from ssemedic.core.pipeline import Pipeline
from ssemedic.core.recording import METADATA_KEY
from ssemedic.mitm.marking import MARKER

MEDIC = str(ROOT / "addons" / "medic.py")
CHAT = "/v1/chat/completions?delay=0.001"


def _read(path: Path) -> list[Any]:
    with path.open("rb") as f:
        return list(io.FlowReader(f).stream())


def _chat(base: str, paths: list[str]) -> None:
    with httpx.Client(trust_env=False, timeout=20) as client:
        for path in paths:
            try:
                client.post(base + path, json={"model": "m", "stream": True, "messages": []}).read()
            except httpx.HTTPError:
                pass  # a body cut by the upstream ends the read with an error: the proxy saw it all


def test_live_w_saves_broken_streams_marked_and_healthy_ones_not(upstream: int, tmp_path: Path) -> None:
    out = tmp_path / "live.flows"
    with mitmdump(upstream, tmp_path, "--set", "ssemedic_log=off", "-w", str(out)) as proxy:
        _chat(proxy.base, [f"/s/{name}{CHAT}" for name in ("truncated", "healthy", "error-then-done")])
    flows = {f.request.path.split("/")[2]: f for f in _read(out)}
    assert sorted(flows) == ["error-then-done", "healthy", "truncated"], proxy.output()
    got = {name: (f.marked, f.comment) for name, f in flows.items()}
    assert got == {
        "truncated": (MARKER, "ssemedic: truncated"),
        "healthy": ("", ""),
        "error-then-done": (MARKER, "ssemedic: error-in-stream, done-after-error"),
    }, proxy.output()
    # ssemedic's metadata (the timeline of what arrived) is saved with the mark.
    assert all(METADATA_KEY in f.metadata and f.metadata[METADATA_KEY]["timeline"] for f in flows.values())
    found = [name for name, f in flows.items() if flowfilter.parse("~comment truncated")(f)]
    assert found == ["truncated"]
    # mitmdump's own filter finds it in the saved file, without ssemedic.
    shown = run_mitmdump(["-nr", str(out), "~marked"])
    assert shown.returncode == 0, shown.stderr
    assert "/s/truncated/" in shown.stdout and "/s/error-then-done/" in shown.stdout
    assert "/s/healthy/" not in shown.stdout


def test_a_save_filter_on_the_mark_keeps_only_the_broken_streams(upstream: int, tmp_path: Path) -> None:
    out = tmp_path / "broken.flows"
    with mitmdump(upstream, tmp_path, "--set", "ssemedic_log=off", "-w", str(out),
                  "--set", "save_stream_filter=~marked") as proxy:
        _chat(proxy.base, [f"/s/{name}{CHAT}" for name in ("healthy", "truncated")])
    assert [f.request.path.split("/")[2] for f in _read(out)] == ["truncated"], proxy.output()


def test_marking_off_saves_unmarked(upstream: int, tmp_path: Path) -> None:
    out = tmp_path / "off.flows"
    with mitmdump(upstream, tmp_path, "--set", "ssemedic_log=off", "--set", "ssemedic_mark=false",
                  "-w", str(out)) as proxy:
        _chat(proxy.base, [f"/s/truncated{CHAT}"])
    (saved,) = _read(out)
    assert (saved.marked, saved.comment) == ("", ""), proxy.output()


# -- an upstream that dies mid-stream: only mitmproxy's error hook, where save writes too ----


class Dying(BaseHTTPRequestHandler):
    """Sends two chunks of an SSE stream, the second cut inside an event,
    then closes the connection without the chunked body's end."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for piece in (b'data: {"object": "chat.completion.chunk", "choices": [{"index": 0, '
                      b'"delta": {"content": "Hel"}}]}\n\n',
                      b'data: {"object": "chat.completion.chunk", "choi'):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
            time.sleep(0.05)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        pass


@pytest.fixture
def dying_upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Dying)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_a_stream_whose_upstream_dies_is_saved_marked(dying_upstream: int, tmp_path: Path) -> None:
    out = tmp_path / "died.flows"
    with mitmdump(dying_upstream, tmp_path, "--set", "ssemedic_log=off", "-w", str(out)) as proxy:
        _chat(proxy.base, ["/v1/chat/completions"])
    (saved,) = _read(out)
    assert saved.error is not None and saved.response is not None, proxy.output()  # the error hook, not response
    assert saved.marked == MARKER, proxy.output()
    assert saved.comment.startswith("ssemedic: ") and "truncated" in saved.comment, saved.comment
    assert saved.metadata[METADATA_KEY]["timeline"]


# -- the pipeline's "finish now" ------------------------------------------------------


class Recorder:
    """A sink that counts finished() calls; every other call is accepted and ignored."""

    def __init__(self) -> None:
        self.ends: list[str | None] = []

    def finished(self, stream: Pipeline, error: str | None) -> None:
        self.ends.append(error)

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: None


def _deferred_stream(sink: Recorder, later: list[Callable[[], None]]) -> Pipeline:
    return Pipeline(flow_id="f", label="POST /v1/chat/completions", method="POST", path="/v1/chat/completions",
                    request_headers={}, status=200, response_headers={"content-type": "text/event-stream"},
                    started_at=0.0, sink=sink, clock=lambda: 1.0, defer=later.append)


def test_finish_now_inspects_the_queue_and_the_end_at_once_and_only_once() -> None:
    sink, later = Recorder(), list[Callable[[], None]]()
    stream = _deferred_stream(sink, later)
    stream.announce()
    body = b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\ndata: {"cho'
    assert stream(body) == [body]  # forwarded at once, inspected later
    stream.end(1.0)
    assert not stream.finished and sink.ends == []  # deferred: the design without -w
    stream.finish_now()
    assert stream.finished and sink.ends == [None]
    assert [str(f.kind) for f in stream.session.faults if str(f.kind) == "truncated"] == ["truncated"]
    for call in list(later):  # the turns scheduled before: nothing left to do
        call()
    assert sink.ends == [None]


# -- the hooks in process: deferred without -w, finished in the hook with it ----------------

TRUNCATED_BODY = b'data: {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\ndata: {"ob'


def _hooks(tmp_path: Path, *, saving: bool) -> tuple[str, str, list[Any]]:
    """A truncated live stream through ssemedic's hooks, then Save's, as
    mitmproxy calls them: the mark right after the response hooks, the
    mark a loop turn later, and the flows the file got."""
    from mitmproxy.addons import save
    from mitmproxy.test import taddons, tflow

    from ssemedic.mitm.addon import Medic

    out = tmp_path / "hooks.flows"

    async def run() -> tuple[str, str]:
        addon, saver = Medic(), save.Save()
        with taddons.context(addon, saver) as tctx:
            tctx.configure(addon, ssemedic_log="off")
            if saving:
                tctx.configure(saver, save_stream_file=str(out))
            f = tflow.tflow(resp=True)
            f.request.method, f.request.path = "POST", "/v1/chat/completions"
            f.request.content = b'{"model": "m", "stream": true}'
            f.response.headers["content-type"] = "text/event-stream"
            f.response.content = None
            del f.response.headers["content-length"]
            addon.responseheaders(f)
            assert callable(f.response.stream)
            f.response.stream(TRUNCATED_BODY)
            f.response.stream(b"")
            addon.response(f)
            saver.response(f)
            in_hook = f.comment
            for _ in range(5):
                await asyncio.sleep(0)
            later = f.comment
            saver.done()
        return in_hook, later

    in_hook, later = asyncio.run(run())
    return in_hook, later, _read(out) if out.exists() else []


def test_without_w_the_end_is_still_diagnosed_a_turn_after_the_hook(tmp_path: Path) -> None:
    assert _hooks(tmp_path, saving=False) == ("", "ssemedic: truncated", [])


def test_with_w_the_end_is_diagnosed_in_the_hook_and_saved(tmp_path: Path) -> None:
    in_hook, later, saved = _hooks(tmp_path, saving=True)
    assert (in_hook, later) == ("ssemedic: truncated", "ssemedic: truncated")
    assert [(f.marked, f.comment) for f in saved] == [(MARKER, "ssemedic: truncated")]
