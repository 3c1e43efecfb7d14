"""The JSON plumbing providers share: ``loads`` must be ``json.loads`` made
strict, value for value and error for error, fast path or not: NaN, Infinity
and -Infinity are not JSON, and every error (nesting too deep, an integer too
long for Python, the constants) is a ``json.JSONDecodeError``, never another
exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssemedic.core.providers.base import loads


def outcome(fn: Any, text: str) -> tuple[str, Any]:
    """What ``fn(text)`` gives: ("value", v) or ("raises", type, message, details)."""
    try:
        return "value", fn(text)
    except json.JSONDecodeError as exc:
        return "raises", (type(exc), exc.msg, exc.pos, str(exc))
    except (ValueError, RecursionError) as exc:
        return "raises", (type(exc), str(exc))


def _reject(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json_loads(text: str) -> Any:
    """The reference: json.loads without the constants."""
    return json.loads(text, parse_constant=_reject)


def same_as_json_loads(text: str) -> None:
    got, expected = outcome(loads, text), outcome(strict_json_loads, text)
    if got[0] == "raises":
        assert got[1][0] is json.JSONDecodeError, got  # one exception type, whatever the cause
    if expected[0] == "raises" and expected[1][0] is not json.JSONDecodeError:
        # A constant, the digit limit or the recursion limit: json.loads says so its own way.
        assert got[0] == "raises", (text[:80], got)
        return
    # -1e400 is -inf, equal to itself: compare the JSON of values instead.
    assert json.dumps(got, sort_keys=True, default=repr) == json.dumps(expected, sort_keys=True, default=repr)


@pytest.mark.parametrize(
    "text",
    [
        '{"choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": null}]}',
        '"тест 🙂"', "[1, 2.5, true, null]", "0", "-1e400", "NaN", "Infinity",
        "-Infinity", "[1, NaN]", '{"NaN": "NaN"}', '["Infinity", -Infinity]', '{"a": "1" , "b": 1e999}',
        " {}", "{} ", "\t[1]\n", "\ufeff{}", "{}\ufeff", "{} x", '{"a": 1}{"b": 2}',
        "", " ", "{", "[1,]", '{"a" 1}', '"\x01"', '"\\ud800"', "[DONE]", "nul", "1" * 5000,
        "[" * 100_000, '{"a": ' * 5000,
    ],
)
def test_loads_gives_what_json_loads_gives(text: str) -> None:
    same_as_json_loads(text)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)
PADDING = st.sampled_from(["", " ", "\n", "\t\r\n ", "\ufeff", "x", "}", ",1"])


@settings(max_examples=400, deadline=None)
@given(PADDING, JSON_VALUES, PADDING, st.integers(min_value=0, max_value=60))
def test_loads_matches_json_loads_on_padded_and_cut_documents(head: str, value: Any, tail: str, cut: int) -> None:
    text = json.dumps(value, ensure_ascii=False)
    same_as_json_loads(head + text + tail)
    same_as_json_loads(text[:cut])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_loads_matches_json_loads_on_any_text(text: str) -> None:
    same_as_json_loads(text)
