"""Marks the flows whose stream is broken, so the flow list shows them: a flow
with an error-level fault gets a marker and a comment naming its faults, and
``~marked`` or ``~comment truncated`` find it in mitmweb, the console UI and
saved flows.

A user's own marker is never replaced, and their comment never overwritten:
ssemedic's line (``ssemedic: truncated, done-after-error``) is appended to it
on a line of its own. Run again (``-nr`` of a marked file), ssemedic
rewrites only its own line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..core.faults import Fault, Severity
from ..core.pipeline import PassOn, Pipeline, Sink

if TYPE_CHECKING:  # the inspection worker uses comment_line without mitmproxy
    from mitmproxy import flow

#: The marker of a broken stream (one of mitmproxy's, so ``flow.mark`` and
#: the UIs take it; mitmweb and the console UI show it as ⚠).
MARKER = ":warning:"
#: How ssemedic's line in a flow's comment starts.
PREFIX = "ssemedic: "


def comment_line(faults: Iterable[Fault]) -> str | None:
    """``ssemedic: kind, kind`` for the error-level faults, in order of
    appearance, or None when there is none."""
    kinds = [str(f.kind) for f in faults if f.severity == Severity.ERROR]
    return PREFIX + ", ".join(dict.fromkeys(kinds)) if kinds else None


def mark(f: flow.Flow, faults: Iterable[Fault]) -> bool:
    """Mark ``f`` and comment on it if ``faults`` hold an error; whether ``f`` changed.
    A marker already set (by the user, or by an earlier run) stays as it is."""
    return mark_line(f, comment_line(faults))


def mark_line(f: flow.Flow, line: str | None) -> bool:
    """Mark ``f`` with ssemedic's comment line (from comment_line; None: nothing to mark)."""
    if line is None:
        return False
    before = (f.marked, f.comment)
    if not f.marked:
        f.marked = MARKER
    lines = f.comment.split("\n") if f.comment else []
    ours = [i for i, text in enumerate(lines) if text.startswith(PREFIX)]
    if ours:
        lines[ours[0]] = line
    else:
        lines.append(line)
    f.comment = "\n".join(lines)
    return (f.marked, f.comment) != before


class MarkingSink(PassOn):
    """A Sink that passes everything on to ``inner`` and, when a stream
    finished (its end inspected and diagnosed), calls ``on_finished`` first."""

    def __init__(self, inner: Sink, on_finished: Callable[[Pipeline], None]) -> None:
        super().__init__(inner)
        self.on_finished = on_finished

    def finished(self, stream: Pipeline, error: str | None) -> None:
        try:
            self.on_finished(stream)
        finally:
            self.inner.finished(stream, error)
