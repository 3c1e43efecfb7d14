#!/usr/bin/env python3
"""Does each speed trick in the core still pay for what it costs a reader?

The core keeps two tricks that a plain reader would not expect, and dropped
a third after this script measured it:

1. ``ServerSentEvent`` is a frozen dataclass *stored as a tuple*: the SSE
   parser builds events with one C call, ``tuple.__new__``, mapped over the
   fields (``core/events.py``). Its fields are ``property(itemgetter(i))``;
   they used to be CPython's private ``_collections._tuplegetter``, the
   descriptor ``collections.namedtuple`` uses, which is still measured here.
2. ``providers.base.loads`` calls the C JSON scanner directly and falls back
   to ``json.loads`` for anything but one bare JSON document
   (``core/providers/base.py``).

This script measures each against the plain code it replaces, in the same
run, over the 50 MB token stream of ``scripts/bench_parser.py``, and puts the
difference beside the time of the stage it sits in (the SSE parser for 1,
the whole ``StreamSession`` for 2), so the README can say whether it pays:

- event building: ``tuple.__new__`` mapped over the fields, against a
  ``@dataclass(frozen=True, slots=True)`` built by its constructor (what the
  parser would do without the trick);
- field reads: ``property(itemgetter(i))`` (what events.py uses), against
  the private namedtuple descriptor (what it used) and a slot;
- JSON: ``loads`` against ``json.loads`` over every event's data.

Each figure is the fastest of ``--repeat`` runs (CPU time), which drops
bursts of other load on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat, starmap
from operator import itemgetter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "addons"))

from bench_parser import build_stream  # noqa: E402 - scripts/ is on sys.path above

from ssemedic import SSEParser, ServerSentEvent, StreamSession  # noqa: E402
from ssemedic.core.providers.base import loads  # noqa: E402


@dataclass(frozen=True, slots=True)
class SlottedEvent:
    """What ServerSentEvent would be without the tuple trick."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None
    raw: bytes = b""
    offset: int = 0


try:
    from _collections import _tuplegetter  # type: ignore[import-not-found]
except ImportError:  # not CPython: measure property against itself
    def _tuplegetter(index: int, doc: str) -> Any:
        return property(itemgetter(index), doc=doc)


class DescriptorEvent(tuple[str, str, str | None, int | None, bytes, int]):
    """The tuple storage with the private namedtuple descriptor events.py used to use."""

    __slots__ = ()
    data = _tuplegetter(1, "data")
    raw = _tuplegetter(4, "raw")


def best(fn: Callable[[], Any], rounds: int) -> float:
    """The fastest CPU time of ``rounds`` calls of ``fn``, in seconds, with
    the cyclic garbage collector off: a run that keeps 174,000 objects alive
    would otherwise pay for collections that a live stream, whose events die
    young, does not."""
    times = []
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        finally:
            gc.enable()
    return min(times)


def parse(chunks: list[bytes]) -> list[ServerSentEvent]:
    parser = SSEParser()
    events = [e for chunk in chunks for e in parser.feed(chunk)]
    events += parser.close()
    return events


def session_run(chunks: list[bytes]) -> int:
    session = StreamSession(path="/v1/chat/completions", content_type="text/event-stream")
    n = 0
    for i, chunk in enumerate(chunks):
        n += len(session.feed(chunk, i * 0.001))
    n += len(session.close(len(chunks) * 0.001))
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--megabytes", type=float, default=50.0, help="size of the generated stream (default 50)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement; the fastest counts (default 5)")
    args = ap.parse_args(argv)
    if args.megabytes <= 0 or args.repeat < 1:
        ap.error("--megabytes must be > 0 and --repeat >= 1")

    stream = build_stream(int(args.megabytes * 1_000_000), seed=1)
    events = parse(stream.chunks)
    n = len(events)
    if n != stream.events:
        raise SystemExit(f"the parser dispatched {n} events, the generator wrote {stream.events}")
    fields = [tuple(e) for e in events]
    tuple_events = list(map(tuple.__new__, repeat(ServerSentEvent), fields))
    slotted = list(starmap(SlottedEvent, fields))
    described = list(map(tuple.__new__, repeat(DescriptorEvent), fields))
    datas = [e.data for e in events]
    if slotted[-1].data != tuple_events[-1].data or described[-1].data != tuple_events[-1].data:
        raise SystemExit("the event variants disagree")
    if [loads(d) for d in datas[:2000] if d != "[DONE]"] != [json.loads(d) for d in datas[:2000] if d != "[DONE]"]:
        raise SystemExit("loads and json.loads disagree")
    json_datas = [d for d in datas if d != "[DONE]"]

    r = args.repeat
    parser_s = best(lambda: parse(stream.chunks), r)
    session_s = best(lambda: session_run(stream.chunks), r)
    build_tuple = best(lambda: list(map(tuple.__new__, repeat(ServerSentEvent), fields)), r)
    build_slotted = best(lambda: list(starmap(SlottedEvent, fields)), r)

    def reads(items: list[Any]) -> Callable[[], int]:
        return lambda: sum(len(e.data) + len(e.raw) for e in items)

    read_tuple = best(reads(tuple_events), r)
    read_descriptor = best(reads(described), r)
    read_slot = best(reads(slotted), r)
    json_scan = best(lambda: deque(map(loads, json_datas), maxlen=0), r)
    json_plain = best(lambda: deque(map(json.loads, json_datas), maxlen=0), r)

    us = 1e6 / n

    print(f"Python {platform.python_version()} ({platform.python_implementation()}), {platform.platform()}")
    print(f"stream: {stream.size / 1e6:.1f} MB, {n:,} events in {len(stream.chunks):,} chunks; "
          f"fastest of {r} runs, CPU time, gc off; µs are per event")
    print(f"\nstage                          µs/event")
    print(f"SSEParser (whole parse)        {parser_s * us:8.3f}")
    print(f"StreamSession (whole session)  {session_s * us:8.3f}")

    def row(name: str, trick: float, plain: float, stage: float, stage_name: str) -> None:
        saved = (plain - trick) * us
        share = (plain - trick) / stage * 100
        print(f"{name:<36} {trick * us:7.3f} {plain * us:7.3f} {saved:+8.3f}   {share:+6.1f}% of {stage_name}")

    print(f"\ntrick                                 trick   plain   saved   share of its stage")
    row("event build: tuple.__new__ vs slots", build_tuple, build_slotted, parser_s, "the parse")
    row("field reads: property vs descriptor", read_tuple, read_descriptor, parser_s, "the parse")
    row("field reads: property vs slot", read_tuple, read_slot, parser_s, "the parse")
    row("JSON: scanner vs json.loads", json_scan, json_plain, session_s, "the session")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
