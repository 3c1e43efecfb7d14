"""The recording format: what ssemedic keeps in a flow so that its stream can
be reproduced later, live or offline.

This module is the only one that knows the layout. ``Recorder`` writes it
while a stream passes; ``read`` gives it back to every reader (the addon's
``-nr`` path, the offline report and the mitmweb view through sources.py,
live replay, redaction), so they all see the same chunks in the same shape.

A recorded flow keeps the raw upstream body in ``flow.response.raw_content``
(still compressed if it was) and, in ``flow.metadata["ssemedic"]``, a dict of
plain types only (mitmproxy silently drops a flow with anything else from
saved files). Layout, version 2:

    version         int, 2
    provider        str, the provider the stream was read as
    timeline        bytes, the chunk timeline packed by ``pack`` (absent when
                    an arrival time was unknown)
    ended_at        float, when the body ended (absent without a timeline)
    notes           list of str, what the live inspection noted
    repairs         dict of str to int, body repairs applied, by kind
    header_repairs  list of str, response headers repaired before the body
    recording_cut   int, present when the body kept is only the first this
                    many bytes of what passed (the recording was cut there)
    stream_bytes    int, with recording_cut: how many bytes passed in all
    redacted        list of str, what redaction hid (names, never values)
    client          dict, present when the client got other bytes than the
                    upstream sent: how to make them again from the raw body
                    (``repairs``, list of str: the body repairs and
                    decompress; ``injections``, dict of str to float;
                    ``letta_shape``, str; ``decompressed``, bool) and how
                    many the client got (``bytes``, ``chunks``, int)

A cut recording is a prefix of the stream made of whole chunks: the chunk
that does not fit under the cap is dropped, and nothing after it is kept, so
every chunk boundary in it is one that arrived (version 2). Older layouts are
still read: version 1 with ``recording_cut`` kept the crossing chunk's first
bytes; version 1 before ``recording_cut`` existed spliced later small chunks
in after the cut and said so only in a note, so where such a body stops
being the stream is unknown (``Cut.at`` None).

The packed timeline, format version 1 (its own number), little-endian:

    u8  version (1)
    u32 chunk count N
    N x u64  byte offset of each chunk in the raw body (ascending, first is 0)
    N x f64  arrival time of each chunk (seconds since the epoch)
"""

from __future__ import annotations

import io
import math
import struct
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: flow.metadata key under which ssemedic keeps its per-flow data.
METADATA_KEY = "ssemedic"
#: The metadata layout's version (see the module docstring).
VERSION = 2
#: The packed timeline's own format version.
TIMELINE_VERSION = 1
#: Raw bytes kept per flow for saving; past this the recording is cut (and says so).
MAX_RECORDED_BYTES = 64 * 1024 * 1024

_HEADER = struct.Struct("<BI")

#: One received piece of the body and when it arrived (None: unknown).
Chunk = tuple[bytes, float | None]


class TimelineError(ValueError):
    """Packed timeline bytes that cannot be read."""


# -- the packed timeline ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeline:
    offsets: tuple[int, ...]
    times: tuple[float, ...]

    def chunks(self, body: bytes) -> list[tuple[bytes, float]]:
        """Cut ``body`` back into the chunks as they arrived."""
        if self.offsets and (self.offsets[-1] > len(body) or self.offsets[0] != 0):
            raise TimelineError(
                f"timeline covers {self.offsets[-1]}+ bytes but the body has {len(body)}"
            )
        ends = self.offsets[1:] + (len(body),)
        return [(body[a:b], t) for a, b, t in zip(self.offsets, ends, self.times, strict=True)]


@dataclass(slots=True)
class ClientSide:
    """What the client got of a rewritten stream: the stages that rewrote it
    (to make its bytes again from the recording) and how much it got."""

    repairs: tuple[str, ...]
    #: (name, seconds) per injection, in the order they were given.
    injections: tuple[tuple[str, float], ...]
    letta_shape: str
    decompressed: bool
    #: What went out to the client (None: not recorded).
    bytes_sent: int | None = 0
    chunks_sent: int | None = 0

    def count(self, pieces: Sequence[bytes]) -> None:
        """Count pieces that went out to the client."""
        if self.bytes_sent is not None and self.chunks_sent is not None:
            for piece in pieces:
                if piece:
                    self.bytes_sent += len(piece)
                    self.chunks_sent += 1

    def to_dict(self) -> dict[str, Any]:
        return {"repairs": list(self.repairs), "injections": dict(self.injections),
                "letta_shape": self.letta_shape, "decompressed": self.decompressed,
                "bytes": self.bytes_sent, "chunks": self.chunks_sent}


def _client(value: Any) -> ClientSide | None:
    """The ``client`` entry, or None when it is absent or not of its layout."""
    if not isinstance(value, dict):
        return None
    repairs, injections, shape = value.get("repairs"), value.get("injections"), value.get("letta_shape")
    if not isinstance(repairs, list) or not isinstance(injections, dict) or not isinstance(shape, str):
        return None

    def count(key: str) -> int | None:
        n = value.get(key)
        return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None

    return ClientSide(
        repairs=tuple(str(r) for r in repairs),
        injections=tuple((str(k), float(v)) for k, v in injections.items() if isinstance(v, (int, float))),
        letta_shape=shape, decompressed=value.get("decompressed") is True,
        bytes_sent=count("bytes"), chunks_sent=count("chunks"))


