"""The ``ssemedic`` command line: offline reports on captured streams."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from .. import __version__
from ..core import providers
from . import otel, replay
from . import redact as redaction
from ..core.describe import printable_data
from ..core.events import dumps
from ..core.faults import CATALOGUE
from . import html
from .report import build, render
from .sources import SourceError, read_captures


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssemedic",
        description="Inspect streamed LLM responses (SSE and NDJSON) offline.",
    )
    parser.add_argument("--version", action="version", version=f"ssemedic {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    report = commands.add_parser(
        "report",
        help="report every stream in captures or mitmproxy flow files",
        description=(
            "Report every streamed response in PATH: a raw SSE or NDJSON body capture, "
            "a mitmproxy flow file (mitmdump -w), or a HAR file."
        ),
    )
    report.add_argument("paths", nargs="+", metavar="PATH")
    report.add_argument("--json", action="store_true", help="print a JSON list, one object per stream")
    report.add_argument(
        "--html", metavar="OUT", help="write a self-contained HTML page to OUT instead of the text report: per "
        "stream a timing chart, the assembled message, the faults with their fixes, both sides of a rewritten "
        "stream, and the events (--json still prints JSON)",
    )
    report.add_argument(
        "--provider",
        choices=providers.names(),
        help="interpret as this provider instead of detecting it",
    )
    report.add_argument(
        "--max-text", type=int, default=2000, metavar="N",
        help="show at most N characters of text per field (0: all; rich output only)",
    )
    report.add_argument(
        "--otlp", metavar="URL", type=_otlp_url,
        help="also export each stream as an OpenTelemetry span (with its recorded timings) and metrics "
        "to this OTLP/HTTP base URL, e.g. http://127.0.0.1:4318 (needs pip install 'ssemedic[otel]')",
    )
    replay_parser = commands.add_parser("replay", help=replay.HELP, description=replay.DESCRIPTION)
    replay.add_arguments(replay_parser)
    redact_parser = commands.add_parser(
        "redact", help="hide credentials in a flow or HAR file before sharing it",
        description="Copy a mitmproxy flow file (or HAR) to OUT with credentials hidden: Authorization, "
        "API-key headers, cookies, key-like values in URLs and api_key fields in JSON request bodies. "
        "The streamed response bodies are kept byte for byte.",
    )
    redaction.add_arguments(redact_parser)
    faults = commands.add_parser(
        "faults",
        help="list every fault ssemedic diagnoses, with its remedy",
        description="List the fault catalogue: kind, severity, what it means and how to fix it.",
    )
    faults.add_argument("--json", action="store_true", help="print a JSON list")
    return parser


def _otlp_url(value: str) -> str:
    try:
        return otel.check_url(value, empty=False)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _faults(args: argparse.Namespace) -> int:
    entries = [
        {"kind": str(kind), "severity": str(entry.severity), "message": entry.message, "hint": entry.hint}
        for kind, entry in CATALOGUE.items()
    ]
    if args.json:
        json.dump(entries, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    table = Table(show_lines=True)
    for column in ("kind", "severity", "what it means", "how to fix it"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(e["kind"], e["severity"], e["message"], e["hint"])
    Console(highlight=False).print(table)
    return 0


def _report(args: argparse.Namespace) -> int:
    """Exit status: 2 if a file could not be read at all, else 1 if one was
    damaged (its readable streams are still reported), else 0."""
    reports: list[dict[str, Any]] = []
    pages: list[html.Stream] = []
    problems: list[str] = []
    captures = []
    failed = damaged = False
    for path in args.paths:
        try:
            read = read_captures(path)
        except SourceError as exc:
            print(f"ssemedic: error: {exc}", file=sys.stderr)
            problems.append(str(exc))
            failed = True
            continue
        for stream in read.streams:
            if args.html is not None:
                pages.append(html.stream(stream, provider=args.provider))  # one run for both outputs
                reports.append(pages[-1].report)
            else:
                reports.append(build(stream, provider=args.provider))
        captures += read.streams if args.otlp else []
        if read.damage is not None:
            before = read.damage.flow - 1
            them = "the flow before it is" if before == 1 else f"the {before} flows before it are"
            print(f"ssemedic: error: {read.damage}; {them} reported", file=sys.stderr)
            problems.append(f"{read.damage}; {them} reported")
            damaged = True
    if args.html is not None and (reports or not failed):
        try:
            with open(args.html, "w", encoding="utf-8", errors="replace") as out:
                out.write(html.page(pages, problems=problems))
        except OSError as exc:
            print(f"ssemedic: error: cannot write {args.html}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"ssemedic: wrote {len(pages):,} stream{'s' * (len(pages) != 1)} to {args.html}", file=sys.stderr)
    if args.json:
        text = dumps(reports, indent=2) + "\n"  # strict JSON, whatever the payloads held
        # In pieces: one large write to a reader that goes away (``| head``)
        # can end short without an error; the next write then raises.
        for start in range(0, len(text), 1 << 16):
            sys.stdout.write(text[start : start + (1 << 16)])
    elif args.html is None and (reports or not failed):
        render([printable_data(r) for r in reports], Console(highlight=False), max_text=args.max_text)
    if args.otlp and (problem := otel.export_captures(args.otlp, captures, provider=args.provider)):
        print(f"ssemedic: error: {problem}", file=sys.stderr)
        failed = True
    return 2 if failed else 1 if damaged else 0


#: What writing the output fails with on a full or broken device (stdout is /dev/full, a full disk).
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (2: bad input or output, 1: damaged input)."""
    args = _parser().parse_args(argv)
    try:
        code = _run(args)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not as an error at exit
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as cat does.
        _silence_stdout()
        return 1
    except OSError as exc:
        if exc.errno not in _FULL or exc.filename is not None:
            raise  # not the output failing: a bug to see whole
        _silence_stdout()
        print(f"ssemedic: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _silence_stdout()
        print("ssemedic: interrupted", file=sys.stderr)
        return 130
    return code


def _run(args: argparse.Namespace) -> int:
    if args.command == "report":
        return _report(args)
    if args.command == "faults":
        return _faults(args)
    if args.command == "replay":
        return replay.run(args)
    if args.command == "redact":
        return redaction.run(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects others


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so Python's own flush at exit cannot fail
    again and print a traceback of its own."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return  # not a real file (a test's capture): nothing is flushed at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
