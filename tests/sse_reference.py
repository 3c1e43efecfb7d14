"""A deliberately simple event-stream interpreter, written straight from WHATWG
HTML 9.2.6 "Interpreting an event stream", used only as a test oracle.

It works on the whole stream at once and is slow on purpose: every step below
is one sentence of the spec. It returns ``(event, data, id, retry)`` tuples,
where ``id`` is None until an ``id`` field has been accepted and ``retry`` is
the last valid ``retry`` value in the event's own block (or None).
"""

from __future__ import annotations

import re

Event = tuple[str, str, str | None, int | None]

_BOM = b"\xef\xbb\xbf"
# "a U+000D CARRIAGE RETURN U+000A LINE FEED (CRLF) character pair, a single
# U+000A LINE FEED (LF) character not preceded by a U+000D CARRIAGE RETURN (CR)
# character, and a single U+000D CARRIAGE RETURN (CR) character not followed by
# a U+000A LINE FEED (LF) character being the ways in which a line can end."
_LINE_END = re.compile(r"\r\n|\r|\n")
_ASCII_DIGITS = frozenset("0123456789")


def reference_events(stream: bytes) -> list[Event]:
    """Interpret a complete stream (the end of the file is the end of ``stream``)."""
    # "Streams must be decoded using the UTF-8 decode algorithm", which "strips
    # one leading UTF-8 Byte Order Mark (BOM), if any" and replaces errors.
    if stream.startswith(_BOM):
        stream = stream[len(_BOM) :]
    text = stream.decode("utf-8", "replace")

    # The piece after the last line end is not a line: "Once the end of the
    # file is reached, any pending data must be discarded."
    lines = _LINE_END.split(text)[:-1]

    # "a data buffer, an event type buffer, and a last event ID buffer [...]
    # must be initialized to the empty string." None stands for "never set".
    data_buffer = ""
    event_type_buffer = ""
    last_event_id_buffer: str | None = None
    block_retry: int | None = None
    events: list[Event] = []

    for line in lines:
        if line == "":
            # Dispatch the event.
            if data_buffer == "":
                data_buffer = event_type_buffer = ""
            else:
                if data_buffer.endswith("\n"):
                    data_buffer = data_buffer[:-1]
                events.append((event_type_buffer or "message", data_buffer, last_event_id_buffer, block_retry))
                data_buffer = event_type_buffer = ""
            block_retry = None
            continue
        if line.startswith(":"):
            continue  # a comment
        if ":" in line:
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""

        # "Field names must be compared literally, with no case folding performed."
        if field == "event":
            event_type_buffer = value
        elif field == "data":
            data_buffer += value + "\n"
        elif field == "id":
            if "\0" not in value:
                last_event_id_buffer = value
        elif field == "retry":
            if value and all(c in _ASCII_DIGITS for c in value):
                block_retry = int(value)
        # Otherwise the field is ignored.
    return events