def pack(offsets: Sequence[int], times: Sequence[float]) -> bytes:
    """Pack a timeline; offsets must ascend and match times one to one."""
    if len(offsets) != len(times):
        raise ValueError("offsets and times differ in length")
    if any(b < a for a, b in zip(offsets, offsets[1:])):
        raise ValueError("offsets must ascend")
    packed_offsets = array("Q", offsets)
    packed_times = array("d", times)
    if sys.byteorder != "little":
        packed_offsets.byteswap()
        packed_times.byteswap()
    return _HEADER.pack(TIMELINE_VERSION, len(offsets)) + packed_offsets.tobytes() + packed_times.tobytes()


def unpack(data: bytes) -> Timeline:
    """Read packed timeline bytes; raises TimelineError saying what is wrong."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < _HEADER.size:
        raise TimelineError("timeline is not packed bytes")
    version, count = _HEADER.unpack_from(data)
    if version != TIMELINE_VERSION:
        raise TimelineError(f"timeline format version {version} is not supported (expected {TIMELINE_VERSION})")
    if len(data) != _HEADER.size + 16 * count:
        raise TimelineError(f"timeline of {count} chunks should be {_HEADER.size + 16 * count} bytes, not {len(data)}")
    offsets = array("Q")
    offsets.frombytes(data[_HEADER.size : _HEADER.size + 8 * count])
    times = array("d")
    times.frombytes(data[_HEADER.size + 8 * count :])
    if sys.byteorder != "little":
        offsets.byteswap()
        times.byteswap()
    if any(b < a for a, b in zip(offsets, offsets[1:])):
        raise TimelineError("timeline offsets do not ascend")
    return Timeline(tuple(offsets), tuple(times))


# -- writing ----------------------------------------------------------------------


class Recorder:
    """Keeps one live stream's raw bytes and chunk timeline, up to ``cap`` bytes.

    The first chunk that does not fit is dropped whole, and so is everything
    after it, even later small chunks: the saved body is always a prefix of
    the stream, cut where one chunk ended and the next began, and its
    timeline matches it chunk for chunk.
    """

    def __init__(self, cap: int = MAX_RECORDED_BYTES) -> None:
        self.cap = cap
        # A BytesIO, not a bytearray: its getvalue() hands over the buffer
        # without a copy, so saving a recording of ``cap`` bytes never needs
        # twice that much memory.
        self._raw = io.BytesIO()
        self.size = 0  # bytes kept
        self.offsets = array("q")
        self.times = array("d")
        self.cut = False
        self.passed = 0  # bytes seen, kept or not

    def add(self, data: bytes, at: float | None) -> str | None:
        """Keep one chunk; return a note the first time the cap cuts the recording."""
        self.passed += len(data)
        if self.cut:
            return None
        if len(data) > self.cap - self.size:
            self.cut = True
            return (f"recording cut at byte {self.size:,} (the {self.cap:,}-byte cap): the stream itself "
                    f"was forwarded whole, but what follows is not saved")
        if data:
            self.offsets.append(self.size)
            self.times.append(at if at is not None else math.nan)
            self._raw.write(data)
            self.size += len(data)
        return None

    @property
    def raw(self) -> bytes:
        """The bytes kept so far (best taken once, at the end: see __init__)."""
        return self._raw.getvalue()

    @property
    def timed(self) -> bool:
        return bool(self.offsets) and not any(math.isnan(t) for t in self.times)

    def metadata(
        self,
        *,
        provider: str,
        ended_at: float | None,
        notes: Sequence[str],
        repairs: dict[str, int] | None = None,
        client: ClientSide | None = None,
    ) -> dict[str, Any]:
        """The stream's entry for flow.metadata (plain types only)."""
        meta: dict[str, Any] = {"version": VERSION, "provider": provider}
        if self.timed:
            meta["timeline"] = pack(self.offsets, self.times)
            if ended_at is not None:
                meta["ended_at"] = ended_at
        meta["notes"] = list(notes)
        if repairs is not None:
            meta["repairs"] = dict(repairs)
        if client is not None:
            meta["client"] = client.to_dict()
        if self.cut:
            meta["recording_cut"] = self.size
            meta["stream_bytes"] = self.passed
        return meta


def store(flow: Any, meta: dict[str, Any]) -> None:
    """Merge a stream's entry into ``flow.metadata`` (keeping what others added)."""
    flow.metadata[METADATA_KEY] = {**entry(flow), **meta}


def add_header_repairs(flow: Any, changes: Sequence[str]) -> None:
    """Record the response headers repaired before the body went out."""
    _add_list(flow, "header_repairs", changes)


def add_redacted(flow: Any, changes: Sequence[str]) -> None:
    """Record what redaction hid in the flow (names, never values)."""
    _add_list(flow, "redacted", changes)


