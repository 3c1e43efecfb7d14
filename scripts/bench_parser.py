"""Measure SSEParser's throughput against httpx-sse, openai-python and a naive split.

Usage: .venv/bin/python scripts/bench_parser.py [--mb 50] [--repeat 5] [--seed 1] [--json] [--profile]

Strategy: build one deterministic OpenAI-style token stream, serialised with
real multi-byte UTF-8, and cut it into seeded 1-4 KB chunks so that chunk
boundaries fall inside lines and inside characters, as they do on a socket.
Every parser does the same work on the same chunk list: feed all chunks, count
the events, sum their data lengths. Runs are interleaved (one of each parser
per round) so that a slow patch of the machine hurts all of them alike. Each
run is timed in slices of 100 chunks; a parser's time is the sum, over slices,
of its fastest of ``--repeat`` runs on that slice: the usual best-of estimate of
what the code costs without noise, taken piecewise so that a burst of other
load on one run is dropped wherever it lands. The best and median whole runs
are shown too. Rates and ratios use the process's CPU time: on a shared machine
wall time also counts the time spent waiting for a core, which is noise here
(all four parsers are single-threaded and do no I/O); wall time is shown too.
Before any timing, every parser's output is checked against the generator's
own record of what it wrote, so a ratio can never compare a parser that did
less work.

This is a measurement, not a test: it always exits 0, and a missed target is
printed as a ``TARGET MISSED`` line.
"""

from __future__ import annotations

import argparse
import codecs
import cProfile
import gc
import hashlib
import io
import json
import os
import platform
import pstats
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
from httpx_sse._decoders import SSELineDecoder as HttpxSSELineDecoder
from openai._streaming import SSEDecoder as OpenAISSEDecoder

from ssemedic.core.sse import SSEParser

MB = 1_000_000  # throughput is in decimal megabytes, like network rates

#: The speedups ssemedic aims for, as (competitor, minimum ratio).
TARGETS = (("httpx-sse", 1.5), ("openai", 3.0))

# Tokens mix ASCII, Cyrillic (2 bytes a character), BMP symbols (3 bytes) and
# emoji (4 bytes, some joined by ZWJ or modifiers), plus the characters JSON
# must escape, so the body has every UTF-8 width and escaped newlines/quotes.
VOCAB = (
    "the", "model", "stream", "token", "response", "function", "because", "however",
    "data", "server", "event", "quickly", "network", "value", "error", "result",
    "Привет", "мир", "поток", "данные", "ответ", "модель", "сервер", "событие",
    "например", "быстро", "ошибка", "значение", "и", "в", "не", "что",
    "😀", "🚀", "👍🏽", "👨‍💻", "🇷🇺", "✅", "🔥", "💡", "—", "…", "€", "→",
    "\n", "\n\n", "```python\n", "\"quoted\"", "back\\slash", "tab\there", "1.5", "42",
)
TOOL_NAMES = ("get_weather", "search_docs", "run_query", "translate_text")


@dataclass(frozen=True, slots=True)
class Stream:
    """The benchmark input and the generator's record of what it contains."""

    chunks: list[bytes]
    size: int
    events: int  # events a spec-correct parser dispatches
    data_chars: int  # total length of their data, in characters
    digest: str  # sha256 over every (event type, data) pair, in order
    tool_call_chunks: int
    typed_events: int
    splits_in_line: int  # chunk boundaries not right after a LF
    splits_in_char: int  # chunk boundaries inside a multi-byte character


def _check(ok: bool, message: str) -> None:
    # Not `assert`: under `python -O` the benchmark must still refuse to
    # compare parsers that did different work.
    if not ok:
        raise AssertionError(message)


