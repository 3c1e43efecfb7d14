"""Provider registry and detection from the request or the first payload.

Every module in this package that defines ``PROVIDER`` is registered, so adding
a provider means adding one module (and its tests).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from ..events import ServerSentEvent, loads
from .base import Interpreter, Provider

__all__ = ["GENERIC", "Interpreter", "Provider", "detect_from_event", "detect_from_request", "get", "names"]


def _discover() -> dict[str, Provider]:
    found: list[Provider] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        provider = getattr(module, "PROVIDER", None)
        if isinstance(provider, Provider):
            found.append(provider)
    found.sort(key=lambda p: (p.order, p.name))
    return {p.name: p for p in found}


_REGISTRY = _discover()
GENERIC = "generic"


def names() -> list[str]:
    """Registered provider names, in detection order."""
    return list(_REGISTRY)


def get(name: str) -> Provider:
    """The provider called ``name``; raises KeyError with the known names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(_REGISTRY)}") from None


def detect_from_request(method: str, path: str, headers: Mapping[str, str] | None = None) -> str | None:
    """The provider a request targets, judged by its path and headers."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    bare_path = path.split("?", 1)[0]
    for provider in _REGISTRY.values():
        if provider.name != GENERIC and provider.match_request(method.upper(), bare_path, lowered):
            return provider.name
    return None


def detect_from_event(event: ServerSentEvent, prefer: str | None = None) -> str | None:
    """The provider whose payloads look like this event, if any does.

    ``prefer`` (the request's guess) wins when its matcher accepts the payload
    too; otherwise the first accepting provider in detection order does."""
    payload: Any
    try:
        payload = loads(event.data)
    except ValueError:
        payload = None
    if prefer is not None and prefer != GENERIC and _REGISTRY[prefer].match_payload(event, payload):
        return prefer
    for provider in _REGISTRY.values():
        if provider.name != GENERIC and provider.match_payload(event, payload):
            return provider.name
    return None
