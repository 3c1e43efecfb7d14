"""Fallback for streams of no known provider: events are kept, only ``[DONE]`` means something."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..events import ServerSentEvent
from ..message import Message
from ..parts import Done, Part
from .base import Interpreter, Provider


class GenericInterpreter(Interpreter):
    def interpret(self, event: ServerSentEvent) -> list[Part]:
        data = event.data.strip()
        if data == "[DONE]":
            return [Done("[DONE]")]
        if data[:1] in ("{", "["):
            # Meant as JSON (every NDJSON line, and the payload of every known
            # provider, which may only be recognised later): say when it is
            # not, as a provider's interpreter does. With no handlers, valid
            # JSON yields nothing.
            return super().interpret(event)
        return []

    def is_complete(self, message: Message) -> bool:
        return True  # an unknown format has no known terminal signal to miss


def _never_request(method: str, path: str, headers: Mapping[str, str]) -> bool:
    return False


def _never_payload(event: ServerSentEvent, payload: Any) -> bool:
    return False


PROVIDER = Provider(
    name="generic",
    interpreter=GenericInterpreter,
    match_request=_never_request,
    match_payload=_never_payload,
    order=1000,
    terminal=None,  # every stream counts as complete: nothing to miss, nothing to repair
)