def _chunk_json(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _digest_update(h: Any, event: str, data: str) -> None:
    h.update(event.encode("utf-8") + b"\0" + data.encode("utf-8") + b"\0")


def build_stream(target_bytes: int, seed: int) -> Stream:
    """Generate at least ``target_bytes`` of chat.completion.chunk events and cut them."""
    rng = random.Random(seed)
    alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    completion_id = "chatcmpl-" + "".join(rng.choice(alnum) for _ in range(29))
    created = 1_726_000_000
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_" + "".join(rng.choice("0123456789abcdef") for _ in range(10)),
    }

    pieces: list[bytes] = []  # encoded one by one: a joined str would be UCS-4 wide
    size = 0
    events = data_chars = tool_call_chunks = typed_events = 0
    h = hashlib.sha256()

    def emit(data: str, event: str = "") -> None:
        nonlocal size, events, data_chars
        block = ((f"event: {event}\n" if event else "") + f"data: {data}\n\n").encode("utf-8")
        pieces.append(block)
        size += len(block)
        events += 1
        data_chars += len(data)
        _digest_update(h, event or "message", data)

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _chunk_json({**base, "choices": [choice]})

    emit(chunk({"role": "assistant", "content": "", "refusal": None}))
    tool_index = 0
    while size < target_bytes:
        roll = rng.random()
        if roll < 0.004:
            # A tool call arrives as a header delta, then argument fragments.
            call_id = "call_" + "".join(rng.choice(alnum) for _ in range(24))
            args = json.dumps(
                {"query": " ".join(rng.choices(VOCAB, k=rng.randint(3, 12))), "limit": rng.randint(1, 50)},
                ensure_ascii=False,
            )
            header = {
                "index": tool_index,
                "id": call_id,
                "type": "function",
                "function": {"name": rng.choice(TOOL_NAMES), "arguments": ""},
            }
            emit(chunk({"tool_calls": [header]}))
            tool_call_chunks += 1
            pos = 0
            while pos < len(args):
                step = rng.randint(2, 12)
                fragment = {"index": tool_index, "function": {"arguments": args[pos : pos + step]}}
                emit(chunk({"tool_calls": [fragment]}))
                tool_call_chunks += 1
                pos += step
            tool_index += 1
        elif roll < 0.006:
            emit(_chunk_json({"type": "ping", "ts": created + events}), event="heartbeat")
            typed_events += 1
        else:
            words = rng.choices(VOCAB, k=rng.randint(1, 6))
            emit(chunk({"content": " " + " ".join(words)}))
    emit(chunk({}, finish_reason="stop"))
    emit("[DONE]")

    body = b"".join(pieces)
    _check(len(body) == size, "the body is not the size counted")
    del pieces

    chunks: list[bytes] = []
    splits_in_line = splits_in_char = 0
    pos = 0
    while pos < len(body):
        end = min(pos + rng.randint(1024, 4096), len(body))
        chunks.append(body[pos:end])
        if end < len(body):
            splits_in_line += body[end - 1] != 0x0A
            splits_in_char += (body[end] & 0xC0) == 0x80  # a continuation byte
        pos = end
    return Stream(
        chunks, size, events, data_chars, h.hexdigest(),
        tool_call_chunks, typed_events, splits_in_line, splits_in_char,
    )


# -- the timed runs: feed all chunks, count events, sum data lengths ---------
# Each returns (events, total data length). They are kept free of anything but
# that work; bench_* and events_* below are deliberately parallel.


def bench_ssemedic(chunks: Iterable[bytes]) -> tuple[int, int]:
    parser = SSEParser()
    n = total = 0
    for chunk in chunks:
        for event in parser.feed(chunk):
            n += 1
            total += len(event.data)
    for event in parser.close():
        n += 1
        total += len(event.data)
    return n, total


def bench_httpx_sse(chunks: Iterable[bytes]) -> tuple[int, int]:
    # What httpx_sse.EventSource.iter_sse does over httpx's Response.iter_text():
    # httpx decodes with an incremental "replace" decoder and drops empty text.
    # The adapter's two generators are flattened into loops; timed both ways on
    # this stream, the difference was within noise.
    text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines = HttpxSSELineDecoder()
    decoder = HttpxSSEDecoder()
    n = total = 0
    for chunk in chunks:
        text = text_decoder.decode(chunk)
        if text:
            for line in lines.decode(text):
                sse = decoder.decode(line.rstrip("\n"))
                if sse is not None:
                    n += 1
                    total += len(sse.data)
    text = text_decoder.decode(b"", True)
    for line in (lines.decode(text) if text else []) + lines.flush():
        sse = decoder.decode(line.rstrip("\n"))
        if sse is not None:
            n += 1
            total += len(sse.data)
    return n, total


def bench_openai(chunks: Iterable[bytes]) -> tuple[int, int]:
    n = total = 0
    for sse in OpenAISSEDecoder().iter_bytes(iter(chunks)):
        n += 1
        total += len(sse.data)
    return n, total


def bench_naive(chunks: Iterable[bytes]) -> tuple[int, int]:
    # Not spec-correct (no CR or CRLF, no field parsing, no multi-line data):
    # it shows what a pure-Python split can reach at best.
    buf = b""
    n = total = 0
    for chunk in chunks:
        buf = buf + chunk if buf else chunk
        blocks = buf.split(b"\n\n")
        buf = blocks.pop()
        for block in blocks:
            text = block.decode("utf-8")
            if text.startswith("data: "):
                text = text[6:]
            n += 1
            total += len(text)
    return n, total


BENCHES: dict[str, Callable[[Iterable[bytes]], tuple[int, int]]] = {
    "ssemedic": bench_ssemedic,
    "httpx-sse": bench_httpx_sse,
    "openai": bench_openai,
    "naive": bench_naive,
}


# -- the untimed check: the same parsers, yielding (event type, data) --------


