"""Profile mitmdump with ssemedic under bench_proxy.py's concurrent load.

Usage: .venv/bin/python scripts/profile_proxy.py
       [--mode summary|full|repair|summary-worker|full-worker|repair-worker]
       [--events 200] [--interval-ms 20] [--concurrency 50] [--top 30] [--keep]
       [--ssemedic-set KEY=VALUE ...]

Strategy: one mitmdump runs ``-s addons/medic.py`` and a small profiling
addon (written to a temporary folder), in front of bench_proxy.py's upstream,
and carries the concurrent scenario once. The addon does two things on
mitmproxy's own event loop, the only thread ssemedic works on:

- it times ssemedic's entry points (the stream callable, each deferred
  inspection slice, the hooks, the summary panels) with the thread's CPU
  clock (time.thread_time) around each call, so their cost per event is what
  they cost unprofiled, give or take the clock's own ~1 µs per call (a
  system call: the wall clock would also count the time the loop spends off
  its core on this shared machine); and the garbage collector's pauses
  (gc.callbacks), which no profiler attributes to whoever allocated;
- it runs cProfile (CPU-time clock) over the same run, for where inside
  those entry points the time goes. cProfile's own cost per Python call
  inflates pure-Python code two to three times, so its figures rank costs;
  the timed entry points give their size.

It prints the entry points in µs per event, then cProfile's functions by
own time and ssemedic's by cumulative time, both per event. In a worker mode
only mitmdump's own process is timed and profiled (what the event loop still
does); the worker process's CPU per event is printed beside it. Nothing here
needs more than the standard library.
"""

from __future__ import annotations

import argparse
import json
import pstats
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_proxy
from bench_proxy import BenchError, Proxy, start_upstream
from procs import stop

#: The profiling addon: loaded after medic.py, so ssemedic is imported already.
PROFILER_ADDON = '''\
"""Times ssemedic's entry points and profiles mitmdump (see profile_proxy.py)."""
import cProfile, gc, json, sys, time
from ssemedic.core import pipeline
from ssemedic.mitm import addon, offload, output

OUT = %(out)r
PROFILE = %(profile)r  # cProfile (True) or the timers (False): never both, or cProfile's cost lands in the timers
durations = {}  # label: every call's CPU seconds (sum, count, median and longest are read from it)


def timed(owner, name, label):
    original = getattr(owner, name)
    clock = time.thread_time  # CPU time: on this shared machine the loop is often off its core mid-call

    def wrapper(*args, **kwargs):
        start = clock()
        try:
            return original(*args, **kwargs)
        finally:
            durations.setdefault(label, []).append(clock() - start)

    setattr(owner, name, wrapper)


if not PROFILE:
    timed(pipeline.Pipeline, "__call__", "stream callable (record, forward, queue; repair: all of it)")
    timed(pipeline.Mirror, "inspect_slice", "deferred inspection slices (parse, interpret, diagnose, log)")
    timed(output.Reporter, "_draw_panel", "summary panels drawn in later turns")
    timed(output.Reporter, "_flush", "log flushes")
    timed(addon.Medic, "responseheaders", "responseheaders hook")
    timed(addon.Medic, "response", "response hook (end of stream, redaction)")
    timed(addon.Medic, "requestheaders", "requestheaders hook")
    timed(addon.Medic, "update", "update hook")
    timed(offload.Offload, "_flush", "writes to the worker (ssemedic_worker)")
    timed(offload.Offload, "_readable", "reads from the worker: results, log records (ssemedic_worker)")

gc_started = [0.0]


def on_gc(phase, info):
    if phase == "start":
        gc_started[0] = time.thread_time()
    else:
        label = f"garbage collector, generation {info['generation']}"
        durations.setdefault(label, []).append(time.thread_time() - gc_started[0])


class Profiler:
    def __init__(self):
        self.profile = cProfile.Profile(time.process_time)

    def running(self):
        if PROFILE:
            self.profile.enable()
        else:
            gc.callbacks.append(on_gc)

    def done(self):
        if PROFILE:
            self.profile.disable()
            self.profile.dump_stats(OUT + ".prof")
            return
        gc.callbacks.remove(on_gc)
        with open(OUT + ".json", "w") as f:
            json.dump(durations, f)


addons = [Profiler()]
'''

