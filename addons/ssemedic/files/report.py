"""One summary per stream, as plain data (``ssemedic report --json``) or as the
rich panel that both the live log and ``ssemedic report`` draw."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.panel import Panel
from rich.segment import Segment
from rich.text import Text

from ..core import sides as sides_
from ..core.describe import trim
from ..core.session import StreamSession

try:
    # Private to rich, but it is the very function Text.wrap cuts lines with;
    # without it (a future rich), lines are wrapped by Text.wrap itself.
    from rich._wrap import divide_line
except ImportError:  # pragma: no cover - depends on the installed rich
    divide_line = None  # type: ignore[assignment]
from .sources import Capture


#: How a fault's severity is painted (rich style names), in the panel and the live log.
SEVERITY_STYLES = {"error": "bold red", "warning": "yellow", "info": "dim"}

def build(stream: Capture, *, provider: str | None = None, session: StreamSession | None = None) -> dict[str, Any]:
    """Run ``stream`` through a session (unless given one it ran) and return its report object."""
    session = session if session is not None else stream.session(provider=provider)
    report: dict[str, Any] = {"source": stream.label, "status": stream.status}
    report.update(session.summary())
    if all(at is None for _, at in stream.chunks):
        report["timing"]["chunks"] = None  # the original chunking is unknown
    if stream.undecodable is not None:
        # Not inspected: how the stream ended is unknown, not "incomplete".
        report["complete"] = None
        report["timing"]["bytes"] = len(stream.body)
    report["notes"] = list(stream.notes)
    if stream.cut is not None:
        report["recording"] = stream.cut.to_dict()
    found = sides(stream, provider=provider)
    if found is not None:
        report["sides"] = found.to_dict()
    return report


def sides(stream: Capture, *, provider: str | None = None) -> sides_.Sides | None:
    """What the client got versus what the upstream sent (None: not known, a raw capture)."""
    recorded = stream.recorded
    if recorded is None:
        return None
    client = recorded.client
    if client is None:
        if recorded.repairs or any(note.startswith("injected: ") for note in recorded.notes):
            return sides_.Sides(True, "the stream was rewritten for the client by an older ssemedic, which did "
                                "not record how: the client's side is unknown")
        return sides_.unchanged(recorded.header_repairs)
    if recorded.cut is not None:
        return sides_.Sides(True, sides_.describe(client), note="the recording was cut: the client's side "
                            "cannot be made again from it")
    try:
        replayed = sides_.replay(
            recorded.chunks, client, method=stream.method, path=stream.path,
            request_headers=stream.request_headers, response_headers=stream.response_headers or {},
            status=stream.status, started_at=stream.started_at, ended_at=recorded.ended_at,
            error="connection error" if stream.aborted else None, provider=provider or recorded.provider)
    except ValueError as exc:
        return sides_.Sides(True, sides_.describe(client), note=str(exc))
    return sides_.compare(replayed, client, content_type=stream.content_type)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} ms"


def _timing_line(timing: dict[str, Any]) -> str:
    if all(timing[key] is None for key in ("ttfb_ms", "ttft_ms", "duration_ms", "gap_max_ms")):
        return "unknown (no chunk timeline)"
    return (
        f"TTFB {_ms(timing['ttfb_ms'])} · TTFT {_ms(timing['ttft_ms'])} · "
        f"duration {_ms(timing['duration_ms'])} · gaps p50 {_ms(timing['gap_p50_ms'])} "
        f"p99 {_ms(timing['gap_p99_ms'])} max {_ms(timing['gap_max_ms'])}"
    )


def _rows(report: dict[str, Any], *, max_text: int = 2000) -> list[tuple[str, str, str]]:
    """The summary of one report object as (label, value, style) rows."""
    timing = report["timing"]
    out: list[tuple[str, str, str]] = []

    def row(label: str, value: str, style: str = "") -> None:
        out.append((label, value, style))

    status = "" if report.get("status") is None else f" · HTTP {report['status']}"
    model = f" · model {report['model']}" if report.get("model") else ""
    row("stream", f"{report['provider']} ({report['framing']}){status}{model}")
    chunks = "chunking unknown" if timing["chunks"] is None else f"{timing['chunks']} chunks"
    row("size", f"{report['events']} events · {timing['bytes']:,} bytes · {chunks}")
    row("timing", _timing_line(timing))
    ending = report["finish_reason"] or "—"
    row("finish", f"{ending} · {_end_state(report)}", "" if report["complete"] else "yellow")
    if report["usage"]:
        row("usage", json.dumps(report["usage"], ensure_ascii=False))
    chars = report.get("chars") or {}
    if report["reasoning"]:
        row("reasoning", _content(report["reasoning"], chars.get("reasoning"), max_text), "dim italic")
    if report["text"]:
        row("text", _content(report["text"], chars.get("text"), max_text))
    else:
        row("text", "(no text)", "dim")
    if report["refusal"]:
        row("refusal", _content(report["refusal"], chars.get("refusal"), max_text), "magenta")
    for call in report["tool_calls"]:
        row("tool call", f"{call['name']}({_content(call['arguments'], call.get('arguments_chars'), max_text)})")
    for result in report["tool_results"]:
        label = "tool error" if result["is_error"] else "tool result"
        content = _content(result["content"], result.get("content_chars"), max_text)
        row(label, f"{result['name'] or result['tool_call_id'] or '?'} → {content}")
    cut = report.get("cut") or {}
    if cut.get("tool_call_parts_dropped"):
        row("cut", f"{cut['tool_call_parts_dropped']:,} parts of tool calls beyond the first "
            f"{len(report['tool_calls']):,} not kept", "yellow")
    if cut.get("tool_results_dropped"):
        row("cut", f"{cut['tool_results_dropped']:,} tool results beyond the first "
            f"{len(report['tool_results']):,} not kept", "yellow")
    for error in report["errors"]:
        kind = f"[{error['type']}] " if error.get("type") else ""
        row("error", f"{kind}{error['message']}", "bold red")
    for fault in report["faults"]:
        style = SEVERITY_STYLES.get(fault["severity"], "")
        times = f" ×{fault['count']}" if fault.get("count", 1) > 1 else ""
        detail = f" ({fault['detail']})" if fault["detail"] else ""
        row("fault", f"{fault['kind']}{times}: {fault['message']}{detail}", style)
    for issue in report["issues"]:
        where = f" @{issue['offset']}" if "offset" in issue else f" event #{issue['event_index']}"
        row("issue", f"{issue['kind']}{where}: {issue['detail']}", "yellow")
    for note in report["notes"]:
        row("note", note, "dim")
    _side_rows(report.get("sides"), row)
    return out


#: Changes the text report lists one by one.
MAX_CHANGE_ROWS = 20


def _side_rows(found: dict[str, Any] | None, row: Any) -> None:
    if found is None:
        return
    if not found["changed"] or "counts" not in found:
        row("client", found["how"], "yellow" if found["changed"] else "dim")
    else:
        up, down, counts = found["upstream"], found["client"], found["counts"]
        row("client", found["how"])
        row("sides", f"upstream {up['bytes']:,} bytes in {up['chunks']:,} chunks, {up['events']:,} events → "
            f"client {down['bytes']:,} bytes in {down['chunks']:,} chunks, {down['events']:,} events")
        row("changes", ", ".join(f"{counts[k]:,} {k}" for k in sides_.KINDS))
        total = sum(counts.values())
        # What the client missed or got extra first; rechunking changes no byte.
        ordered = sorted(found["changes"], key=lambda c: c["kind"] == "rechunked")
        for change in ordered[:MAX_CHANGE_ROWS]:
            row("change", _change_line(change), "yellow" if change["kind"] != "rechunked" else "dim")
        if total > min(len(found["changes"]), MAX_CHANGE_ROWS):
            row("change", f"… {total - min(len(found['changes']), MAX_CHANGE_ROWS):,} more "
                "(report --json lists the first " f"{sides_.MAX_CHANGES:,})", "dim")
    if found.get("note"):
        row("client", found["note"], "yellow")


def _change_line(change: dict[str, Any]) -> str:
    """One change as text: which event on which side, its bytes, and a preview."""
    kind = change["kind"]
    up = f"upstream #{change['upstream_event']} ({change['upstream_bytes']:,} B in {change['upstream_chunks']} chunks)"
    down = f"client #{change['client_event']} ({change['client_bytes']:,} B in {change['client_chunks']} chunks)"
    if kind == "dropped":
        return f"dropped {up}: {change['upstream']!r}"
    if kind == "added":
        return f"added {down}: {change['client']!r}"
    if kind == "rechunked":
        return f"rechunked {up} → {down}"
    return f"rewritten {up} → {down}: {change['upstream']!r} → {change['client']!r}"


def _content(kept: str, total: int | None, limit: int) -> str:
    """Kept content, trimmed to ``limit`` characters (0: all of it). When the
    stream kept only a prefix (``total``, the full length, is more), says how
    much was cut, so the panel never passes a prefix off as the whole."""
    if total is None or total <= len(kept):
        return trim(kept, limit)
    shown = kept[:limit] if limit > 0 else kept
    return (f"{shown}… (+{total - len(shown):,} chars; cut: only the first {len(kept):,} "
            f"of {total:,} chars were kept)")


def _end_state(report: dict[str, Any]) -> str:
    """How the stream ended, in the words of the fault that explains it, so
    the finish row never contradicts the faults (an empty body is not "no
    terminal signal", and a [DONE] without a finish_reason says so)."""
    if report["complete"]:
        return "complete"
    cut = report.get("recording")
    if cut is not None:
        where = f" at byte {cut['cut_at']:,}" if cut.get("cut_at") is not None else ""
        return f"not recorded: the recording was cut{where} before the stream ended"
    if report["complete"] is None:
        return "unknown: body not inspected"
    for fault in report["faults"]:
        if fault["kind"] == "empty-response":
            return f"empty: {fault['detail']}" if fault["detail"] else "empty"
        if fault["kind"] == "truncated" and fault["detail"]:
            return f"incomplete: {fault['detail']}"
    return "no terminal signal"


def _border(report: dict[str, Any]) -> str:
    """The panel's border colour: red for errors, yellow for anything doubtful."""
    severities = {fault["severity"] for fault in report["faults"]}
    if report["errors"] or "error" in severities:
        return "red"
    if report["issues"] or "warning" in severities or not report["complete"]:
        return "yellow"
    return "green"


class _Rows:
    """Labels in a column, values after them; a value's further lines start
    under the value column.

    Strategy: this is drawn at the end of every live stream, so it yields
    segments itself rather than laying out a ``Table.grid``, which took five
    times as long. A printable line that fits is one segment; one that must
    wrap is cut where ``Text.wrap`` would cut it, by the function it uses
    (half the cost of building a ``Text``); lines with tabs or control codes
    go through ``Text.wrap`` itself, which expands and strips them.
    """

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        self.rows = rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        label_width = max((len(label) for label, _, _ in self.rows), default=0)
        width = max(options.max_width - label_width - 3, 1)  # a margin either side, a space between
        label_style = console.get_style("bold cyan")
        indent = Segment(" " * (label_width + 2))
        new_line = Segment.line()
        for label, value, style in self.rows:
            head = Segment(f" {label:<{label_width}} ", label_style)
            for line in _wrap(console, value, style, width):
                yield head
                yield from line
                yield new_line
                head = indent


def _wrap(console: Console, value: str, style: str, width: int) -> Iterator[Iterable[Segment]]:
    """``value`` as lines of at most ``width`` cells."""
    value_style = console.get_style(style) if style else None
    for line in value.split("\n"):
        if not line.isprintable() or (divide_line is None and cell_len(line) > width):
            for piece in Text(line, style=style).wrap(console, width, overflow="fold"):
                yield piece.render(console)
        elif cell_len(line) <= width:
            yield (Segment(line, value_style),)
        else:
            start = 0
            for end in (*divide_line(line, width), len(line)):
                yield (Segment(line[start:end], value_style),)
                start = end


def panel(report: dict[str, Any], *, max_text: int = 2000) -> Panel:
    """A rich panel for one report object: the live summary and ``ssemedic report`` both draw this."""
    return Panel(_Rows(_rows(report, max_text=max_text)), title=Text(report["source"], style="bold"),
                 title_align="left", border_style=_border(report), padding=0)


def render(reports: list[dict[str, Any]], console: Console, *, max_text: int = 2000) -> None:
    """Print every report as a panel."""
    if not reports:
        console.print("no streamed responses found")
        return
    console.print(Group(*(panel(r, max_text=max_text) for r in reports)))