def events_ssemedic(chunks: list[bytes]) -> Iterator[tuple[str, str]]:
    parser = SSEParser()
    for chunk in chunks:
        for event in parser.feed(chunk):
            yield event.event, event.data
    for event in parser.close():
        yield event.event, event.data
    _check(not parser.issues, f"ssemedic reported issues on a clean stream: {parser.issues[:3]}")
    _check(parser.pending == 0, f"ssemedic left {parser.pending} bytes pending")


def events_httpx_sse(chunks: list[bytes]) -> Iterator[tuple[str, str]]:
    text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    lines = HttpxSSELineDecoder()
    decoder = HttpxSSEDecoder()

    def texts() -> Iterator[str]:
        yield from (text_decoder.decode(chunk) for chunk in chunks)
        yield text_decoder.decode(b"", True)

    for text in texts():
        for line in lines.decode(text) if text else []:
            if (sse := decoder.decode(line.rstrip("\n"))) is not None:
                yield sse.event or "message", sse.data
    for line in lines.flush():
        if (sse := decoder.decode(line.rstrip("\n"))) is not None:
            yield sse.event or "message", sse.data


def events_openai(chunks: list[bytes]) -> Iterator[tuple[str, str]]:
    for sse in OpenAISSEDecoder().iter_bytes(iter(chunks)):
        yield sse.event or "message", sse.data


CHECKS: dict[str, Callable[[list[bytes]], Iterator[tuple[str, str]]]] = {
    "ssemedic": events_ssemedic,
    "httpx-sse": events_httpx_sse,
    "openai": events_openai,
}


def verify(stream: Stream) -> None:
    """Assert that every parser sees exactly the events the generator wrote."""
    for name, events in CHECKS.items():
        h = hashlib.sha256()
        n = chars = 0
        for event, data in events(stream.chunks):
            _digest_update(h, event, data)
            n += 1
            chars += len(data)
        _check(n == stream.events, f"{name}: {n} events, expected {stream.events}")
        _check(chars == stream.data_chars, f"{name}: {chars} data characters, expected {stream.data_chars}")
        _check(h.hexdigest() == stream.digest, f"{name}: event types or data differ from the generator's")
    # The naive split only promises the event count.
    n, _ = bench_naive(stream.chunks)
    _check(n == stream.events, f"naive: {n} events, expected {stream.events}")


# -- measuring ---------------------------------------------------------------


#: Chunks per timed slice (about 250 KB): see time_all.
SLICE_CHUNKS = 100


@dataclass
class Run:
    """One parser's pass over the whole stream."""

    cpu: float
    wall: float
    slices: list[float]  # CPU seconds spent on each slice of SLICE_CHUNKS chunks


def _marking(chunks: list[bytes], marks: list[float]) -> Iterator[bytes]:
    """The chunks, noting the CPU clock before each slice and at the end."""
    clock = time.process_time
    for start in range(0, len(chunks), SLICE_CHUNKS):
        marks.append(clock())
        yield from chunks[start : start + SLICE_CHUNKS]
    marks.append(clock())


def time_all(stream: Stream, repeat: int) -> dict[str, list[Run]]:
    """Every run, by parser.

    Each run is also timed slice by slice, the parser pulling its chunks
    through ``_marking``. On a shared machine another process's burst can
    land on any run; taking each slice's fastest run and adding them up
    removes such bursts from every parser alike, where the best whole run
    still carries whatever bursts hit it (runs varied by a third here).
    """
    times: dict[str, list[Run]] = {name: [] for name in BENCHES}
    for _ in range(repeat):
        for name, bench in BENCHES.items():
            gc.collect()  # start each run without another run's garbage
            marks: list[float] = []
            w0, c0 = time.perf_counter(), time.process_time()
            n, total = bench(_marking(stream.chunks, marks))
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            _check(n == stream.events, f"{name}: {n} events, expected {stream.events}")
            if name not in ("naive",):
                _check(total == stream.data_chars, f"{name}: data length {total}, expected {stream.data_chars}")
            # The last mark comes once the parser has pulled every chunk; its
            # close() after that is a few microseconds, counted in cpu only.
            times[name].append(Run(cpu, wall, [b - a for a, b in zip(marks, marks[1:])]))
    return times


