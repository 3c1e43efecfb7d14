"""core/headers.py: the response headers a flow's repairs change before the
first chunk, decided from plain values (the addon passes mitmproxy's Headers)."""

from __future__ import annotations

import pytest

from mitmproxy.http import Headers
from ssemedic.core.headers import plan
from ssemedic.core.repair import ALL_REPAIRS, Repair

SSE = "text/event-stream"


def headers(**fields: str) -> Headers:
    return Headers(**{k.replace("_", "-"): v for k, v in fields.items()})


def test_repair_off_changes_nothing() -> None:
    h = headers(content_type=SSE, content_length="10", content_encoding="gzip")
    decided = plan(h, repairs=frozenset(), sniffing=False, status=200, implied_content_type=SSE)
    assert decided == (frozenset(), [])
    assert dict(h) == {"content-type": SSE, "content-length": "10", "content-encoding": "gzip"}


def test_a_stream_gets_anti_buffering_headers_and_loses_its_length() -> None:
    h = headers(content_type=SSE, content_length="10")
    decided = plan(h, repairs=ALL_REPAIRS, sniffing=False, status=200, implied_content_type=SSE)
    assert decided.repairs == ALL_REPAIRS
    assert "content-length" not in h
    assert h["cache-control"] == "no-cache, no-transform" and h["x-accel-buffering"] == "no"
    assert decided.changed == ["Content-Length removed", "Cache-Control: no-cache, no-transform",
                               "X-Accel-Buffering: no"]


def test_headers_already_right_are_left_alone() -> None:
    h = headers(content_type=SSE, cache_control="private, no-transform", x_accel_buffering="No")
    decided = plan(h, repairs=ALL_REPAIRS, sniffing=False, status=200, implied_content_type=SSE)
    assert decided.changed == [] and h["cache-control"] == "private, no-transform"


def test_decompress_removes_a_supported_encoding() -> None:
    h = headers(content_type=SSE, content_encoding="GZip ")
    decided = plan(h, repairs=ALL_REPAIRS, sniffing=False, status=200, implied_content_type=SSE)
    assert "content-encoding" not in h and decided.repairs == ALL_REPAIRS
    assert decided.changed[0] == "Content-Encoding gzip removed (forwarded decompressed)"


@pytest.mark.parametrize("repairs", [ALL_REPAIRS - {Repair.DECOMPRESS}, ALL_REPAIRS],
                         ids=["decompress not chosen", "an encoding it cannot decode"])
def test_a_body_that_stays_compressed_keeps_only_the_headers_repair(repairs: frozenset[Repair]) -> None:
    encoding = "gzip" if Repair.DECOMPRESS not in repairs else "compress"
    h = headers(content_type=SSE, content_encoding=encoding)
    decided = plan(h, repairs=repairs, sniffing=False, status=200, implied_content_type=SSE)
    assert decided.repairs == {Repair.HEADERS} and h["content-encoding"] == encoding


@pytest.mark.parametrize("declared", ["", "text/plain; charset=utf-8", "application/octet-stream"])
def test_an_untyped_2xx_body_the_request_made_a_stream_is_labelled(declared: str) -> None:
    h = headers(content_type=declared) if declared else headers()
    decided = plan(h, repairs=ALL_REPAIRS, sniffing=True, status=200, implied_content_type="application/x-ndjson")
    assert h["content-type"] == "application/x-ndjson"
    assert decided.changed[0] == f"Content-Type: application/x-ndjson (was {declared or 'missing'})"
    assert h["x-accel-buffering"] == "no"  # now a stream: it gets the anti-buffering headers too


@pytest.mark.parametrize(("declared", "status"), [("application/json", 200), ("text/plain", 500)])
def test_a_typed_or_failed_body_is_not_relabelled(declared: str, status: int) -> None:
    h = headers(content_type=declared)
    decided = plan(h, repairs=ALL_REPAIRS, sniffing=True, status=status, implied_content_type=SSE)
    assert h["content-type"] == declared and "x-accel-buffering" not in h and decided.changed == []


def test_a_compressed_body_that_may_not_be_a_stream_is_left_alone() -> None:
    h = headers(content_type="text/plain", content_encoding="gzip", content_length="5")
    decided = plan(h, repairs=ALL_REPAIRS, sniffing=True, status=200, implied_content_type=SSE)
    assert decided == (frozenset(), []) and h["content-length"] == "5"
