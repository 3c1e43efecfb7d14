"""``ssemedic report --html``: one self-contained page with, per stream, a
timing chart, the assembled message, the faults with their fixes, what the
client got versus what the upstream sent, and the events.

The page needs no network: its style is inline and its chart is SVG written
here. A plotting library would add a dependency for what is a few hundred
rectangles and lines, and would still need the binning below to stay small.
Everything from a stream is HTML-escaped (see ``_e``); the page holds no
script at all.

Strategy (a 100,000-event stream): the chart is drawn per chunk and per
event while there are at most DETAIL_LIMIT of them, else summed into one bar
per pixel column (BINS of them), so the SVG stays a few hundred kilobytes
whatever the stream; shaded spans are merged per column too. The events
table shows the first and the last TABLE_HALF events and says how many are
left out (``report --json`` has the rest of the report).
"""

from __future__ import annotations

import html
import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.describe import describe, printable_lines
from ..core.diagnose import BURST_MIN_EVENTS, DEFAULT_STALL_SECONDS
from ..core.faults import CATALOGUE, FaultKind
from ..core.session import EventRecord, StreamSession
from . import report as reports
from .sources import Capture

#: Chunks or events drawn one by one up to this many; past it, binned.
DETAIL_LIMIT = 2000
#: Columns of the binned chart.
BINS = 450
#: Events shown at each end of the table.
TABLE_HALF = 500
#: Characters of text shown per field, and of an event's data per row.
MAX_TEXT = 20_000
MAX_DATA = 160
#: Changes between the sides listed one by one.
MAX_CHANGES = 200
#: A silence between chunks shaded as a gap: this many times the median, and at least GAP_MIN_SECONDS.
GAP_FACTOR = 10.0
GAP_MIN_SECONDS = 0.25

# The chart's geometry, in SVG units.
_W, _LEFT, _RIGHT = 960, 64, 16
_BYTES_TOP, _BYTES_H = 14, 130
_EVENTS_TOP, _EVENTS_H = 170, 56
_H = 262
_PLOT = _W - _LEFT - _RIGHT


def _e(value: object) -> str:
    """Text from a stream, safe in HTML text and attribute values."""
    return html.escape(printable_lines(str(value)), quote=True)


def _trim(text: str, limit: int, total: int | None = None) -> str:
    total = len(text) if total is None or total < len(text) else total
    if len(text) <= limit and total == len(text):
        return _e(text)
    return f'{_e(text[:limit])}<span class="cut">… ({total:,} chars in all)</span>'


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.2f} s"


@dataclass(slots=True)
class Stream:
    """One stream's report object and what its chart and table are drawn from."""

    report: dict[str, Any]
    session: StreamSession
    records: list[EventRecord]
    #: Where the clock starts: the request, else the first chunk (None: untimed).
    origin: float | None
    #: How many events end in each chunk.
    per_chunk: list[int]


def stream(capture: Capture, *, provider: str | None = None) -> Stream:
    """Run ``capture`` once and keep what the page shows of it."""
    session, records = capture.run(provider=provider)
    report = reports.build(capture, provider=provider, session=session)
    times = session.chunk_times
    origin = None
    if len(times) == len(session.chunk_offsets) and len(times):
        origin = capture.started_at if capture.started_at is not None else times[0]
    return Stream(report, session, records, origin, _events_per_chunk(records, list(session.chunk_offsets)))


# -- the chart ---------------------------------------------------------------


