"""Bedrock through a real mitmdump with ssemedic, inspect-only and with every
repair on: botocore's own bedrock-runtime client (the AWS SDK's event-stream
decoder) reads ConverseStream and InvokeModelWithResponseStream from the demo
upstream through the proxy, byte for byte as the upstream sent them, and
ssemedic's JSONL names what they meant."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import botocore.session
import httpx
import pytest
from e2e import load_script, mitmdump

demo = load_script("demo_upstream")
MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"


def client(base: str) -> Any:
    session = botocore.session.get_session()
    return session.create_client("bedrock-runtime", region_name="us-east-1", endpoint_url=base,
                                 aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="not-a-real-secret")


def summaries(jsonl: Path, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if jsonl.exists():
            found = [o for o in map(json.loads, jsonl.read_text(encoding="utf-8").splitlines())
                     if o.get("type") == "summary"]
            if len(found) >= count:
                return found
        time.sleep(0.05)
    raise AssertionError(f"{len(found)} of {count} summaries in {jsonl}")


@pytest.mark.parametrize("repair", ["false", "true"])
def test_aws_sdk_reads_bedrock_streams_through_ssemedic(upstream: int, tmp_path: Path, repair: str) -> None:
    jsonl = tmp_path / "events.jsonl"
    with mitmdump(upstream, tmp_path, "--set", f"ssemedic_jsonl={jsonl}", "--set", f"ssemedic_repair={repair}") as mitm:
        bedrock = client(mitm.base)
        reply = bedrock.converse_stream(modelId=MODEL, messages=[{"role": "user", "content": [{"text": "Почему?"}]}])
        events = list(reply["stream"])
        deltas = [e["contentBlockDelta"]["delta"] for e in events if "contentBlockDelta" in e]
        assert "".join(d.get("text", "") for d in deltas) == demo.HEALTHY_TEXT
        assert "".join(d["reasoningContent"].get("text", "") for d in deltas if "reasoningContent" in d) == \
            demo.HEALTHY_REASONING
        assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
        assert events[-1]["metadata"]["usage"]["inputTokens"] == 27

        invoke = bedrock.invoke_model_with_response_stream(modelId=MODEL, body=b'{"max_tokens": 64}')
        inner = [json.loads(e["chunk"]["bytes"]) for e in invoke["body"]]
        assert inner[-1] == {"type": "message_stop"}

        path = f"/model/{MODEL}/converse-stream?delay=0.001"
        through = httpx.post(f"{mitm.base}{path}", json={}, timeout=10).content
        direct = httpx.post(f"http://127.0.0.1:{upstream}{path}", json={}, timeout=10).content
        assert through == direct

        converse, invoked, _ = summaries(jsonl, 3)
    for summary in (converse, invoked):
        assert summary["provider"] == "bedrock" and summary["framing"] == "eventstream"
        assert (summary["text"], summary["reasoning"]) == (demo.HEALTHY_TEXT, demo.HEALTHY_REASONING)
        assert summary["complete"] is True and summary["finish_reason"] == "end_turn"
        assert {f["kind"] for f in summary["faults"]} <= {"missing-no-transform", "missing-accel-buffering"}
        passed = any("AWS event stream is binary" in note for note in summary["notes"])
        assert passed == (repair == "true")
    assert converse["usage"]["latencyMs"] == 1840