def _add_list(flow: Any, key: str, items: Sequence[str]) -> None:
    """Add ``items`` to the list under ``key``, each once."""
    meta = entry(flow)
    before = meta.get(key)
    kept = [str(x) for x in before] if isinstance(before, list) else []
    kept += [item for item in items if item not in kept]
    meta[key] = kept
    flow.metadata[METADATA_KEY] = meta


def entry(flow: Any) -> dict[str, Any]:
    """A copy of the flow's ssemedic entry ({} when there is none or it is not a dict)."""
    meta = flow.metadata.get(METADATA_KEY)
    return dict(meta) if isinstance(meta, dict) else {}


# -- reading ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cut:
    """Where a recording stops short of its stream: its input ends there, not
    at the stream's end, so nothing about that end can be told from it."""

    #: Bytes kept: the body is the stream's first ``at`` bytes (None: unknown,
    #: an older recorder that spliced later chunks in after the cut).
    at: int | None
    #: Bytes that passed in all, when known.
    stream_bytes: int | None = None

    def message(self) -> str:
        """One line saying so, for every reader to show."""
        if self.at is None:
            return ("recording cut by an older ssemedic at an unknown byte (at most its cap), which kept some "
                    "later chunks after the cut: this body is not a prefix of the stream")
        of = f" of {self.stream_bytes:,}" if self.stream_bytes is not None and self.stream_bytes > self.at else ""
        return f"recording cut at byte {self.at:,}{of}: the stream went on, but the rest was not saved"

    def diagnosed(self) -> str:
        """The line for a reader that diagnoses the recording."""
        if self.at is None:
            return self.message() + "; events, text and faults near its end may come from those later chunks"
        return self.message() + "; events, text and faults cover only what came before the cut"

    def to_dict(self) -> dict[str, int | None]:
        return {"cut_at": self.at, "stream_bytes": self.stream_bytes}


#: How the note of a recorder that spliced chunks in after the cut began (version 1, early).
_SPLICED_NOTE = "recording cut at "


def _cut(meta: dict[str, Any], notes: list[str]) -> Cut | None:
    cut, seen = meta.get("recording_cut"), meta.get("stream_bytes")
    if isinstance(cut, int) and not isinstance(cut, bool) and cut >= 0:
        return Cut(cut, seen if isinstance(seen, int) and not isinstance(seen, bool) and seen >= cut else None)
    if meta.get("version") == 1 and any(note.startswith(_SPLICED_NOTE) for note in notes):
        return Cut(None)
    return None


@dataclass(slots=True)
class Recording:
    """A flow's recording as every reader sees it."""

    #: The raw body as stored (still compressed if it was).
    body: bytes
    #: The body cut back into the chunks as they arrived, with their times;
    #: one untimed chunk when the timeline is missing or unusable.
    chunks: list[Chunk]
    #: Whether ``chunks`` carry real arrival times.
    timed: bool
    ended_at: float | None = None
    provider: str | None = None
    #: Notes the live inspection stored.
    notes: list[str] = field(default_factory=list)
    #: Why the timeline could not be used, when it could not (one line).
    problem: str | None = None
    repairs: dict[str, int] = field(default_factory=dict)
    header_repairs: list[str] = field(default_factory=list)
    #: When the recording stops short of the stream: where (see Cut).
    cut: Cut | None = None
    #: When the client got other bytes than the upstream sent: how (see ClientSide).
    client: ClientSide | None = None


def read(flow: Any) -> Recording:
    """The recording of an HTTP flow with a response; never raises on odd metadata."""
    body = flow.response.raw_content or b""
    meta = entry(flow)
    untimed: list[Chunk] = [(body, None)] if body else []
    notes = [n for n in meta.get("notes", ()) if isinstance(n, str)] if isinstance(meta.get("notes"), list) else []
    repairs = meta.get("repairs")
    header_repairs = meta.get("header_repairs")
    provider = meta.get("provider")
    recording = Recording(
        body=body,
        chunks=untimed,
        timed=False,
        provider=provider if isinstance(provider, str) else None,
        notes=notes,
        repairs={str(k): v for k, v in repairs.items() if isinstance(v, int)} if isinstance(repairs, dict) else {},
        header_repairs=[str(h) for h in header_repairs] if isinstance(header_repairs, list) else [],
        cut=_cut(meta, notes),
        client=_client(meta.get("client")),
    )
    packed = meta.get("timeline")
    if packed is None:
        recording.problem = "no chunk timeline in this flow"
        return recording
    try:
        chunks = unpack(packed).chunks(body)
    except TimelineError as exc:
        recording.problem = f"chunk timeline ignored: {exc}"
        return recording
    times = [t for _, t in chunks]
    if not all(math.isfinite(t) for t in times):
        recording.problem = "chunk timeline has unknown times"
        return recording
    recording.chunks = list(chunks)
    recording.timed = True
    ended = meta.get("ended_at")
    if isinstance(ended, float) and math.isfinite(ended):
        recording.ended_at = ended
    elif times:
        recording.ended_at = times[-1]
    return recording
