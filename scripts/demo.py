#!/usr/bin/env python3
"""The main job on a built-in demo upstream, start to finish, in about 15 s.

It starts scripts/demo_upstream.py on 127.0.0.1 (a stream in Russian with
emoji whose characters and events are split across chunks, and other
misbehaving scenarios), puts mitmdump with ssemedic in reverse mode in front
of it, and sends streamed chat requests through the proxy with the openai
SDK. ssemedic's live log and summaries appear on stderr as mitmdump prints
them; the client's view appears on stdout. Everything stops by itself.

Usage: scripts/demo [SCENARIO ...]   (default: healthy error-then-done; see
scripts/demo_upstream.py --list)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from procs import free_port, stop, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_SCENARIOS = ["healthy", "error-then-done"]


def started(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    try:
        wait_for_port(port, proc)
    except (RuntimeError, TimeoutError) as exc:
        raise SystemExit(f"demo: {what} did not start: {exc}") from None


def chat(base_url: str, scenario: str) -> None:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="demo-key", max_retries=0, timeout=30)
    print(f"\n── client: streaming chat with scenario {scenario!r} through the proxy", flush=True)
    received = []
    try:
        stream = client.chat.completions.create(
            model=scenario, stream=True,
            messages=[{"role": "user", "content": "Почему ответ появляется по частям?"}],
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
        print(f"── client received: {''.join(received)!r}", flush=True)
    except openai.OpenAIError as exc:
        print(f"── client received {''.join(received)!r}, then failed: {exc}", flush=True)
    time.sleep(0.5)  # let mitmdump print the stream's summary before the next one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("scenarios", nargs="*", default=DEFAULT_SCENARIOS, metavar="SCENARIO")
    args = parser.parse_args()

    upstream_port, proxy_port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo_upstream.py"), "--port", str(upstream_port),
         "--max-seconds", "120"],
        stderr=subprocess.DEVNULL,
    )
    mitm: subprocess.Popen[bytes] | None = None
    try:
        started(upstream_port, upstream, "the demo upstream")
        print(f"── demo upstream on 127.0.0.1:{upstream_port}; mitmdump with ssemedic on 127.0.0.1:{proxy_port}",
              flush=True)
        mitm = subprocess.Popen(
            [str(BIN / "mitmdump"), "--mode", f"reverse:http://127.0.0.1:{upstream_port}",
             "--listen-host", "127.0.0.1", "-p", str(proxy_port), "--set", "flow_detail=0",
             "--set", "termlog_verbosity=warn",
             "-s", str(ROOT / "addons" / "medic.py")],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        started(proxy_port, mitm, "mitmdump")
        for scenario in args.scenarios:
            chat(f"http://127.0.0.1:{proxy_port}/v1", scenario)
    finally:
        if mitm is not None:
            stop(mitm)
        stop(upstream)
    print("\n── demo finished: everything stopped. Next: README.md (Open WebUI setup, options, reports).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
