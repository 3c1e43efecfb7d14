"""Redaction in the live addon: no credential the client sent survives in the
log, the JSONL or the saved flow, while the traffic itself is untouched."""

from __future__ import annotations

from pathlib import Path

import httpx
from e2e import load_script, mitmdump

upstream_mod = load_script("demo_upstream")
SECRETS = ["sk-proj-abcdefghijklmnopqrstuvwxyz0123", "AIzaSyA1234567890abcdefghijklmnopqrstu", "s3ss10nc00k1e"]
CHAT = {"model": "healthy", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def run(upstream: int, workdir: Path, *extra: str) -> tuple[bytes, str, str, bytes]:
    flows, jsonl = workdir / "saved.flows", workdir / "events.jsonl"
    with mitmdump(upstream, workdir, "-w", str(flows), "--set", f"ssemedic_jsonl={jsonl}", *extra) as mitm:
        headers = {"Authorization": f"Bearer {SECRETS[0]}", "Cookie": f"sid={SECRETS[2]}"}
        url = f"{mitm.base}/v1/chat/completions?delay=0.002&key={SECRETS[1]}"
        with httpx.Client(timeout=30) as client, client.stream("POST", url, json=CHAT, headers=headers) as r:
            body = b"".join(r.iter_raw())
    return body, mitm.output(), jsonl.read_text(encoding="utf-8"), flows.read_bytes()


def test_no_secret_survives_in_log_jsonl_or_saved_flow(upstream: int, tmp_path: Path) -> None:
    body, log, jsonl, saved = run(upstream, tmp_path)
    assert b"data: [DONE]" in body  # the traffic itself went through
    for secret in SECRETS:
        assert secret not in log and secret not in jsonl
        assert secret.encode() not in saved
    assert "key=REDACTED" in log and b"Bearer sk-proj-[REDACTED]" in saved


def test_redaction_can_be_turned_off(upstream: int, tmp_path: Path) -> None:
    _, log, _, saved = run(upstream, tmp_path, "--set", "ssemedic_redact=false")
    assert SECRETS[1] in log and SECRETS[0].encode() in saved