def _spans(times: Sequence[float], stall: float) -> list[tuple[float, float, str]]:
    """Silences between consecutive arrivals worth shading: (start, end, kind)."""
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    median = gaps[len(gaps) // 2] if gaps else 0.0
    least = max(GAP_FACTOR * median, GAP_MIN_SECONDS)
    out = []
    for a, b in zip(times, times[1:]):
        if b - a >= stall:
            out.append((a, b, "stall"))
        elif b - a >= least:
            out.append((a, b, "gap"))
    return out


def chart(s: Stream, *, stall: float = DEFAULT_STALL_SECONDS) -> str:
    """The SVG timing chart of one stream (a note instead when it has no timeline)."""
    session, origin = s.session, s.origin
    if origin is None:
        return '<p class="note">No chunk timeline: arrival times are unknown, so there is no chart.</p>'
    times = list(session.chunk_times)
    offsets = list(session.chunk_offsets)
    sizes = [b - a for a, b in zip(offsets, offsets[1:] + [session.bytes])]
    event_times = list(session.event_times)
    end = max([times[-1], *(event_times[-1:]), session.closed_at or times[-1]])
    span = max(end - origin, 1e-6)

    def x(t: float) -> float:
        return _LEFT + (t - origin) / span * _PLOT

    out = [f'<svg class="chart" viewBox="0 0 {_W} {_H}"  role="img" '
           f'aria-label="bytes and events over time">']
    # Shaded spans, merged per column so there are never more than BINS of them.
    shaded: dict[int, str] = {}
    rank = {"gap": 1, "burst": 2, "stall": 3}
    for a, b, kind in _spans(times, stall):
        for col in range(int((a - origin) / span * BINS), min(int(math.ceil((b - origin) / span * BINS)), BINS - 1) + 1):
            if rank[kind] > rank.get(shaded.get(col, ""), 0):
                shaded[col] = kind
    for index, count in enumerate(s.per_chunk):
        if count >= BURST_MIN_EVENTS:
            col = min(int((times[index] - origin) / span * BINS), BINS - 1)
            shaded[col] = "burst" if shaded.get(col) != "stall" else "stall"
    col_w = _PLOT / BINS
    run_start: int | None = None
    cols = sorted(shaded)
    for n, col in enumerate(cols):
        if run_start is None:
            run_start = col
        nxt = cols[n + 1] if n + 1 < len(cols) else None
        if nxt != col + 1 or shaded[nxt] != shaded[col]:
            kind = shaded[col]
            out.append(f'<rect class="{kind}" x="{_LEFT + run_start * col_w:.1f}" y="{_BYTES_TOP}" '
                       f'width="{max((col - run_start + 1) * col_w, 2):.1f}" height="{_EVENTS_TOP + _EVENTS_H - _BYTES_TOP}">'
                       f'<title>{kind}</title></rect>')
            run_start = None
    out += _axes(origin, span)
    out += _bytes_panel(times, sizes, x, origin, span)
    out += _events_panel(event_times, x, origin, span)
    for label, ms, cls in (("TTFB", s.report["timing"]["ttfb_ms"], "ttfb"), ("TTFT", s.report["timing"]["ttft_ms"], "ttft")):
        if ms is not None:
            at = x(origin + ms / 1000)
            out.append(f'<line class="{cls}" x1="{at:.1f}" x2="{at:.1f}" y1="{_BYTES_TOP - 4}" '
                       f'y2="{_EVENTS_TOP + _EVENTS_H}"/><text class="{cls}" x="{at + 3:.1f}" '
                       f'y="{_BYTES_TOP + (8 if cls == "ttfb" else 20)}">{label} {ms:,.1f} ms</text>')
    out.append("</svg>")
    detail = (f"{len(times):,} chunks and {len(event_times):,} events"
              + (f", summed into {BINS} columns" if max(len(times), len(event_times)) > DETAIL_LIMIT else ", each drawn"))
    out.append(f'<p class="legend"><span class="k bytes"></span>bytes received (total so far; bars: each chunk) '
               f'<span class="k events"></span>events <span class="k gap"></span>gap '
               f'<span class="k stall"></span>stall (≥ {stall:g} s) <span class="k burst"></span>burst '
               f'(≥ {BURST_MIN_EVENTS} events in one chunk) · {detail}</p>')
    return "".join(out)


def _events_per_chunk(records: list[EventRecord], offsets: list[int]) -> list[int]:
    """How many events end in each chunk (records and offsets both ascend: one walk)."""
    counts = [0] * max(len(offsets), 1)
    chunk, last = 0, len(offsets) - 1
    for record in records:
        end = record.event.offset + len(record.event.raw) - 1
        while chunk < last and offsets[chunk + 1] <= end:
            chunk += 1
        counts[chunk] += 1
    return counts


def _axes(origin: float, span: float) -> list[str]:
    bottom = _EVENTS_TOP + _EVENTS_H
    out = [f'<line class="axis" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{bottom}" y2="{bottom}"/>',
           f'<line class="axis" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{_BYTES_TOP + _BYTES_H}" y2="{_BYTES_TOP + _BYTES_H}"/>']
    step = _nice(span / 6)
    t = 0.0
    while t <= span + 1e-9:
        px = _LEFT + t / span * _PLOT
        out.append(f'<line class="tick" x1="{px:.1f}" x2="{px:.1f}" y1="{_BYTES_TOP}" y2="{bottom + 4}"/>'
                   f'<text class="tick" x="{px:.1f}" y="{bottom + 16}" text-anchor="middle">{_ms(t)}</text>')
        t += step
    return out


def _nice(value: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) of about ``value``."""
    power = 10 ** math.floor(math.log10(value)) if value > 0 else 1.0
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def _bins(times: Sequence[float], weights: Sequence[float] | None, origin: float, span: float) -> list[float]:
    out = [0.0] * BINS
    for n, t in enumerate(times):
        out[min(int((t - origin) / span * BINS), BINS - 1)] += weights[n] if weights is not None else 1
    return out


def _bytes_panel(times: list[float], sizes: list[int], x: Any, origin: float, span: float) -> list[str]:
    total = max(sum(sizes), 1)
    base = _BYTES_TOP + _BYTES_H
    out = [f'<text class="label" x="{_LEFT - 6}" y="{_BYTES_TOP + 8}" text-anchor="end">{total:,} B</text>',
           f'<text class="label" x="{_LEFT - 6}" y="{base}" text-anchor="end">0</text>']
    bars: list[str] = []
    if len(times) <= DETAIL_LIMIT:
        largest = max(sizes, default=1) or 1
        for t, size in zip(times, sizes):
            h = max(size / largest * _BYTES_H * 0.45, 1.5)
            bars.append(f'<line class="chunk" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{base}" y2="{base - h:.1f}">'
                        f'<title>{_ms(t - origin)}: {size:,} B</title></line>')
        points, seen = [f"{_LEFT},{base}"], 0
        for t, size in zip(times, sizes):
            seen += size
            points.append(f"{x(t):.1f},{base - seen / total * _BYTES_H:.1f}")
    else:
        per_bin = _bins(times, sizes, origin, span)
        biggest = max(per_bin) or 1
        col_w = _PLOT / BINS
        points, so_far = [f"{_LEFT},{base}"], 0.0
        for col, in_bin in enumerate(per_bin):
            so_far += in_bin
            points.append(f"{_LEFT + (col + 1) * col_w:.1f},{base - so_far / total * _BYTES_H:.1f}")
            if in_bin:
                h = max(in_bin / biggest * _BYTES_H * 0.45, 1.5)
                bars.append(f'<rect class="chunk" x="{_LEFT + col * col_w:.1f}" y="{base - h:.1f}" '
                            f'width="{col_w:.2f}" height="{h:.1f}"/>')
    out += bars
    out.append(f'<polyline class="bytes" points="{" ".join(points)}"/>')
    return out


def _events_panel(times: list[float], x: Any, origin: float, span: float) -> list[str]:
    base = _EVENTS_TOP + _EVENTS_H
    out = [f'<text class="label" x="{_LEFT - 6}" y="{_EVENTS_TOP + 10}" text-anchor="end">events</text>']
    if len(times) <= DETAIL_LIMIT:
        out += [f'<line class="event" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{base}" y2="{_EVENTS_TOP + 14}"/>'
                for t in times]
    else:
        per_bin = _bins(times, None, origin, span)
        biggest = max(per_bin) or 1
        col_w = _PLOT / BINS
        out += [f'<rect class="event" x="{_LEFT + col * col_w:.1f}" y="{base - n / biggest * (_EVENTS_H - 14):.1f}" '
                f'width="{col_w:.2f}" height="{n / biggest * (_EVENTS_H - 14):.1f}"/>'
                for col, n in enumerate(per_bin) if n]
        out.append(f'<text class="label" x="{_LEFT - 6}" y="{_EVENTS_TOP + 24}" text-anchor="end">max {int(biggest):,}</text>')
    return out


# -- the sections -------------------------------------------------------------


def _verdict(r: dict[str, Any]) -> str:
    severities = {f["severity"] for f in r["faults"]}
    if r["errors"] or "error" in severities:
        return "bad"
    if "warning" in severities or not r["complete"]:
        return "doubt"
    return "good"


def _facts(r: dict[str, Any]) -> str:
    t = r["timing"]
    status = "" if r.get("status") is None else f" · HTTP {r['status']}"
    model = f" · model {_e(r['model'])}" if r.get("model") else ""
    ending = "complete" if r["complete"] else "unknown" if r["complete"] is None else "incomplete"

    def ms(key: str) -> str:
        return "—" if t[key] is None else f"{t[key]:,.1f} ms"

    chunks = "chunking unknown" if t["chunks"] is None else f"{t['chunks']:,} chunks"
    return (f'<p class="facts">{_e(r["provider"])} ({_e(r["framing"])}){status}{model} · '
            f'<b class="{_verdict(r)}">{ending}</b> · finish {_e(r["finish_reason"] or "—")}<br>'
            f'{r["events"]:,} events · {t["bytes"]:,} bytes · {chunks} · TTFB {ms("ttfb_ms")} · '
            f'TTFT {ms("ttft_ms")} · duration {ms("duration_ms")} · worst gap {ms("gap_max_ms")}</p>')


def _faults(r: dict[str, Any], shown: set[int]) -> str:
    faults = sorted(r["faults"], key=lambda f: {"error": 0, "warning": 1}.get(f["severity"], 2))
    if not faults and not r["issues"]:
        return '<h3>Faults</h3><p class="good">None found.</p>'
    rows = []
    for f in faults:
        where = ""
        if "event_index" in f:
            n = f["event_index"]
            where = f'<a href="#{_e(r["_id"])}-ev{n}">event #{n}</a>' if n in shown else f"event #{n}"
        count = f" ×{f['count']:,}" if f.get("count", 1) > 1 else ""
        hint = f.get("hint") or (CATALOGUE[FaultKind(f["kind"])].hint if f["kind"] in set(FaultKind) else "")
        rows.append(f'<tr class="{_e(f["severity"])}"><td>{_e(f["severity"])}</td><td><b>{_e(f["kind"])}</b>{count}</td>'
                    f'<td>{_e(f["message"])}{" (" + _e(f["detail"]) + ")" if f["detail"] else ""} {where}</td>'
                    f'<td>{_e(hint)}</td></tr>')
    for issue in r["issues"][:100]:
        where = f"byte {issue['offset']:,}" if "offset" in issue else f"event #{issue['event_index']}"
        rows.append(f'<tr class="warning"><td>issue</td><td>{_e(issue["kind"])}</td><td>{where}: '
                    f'{_e(issue["detail"])}</td><td></td></tr>')
    return ('<h3>Faults</h3><table class="faults"><tr><th>severity</th><th>fault</th><th>what</th>'
            f'<th>how to fix it</th></tr>{"".join(rows)}</table>')


def _message(s: Stream) -> str:
    r = s.report
    chars = r.get("chars") or {}
    out = ["<h3>Assembled message</h3><dl>"]
    for key, label in (("text", "text"), ("reasoning", "reasoning"), ("refusal", "refusal")):
        if r[key] or key == "text":
            value = _trim(r[key], MAX_TEXT, chars.get(key)) if r[key] else '<span class="note">(no text)</span>'
            out.append(f'<dt>{label}</dt><dd><pre class="{key}">{value}</pre></dd>')
    for call in s.session.message.tool_calls.values():
        valid = call.validity
        cls = "good" if valid == "valid JSON" else "bad" if valid.startswith("invalid") else "note"
        out.append(f'<dt>tool call</dt><dd><b>{_e(call.name or "?")}</b> <span class="note">{_e(call.id or "")}</span> '
                   f'<span class="{cls}">{_e(valid)}</span><pre>{_trim(call.arguments, MAX_TEXT, call.chars)}</pre></dd>')
    for result in r["tool_results"]:
        label = "tool error" if result["is_error"] else "tool result"
        who = result["name"] or result["tool_call_id"] or "?"
        out.append(f'<dt>{label}</dt><dd><b>{_e(who)}</b><pre>'
                   f'{_trim(result["content"], MAX_TEXT, result.get("content_chars"))}</pre></dd>')
    if r["usage"]:
        usage = ", ".join(f"{_e(k)} {_e(v)}" for k, v in r["usage"].items())
        out.append(f"<dt>usage</dt><dd>{usage}</dd>")
    out.append(f'<dt>stop reason</dt><dd>{_e(r["finish_reason"] or "—")}</dd>')
    for error in r["errors"]:
        kind = f"[{_e(error['type'])}] " if error.get("type") else ""
        out.append(f'<dt>error</dt><dd class="bad">{kind}{_e(error["message"])}</dd>')
    for note in r["notes"]:
        out.append(f'<dt>note</dt><dd class="note">{_e(note)}</dd>')
    out.append("</dl>")
    return "".join(out)


def _sides(r: dict[str, Any]) -> str:
    found = r.get("sides")
    if found is None:
        return ""
    out = ["<h3>What the client got versus what the upstream sent</h3>"]
    out.append(f'<p class="{"doubt" if found["changed"] else "good"}">{_e(found["how"])}</p>')
    if found.get("note"):
        out.append(f'<p class="doubt">{_e(found["note"])}</p>')
    if "counts" not in found:
        return "".join(out)
    up, down, counts = found["upstream"], found["client"], found["counts"]
    out.append('<table class="sides"><tr><th></th><th>bytes</th><th>chunks</th><th>events</th></tr>'
               f'<tr><td>upstream sent</td><td>{up["bytes"]:,}</td><td>{up["chunks"]:,}</td><td>{up["events"]:,}</td></tr>'
               f'<tr><td>client got</td><td>{down["bytes"]:,}</td><td>{down["chunks"]:,}</td><td>{down["events"]:,}</td></tr>'
               "</table>")
    out.append("<p>" + ", ".join(f"<b>{counts[k]:,}</b> {k}" for k in ("dropped", "added", "rewritten", "rechunked"))
               + "</p>")
    changes = sorted(found["changes"], key=lambda c: c["kind"] == "rechunked")[:MAX_CHANGES]
    total = sum(counts.values())
    if changes:
        rows = "".join(
            f'<tr class="{_e(c["kind"])}"><td>{_e(c["kind"])}</td><td>{_opt(c["upstream_event"])}</td>'
            f'<td>{c["upstream_bytes"]:,} B / {c["upstream_chunks"]}</td><td>{_opt(c["client_event"])}</td>'
            f'<td>{c["client_bytes"]:,} B / {c["client_chunks"]}</td><td><code>{_e(c["upstream"])}</code></td>'
            f'<td><code>{_e(c["client"])}</code></td></tr>' for c in changes)
        out.append(f'<p class="note">{len(changes):,} of {total:,} changes listed</p>'
                   '<table class="changes"><tr><th>change</th><th>upstream #</th><th>bytes / chunks</th>'
                   f'<th>client #</th><th>bytes / chunks</th><th>upstream sent</th><th>client got</th></tr>{rows}</table>')
    return "".join(out)


def _opt(n: int | None) -> str:
    return "—" if n is None else f"#{n:,}"


def _events(s: Stream, stall: float) -> tuple[str, set[int]]:
    records = s.records
    offsets = list(s.session.chunk_offsets)
    per_chunk = s.per_chunk
    if len(records) > 2 * TABLE_HALF:
        shown = records[:TABLE_HALF] + records[-TABLE_HALF:]
    else:
        shown = records
    faulted = {f["event_index"] for f in s.report["faults"] if "event_index" in f}
    anchor = _e(s.report["_id"])
    rows = []
    prev_time: float | None = None
    for n, record in enumerate(shown):
        if n == TABLE_HALF and len(records) > 2 * TABLE_HALF:
            rows.append(f'<tr class="skip"><td colspan="9">… {len(records) - 2 * TABLE_HALF:,} events '
                        f'not shown (#{TABLE_HALF:,} to #{len(records) - TABLE_HALF - 1:,}) …</td></tr>')
            prev_time = records[len(records) - TABLE_HALF - 1].time
        event = record.event
        marks = []
        start = bisect_right(offsets, event.offset) - 1
        end = bisect_right(offsets, event.offset + max(len(event.raw), 1) - 1) - 1
        if end > start:
            marks.append(f'<span class="m split" title="arrived in {end - start + 1} chunks">split</span>')
        if 0 <= end < len(per_chunk) and per_chunk[end] >= BURST_MIN_EVENTS:
            marks.append(f'<span class="m burst" title="{per_chunk[end]} events in one chunk">burst</span>')
        gap = None if record.time is None or prev_time is None or s.origin is None else record.time - prev_time
        if gap is not None and gap >= stall:
            marks.append('<span class="m stall">stall</span>')
        prev_time = record.time
        at = "—" if record.time is None or s.origin is None else f"{(record.time - s.origin) * 1000:,.1f}"
        gap_text = "" if gap is None else f"{gap * 1000:,.1f}"
        cls = ' class="faulted"' if record.index in faulted else ""
        data = event.data
        data_html = _trim(data, MAX_DATA)
        rows.append(f'<tr id="{anchor}-ev{record.index}"{cls}><td>{record.index:,}</td><td>{at}</td><td>{gap_text}</td>'
                    f'<td>{"".join(marks)}</td><td>{_e(event.event)}</td><td>{_e(event.id or "")}</td>'
                    f'<td>{len(event.raw):,}</td><td>{_e(describe(record.parts, 80))}</td>'
                    f'<td><code>{data_html}</code></td></tr>')
    said = (f"all {len(records):,} events" if len(records) <= 2 * TABLE_HALF else
            f"the first and last {TABLE_HALF:,} of {len(records):,} events")
    table = (f'<h3>Events</h3><p class="note">Showing {said}; times in ms since the request '
             f'(or the first chunk); gap since the previous event.</p>'
             '<div class="scroll"><table class="events"><tr><th>#</th><th>ms</th><th>gap</th><th>arrival</th>'
             '<th>event</th><th>id</th><th>bytes</th><th>meaning</th><th>data</th></tr>'
             f'{"".join(rows)}</table></div>')
    return table, {r.index for r in shown}


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:16px;
color:#1d2330;background:#fafbfc}
h1{font-size:20px}h2{font-size:16px;margin:0;word-break:break-all}h3{font-size:14px;margin:18px 0 6px}
section{background:#fff;border:1px solid #d8dde6;border-left:6px solid #2e9e5b;border-radius:6px;padding:12px 16px;
margin:16px 0}section.v-bad{border-left-color:#d33}section.v-doubt{border-left-color:#e0a100}
.good{color:#2e7d4f}.bad{color:#c62828}.doubt{color:#9a6b00}.note{color:#667}.cut{color:#888;font-style:italic}
.facts{margin:6px 0}pre{white-space:pre-wrap;word-break:break-word;margin:0;max-height:24em;overflow:auto;
background:#f4f6f9;padding:6px;border-radius:4px}pre.reasoning{font-style:italic;color:#555}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 12px;margin:0}dt{font-weight:600;color:#345}
dd{margin:0;min-width:0}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e4e7ec;padding:3px 6px;text-align:left;vertical-align:top}
td code{word-break:break-all;white-space:pre-wrap}
tr.error td:first-child{color:#c62828;font-weight:700}tr.warning td:first-child{color:#9a6b00;font-weight:700}
tr.faulted{background:#fff1f0}tr.skip td{text-align:center;color:#667;background:#f4f6f9}
tr.dropped td:first-child{color:#c62828}tr.added td:first-child{color:#1565c0}tr.rewritten td:first-child{color:#9a6b00}
.scroll{max-height:40em;overflow:auto;border:1px solid #e4e7ec}
.m{display:inline-block;font-size:11px;padding:0 4px;border-radius:3px;margin-right:2px;color:#fff}
.m.split{background:#7b61c9}.m.burst{background:#1e88e5}.m.stall{background:#d33}
svg.chart{width:100%;height:auto;background:#fff}svg .axis{stroke:#99a}svg .tick{stroke:#eef;font-size:10px;fill:#667}
svg text.tick{stroke:none}svg .label{font-size:10px;fill:#667}svg .bytes{fill:none;stroke:#2e7d4f;stroke-width:1.6}
svg .chunk{stroke:#8fc9a6;fill:#8fc9a6}svg .event{stroke:#5c6bc0;fill:#5c6bc0}
svg rect.gap{fill:#ffb300;opacity:.18}svg rect.stall{fill:#e53935;opacity:.22}svg rect.burst{fill:#1e88e5;opacity:.25}
svg line.ttfb{stroke:#6a1b9a;stroke-dasharray:3 2}svg line.ttft{stroke:#ef6c00;stroke-dasharray:3 2}
svg text.ttfb{fill:#6a1b9a;font-size:10px}svg text.ttft{fill:#ef6c00;font-size:10px}
.legend{font-size:12px;color:#556}.k{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px;vertical-align:-1px}
.k.bytes{background:#2e7d4f}.k.events{background:#5c6bc0}.k.gap{background:#ffb300;opacity:.5}
.k.stall{background:#e53935;opacity:.5}.k.burst{background:#1e88e5;opacity:.5}
nav li{margin:2px 0;word-break:break-all}
"""


def section(s: Stream, number: int, *, stall: float = DEFAULT_STALL_SECONDS) -> str:
    """One stream's part of the page."""
    r = s.report
    r["_id"] = f"s{number}"
    events, shown = _events(s, stall)
    body = [f'<section id="s{number}" class="v-{_verdict(r)}"><h2>{_e(r["source"])}</h2>', _facts(r),
            _faults(r, shown), chart(s, stall=stall), _message(s), _sides(r), events, "</section>"]
    del r["_id"]
    return "".join(body)


def page(streams: list[Stream], *, title: str = "ssemedic report", problems: Sequence[str] = ()) -> str:
    """The whole page for ``streams``; ``problems`` are files that could not be read."""
    nav = "".join(f'<li><a class="{_verdict(s.report)}" href="#s{n}">{_e(s.report["source"])}</a></li>'
                  for n, s in enumerate(streams, 1))
    trouble = "".join(f'<p class="bad">{_e(p)}</p>' for p in problems)
    body = "".join(section(s, n) for n, s in enumerate(streams, 1))
    empty = "" if streams else '<p class="note">No streamed responses found.</p>'
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}</style></head>'
            f'<body><h1>{_e(title)}</h1><p class="note">{len(streams):,} stream{"s" * (len(streams) != 1)}</p>'
            f'{trouble}{empty}<nav><ol>{nav}</ol></nav>{body}</body></html>\n')