def ssemedic_peak_memory(stream: Stream) -> int:
    """Peak bytes allocated while parsing; the chunk list predates tracing."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        bench_ssemedic(stream.chunks)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def profile_ssemedic(stream: Stream, top: int = 15) -> str:
    profiler = cProfile.Profile()
    profiler.runcall(bench_ssemedic, stream.chunks)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def summarise(stream: Stream, times: dict[str, list[Run]], peak: int, args: argparse.Namespace) -> dict[str, Any]:
    results = {}
    for name, runs in times.items():
        cpu = sum(map(min, zip(*(run.slices for run in runs), strict=True)))
        results[name] = {
            "cpu_s": cpu,
            "best_run_cpu_s": min(run.cpu for run in runs),
            "median_run_cpu_s": statistics.median(run.cpu for run in runs),
            "best_wall_s": min(run.wall for run in runs),
            "mb_per_s": stream.size / MB / cpu,
            "events_per_s": stream.events / cpu,
        }
    ratios = {name: r["cpu_s"] / results["ssemedic"]["cpu_s"] for name, r in results.items() if name != "ssemedic"}
    best_run_ratios = {
        name: r["best_run_cpu_s"] / results["ssemedic"]["best_run_cpu_s"]
        for name, r in results.items() if name != "ssemedic"
    }
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],  # other work on the machine skews timings
        "versions": {name: package_version(name) for name in ("ssemedic", "httpx-sse", "openai")},
        "stream": {
            "seed": args.seed,
            "bytes": stream.size,
            "events": stream.events,
            "chunks": len(stream.chunks),
            "data_chars": stream.data_chars,
            "tool_call_chunks": stream.tool_call_chunks,
            "typed_events": stream.typed_events,
            "splits_in_line": stream.splits_in_line,
            "splits_in_char": stream.splits_in_char,
        },
        "repeat": args.repeat,
        "slice_chunks": SLICE_CHUNKS,
        "results": results,
        "ratios": ratios,
        "best_run_ratios": best_run_ratios,
        "targets": [
            {"against": name, "min_ratio": minimum, "ratio": ratios[name], "met": ratios[name] >= minimum}
            for name, minimum in TARGETS
        ],
        "ssemedic_peak_memory_bytes": peak,
    }


def print_report(s: dict[str, Any]) -> None:
    st = s["stream"]
    print(f"Python {s['python']} ({s['implementation']}) on {s['platform']}, {s['machine']}, {s['cpus']} CPUs")
    print(f"load average (1 min) at the end: {s['load_average']:.2f}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in s["versions"].items()))
    print(
        f"stream: {st['bytes'] / MB:.1f} MB, {st['events']:,} events "
        f"({st['tool_call_chunks']:,} tool-call deltas, {st['typed_events']:,} typed), "
        f"{st['chunks']:,} chunks of 1-4 KB (seed {st['seed']})"
    )
    print(
        f"        {st['splits_in_line']:,} chunk boundaries inside a line, "
        f"{st['splits_in_char']:,} inside a multi-byte character"
    )
    print(
        f"{s['repeat']} interleaved runs; cpu s = sum over slices of {s['slice_chunks']} chunks of the"
        " fastest run's CPU time; MB = 10^6 bytes\n"
    )
    print(
        f"{'parser':<10} {'cpu s':>8} {'best run':>9} {'median run':>11} {'best wall':>10} "
        f"{'MB/s':>8} {'events/s':>10} {'vs ssemedic':>12}"
    )
    for name, r in s["results"].items():
        ratio = "" if name == "ssemedic" else f"{s['ratios'][name]:.2f}x"
        print(
            f"{name:<10} {r['cpu_s']:>8.3f} {r['best_run_cpu_s']:>9.3f} {r['median_run_cpu_s']:>11.3f} "
            f"{r['best_wall_s']:>10.3f} {r['mb_per_s']:>8.1f} {r['events_per_s']:>10,.0f} {ratio:>12}"
        )
    print("\n(vs ssemedic = that parser's cpu s / ssemedic's; above 1 means ssemedic is faster)")
    print("ratios: " + ", ".join(f"ssemedic/{k} {v:.2f}x" for k, v in s["ratios"].items()))
    print("best whole runs: " + ", ".join(f"ssemedic/{k} {v:.2f}x" for k, v in s["best_run_ratios"].items()))
    print(f"ssemedic peak memory while parsing: {s['ssemedic_peak_memory_bytes'] / 1024:.0f} KiB (tracemalloc)")
    for t in s["targets"]:
        line = f"ssemedic >= {t['min_ratio']}x {t['against']}: {t['ratio']:.2f}x"
        print(f"target met: {line}" if t["met"] else f"TARGET MISSED: {line}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--mb", type=float, default=50, help="stream size in MB (10^6 bytes), default 50")
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--seed", type=int, default=1, help="seed for the stream and its chunking (default 1)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    ap.add_argument("--profile", action="store_true", help="also print cProfile's top 15 (tottime) for ssemedic")
    args = ap.parse_args(argv)
    if args.mb <= 0 or args.repeat < 1:
        ap.error("--mb must be positive and --repeat at least 1")

    stream = build_stream(int(args.mb * MB), args.seed)
    verify(stream)
    times = time_all(stream, args.repeat)
    peak = ssemedic_peak_memory(stream)
    summary = summarise(stream, times, peak, args)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_report(summary)
    if args.profile:
        print(profile_ssemedic(stream), file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
