"""Inline repair: what the client receives when ``ssemedic_repair`` is on.

Strategy: the repairer holds the (decoded) stream bytes that have not been
forwarded yet. After each chunk, everything up to the parser's boundary is
whole blocks; the events among them are known with their exact offsets and
raw bytes. That region is forwarded with the chosen events replaced,
dropped or followed by new ones, and the bytes between events (comments,
blank lines, skipped oversized events) passed as they are. So the client
only ever receives whole events, and nothing is lost that was not dropped on
purpose. Sans-IO: bytes, event records and the parser's boundary in, bytes
out.

Providers own what differs between them (see ``providers/base.py``): the
error event the ``done`` repair sends instead of a silent cut, the end marker
it appends, and the provider's own rewrite (the ``letta`` repair, written in
``providers/letta.py``). Nothing here decides by a provider's name.
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum

from .events import BOM
from .framing import JSONARRAY
from .handoff import EventRecord, Outcome
from .parts import Done, Error, Malformed
from .providers.base import Provider, Rewriter
from .providers.letta import LETTA_SHAPES as LETTA_SHAPES  # re-exported for the option
from .providers.letta import check_shape
from .providers.letta import letta_shape as letta_shape


class Repair(StrEnum):
    REFRAME = "reframe"  # forward only whole events
    NORMALISE = "normalise"  # LF line endings, no BOM
    HEADERS = "headers"  # streaming-friendly response headers
    DECOMPRESS = "decompress"  # forward a compressed stream uncompressed
    SANITIZE = "sanitize"  # drop events with invalid JSON, replace invalid UTF-8
    DONE = "done"  # [DONE] only after success; a proper error instead of a silent cut
    LETTA = "letta"  # a Letta reply in the shape its client reads (providers/letta.py)


ALL_REPAIRS = frozenset(Repair)
#: Repairs that change the body (they all need whole events).
BODY_REPAIRS = frozenset(ALL_REPAIRS - {Repair.HEADERS, Repair.DECOMPRESS})
#: The unforwarded buffer may grow to this before it is flushed as it is.
MAX_HELD = 8 * 1024 * 1024

TRUNCATION_MESSAGE = "the upstream closed the stream before it was complete (repaired by ssemedic)"


def parse_repairs(value: str) -> frozenset[Repair]:
    """``all`` or a comma-separated list of repair names; raises ValueError naming the bad one."""
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    if not names or "all" in names:
        return ALL_REPAIRS
    chosen = set()
    for name in names:
        if name == "normalize":
            name = "normalise"
        try:
            chosen.add(Repair(name))
        except ValueError:
            known = ", ".join(r.value for r in Repair)
            raise ValueError(f"unknown repair {name!r}; known: all, {known}") from None
    return frozenset(chosen)


class Repairer:
    """Rewrites one stream's body; see the module docstring."""

    def __init__(self, repairs: frozenset[Repair], letta_shape: str = "letta") -> None:
        self.repairs = repairs
        self.letta_shape = check_shape(letta_shape)
        self.body = bool(repairs & BODY_REPAIRS)
        #: What was changed, by kind of change, for the log and flow metadata.
        self.changes: Counter[str] = Counter()
        self._held = bytearray()
        self._held_at = 0  # stream offset of _held[0]
        self._error_seen = False
        self._done_seen = False
        self._gave_up = False
        self._error_field: tuple[int, str] | None = None  # see feed()
        #: The provider's own rewrite, made when its first event comes.
        self._rewriter: tuple[Provider, Rewriter] | None = None

    # -- feeding --------------------------------------------------------------

    def feed(self, data: bytes, records: list[EventRecord], boundary: int, provider: Provider,
             error_field: tuple[int, str] | None = None) -> bytes:
        """Bytes to send after the chunk ``data`` was parsed into ``records``;
        ``boundary`` is where the parser's whole blocks now end (the session's
        ``boundary``), ``provider`` the stream's provider record, and
        ``error_field`` where an error came as an SSE ``error:`` field, which
        is no event (the session's ``first_error_field``)."""
        if not self.body:
            return data
        self._error_field = error_field
        if self._gave_up:
            return self._flush_all()
        out = self._region(provider, boundary, records)
        if self._held and Repair.REFRAME in self.repairs:
            self.changes["partial event held back until whole"] += 1
        if len(self._held) > MAX_HELD:
            # An event this large is not inspected anyway: pass it on as it is.
            self.changes["oversized event forwarded unrepaired"] += 1
            out += self._flush_all()
        return out

    def hold(self, data: bytes) -> None:
        """Take a chunk before it is fed: from now on release() hands it on,
        whatever fails in feed()."""
        if self.body:
            self._held += data

    def end(self, records: list[EventRecord], outcome: Outcome, *, clean: bool,
            error_field: tuple[int, str] | None = None) -> bytes:
        """Bytes to send when the stream ends; ``clean`` is False for a broken connection."""
        if not self.body:
            return b""
        self._error_field = error_field
        out = self._region(outcome.provider, outcome.boundary, records)
        rest = bytes(self._held)
        self._held.clear()
        if rest.strip(b"\r\n"):
            if Repair.REFRAME in self.repairs or Repair.DONE in self.repairs:
                self.changes["unfinished last event dropped"] += 1
            else:
                out += rest
        elif rest:
            out += self._normalise(rest, first=False) if Repair.NORMALISE in self.repairs else rest
        if Repair.DONE in self.repairs and clean:
            ending = self._ending(outcome)
            if ending and outcome.framing == "ndjson" and out and not out.endswith(b"\n"):
                out += b"\n"  # a last line without its newline (a bare CR ends none): ended, or it and the ending merge
            out += ending
        return out

    # -- internals --------------------------------------------------------------

    def _region(self, provider: Provider, boundary: int, records: list[EventRecord]) -> bytes:
        """Forward the whole blocks before ``boundary``, applying the repairs."""
        size = boundary - self._held_at
        if size <= 0:
            return b""
        region = bytes(self._held[:size])
        start = self._held_at
        pieces: list[bytes] = []
        cursor = 0
        for record in records:
            event = record.event
            offset = event.offset - start
            if offset < cursor or offset + len(event.raw) > len(region):
                continue  # not in this region (cannot happen; be safe)
            pieces.append(region[cursor:offset])
            pieces.append(self._event(provider, record))
            cursor = offset + len(event.raw)
        pieces.append(region[cursor:])
        out = b"".join(pieces)
        if Repair.NORMALISE in self.repairs:
            out = self._normalise(out, first=start == 0)
        if Repair.SANITIZE in self.repairs:
            try:
                out.decode("utf-8")
            except UnicodeDecodeError:
                out = out.decode("utf-8", "replace").encode("utf-8")
                self.changes["invalid UTF-8 replaced"] += 1
        del self._held[:size]  # only now: a failure above leaves it for release()
        self._held_at = boundary
        return out

    def _event(self, provider: Provider, record: EventRecord) -> bytes:
        raw = record.event.raw
        parts = record.parts
        if any(isinstance(p, Error) for p in parts):
            self._error_seen = True
        if Repair.SANITIZE in self.repairs and any(
            isinstance(p, Malformed) and p.kind == "invalid-json" for p in parts
        ):
            self.changes["event with invalid JSON dropped"] += 1
            return b""
        if any(isinstance(p, Done) and p.marker == "[DONE]" for p in parts):
            after_field = self._error_field is not None and self._error_field[0] < record.event.offset
            if Repair.DONE in self.repairs and (self._error_seen or after_field):
                self.changes["[DONE] after an error suppressed"] += 1
                return b""
            self._done_seen = True
        if Repair.LETTA in self.repairs and provider.rewriter is not None:
            if self._rewriter is None or self._rewriter[0] is not provider:
                self._rewriter = (provider, provider.rewriter(self.letta_shape))
            return self._rewriter[1].rewrite(record.index, record.event, parts, self.changes)
        return raw

    def _ending(self, outcome: Outcome) -> bytes:
        """What a cleanly closed stream still lacks: its end marker, or an error instead of a silent cut."""
        provider = outcome.provider
        if provider.terminal is None or self._done_seen:
            return b""  # a format without a terminal signal cannot be told cut
        if self._error_field is not None:
            return b""  # an error ended it (as an ``error:`` field): no end marker, no cut to report
        if not outcome.complete and not outcome.message.errors:
            if outcome.framing == JSONARRAY:
                return self._array_error(provider, outcome)
            self.changes["silent cut turned into an error event"] += 1
            return provider.error_event(outcome.framing, TRUNCATION_MESSAGE)
        if provider.end_marker is not None and not self._error_seen:
            self.changes[f"missing {provider.end_marker} appended"] += 1
            return provider.end_marker_event(outcome.framing)
        return b""

    def _array_error(self, provider: Provider, outcome: Outcome) -> bytes:
        """A streamed JSON array cut short gets the error as its last element,
        and its ``]``; the unfinished element was dropped, so what went out so
        far ends with a whole element (or holds nothing, not even the ``[``)."""
        if outcome.array_closed:
            return b""  # its ] is gone already: nothing can follow it
        self.changes["silent cut turned into an error element"] += 1
        return (b"," if outcome.events else b"[") + provider.error_event(JSONARRAY, TRUNCATION_MESSAGE) + b"]"

    def _normalise(self, out: bytes, *, first: bool) -> bytes:
        if first and out.startswith(BOM):
            out = out[len(BOM) :]
            self.changes["BOM stripped"] += 1
        if out.find(b"\r") >= 0:  # not `b"\r" in out`: see sse._CR
            # Counted per line ending, not per region: the count does not depend on the chunking.
            self.changes["line endings normalised to LF"] += out.count(b"\r")
            out = out.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return out

    def release(self) -> bytes:
        """Give up repairing: everything held back, as it is; later feeds pass through."""
        return self._flush_all()

    def _flush_all(self) -> bytes:
        self._gave_up = True
        out = bytes(self._held)
        self._held_at += len(out)
        self._held.clear()
        return out
