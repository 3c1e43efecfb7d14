"""Providers own their rules: no module outside ``core/providers/`` branches on
a provider's name, and each provider's record carries what the other modules
used to decide by name (terminal signal, end marker, in-stream error shape,
its own rewrite)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from ssemedic.core import providers
from ssemedic.core.providers.base import Provider

PACKAGE = Path(__file__).resolve().parent.parent / "addons" / "ssemedic"
PROVIDERS = PACKAGE / "core" / "providers"
NAMES = frozenset(providers.names())
#: The registry's own spelling of a name (``providers.GENERIC``) counts too.
NAME_CONSTANTS = frozenset({"GENERIC"})


def _is_name(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value in NAMES
    if isinstance(node, ast.Name):
        return node.id in NAME_CONSTANTS
    if isinstance(node, ast.Attribute):
        return node.attr in NAME_CONSTANTS
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_is_name(item) for item in node.elts)
    return False


def branches_on_names(source: str) -> list[tuple[int, str]]:
    """(line, code) of each comparison, ``in`` test, match case or dict key
    that uses a registered provider name."""
    tree = ast.parse(source)
    found: list[tuple[int, ast.AST]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(_is_name(n) for n in [node.left, *node.comparators]):
            found.append((node.lineno, node))
        elif isinstance(node, ast.Dict):
            found.extend((key.lineno, key) for key in node.keys if key is not None and _is_name(key))
        elif isinstance(node, ast.MatchValue) and _is_name(node.value):
            found.append((node.lineno, node))
    return sorted((line, ast.unparse(n)) for line, n in found)


def test_the_scanner_finds_every_kind_of_branch() -> None:
    source = (
        "if provider == 'anthropic': pass\n"
        "x = name in ('ollama', 'other')\n"
        "y = {'gemini': 1}\n"
        "match p:\n    case 'letta': pass\n"
        "z = session.provider != providers.GENERIC\n"
        "ok = {'model': 'letta'}, f('openai-chat'), 'gemini'\n"  # values, not branches
    )
    assert [line for line, _ in branches_on_names(source)] == [1, 2, 3, 5, 6]


def test_no_module_outside_providers_branches_on_a_provider_name() -> None:
    assert {"openai-chat", "anthropic", "letta", "generic"} <= NAMES
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if PROVIDERS in path.parents:
            continue
        for line, code in branches_on_names(path.read_text(encoding="utf-8")):
            hits.append(f"{path.relative_to(PACKAGE)}:{line}: {code}")
    assert not hits, "\n".join(hits)


# -- what the records say ------------------------------------------------------------


def test_only_the_generic_provider_has_no_terminal_signal() -> None:
    without = [name for name in NAMES if providers.get(name).terminal is None]
    assert without == [providers.GENERIC]


@pytest.mark.parametrize("name", sorted(NAMES))
def test_each_error_event_is_one_event_of_the_providers_framing(name: str) -> None:
    provider: Provider = providers.get(name)
    for framing in ("sse", "ndjson"):
        raw = provider.error_event(framing, "cut «here»")
        text = raw.decode("utf-8")
        if framing == "ndjson":
            assert text.endswith("\n") and text.count("\n") == 1
            payload = json.loads(text)
        else:
            assert text.endswith("\n\n") and text.count("\n\n") == 1
            data = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
            assert len(data) == 1
            payload = json.loads(data[0])
        assert "cut «here»" in json.dumps(payload, ensure_ascii=False)
        # The provider's own interpreter reads it as an error.
        from ssemedic.core.events import ServerSentEvent
        from ssemedic.core.parts import Error

        event_type = next((line[len("event: "):] for line in text.splitlines() if line.startswith("event: ")),
                          "message")
        parts = provider.interpreter().interpret(ServerSentEvent(event_type, json.dumps(payload)))
        if name != providers.GENERIC:
            assert any(isinstance(p, Error) and "cut «here»" in p.message for p in parts), (name, parts)


def test_only_openai_chat_waits_for_an_end_marker() -> None:
    assert {name: providers.get(name).end_marker for name in NAMES if providers.get(name).end_marker} == {
        "openai-chat": "[DONE]"}
    assert providers.get("openai-chat").end_marker_event("sse") == b"data: [DONE]\n\n"


def test_only_letta_has_a_rewrite_of_its_own() -> None:
    assert [name for name in NAMES if providers.get(name).rewriter is not None] == ["letta"]


#: What the ``done`` repair sent for a silent cut before the shapes moved onto
#: the providers' records (repair.error_event, one branch per name): pinned so
#: that the move changes no byte.
_OPENAI = {"error": {"message": "M", "type": "upstream_error", "code": "upstream_truncated"}}
SHAPES_BEFORE = {
    "anthropic": ("error", {"type": "error", "error": {"type": "api_error", "message": "M"}}),
    "openai-responses": ("error", {"type": "error", "code": "upstream_truncated", "message": "M", "param": None}),
    "letta": (None, {"message_type": "error_message", "error_type": "upstream_truncated", "message": "M"}),
    "gemini": (None, {"error": {"code": 502, "message": "M", "status": "UNAVAILABLE"}}),
    "ollama": (None, {"error": "M"}),
    "openai-chat": (None, _OPENAI),
    "generic": (None, _OPENAI),
    "cohere": ("message-end", {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "M"}}),
    # Added after the move: Bedrock's exception, in a text framing (its own is binary: test_providers_bedrock).
    "bedrock": ("internalServerException", {"message": "M", "__type": "internalServerException"}),
    "mcp": ("message", {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": "M"}}),
}


@pytest.mark.parametrize("name", sorted(SHAPES_BEFORE))
@pytest.mark.parametrize("framing", ["sse", "ndjson"])
def test_error_events_are_byte_for_byte_what_they_were(name: str, framing: str) -> None:
    event, payload = SHAPES_BEFORE[name]
    message = "cut «here»"
    data = json.dumps(payload, ensure_ascii=False).replace('"M"', json.dumps(message, ensure_ascii=False))
    expected = (data + "\n").encode() if framing == "ndjson" else (
        (f"event: {event}\n" if event else "") + f"data: {data}\n\n").encode()
    assert providers.get(name).error_event(framing, message) == expected


def test_every_registered_provider_has_its_error_shape_pinned() -> None:
    assert set(SHAPES_BEFORE) == NAMES
