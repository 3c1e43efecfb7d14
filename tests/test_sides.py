"""What the client got versus what the upstream sent: real repair and injection
runs through the Pipeline, made again from their recording and compared
event by event; a live mitmdump -w run reported by ``ssemedic report``."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import mitmdump
from helpers import sse_event
from test_pipeline import Sink

from ssemedic.core import recording, sides
from ssemedic.core.inject import parse_injections
from ssemedic.core.pipeline import Pipeline
from ssemedic.core.repair import parse_repairs
from ssemedic.files import cli

HEADERS = {"content-type": "text/event-stream"}
PATH = "/v1/chat/completions"


def chunk(word: str) -> bytes:
    return sse_event({"object": "chat.completion.chunk", "model": "m",
                      "choices": [{"index": 0, "delta": {"content": word}}]})


def run(chunks: list[tuple[bytes, float]], **options: Any) -> tuple[Pipeline, bytes]:
    """A live Pipeline over ``chunks`` at their times; returns it and what the client got."""
    now = [0.0]
    pipeline = Pipeline(flow_id="f", label="t", method="POST", path=PATH, request_headers={}, status=200,
                        response_headers=HEADERS, started_at=chunks[0][1] - 0.1, sink=Sink(),
                        clock=lambda: now[0], **options)
    pipeline.announce()
    out: list[bytes] = []
    for data, at in chunks:
        now[0] = at
        out += pipeline(data)
    now[0] = chunks[-1][1] + 0.1
    out += pipeline(b"")
    return pipeline, b"".join(out)


def again(pipeline: Pipeline, chunks: list[tuple[bytes, float]]) -> tuple[sides.Replayed, sides.Sides]:
    """The client's side made again from the pipeline's stored metadata, and the comparison."""
    client = recording._client(pipeline.metadata()["client"])
    assert client is not None
    replayed = sides.replay(chunks, client, method="POST", path=PATH, request_headers={},
                            response_headers=HEADERS, ended_at=pipeline.ended_at)
    return replayed, sides.compare(replayed, client, content_type=HEADERS["content-type"])


BROKEN = chunk("Hello") + b"data: {not json\n\n" + chunk(" world") + \
    b'data: {"error": {"message": "overloaded"}}\n\n' + b"data: [DONE]\n\n"
# Cut inside the first event and inside the invalid one.
BROKEN_CHUNKS = [(BROKEN[:30], 10.0), (BROKEN[30:120], 10.1), (BROKEN[120:], 10.2)]


def test_repair_drops_invalid_json_and_done_after_error_and_rechunks_the_split_event() -> None:
    pipeline, got = run(BROKEN_CHUNKS, repairs=parse_repairs("reframe,sanitize,done"))
    replayed, found = again(pipeline, BROKEN_CHUNKS)
    assert b"".join(d for d, _ in replayed.client) == got  # made again byte for byte
    assert found.note is None
    assert dict(found.counts) == {"dropped": 2, "rechunked": 1}
    dropped = [c for c in found.changes if c.kind == "dropped"]
    assert [c.upstream for c in dropped] == [1, 4]
    assert dropped[0].upstream_preview == "data: {not json\n\n" and dropped[1].upstream_bytes == 14
    [moved] = [c for c in found.changes if c.kind == "rechunked"]
    assert (moved.upstream, moved.client, moved.upstream_chunks, moved.client_chunks) == (0, 0, 2, 1)
    assert found.upstream == sides.SideTotals(len(BROKEN), 3, 5)
    assert found.client == sides.SideTotals(len(got), pipeline.client.chunks_sent, 3)  # type: ignore[union-attr]
    assert "repaired (done, reframe, sanitize)" in found.summary()


def test_injected_error_is_added_and_the_rest_dropped() -> None:
    body = b"".join(chunk(str(n)) for n in range(8)) + b"data: [DONE]\n\n"
    chunks = [(body[i : i + 100], 1.0 + i / 1000) for i in range(0, len(body), 100)]
    pipeline, got = run(chunks, injections=parse_injections("error-done"))
    replayed, found = again(pipeline, chunks)
    assert b"".join(d for d, _ in replayed.client) == got
    # Events 0-4 go out whole; #5 becomes the error, then [DONE]; 6, 7 and the real [DONE] are gone.
    kinds = [(c.kind, c.upstream, c.client) for c in found.changes if c.kind != "rechunked"]
    assert kinds[0] == ("rewritten", 5, 5)
    assert "injected by ssemedic" in found.changes[[c.kind for c in found.changes].index("rewritten")].client_preview
    assert found.counts["dropped"] == 2 and found.counts["added"] == 0
    assert found.upstream is not None and found.client is not None
    assert (found.upstream.events, found.client.events) == (9, 7)


def test_split_injection_rechunks_every_event_and_changes_no_bytes() -> None:
    body = "".join(chunk(w).decode() for w in ("Привет", " мир")).encode() + b"data: [DONE]\n\n"
    chunks = [(body, 5.0)]
    pipeline, got = run(chunks, injections=parse_injections("split-utf8"))
    assert got == body
    _, found = again(pipeline, chunks)
    assert dict(found.counts) == {"rechunked": 2}  # [DONE] has no multi-byte character
    assert found.client is not None and found.client.bytes == len(body) and found.client.chunks == 5


def test_stall_injection_is_made_again_from_the_recorded_times() -> None:
    body = b"".join(chunk(str(n)) for n in range(4)) + b"data: [DONE]\n\n"
    events = body.split(b"\n\n")[:-1]
    chunks = [(e + b"\n\n", 1.0 + n) for n, e in enumerate(events)]  # one a second
    pipeline, got = run(chunks, injections=parse_injections("stall=2.5"))
    replayed, _ = again(pipeline, chunks)
    assert b"".join(d for d, _ in replayed.client) == got
    # The first event goes at once; the next ones are held until 2.5 s after it passed.
    assert [at for _, at in replayed.client] == [1.0, 4.0, 4.0, 4.0, 5.0]


def test_inspect_only_keeps_no_client_side() -> None:
    pipeline, got = run(BROKEN_CHUNKS)
    assert got == BROKEN and pipeline.client is None and "client" not in pipeline.metadata()
    assert sides.unchanged().summary() == "the client got the upstream's bytes unchanged"


def test_the_walk_pairs_drops_and_adds_within_its_window() -> None:
    a, b, c, x = (b"data: %d\n\n" % n for n in range(4))
    up = [(0, a), (10, b), (20, c)]
    down = [(0, a), (10, x), (20, c), (30, b)]
    counts, changes = sides._walk(up, [0], down, [0])
    assert [(ch.kind, ch.upstream, ch.client) for ch in changes] == [
        ("rewritten", 1, 1), ("added", None, 3)]
    assert dict(counts) == {"rewritten": 1, "added": 1}


def report_json(*paths: Path) -> list[dict[str, Any]]:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["report", "--json", *map(str, paths)]) == 0
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


def report_text(*paths: Path) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["report", "--max-text", "0", *map(str, paths)]) == 0
    return out.getvalue()


CHAT = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def test_live_injection_and_repair_saved_with_w_are_reported_side_by_side(
    upstream: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "500")  # one row a line
    injected, repaired, plain = tmp_path / "inject.flows", tmp_path / "repair.flows", tmp_path / "plain.flows"
    with (
        mitmdump(upstream, tmp_path, "-w", str(injected), "--set", "ssemedic_inject=drop-done,split-events",
                 name="inject") as inject,
        mitmdump(upstream, tmp_path, "-w", str(repaired), "--set", "ssemedic_repair=true", name="repair") as repair,
        mitmdump(upstream, tmp_path, "-w", str(plain), name="plain") as mirror,
    ):
        with httpx.Client(timeout=30) as http:
            client_got = http.post(f"{inject.base}{PATH}?delay=0.002", json=CHAT).content
            repaired_got = http.post(f"{repair.base}/s/error-then-done{PATH}?delay=0.002", json=CHAT).content
            http.post(f"{mirror.base}{PATH}?delay=0.002", json=CHAT)
    [inj], [rep], [pla] = report_json(injected), report_json(repaired), report_json(plain)

    assert inj["sides"]["client"]["bytes"] == len(client_got) and "note" not in inj["sides"]
    assert inj["sides"]["counts"]["dropped"] == 1
    assert inj["sides"]["changes"][-1]["upstream"] == "data: [DONE]\n\n"
    # Cut in the middle of every event: some were cut across chunks by the upstream already.
    assert inj["sides"]["counts"]["rechunked"] > inj["sides"]["client"]["events"] // 2
    assert inj["sides"]["counts"]["added"] == inj["sides"]["counts"]["rewritten"] == 0
    assert rep["sides"]["client"]["bytes"] == len(repaired_got)
    assert rep["sides"]["counts"]["dropped"] == 1 and b"[DONE]" not in repaired_got
    assert pla["sides"] == {"changed": False, "how": "the client got the upstream's bytes unchanged"}

    text = report_text(injected, plain)
    assert "client got the stream injected (split-events, drop-done)" in text
    assert "dropped upstream #" in text and "'data: [DONE]\\n\\n'" in text
    assert "the client got the upstream's bytes unchanged" in text
