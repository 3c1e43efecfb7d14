"""The response headers a flow's repairs change, decided once, before the
first chunk: they go out before the body does.

Sans-IO: a mutable mapping of headers (mitmproxy's ``Headers`` or a dict,
matched case-insensitively as both do) and plain values in; the repairs the
body may still get and a list of what was changed out.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import NamedTuple

from .decoding import supported
from .repair import BODY_REPAIRS, Repair

#: Content-Types that say nothing about a body (or are a server's fallback),
#: which the ``headers`` repair relabels on a response the request made a stream.
UNTYPED_CONTENT_TYPES = frozenset({"", "text/plain", "application/octet-stream"})


class HeaderPlan(NamedTuple):
    """What was decided for one response."""

    #: The repairs left for the body (none that cannot apply to it).
    repairs: frozenset[Repair]
    #: What was changed in the headers, for the log and the flow's metadata.
    changed: list[str]


def plan(
    headers: MutableMapping[str, str],
    *,
    repairs: frozenset[Repair],
    sniffing: bool,
    status: int,
    implied_content_type: str,
) -> HeaderPlan:
    """Repair ``headers`` in place for ``repairs`` (the chosen repairs, or
    none when repair is off) and return what the body may still get.

    ``sniffing``: only the first bytes will tell whether the body is a stream
    (the request asked for one, the Content-Type does not say so);
    ``implied_content_type`` is what the request's provider frames a stream
    as, for the ``headers`` repair to label an untyped 2xx body with.
    """
    if not repairs:
        return HeaderPlan(frozenset(), [])
    encoding = headers.get("content-encoding", "").strip().lower()
    compressed = encoding not in ("", "identity")
    if sniffing and compressed:
        return HeaderPlan(frozenset(), [])  # cannot know yet whether it is a stream: leave it alone
    changed = []
    if Repair.DECOMPRESS in repairs and compressed and supported(encoding):
        del headers["content-encoding"]
        changed.append(f"Content-Encoding {encoding} removed (forwarded decompressed)")
    elif compressed:
        repairs = repairs & {Repair.HEADERS}  # the body stays compressed: it cannot be edited
    if repairs & (BODY_REPAIRS | {Repair.DECOMPRESS, Repair.HEADERS}) and "content-length" in headers:
        del headers["content-length"]
        changed.append("Content-Length removed")
    stream = not sniffing
    if Repair.HEADERS in repairs and sniffing and 200 <= status < 300:
        declared = headers.get("content-type", "")
        if declared.split(";", 1)[0].strip().lower() in UNTYPED_CONTENT_TYPES:
            # The request asked for a stream (or went to a known provider's
            # streaming route): clients such as httpx-sse refuse such a body
            # unless it is labelled as what its provider frames it as.
            headers["content-type"] = implied_content_type
            changed.append(f"Content-Type: {implied_content_type} (was {declared or 'missing'})")
            stream = True
    if Repair.HEADERS in repairs and stream:
        if "no-transform" not in headers.get("cache-control", ""):
            headers["cache-control"] = "no-cache, no-transform"
            changed.append("Cache-Control: no-cache, no-transform")
        if headers.get("x-accel-buffering", "").lower() != "no":
            headers["x-accel-buffering"] = "no"
            changed.append("X-Accel-Buffering: no")
    return HeaderPlan(repairs, changed)
