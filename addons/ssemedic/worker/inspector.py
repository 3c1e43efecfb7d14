"""The inspection worker's side of a remote stream: frames in, Pipelines run,
frames out. Sans-IO: ``worker/__main__.py`` reads and writes the pipes.

Each stream the proxy opens gets a Pipeline here built from the same
arguments as an in-proxy one, with its Reporter (and OpenTelemetry watch)
as the sink, and without a recording (the proxy keeps the bytes). Chunks
are inspected as they come; the end comes with what the proxy knows and
this side does not (its notes, the byte counts when it stopped sending),
and is answered with a RESULT frame: the provider, the notes and the line
the proxy marks the flow with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import IO, Any

from ..core.pipeline import Mirror, Pipeline, Rewrite, Sink
from ..mitm.marking import comment_line
from ..mitm.output import Reporter
from ..core import wire

logger = logging.getLogger("ssemedic")


class Inspector:
    """Runs the proxy's remote streams. ``send`` takes the frames to write
    back; ``console`` is where mitmdump's terminal output goes (None: the
    log, relayed to the proxy)."""

    def __init__(self, send: Callable[[bytes], None], console: IO[str] | None = None) -> None:
        self.send = send
        self.console = console
        self.streams: dict[int, Pipeline] = {}
        self._later: list[Callable[[], None]] = []
        self._settings: dict[str, Any] = {}
        self.reporter = self._reporter({})
        self._jsonl: IO[str] | None = None
        self._otel: Any = None
        self._dropped: set[int] = set()  # streams given up after an internal error

    # -- frames -----------------------------------------------------------------

    def handle(self, f: wire.Frame) -> None:
        """One frame from the proxy. An internal error costs only its stream:
        it is logged once, and the proxy told the stream was not inspected."""
        try:
            self._handle(f)
        except wire.WireError:
            raise
        except Exception as exc:
            if f.kind == wire.SETTINGS:
                logger.exception("ssemedic's inspection worker could not apply the proxy's options")
            else:
                self._fail(f.stream, exc)

    def _fail(self, number: int, exc: Exception) -> None:
        stream = self.streams.pop(number, None)
        note = f"ssemedic internal error, stream passed through uninspected: {exc!r}"
        if stream is not None:
            stream.inspection.fail(exc)  # logs it, once, redacted as the reporter is
        else:
            logger.error("[worker] %s", note)
        self._dropped.add(number)
        self.send(wire.value_frame(wire.RESULT, number, {"provider": None, "notes": [note], "comment": None}))

    def _handle(self, f: wire.Frame) -> None:
        if f.kind == wire.CHUNK:
            stream = self.streams.get(f.stream)
            if stream is None:
                pass
            elif isinstance(stream.forward, Rewrite):
                stream.pass_on(f.payload, f.at)  # repaired as in the proxy (a Tee there), for the report
            else:
                stream.receive(f.payload, f.at)
        elif f.kind == wire.OPEN:
            self._open(f.stream, f.value())
        elif f.kind == wire.FED:
            stream = self.streams.get(f.stream)
            if stream is not None and f.at is not None:
                stream.session.diagnoser.client_fed(f.at)
        elif f.kind == wire.BEHIND:
            self._behind(f.stream, f.value())
        elif f.kind == wire.END:
            self._end(f.stream, f.at, f.value())
        elif f.kind == wire.SETTINGS:
            self.configure(f.value())
        else:
            raise wire.WireError(f"the proxy sent a {f.kind!r} frame, which only the worker sends")

    def settle(self) -> None:
        """What the reporters put off until the batch of frames was handled
        (flushing lines, drawing panels), in order, with what that adds."""
        while self._later:
            later, self._later = self._later, []
            for callback in later:
                callback()

    def close(self) -> None:
        self.settle()
        self.reporter.close()
        if self._jsonl is not None:
            self._jsonl.close()
        if self._otel is not None:
            self._otel.close()

    # -- settings ---------------------------------------------------------------

    def configure(self, settings: dict[str, Any]) -> None:
        """The proxy's options that shape reporting (see Offload.settings);
        streams already open keep the reporter they started with."""
        if settings.get("jsonl") != self._settings.get("jsonl"):
            if self._jsonl is not None:
                self._jsonl.close()
            path = settings.get("jsonl")
            self._jsonl = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        otlp = settings.get("otlp") or ("", "", False)
        if otlp != (self._settings.get("otlp") or ("", "", False)):
            if self._otel is not None:
                self._otel.close()
                self._otel = None
            if otlp[0]:
                from ..files import otel

                self._otel = otel.Exporter(otlp[0], service=otlp[1], content=otlp[2])
        self._settings = dict(settings)
        self.reporter.close()
        self.reporter = self._reporter(settings)

    def _reporter(self, settings: dict[str, Any]) -> Reporter:
        return Reporter(
            level=settings.get("level", "events"),
            max_text=settings.get("max_text", 200),
            console=self.console if settings.get("console") else None,
            jsonl=self._jsonl if settings else None,
            defer=self._later.append,
            redact=settings.get("redact", True),
        )

    # -- streams ----------------------------------------------------------------

    def _open(self, number: int, spec: dict[str, Any]) -> None:
        spec = dict(spec)
        request = spec.pop("request", None)
        sink: Sink = self.reporter
        if self._otel is not None and request is not None:
            sink = self._otel.watch(sink, request)
        stream = Pipeline(**spec, sink=sink, record=False)
        self.streams[number] = stream
        stream.announce()

    def _behind(self, number: int, info: dict[str, Any]) -> None:
        stream = self.streams.get(number)
        if stream is None or not isinstance(stream.forward, (Mirror, Rewrite)):
            return
        stream.forward.behind_at = info["at"]
        stream.sink.note(stream, info["note"])

    def _end(self, number: int, at: float | None, info: dict[str, Any]) -> None:
        stream = self.streams.pop(number, None)
        if stream is None:
            self._dropped.discard(number)  # answered when it was given up
            return
        forward = stream.forward
        if isinstance(forward, (Mirror, Rewrite)) and forward.behind_at is not None:
            # The proxy stopped sending at behind_at: it counted what passed.
            forward.unparsed = info["unparsed"]
            stream.wire_bytes, stream.wire_chunks = info["wire_bytes"], info["wire_chunks"]
        own = stream.behind_note() if stream.behind_at is not None else None
        for note in info["notes"]:
            if note not in stream.notes and note != own:
                stream.notes.append(note)
        stream.end(at, info["error"])
        if info["error"] is None and isinstance(forward, Rewrite):
            stream.final()  # what the proxy's client got at the end, counted as there
        self.send(wire.value_frame(wire.RESULT, number, {
            "provider": stream.session.provider,
            "notes": list(stream.notes),
            "comment": comment_line(stream.session.faults),
        }))
