"""The values a session hands on to diagnosis and repair: each event's record,
and what the stream amounted to when it ended. Values, so that neither stage
reads the session (or its parser) back and neither module imports the other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .events import ServerSentEvent
from .message import Message
from .parts import Part
from .providers.base import Provider


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as the session saw it: its position, arrival time and meaning."""

    index: int
    time: float | None
    event: ServerSentEvent
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a stream amounted to, once all its bytes are parsed."""

    #: The provider's record (its rules), as finally detected.
    provider: Provider
    #: "sse", "ndjson" or "jsonarray".
    framing: str
    #: Whether the provider's terminal signal arrived.
    complete: bool
    #: The assembled message (the session's own, not a copy).
    message: Message
    bytes: int
    events: int
    #: The stream offset up to which the parser has cut whole blocks.
    boundary: int
    #: Line terminators seen by kind (``lf``, ``crlf``, ``cr``); None when the framing does not count them.
    line_endings: Mapping[str, int] | None
    #: For a streamed JSON array: whether its closing ``]`` arrived (None for other framings).
    array_closed: bool | None = None
