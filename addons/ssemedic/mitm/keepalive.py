"""Keepalive comments for clients during upstream silences
(``ssemedic_keepalive``): the one place ssemedic reaches into mitmproxy's
proxy internals, feature-detected by ``problem()``.

Strategy: mitmproxy calls a stream callable only when upstream data
arrives, so nothing it offers can write to the client during a silence. A
timer per flow (``Keepalive``) notices the client's silence; to write, it
hands the client connection's handler an event that travels the flow's own
layer stack, from the top (so TLS layers encrypt what comes back) down to
the flow's HttpLayer, which passes it to a small layer of ours (a Writer)
instead of the flow's HttpStream. The writer decides only then, in the
handler's turn and under its lock, whether to write: so the comment goes
out between two pieces the stream callable returned, never inside one, and
only where the client's body is at an event boundary. The writer sends its
comment as response data for the flow's stream id to the client's HTTP
connection layer, which frames it (an HTTP/1.1 chunk, an HTTP/2 DATA frame).

The event is a ``Wakeup`` for a ``RequestWakeup`` command the writer never
issued: each HttpLayer on the way routes a Wakeup to the child that
registered the command (``command_sources``), so we register one for every
HttpLayer on the flow's path (an outer one, for CONNECT tunnels, routes it
to the tunnel's HttpStream, which passes it on).

Covered: HTTP/1.1 client connections (chunked or close-delimited bodies)
and HTTP/2 client connections, over TLS or not. Not covered: HTTP/3 client
connections (mitmproxy's HTTP/3 layer is not tested here), bodies with a
Content-Length, compressed bodies and every framing other than SSE.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from mitmproxy import http

logger = logging.getLogger("ssemedic")

#: What the client gets: one SSE comment line and the blank line that ends
#: its block, so even clients that split the body on blank lines see a block
#: of its own, which carries no data and is no event.
COMMENT = b": keepalive\n\n"
#: How many bytes of what the client got are kept to tell an event boundary.
_TAIL = 4

StreamCallable = Callable[[bytes], Iterable[bytes] | bytes]


def problem() -> str | None:
    """Why this mitmproxy's internals cannot carry keepalives, in one line,
    or None when they look as this module expects (mitmproxy 12)."""
    try:
        from mitmproxy.addons import proxyserver
        from mitmproxy.proxy import commands, events, layer, server
        from mitmproxy.proxy.layers import http as layers
    except ImportError as exc:
        return f"mitmproxy's proxy modules are not where they were ({exc})"
    needs = [(layers, "HttpLayer"), (layers, "HttpStream"), (layers, "SendHttp"), (layers, "ResponseData"),
             (events, "Wakeup"), (events, "CommandCompleted"), (commands, "RequestWakeup"),
             (layer, "Layer"), (layer, "NextLayer"), (proxyserver, "Proxyserver"), (server, "ConnectionHandler")]
    for module, name in needs:
        if not inspect.isclass(getattr(module, name, None)):
            return f"{module.__name__}.{name} is missing"
    annotations = {
        layers.HttpLayer: ("streams", "command_sources", "connections"),
        layers.HttpStream: ("flow", "stream_id", "child_layer"),
        proxyserver.Proxyserver: ("connections",),
        server.ConnectionHandler: ("layer", "transports"),
    }
    for cls, names in annotations.items():
        declared = _annotations(cls)
        missing = [name for name in names if name not in declared]
        if missing:
            return f"{cls.__qualname__} has no {', '.join(missing)}"
    if not inspect.iscoroutinefunction(getattr(server.ConnectionHandler, "server_event", None)):
        return "ConnectionHandler.server_event is not a coroutine function"
    if not callable(getattr(layers.HttpStream, "state_stream_response_body", None)):
        return "HttpStream.state_stream_response_body is missing"
    if not issubclass(events.Wakeup, events.CommandCompleted):
        return "Wakeup is no CommandCompleted"
    for cls, fields in ((getattr(layers, "ResponseData"), ("stream_id", "data")), (events.Wakeup, ("command",)),
                        (layers.SendHttp, ("event", "connection"))):
        params = list(inspect.signature(cls).parameters)
        if params[: len(fields)] != list(fields):
            return f"{cls.__name__}({', '.join(params)}) is not {cls.__name__}({', '.join(fields)})"
    return None


def _annotations(cls: type) -> set[str]:
    """The attributes ``cls`` itself declares (where mitmproxy declares them)."""
    return set(inspect.get_annotations(cls))


class Keepalive:
    """The stream callable for a flow whose client gets keepalives: it
    passes every call to ``inner`` (the Pipeline) and notes what the client
    got, and its timer writes ``COMMENT`` when the client's body has been
    silent for ``every`` seconds (and again every ``every`` seconds).

    ``notes`` gets one line saying how many were sent (kept up to date, for
    the summary and the saved flow); ``on_sent`` is told the clock time of
    each one (the stream's diagnosis: a client that still timed out timed
    out after the last one)."""

    def __init__(self, flow: http.HTTPFlow, inner: StreamCallable, every: float, *,
                 notes: list[str], clock: Callable[[], float],
                 on_sent: Callable[[float], None] | None = None) -> None:
        self.flow = flow
        self.inner = inner
        self.every = every
        self.notes = notes
        self.clock = clock
        self.on_sent = on_sent
        self.sent = 0
        self.ended = False
        self._tail = b""  # the last bytes the client got
        self._note_at: int | None = None
        self._refused: str | None = None
        self._mid_event_noted = False
        self._loop = _running_loop()
        self._last_write = self._loop.time() if self._loop is not None else 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        if self._loop is None:
            self._refuse("no event loop runs (not in a live proxy)")
        elif _alpn(flow) == b"h3":
            self._refuse("HTTP/3 client connections are not covered")
        else:
            self._schedule(every)

    # -- the stream callable ------------------------------------------------

    def __call__(self, data: bytes) -> Iterable[bytes] | bytes:
        if not data:
            self._stop()
        out = self.inner(data)
        pieces = [piece for piece in ([out] if isinstance(out, bytes) else out) if piece]
        if pieces:
            # Only the last few bytes matter: no copy of the whole chunk.
            tail = b""
            for piece in reversed(pieces):
                tail = piece[-_TAIL:] + tail
                if len(tail) >= _TAIL:
                    break
            self._tail = (self._tail + tail)[-_TAIL:]
            if self._loop is not None:
                self._last_write = self._loop.time()
        return pieces

    # -- the timer ------------------------------------------------------------

    def _schedule(self, delay: float) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(max(delay, 0.0), self._tick)

    def _stop(self) -> None:
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        assert self._loop is not None
        if self.ended or not self.flow.live or self.flow.error is not None:
            self._stop()
            return
        due = self._last_write + self.every
        now = self._loop.time()
        if now < due:
            self._schedule(due - now)
            return
        reason = self._unsuitable()
        if reason is not None:
            self._refuse(reason)
            return
        try:
            self._inject()
        except Exception as exc:  # never let keepalives disturb the flow
            self._refuse(f"internal error: {exc!r}")
            return
        self._schedule(self.every)

    def _unsuitable(self) -> str | None:
        """Why this response's body takes no comments (checked at the first
        silence: by then the headers the client got are final)."""
        response = self.flow.response
        if response is None:
            return "no response"
        headers = response.headers
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type in ("application/x-ndjson", "application/jsonl", "application/json"):
            return f"a {content_type} body has no comment syntax"
        if content_type != "text/event-stream":
            return f"the client's body is served as {content_type or 'no content type'}, not text/event-stream"
        if headers.get("content-encoding", "identity").strip().lower() != "identity":
            return f"the client's body is compressed ({headers['content-encoding']})"
        if "content-length" in headers:
            return "the client's body has a Content-Length"
        return None

    def _refuse(self, reason: str) -> None:
        self._stop()
        if self._refused is None:
            self._refused = reason
            self.notes.append(f"keepalive: none sent: {reason}")

    # -- writing ----------------------------------------------------------------

    def _inject(self) -> None:
        from mitmproxy import ctx
        from mitmproxy.proxy import commands, events

        proxy = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
        handler = proxy.connections.get(self.flow.client_conn.id)
        if handler is None:
            self._stop()  # the client connection is gone
            return
        stream = _find_stream(handler.layer, self.flow)
        if stream is None:
            self._stop()  # the flow's stream is over
            return
        command = commands.RequestWakeup(0.0)
        writer = _writer_class()(stream, self)
        _route(stream, command, writer)
        task = asyncio.ensure_future(handler.server_event(events.Wakeup(command)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def due(self) -> bytes:
        """What to write now, in the handler's turn: the comment, or nothing
        when the client's body is not at an event boundary or has just got
        something. Counts what it returns."""
        if self.ended or self._loop is None:
            return b""
        if self._loop.time() < self._last_write + self.every * 0.5:
            return b""  # data went out since the timer fired
        if not at_event_boundary(self._tail):
            self._note_mid_event()
            return b""
        self.sent += 1
        self._last_write = self._loop.time()
        self._tail = COMMENT[-_TAIL:]
        self._count()
        if self.on_sent is not None:
            self.on_sent(self.clock())
        return COMMENT

    def _note_mid_event(self) -> None:
        """A silence came while the client's body was inside an event: no
        comment can go there, so say once why this silence went uncovered."""
        if self._mid_event_noted:
            return
        self._mid_event_noted = True
        self.notes.append(
            f"keepalive: a silence over {self.every:g} s came inside an event (the upstream paused mid-event), "
            f"where no comment can go, so none was sent then; with `ssemedic_repair` (repair `reframe`) "
            f"the client gets whole events only, and comments fit between them")
        logger.info("[%s] client silent for %g s inside an event: no `: keepalive` fits there",
                    self.flow.id[:6], self.every)

    def _count(self) -> None:
        note = (f"keepalive: ssemedic sent the client {self.sent} `: keepalive` comment{'s' * (self.sent != 1)} "
                f"during silences of {self.every:g} s (not upstream bytes)")
        if self._note_at is None:
            self._note_at = len(self.notes)
            self.notes.append(note)
            logger.info("[%s] client silent for %g s: sending `: keepalive` comments", self.flow.id[:6], self.every)
        else:
            self.notes[self._note_at] = note


def at_event_boundary(tail: bytes) -> bool:
    """Whether a body whose last bytes are ``tail`` (at least 4, or all of
    it) ends at an SSE event boundary: nothing yet, or a blank line just
    ended. A trailing CR is no boundary: an LF may follow it and would then
    end a line of its own."""
    if not tail:
        return True
    if tail.endswith(b"\r\n"):
        rest = tail[:-2]
    elif tail.endswith(b"\n"):
        rest = tail[:-1]
    else:
        return False
    return not rest or rest.endswith((b"\n", b"\r"))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _alpn(flow: http.HTTPFlow) -> bytes | None:
    return flow.client_conn.alpn


def _children(node: Any) -> Iterator[Any]:
    from mitmproxy.proxy import layer
    from mitmproxy.proxy.layers import http as layers

    if isinstance(node, layers.HttpLayer):
        yield from node.streams.values()
    elif isinstance(node, layer.NextLayer):
        if node.layer is not None:
            yield node.layer
    else:
        child = getattr(node, "child_layer", None)
        if child is not None:
            yield child


def _find_stream(top: Any, flow: http.HTTPFlow, depth: int = 32) -> Any:
    """The HttpStream of ``flow`` in the layer tree under ``top``, or None."""
    from mitmproxy.proxy.layers import http as layers

    todo = [(top, 0)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, layers.HttpStream) and getattr(node, "flow", None) is flow:
            return node
        if level < depth:
            todo.extend((child, level + 1) for child in _children(node))
    return None


def _route(stream: Any, command: Any, writer: Any) -> None:
    """Make every HttpLayer on ``stream``'s path route a Wakeup for
    ``command`` towards ``writer``, which stands in for the stream."""
    from mitmproxy.proxy.layers import http as layers

    path = stream.context.layers
    http_layers = [i for i, node in enumerate(path) if isinstance(node, layers.HttpLayer)]
    if not http_layers or path[-1] is not stream:
        raise RuntimeError("the flow's layer path does not end in an HttpLayer and its HttpStream")
    for i in http_layers:
        path[i].command_sources[command] = writer if i == len(path) - 2 else path[i + 1]


@functools.cache
def _writer_class() -> type:
    from mitmproxy.proxy import layer
    from mitmproxy.proxy.layers import http as layers

    class Writer(layer.Layer):
        """Stands in for the flow's HttpStream for one Wakeup: sends what the
        Keepalive says is due, if the stream still streams its response."""

        def __init__(self, stream: Any, keepalive: Keepalive) -> None:
            super().__init__(stream.context.fork())
            self.stream = stream
            self.keepalive = keepalive

        def _handle_event(self, event: Any) -> Any:
            stream = self.stream
            streaming = stream.server_state == stream.state_stream_response_body
            try:
                data = self.keepalive.due() if streaming and stream.flow.live else b""
            except Exception as exc:
                logger.warning("ssemedic keepalive failed: %r", exc)
                data = b""
            if data:
                response_data = getattr(layers, "ResponseData")  # not in the module's __all__
                yield layers.SendHttp(response_data(stream.stream_id, data), stream.context.client)

    return Writer

