"""The offline report: one summary per stream, as plain data or as rich panels."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .describe import trim
from .sources import Stream


def build(stream: Stream, *, provider: str | None = None) -> dict[str, Any]:
    """Run ``stream`` through a session and return its report object."""
    session = stream.session(provider=provider)
    report: dict[str, Any] = {"source": stream.label, "status": stream.status}
    report.update(session.summary())
    if all(at is None for _, at in stream.chunks):
        report["timing"]["chunks"] = None  # the original chunking is unknown
    report["notes"] = list(stream.notes)
    return report


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


def panel(report: dict[str, Any], *, max_text: int = 2000) -> Panel:
    """A rich panel for one report object."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column(overflow="fold")
    timing = report["timing"]

    def row(label: str, value: str | Text, style: str = "") -> None:
        grid.add_row(label, value if isinstance(value, Text) else Text(value, style=style))

    status = "" if report.get("status") is None else f" · HTTP {report['status']}"
    model = f" · model {report['model']}" if report.get("model") else ""
    row("stream", f"{report['provider']} ({report['framing']}){status}{model}")
    chunks = "chunking unknown" if timing["chunks"] is None else f"{timing['chunks']} chunks"
    row("size", f"{report['events']} events · {timing['bytes']:,} bytes · {chunks}")
    row("timing", _timing_line(timing))
    ending = report["finish_reason"] or "—"
    row("finish", f"{ending} · {'complete' if report['complete'] else 'no terminal signal'}",
        "" if report["complete"] else "yellow")
    if report["usage"]:
        row("usage", json.dumps(report["usage"], ensure_ascii=False))
    if report["reasoning"]:
        row("reasoning", trim(report["reasoning"], max_text), "dim italic")
    row("text", trim(report["text"], max_text) if report["text"] else "(no text)", "" if report["text"] else "dim")
    if report["refusal"]:
        row("refusal", trim(report["refusal"], max_text), "magenta")
    for call in report["tool_calls"]:
        row("tool call", f"{call['name']}({trim(call['arguments'], max_text)})")
    for result in report["tool_results"]:
        label = "tool error" if result["is_error"] else "tool result"
        row(label, f"{result['name'] or result['tool_call_id'] or '?'} → {trim(result['content'], max_text)}")
    for error in report["errors"]:
        kind = f"[{error['type']}] " if error.get("type") else ""
        row("error", f"{kind}{error['message']}", "bold red")
    for fault in report["faults"]:
        style = {"error": "bold red", "warning": "yellow"}.get(fault["severity"], "")
        times = f" ×{fault['count']}" if fault.get("count", 1) > 1 else ""
        detail = f" ({fault['detail']})" if fault["detail"] else ""
        row("fault", f"{fault['kind']}{times}: {fault['message']}{detail}", style)
    for issue in report["issues"]:
        where = f" @{issue['offset']}" if "offset" in issue else f" event #{issue['event_index']}"
        row("issue", f"{issue['kind']}{where}: {issue['detail']}", "yellow")
    for note in report["notes"]:
        row("note", note, "dim")
    severities = {fault["severity"] for fault in report["faults"]}
    if report["errors"] or "error" in severities:
        border = "red"
    elif report["issues"] or "warning" in severities or not report["complete"]:
        border = "yellow"
    else:
        border = "green"
    return Panel(grid, title=Text(report["source"], style="bold"), title_align="left", border_style=border)


def render(reports: list[dict[str, Any]], console: Console, *, max_text: int = 2000) -> None:
    """Print every report as a panel."""
    if not reports:
        console.print("no streamed responses found")
        return
    console.print(Group(*(panel(r, max_text=max_text) for r in reports)))