#: Files whose functions count as ssemedic's in the cumulative listing.
SSEMEDIC_FILES = r"ssemedic/(core|mitm|files)/"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--mode", choices=[m for m in bench_proxy.MODES if m != "plain"], default="summary",
                    help="the ssemedic configuration, as in bench_proxy.py (default summary)")
    ap.add_argument("--events", type=int, default=200, help="events per stream (default 200)")
    ap.add_argument("--interval-ms", type=float, default=20.0, help="pause between events, ms (default 20)")
    ap.add_argument("--concurrency", type=int, default=50, help="concurrent streams (default 50)")
    ap.add_argument("--top", type=int, default=30, help="functions to list (default 30)")
    ap.add_argument("--ssemedic-set", action="append", default=[], metavar="KEY=VALUE",
                    type=bench_proxy._set_value, help="pass --set KEY=VALUE to mitmdump (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (profile, log)")
    args = ap.parse_args(argv)
    args.burst = False
    args.modes = ["plain", args.mode]
    if not 1 <= args.events <= bench_proxy.MAX_EVENTS or args.concurrency < 1:
        ap.error("--events must be 1..100000 and --concurrency at least 1")

    workdir = Path(tempfile.mkdtemp(prefix=bench_proxy.WORKDIR_PREFIX))
    out = workdir / "profile"
    upstream = None
    proxy: Proxy | None = None
    try:
        upstream, upstream_port = start_upstream(workdir)
        events, cpu_per_event = 0, (0.0, 0.0)
        # The same load twice: timed, then under cProfile.
        for profile, suffix in ((False, ".json"), (True, ".prof")):
            addon = workdir / f"profiler_{suffix[1:]}.py"
            addon.write_text(PROFILER_ADDON % {"out": str(out), "profile": profile})
            proxy = bench_proxy.configurations(args, workdir)[1]
            proxy.name += "-" + suffix[1:]
            proxy.args += ["-s", str(addon)]
            proxy.start(upstream_port, workdir)
            events = len(proxy.measure(1, args, events=min(args.events, bench_proxy.WARMUP_EVENTS)))
            assert proxy.proc is not None
            before = bench_proxy.CpuReading.of(proxy.proc.pid)
            concurrent = len(proxy.measure(args.concurrency, args))
            events += concurrent
            time.sleep(bench_proxy.SETTLE_SECONDS)
            after = bench_proxy.CpuReading.of(proxy.proc.pid)
            proxy.seen.update(after.workers)
            if not profile:
                proxy_ns, worker_ns, _ = before.until(after)
                cpu_per_event = (proxy_ns / concurrent / 1e3, worker_ns / concurrent / 1e3)
            stop(proxy.proc)  # SIGINT: mitmdump shuts down and the addon's done() writes its file
            for left in bench_proxy.stop_leftovers([proxy]):
                print(f"warning: still running after mitmdump stopped, so killed: {left}", file=sys.stderr)
            if not out.with_suffix(suffix).exists():
                raise BenchError(f"the profiled mitmdump wrote no {suffix} file:\n{bench_proxy.tail(proxy.log or workdir)}")
            bench_proxy.check_log(proxy)
        report(args, out, events, cpu_per_event)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if proxy is not None:
            stop(proxy.proc)
        if upstream is not None:
            if upstream.stdin is not None:
                upstream.stdin.close()
            stop(upstream)
        if args.keep:
            print(f"profile and log kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(args: argparse.Namespace, out: Path, events: int, cpu_per_event: tuple[float, float]) -> None:
    timed = json.loads(out.with_suffix(".json").read_text())
    print(f"mitmdump with ssemedic ({args.mode}), {args.concurrency} streams of {args.events} events "
          f"every {args.interval_ms:g} ms, run twice (timed, then under cProfile): {events} events each")
    print(f"mitmdump's own process's CPU per event in all, timed run, concurrent streams only: "
          f"{cpu_per_event[0]:.1f} µs; its worker process's: {cpu_per_event[1]:.1f} µs")
    print("\n== ssemedic's entry points, timed around each call (CPU time of the event loop thread) ==")
    print(f"{'µs/event':>9}  {'calls':>7}  {'median µs/call':>14}  {'max µs/call':>11}  entry point")
    for label, took in sorted(timed.items(), key=lambda item: -sum(item[1])):
        print(f"{sum(took) / events * 1e6:9.2f}  {len(took):>7}  {statistics.median(took) * 1e6:14.2f}"
              f"  {max(took) * 1e6:11.1f}  {label}")
    stats = pstats.Stats(str(out.with_suffix(".prof")))
    print(f"\n== cProfile: top {args.top} by own time (µs per event; inflated by profiling) ==")
    _print(stats, "tottime", args.top, events, lambda key: True)
    print(f"\n== cProfile: ssemedic's top {args.top} by cumulative time (µs per event) ==")
    _print(stats, "cumulative", args.top, events, lambda key: re.search(SSEMEDIC_FILES, key[0]) is not None)


def _name(key: tuple[str, int, str]) -> str:
    path, line, function = key
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{short}:{line}({function})" if line else function


def _print(stats: pstats.Stats, order: str, top: int, events: int, keep: Callable[[Any], bool]) -> None:
    entries = stats.stats  # type: ignore[attr-defined]
    column = 2 if order == "tottime" else 3
    rows = sorted(((key, value) for key, value in entries.items() if keep(key)), key=lambda kv: -kv[1][column])
    print(f"{'own µs/ev':>10}{'cum µs/ev':>10}{'calls/ev':>9}  function")
    for key, (_, ncalls, tottime, cumtime, _) in rows[:top]:
        print(f"{tottime / events * 1e6:10.2f}{cumtime / events * 1e6:10.2f}{ncalls / events:9.2f}  {_name(key)}")


if __name__ == "__main__":
    sys.exit(main())
