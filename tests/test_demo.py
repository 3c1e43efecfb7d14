"""scripts/demo.py end to end: the openai SDK gives up at the in-band error of
``error-then-done``, and ssemedic still sees the [DONE] the router wrote with
it, so the demo's log shows ``done-after-error`` diagnosed."""

from __future__ import annotations

import json
import subprocess
import sys

from e2e import ROOT, load_script

demo_upstream = load_script("demo_upstream")


def test_error_then_done_writes_the_error_and_done_at_once() -> None:
    reply = demo_upstream.SCENARIOS["error-then-done"](demo_upstream.Call("gpt-4o", True, 0.0))
    last = reply.chunks[-1][1]
    error = f"data: {json.dumps({'error': demo_upstream.ERROR_OBJECT}, ensure_ascii=False)}\n\n".encode()
    assert last.endswith(error + b"data: [DONE]\n\n")


def test_demo_shows_done_after_error_diagnosed_although_the_sdk_hung_up_at_the_error() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "error-then-done"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "then failed: upstream connection reset by peer" in run.stdout  # the SDK raised at the error
    log = run.stderr
    assert "FAULT error-in-stream (event #11)" in log
    assert "FAULT done-after-error (event #12)" in log
