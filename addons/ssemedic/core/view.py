"""The text view of one stream, for the mitmweb view, the console UI,
``mitmdump --flow-detail`` and any report: a closed session in, lines out.

It reads top down as a person debugging a stream looks: the verdict (is it
whole, what is wrong and how to fix it, how fast), the message the client
got, a one-line picture of when bytes and events arrived, then every event.
Every line fits ``width`` columns (wide characters count two): long values
are wrapped, table cells are shortened with their full length said.

Strategy: the text is YAML, so mitmproxy's YAML highlighting colours keys,
values, numbers, booleans and comments alike in mitmweb and the console UI.
A value is written plain when YAML would read it back unchanged, else single
quoted (quotes doubled); several lines of text go in a literal block. Table
rows keep their columns either way: a plain row starts one column after
where a quoted row puts its quote.
"""

from __future__ import annotations

import json
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .describe import describe, printable
from .faults import Fault, Severity
from .handoff import EventRecord
from .session import StreamSession
from .sides import KINDS, Change, Sides, SideTotals

#: The width the view fits when none is given.
DEFAULT_WIDTH = 100
#: No layout fits fewer columns than this; a smaller width is raised to it.
MIN_WIDTH = 40
#: How many parse issues and malformed events are listed in full.
MAX_ISSUE_LINES = 100
#: The bar heights of the timeline, lowest first; a column where nothing
#: arrived is QUIET, one inside a stall is STALL.
BARS = "▁▂▃▄▅▆▇█"
QUIET = "·"
STALL = "━"
#: How many changed events the client-vs-upstream section lists; the rest are counted.
MAX_CHANGE_LINES = 5
#: Marks in the event table.
SPLIT = "÷"  # the event's bytes arrived in more than one chunk
BURST = "≡"  # it arrived in the same chunk as the event before it
AFTER_STALL = "!"  # the silence before it was a stall
_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


# -- measuring and fitting ---------------------------------------------------------


def cells(text: str) -> int:
    """How many terminal columns ``text`` takes: East Asian wide and full-width
    characters take two, combining marks none."""
    if text.isascii():
        return len(text)
    return sum(_cell(c) for c in text)


