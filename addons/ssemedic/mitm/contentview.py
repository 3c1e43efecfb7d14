"""The "LLM stream" contentview: a streamed LLM response body shown as its
verdict, the message its events assemble, when they arrived, and each event
(core/view.py writes the text; this module finds the stream and adapts).

The view registers nothing at import; the addon calls
``mitmproxy.contentviews.add(llm_stream_view)``.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, http
from mitmproxy.contentviews import Contentview, Metadata, SyntaxHighlight

from ..core import providers, sides, view
from ..core.describe import printable_lines
from ..core.framing import framing_for_content_type, sniff_framing
from ..core.session import EventRecord, StreamSession
from ..files import report
from ..files.redact import redact_text
from ..files.sources import Capture, stream_from_flow

logger = logging.getLogger(__name__)

#: Above every view mitmproxy ships (JSON says 1, raw 0.1), so a stream is
#: shown as a stream even when its Content-Type ends in "json".
PRIORITY = 2.0
#: How much of a body is looked at to tell whether it is SSE.
SNIFF_BYTES = 4096
#: How many events get a line of their own; the rest are only counted.
MAX_EVENT_LINES = 5000
#: The columns every line of the view fits unless ``ssemedic_view_width``
#: says otherwise: a 92-column terminal under mitmdump's 4-column indent.
#: mitmweb's detail pane beside the flow list is narrower on a laptop screen
#: (about 76 columns in a 1400-pixel window): set the option to it.
WIDTH = 88
#: The narrowest width the view is laid out for (core/view.py's minimum).
MIN_WIDTH = view.MIN_WIDTH


# -- choosing the view ------------------------------------------------------------


def is_llm_stream(data: bytes, metadata: Metadata) -> bool:
    """Whether ``data`` is a stream this view should be chosen for: declared as
    SSE or NDJSON, or sniffed as SSE in a response to a known LLM endpoint."""
    if not data:
        return False
    if framing_for_content_type(metadata.content_type) is not None:
        return True
    flow = metadata.flow
    if not isinstance(flow, http.HTTPFlow):
        return False
    request = flow.request
    provider = providers.detect_from_request(request.method, request.path, dict(request.headers))
    return provider is not None and sniff_framing(data[:SNIFF_BYTES]) == "sse"


# -- running the session ----------------------------------------------------------


def stream_for(data: bytes, metadata: Metadata) -> Capture:
    """The Capture to render: the flow's own (with its chunk timeline) when
    ``data`` is that flow's response body, else ``data`` with whatever the
    flow tells about its request."""
    flow = metadata.flow
    if not isinstance(flow, http.HTTPFlow):
        return Capture(label="", body=data, chunks=[(data, None)], content_type=metadata.content_type)
    response = flow.response
    if response is not None and metadata.http_message is response:
        stream = stream_from_flow(flow, "")
        if stream is not None and stream.body == data:
            return stream
    request = flow.request
    return Capture(
        label="",
        body=data,
        chunks=[(data, None)],
        method=request.method,
        path=request.path,
        request_headers=dict(request.headers),
        content_type=metadata.content_type,
    )


def run(stream: Capture) -> tuple[StreamSession, list[EventRecord]]:
    """Run a session over ``stream``, keeping the first MAX_EVENT_LINES records."""
    return stream.run(keep=MAX_EVENT_LINES)


# -- rendering ------------------------------------------------------------------------


def render(stream: Capture, width: int | None = None) -> str:
    """The whole view text for one stream (see core/view.py), ``width`` columns wide."""
    session, records = run(stream)
    origin = stream.started_at
    if origin is None and stream.chunks:
        origin = stream.chunks[0][1]
    notes = stream.notes
    cut_note = stream.cut.diagnosed() if stream.cut is not None else None
    if cut_note is not None:
        notes = [note for note in notes if note != cut_note]  # said once, in the verdict
    lines = view.render(session, records, width=WIDTH if width is None else width, origin=origin,
                        notes=notes, cut_note=cut_note, sides=_sides(stream))
    return "\n".join(lines)


# -- the view -------------------------------------------------------------------------


class LLMStreamContentview(Contentview):
    """Shows SSE and NDJSON LLM responses event by event, then assembled."""

    @property
    def name(self) -> str:
        return "LLM stream"

    @property
    def syntax_highlight(self) -> SyntaxHighlight:
        # The view's text is YAML: keys, values, numbers, flags and comments are coloured apart.
        return "yaml"

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        try:
            text = printable_lines(render(stream_for(data, metadata), _width()))  # upstream text is data
            return redact_text(text) if _redacting() else text
        except Exception as exc:
            # mitmproxy would show a traceback instead of the body; say why in one line.
            logger.debug("LLM stream view failed", exc_info=True)
            return f"ssemedic could not render this stream: {type(exc).__name__}: {exc}"

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        try:
            return PRIORITY if is_llm_stream(data, metadata) else 0
        except Exception:
            logger.debug("LLM stream view could not judge a body", exc_info=True)
            return 0


def _width() -> int:
    """The width ``ssemedic_view_width`` sets, or WIDTH when it cannot be told
    (no addon loaded; a bad value is refused by the addon's configure)."""
    try:
        value = int(ctx.options.ssemedic_view_width)
    except Exception:
        return WIDTH
    return value if value >= MIN_WIDTH else WIDTH


def _sides(stream: Capture) -> sides.Sides | None:
    """What the client got versus the upstream; a failure to make it again
    is said in the view, the rest of the view still shows."""
    try:
        return report.sides(stream)
    except Exception as exc:
        logger.debug("LLM stream view could not compare the sides", exc_info=True)
        return sides.Sides(True, f"the client's side could not be made again: {type(exc).__name__}: {exc}")


def _redacting() -> bool:
    """Whether ssemedic_redact is on; on when it cannot be told (no addon
    loaded, an unreadable value), so the view fails closed."""
    try:
        value = ctx.options.ssemedic_redact
    except Exception:
        return True
    return str(value).strip().lower() not in ("false", "no", "off", "0", "")


llm_stream_view = LLMStreamContentview()