def _cell(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _take(text: str, room: int) -> str:
    """The longest prefix of ``text`` that fits ``room`` columns."""
    used = 0
    for i, char in enumerate(text):
        used += _cell(char)
        if used > room:
            return text[:i]
    return text


def shorten(text: str, room: int) -> str:
    """``text`` on one line within ``room`` columns; when cut, it says its full length."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if cells(text) <= room:
        return text
    note = f"… ({len(text):,} chars)"
    return _take(text, max(room - cells(note), 1)) + note


def wrap(text: str, room: int) -> list[str]:
    """``text`` (one line) broken into lines of at most ``room`` columns, at
    spaces where it can, inside a word where it must. Linear in ``text``:
    a kept message can be a million characters on one line."""
    room = max(room, 1)
    if text.isascii() and len(text) <= room:
        return [text]
    lines: list[str] = []
    start = 0
    while start < len(text):
        # Take what fits from ``start``; it ends at ``end``.
        used, end = 0, start
        while end < len(text):
            width = _cell(text[end])
            if used + width > room:
                break
            used += width
            end += 1
        if end >= len(text):
            lines.append(text[start:])
            break
        end = max(end, start + 1)  # a character wider than the room still goes somewhere
        cut = text.rfind(" ", start + 1, end + 1)  # a space just past the room breaks there too
        if cut > start:
            lines.append(text[start:cut])
            start = cut + 1
        else:
            lines.append(text[start:end])
            start = end
    return lines or [""]


# -- YAML scalars ---------------------------------------------------------------------

# A plain scalar must not start with an indicator, nor hold ": " or " #",
# nor end in ":" or a space, nor read back as something else (null, a bool).
_UNSAFE_START = re.compile(r"[-?:,\[\]{}#&*!|>'\"%@`\s]")
_UNSAFE_INSIDE = re.compile(r": | #|:$|\s$|\t")
_SPECIAL = {"", "~", "null", "true", "false", "yes", "no", "on", "off"}


def plain_ok(text: str) -> bool:
    """Whether ``text`` can stand as a plain YAML scalar: read back as the same
    text (or the number it spells), never as a null, a bool or a mapping."""
    return (
        bool(text)
        and not _UNSAFE_START.match(text)
        and not _UNSAFE_INSIDE.search(text)
        and text.lower() not in _SPECIAL
    )


def scalar(text: str) -> str:
    """``text`` as a one-line YAML scalar: plain when that is safe, else single quoted."""
    return text if plain_ok(text) else "'" + text.replace("'", "''") + "'"


class Writer:
    """Collects the view's lines, each fitted to ``width``."""

    def __init__(self, width: int) -> None:
        self.width = max(width, MIN_WIDTH)
        self.lines: list[str] = []

    def key(self, depth: int, name: str, comment: str = "") -> None:
        """A key that opens a section, with an optional comment wrapped below it."""
        pad = "  " * depth
        self.lines.append(f"{pad}{name}:")
        if comment:
            self.comment(depth + 1, comment)

    def comment(self, depth: int, text: str) -> None:
        pad = "  " * depth + "# "
        self.lines += [pad + line for line in wrap(printable(text), self.width - cells(pad))]

    def field(self, depth: int, name: str, value: str, *, item: bool = False) -> None:
        """``name: value``, the value wrapped onto more lines if it does not fit.
        ``item`` starts a sequence item (``- name: value``)."""
        pad = "  " * depth
        lead = pad + ("- " if item else "") + f"{name}: "
        value = scalar(printable(value))
        room = self.width - cells(lead)
        if cells(value) <= room:
            self.lines.append(lead + value)
            return
        if value[0] != "'":
            value = "'" + value.replace("'", "''") + "'"  # a wrapped plain scalar could start a comment
        inner = pad + ("  " if item else "") + "  "
        first, *rest = wrap(value, room)
        self.lines.append(lead + first)
        self.lines += [inner + line for line in wrap(" ".join(rest), self.width - cells(inner))] if rest else []

    def block(self, depth: int, name: str, text: str, *, item: bool = False) -> None:
        """``name`` with ``text`` as a literal block, each line wrapped to fit.
        Text on one short line stays on the key's line."""
        if "\n" not in text and cells(f"{'  ' * depth}{'- ' if item else ''}{name}: {scalar(printable(text))}") <= self.width:
            self.field(depth, name, text, item=item)
            return
        pad = "  " * depth
        inner = pad + ("  " if item else "") + "  "
        lines = [printable(line) for line in text.split("\n")]
        # An indentation indicator when the text itself starts with a space.
        indicator = "2" if lines and lines[0][:1] == " " else ""
        self.lines.append(f"{pad}{'- ' if item else ''}{name}: |{indicator}-")
        for line in lines:
            self.lines += [(inner + part).rstrip() if not part.strip() else inner + part
                           for part in wrap(line, self.width - cells(inner))]

    def item(self, depth: int, text: str) -> None:
        """A sequence item holding one scalar, wrapped like a field."""
        pad = "  " * depth + "- "
        value = scalar(printable(text))
        room = self.width - cells(pad)
        if cells(value) <= room:
            self.lines.append(pad + value)
            return
        if value[0] != "'":
            value = "'" + value.replace("'", "''") + "'"
        first, *rest = wrap(value, room)
        self.lines.append(pad + first)
        inner = "  " * depth + "  "
        self.lines += [inner + line for line in wrap(" ".join(rest), self.width - cells(inner))] if rest else []


# -- what the view needs from a session -----------------------------------------------


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' * (n != 1)}"


def _ms(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds * 1000:,.1f} ms"


def ending(session: StreamSession) -> str:
    """Whether the stream ended as its format says a stream ends, in words."""
    if session.recording_cut and not session.complete:
        return "end not recorded (recording cut)"
    if session.rules.terminal is None and not session.message.markers:
        # The generic interpreter calls every stream complete; here that would mislead.
        return "unknown format: no terminal signal to check"
    return "complete" if session.complete else "no terminal signal"


def ordered_faults(faults: Iterable[Fault]) -> list[Fault]:
    """Errors first, then warnings, then infos; in order of appearance within each."""
    return sorted(faults, key=lambda f: _SEVERITY_ORDER[f.severity])


def verdict_word(session: StreamSession) -> str:
    """One word for the stream: broken (an error), incomplete (no terminal
    signal), degraded (a warning that hurts clients), healthy, or unjudged (a
    format without a terminal signal). Quiet faults (chunks cut inside an
    event, which TCP does) are listed but do not degrade the verdict."""
    severities = {f.severity for f in session.faults if not f.quiet or f.severity == Severity.ERROR}
    if Severity.ERROR in severities:
        return "broken"
    state = ending(session)
    if state == "no terminal signal":
        return "incomplete"
    if Severity.WARNING in severities:
        return "degraded"
    return "healthy" if state == "complete" else "unjudged"


@dataclass(frozen=True, slots=True)
class Arrival:
    """How one event arrived: its chunks, the silence before it, its marks."""

    gap: float | None
    split: bool
    burst: bool
    after_stall: bool

    @property
    def marks(self) -> str:
        return (SPLIT if self.split else "") + (BURST if self.burst else "") + (AFTER_STALL if self.after_stall else "")


def arrivals(session: StreamSession, records: Sequence[EventRecord]) -> list[Arrival]:
    """How each of ``records`` arrived, from the session's chunk boundaries
    (decoded bytes, the same offsets as the events') and times."""
    ends = session.chunk_offsets  # where each chunk starts, in the parsed stream
    stall = session.diagnoser.stall_after
    out = []
    previous_chunk: int | None = None
    previous_time: float | None = None
    for record in records:
        start = record.event.offset
        last = start + max(len(record.event.raw), 1) - 1
        first_chunk = bisect_right(ends, start) - 1
        chunk = bisect_right(ends, last) - 1
        gap = None if record.time is None or previous_time is None else record.time - previous_time
        out.append(Arrival(
            gap=gap,
            split=chunk > first_chunk,
            burst=previous_chunk is not None and chunk == previous_chunk,
            after_stall=gap is not None and gap > stall,
        ))
        previous_chunk, previous_time = chunk, record.time
    return out


def worst_gap(session: StreamSession) -> tuple[float, int] | None:
    """The longest silence between two events, and the index of the event after it."""
    times = session.event_times
    best: tuple[float, int] | None = None
    for i in range(1, len(times)):
        gap = times[i] - times[i - 1]
        if best is None or gap > best[0]:
            best = (gap, i)
    return best


# -- the sections ----------------------------------------------------------------------


def verdict(out: Writer, session: StreamSession, cut_note: str | None = None) -> None:
    """The top-level keys before the message: the verdict in a word, then what it rests on."""
    faults = ordered_faults(session.faults)
    counts = [f"{n} {s}{'s' * (n > 1)}" for s in Severity
              if (n := sum(1 for f in faults if f.severity == s))]
    word = verdict_word(session)
    out.field(0, "verdict", f"{word} · {', '.join(counts)}" if counts else word)
    framing = session.framing or "unknown framing"
    out.field(0, "provider", f"{session.provider} ({framing})")
    message = session.message
    if message.model or message.response_id:
        out.field(0, "model", " · ".join(x for x in (message.model, message.response_id) if x))
    state = ending(session)
    out.lines.append(f"complete: {'true' if session.complete and state == 'complete' else 'false'}"
                     + ("" if state == "complete" else f"  # {state}"))
    if cut_note:
        out.field(0, "recording", cut_note)
    if faults:
        out.key(0, "faults")
        for fault in faults:
            where = f" (event #{fault.event_index})" if fault.event_index is not None else ""
            detail = f": {fault.detail}" if fault.detail else ""
            out.field(1, f"{fault.severity} {fault.kind}", f"{fault.message}{where}{detail}", item=True)
            out.field(2, "fix", fault.hint)
    else:
        out.field(0, "faults", "none")
    timing = session.timing()
    out.field(0, "size", f"{_count(session.event_count, 'event')} · {_count(session.bytes, 'byte')} · "
                         f"{_count(timing.chunks, 'chunk')}")
    if all(v is None for v in (timing.ttfb, timing.ttft, timing.duration, timing.gap_max)):
        out.field(0, "timing", "unknown (no chunk timeline)")
        return
    out.field(0, "ttfb", _ms(timing.ttfb))
    out.field(0, "ttft", _ms(timing.ttft))
    out.field(0, "duration", _ms(timing.duration))
    worst = worst_gap(session)
    if worst is not None:
        out.field(0, "worst gap", f"{_ms(worst[0])} before event #{worst[1]}")


def _cut(total: int, keep: int) -> str:
    return f"\n… cut: only the first {keep:,} of {total:,} chars were kept" if total > keep else ""


def message_section(out: Writer, session: StreamSession, notes: Iterable[str] = ()) -> None:
    message = session.message
    out.key(0, "message")
    via = f" (via {', '.join(message.text_via)})" if message.text_via else ""
    if message.text:
        out.block(1, "text" + via, message.text + _cut(message.text_chars, message.keep))
    else:
        out.field(1, "text", "(none)")
    if message.reasoning:
        out.block(1, "reasoning", message.reasoning + _cut(message.reasoning_chars, message.keep))
    if message.refusal:
        out.block(1, "refusal", message.refusal + _cut(message.refusal_chars, message.keep))
    if message.tool_calls:
        out.key(1, "tool calls")
        for call in message.tool_calls.values():
            out.field(2, "name", call.name or "?", item=True)
            if call.id:
                out.field(3, "id", call.id)
            out.field(3, "json", call.validity)
            out.block(3, "arguments", call.arguments or "(none)")
    if message.tool_results:
        out.key(1, "tool results")
        for result, length in zip(message.tool_results, message.tool_result_lengths):
            out.field(2, "tool", result.name or result.tool_call_id or "?", item=True)
            if result.is_error:
                out.field(3, "error", "true")
            out.block(3, "content", result.content + _cut(length, len(result.content)))
    for what, count in message.cut().items():
        if what.endswith("_dropped"):
            out.field(1, "cut", f"{count:,} {what.removesuffix('_dropped').replace('_', ' ')} not kept")
    if message.usage:
        out.field(1, "usage", json.dumps(message.usage, ensure_ascii=False))
    ending_words = (message.finish_reason or "none", *message.markers, ending(session))
    out.field(1, "stop", " · ".join(ending_words))
    if message.errors:
        out.key(1, "errors")
        for err in message.errors:
            kind = "/".join(k for k in (err.type, err.code) if k)
            out.item(2, f"[{kind}] {err.message}" if kind else err.message)
    issues = session.issues[:MAX_ISSUE_LINES]
    unlisted = sum(session.issue_log.counts.values()) - len(issues)
    if issues or unlisted > 0:
        out.key(1, "issues")
        for issue in issues:
            out.item(2, f"{issue.kind} at byte {issue.offset}: {issue.detail}")
        if unlisted > 0:
            out.item(2, f"… and {unlisted} more")
    malformed = session.malformed_events
    if malformed:
        out.key(1, "malformed")
        for index, bad in malformed[:MAX_ISSUE_LINES]:
            out.item(2, f"event #{index} {bad.kind}: {bad.detail}")
        if len(malformed) > MAX_ISSUE_LINES:
            out.item(2, f"… and {len(malformed) - MAX_ISSUE_LINES} more")
    notes = list(notes)
    if notes:
        out.key(1, "notes")
        for note in notes:
            out.item(2, note)


def _side(totals: SideTotals) -> str:
    return f"{_count(totals.bytes, 'byte')} · {_count(totals.chunks, 'chunk')} · {_count(totals.events, 'event')}"


def _change(out: Writer, change: Change) -> None:
    """One changed event as a sequence item: its kind, where it is on each
    side with its bytes and chunks there, then what its bytes were on the
    sides that have it, each shortened to one line."""
    up = f"upstream #{change.upstream} ({change.upstream_bytes:,} B, {_count(change.upstream_chunks, 'chunk')})"
    down = f"client #{change.client} ({change.client_bytes:,} B, {_count(change.client_chunks, 'chunk')})"
    if change.kind == "dropped":
        where, previews = up, [("bytes", change.upstream_preview)]
    elif change.kind == "added":
        where, previews = down, [("bytes", change.client_preview)]
    elif change.kind == "rechunked":
        where, previews = f"{up} → {down}", []  # the same bytes: only the cuts moved
    else:
        where, previews = f"{up} → {down}", [("upstream", change.upstream_preview), ("client", change.client_preview)]
    out.field(2, change.kind, where, item=True)
    for name, preview in previews:
        # Room for the key and a quote each side; doubled quotes may still wrap it.
        # Cut with a bare "…": sides.py keeps only a preview, the full size is said above.
        text = printable(preview.removesuffix("…")).replace("\r", "\\r").replace("\n", "\\n")
        room = out.width - cells(f"{'  ' * 3}{name}: ") - 2
        cut = cells(text) > room or preview.endswith("…")
        out.field(3, name, _take(text, room - 1) + "…" if cut else text)


def sides_section(out: Writer, found: Sides | None) -> None:
    """What the client got versus what the upstream sent: one line when the
    bytes went through unchanged; else both sides' totals, the changes by
    kind, and the first MAX_CHANGE_LINES changed events (what the client
    missed, got extra or got rewritten first; rechunked ones, which change no
    byte, after), with how many there are in all. Nothing when not known."""
    name = "client vs upstream"
    if found is None:
        return
    if not found.changed or found.upstream is None or found.client is None:
        out.field(0, name, found.how)
        if found.note:
            out.comment(1, found.note)
        return
    out.key(0, name)
    out.field(1, "how", found.how)
    out.field(1, "upstream", _side(found.upstream))
    out.field(1, "client", _side(found.client))
    total = sum(found.counts.get(kind, 0) for kind in KINDS)
    out.field(1, "changes", " · ".join(f"{found.counts.get(kind, 0):,} {kind}" for kind in KINDS))
    if found.note:
        out.field(1, "note", found.note)
    if not total:
        return
    ordered = sorted(found.changes, key=lambda c: c.kind == "rechunked")[:MAX_CHANGE_LINES]
    out.key(1, "first changed", f"{len(ordered):,} of {_count(total, 'changed event')}"
            + (", rechunked ones last" if any(c.kind == "rechunked" for c in found.changes) else ""))
    for change in ordered:
        _change(out, change)
    if total > len(ordered):
        out.comment(2, f"… {total - len(ordered):,} more not listed (ssemedic report --json lists them)")


def timeline(out: Writer, session: StreamSession, origin: float | None) -> None:
    """Two rows of bars, chunks and events per time column, and a row marking TTFB (B) and TTFT (T)."""
    chunk_times = list(session.chunk_times)
    event_times = list(session.event_times)
    if origin is None and chunk_times:
        origin = chunk_times[0]
    timing = session.timing()
    if origin is None or not chunk_times:
        out.field(0, "arrivals", "unknown (no chunk timeline)")
        return
    lead = "  chunks: '"
    columns = out.width - cells(lead) - 1
    end = max(chunk_times[-1], event_times[-1] if event_times else origin)
    if session.closed_at is not None and session.closed_at >= end:
        end = session.closed_at
    span = max(end - origin, 1e-9)
    step = span / columns
    stall = session.diagnoser.stall_after
    out.key(0, "arrivals", f"{_ms(0)} to {_ms(span)} in {columns} columns of {_ms(step)}; "
            f"bar height: how many arrived in the column; {QUIET} none; {STALL} inside a stall "
            f"(over {stall:g} s); B the first byte, T the first token")
    stalled = [False] * columns
    for a, b in zip(event_times, event_times[1:]):
        if b - a > stall:
            for col in range(_column(a, origin, step, columns) + 1, _column(b, origin, step, columns)):
                stalled[col] = True

    def bars(times: list[float]) -> str:
        counts = [0] * columns
        for t in times:
            counts[_column(t, origin, step, columns)] += 1
        top = max(counts) or 1
        return "".join(
            BARS[min(len(BARS) - 1, (n * len(BARS) - 1) // top)] if n else (STALL if stalled[i] else QUIET)
            for i, n in enumerate(counts)
        )

    marks = [" "] * columns
    for label, value in (("B", timing.ttfb), ("T", timing.ttft)):  # T wins a shared column
        if value is not None and session.started_at is not None:
            marks[_column(session.started_at + value, origin, step, columns)] = label
    out.lines.append(f"  chunks: '{bars(chunk_times)}'")
    out.lines.append(f"  events: '{bars(event_times)}'")
    out.lines.append(f"  timing: '{''.join(marks).rstrip()}'")


def _row(head: str, meaning: str, room: int) -> str:
    """One table row's value in ``room`` columns: a space and the row plain,
    or the row quoted, so that both start their text in the same column."""
    limit = room - 2
    while True:
        body = (head + "  " + shorten(meaning, max(limit - cells(head) - 2, 8))).rstrip()
        text = body.lstrip()
        if plain_ok(text):
            value = " " + body
        else:
            value = "'" + body.replace("'", "''") + "'"
        if cells(value) <= room or limit <= cells(head) + 10:
            return value if cells(value) <= room else _take(value, room)
        limit -= cells(value) - room


def _column(t: float, origin: float, step: float, columns: int) -> int:
    return min(max(int((t - origin) / step), 0), columns - 1)


def event_table(out: Writer, session: StreamSession, records: Sequence[EventRecord],
                origin: float | None) -> None:
    if not records:
        out.field(0, "events", "none")
        return
    timed = origin is not None and records[0].time is not None
    legend = "at: since the request; gap: since the event before; " if timed else ""
    out.key(0, "events", f"{legend}marks: {SPLIT} split across chunks, {BURST} in one burst "
            f"(the same chunk as the event before)"
            + (f", {AFTER_STALL} after a stall (over {session.diagnoser.stall_after:g} s)" if timed else ""))
    rows = []
    for record, arrival in zip(records, arrivals(session, records)):
        cols = []
        if timed and origin is not None and record.time is not None:
            cols.append(f"+{record.time - origin:.3f}s")
            cols.append("" if arrival.gap is None else f"{arrival.gap * 1000:.1f}ms")
        cols.append(arrival.marks)
        cols.append(printable(shorten(record.event.event, 24)))
        meaning = describe(record.parts, 0) if record.parts else f"(no meaning) data {record.event.data!r}"
        rows.append((f"{record.index}:", cols, printable(meaning)))
    key_width = max(len(k) for k, _, _ in rows)
    col_widths = [max(cells(c[i]) for _, c, _ in rows) for i in range(len(rows[0][1]))]
    for key, cols, meaning in rows:
        # The time columns are right-aligned, the rest left-aligned.
        aligned = [c.rjust(w) if i < len(cols) - 2 else c + " " * (w - cells(c))
                   for i, (c, w) in enumerate(zip(cols, col_widths)) if w]  # no marks at all: no column
        lead = "  " + key.ljust(key_width) + " "
        out.lines.append(lead + _row("  ".join(aligned), meaning, out.width - cells(lead)))
    if session.event_count > len(records):
        out.comment(1, f"… {session.event_count - len(records):,} more events not listed")


# -- the whole view --------------------------------------------------------------------


def render(session: StreamSession, records: Sequence[EventRecord], *, width: int = DEFAULT_WIDTH,
           origin: float | None = None, notes: Iterable[str] = (), cut_note: str | None = None,
           sides: Sides | None = None) -> list[str]:
    """The view of a closed ``session`` as lines of at most ``width`` columns:
    verdict, message, what the client got versus the upstream (``sides``,
    when known), timeline, then ``records`` (the events kept) as a table.
    ``origin`` is the time the offsets count from (the request's start);
    ``cut_note`` says where a recording stopped short of the stream."""
    out = Writer(width)
    verdict(out, session, cut_note)
    message_section(out, session, notes)
    sides_section(out, sides)
    timeline(out, session, origin)
    event_table(out, session, records, origin)
    return out.lines
