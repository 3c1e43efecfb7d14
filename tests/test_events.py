"""core/events.py: the framed event value, the capped issue log, the UTF-8
decoding rule and issue previews."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import pytest

from ssemedic.core.events import (
    BOM,
    MAX_ISSUES_PER_KIND,
    IssueKind,
    IssueLog,
    ParseIssue,
    ServerSentEvent,
    decode_utf8,
    preview,
)

EVENT = ServerSentEvent("content_block_delta", '{"type": "x"}', "7", 1500, b"event: content_block_delta\n", 42)

# -- ServerSentEvent -----------------------------------------------------------------


def test_defaults_are_an_unnamed_message_with_no_id_or_retry() -> None:
    event = ServerSentEvent()
    assert (event.event, event.data, event.id, event.retry, event.raw, event.offset) == (
        "message", "", None, None, b"", 0)


def test_fields_by_keyword_and_position_are_the_same_event() -> None:
    by_name = ServerSentEvent(event="content_block_delta", data='{"type": "x"}', id="7", retry=1500,
                              raw=b"event: content_block_delta\n", offset=42)
    assert by_name == EVENT and hash(by_name) == hash(EVENT)
    assert [f.name for f in dataclasses.fields(ServerSentEvent)] == ["event", "data", "id", "retry", "raw", "offset"]


def test_equality_is_field_wise() -> None:
    assert ServerSentEvent(data="a") != ServerSentEvent(data="b")
    assert ServerSentEvent(data="a", offset=0) != ServerSentEvent(data="a", offset=1)
    assert ServerSentEvent(data="a", id=None) != ServerSentEvent(data="a", id="")  # no id vs an empty id
    assert len({ServerSentEvent(data="a"), ServerSentEvent(data="a"), ServerSentEvent(data="b")}) == 2


def test_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        EVENT.data = "changed"  # type: ignore[misc]
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
        EVENT.extra = 1  # type: ignore[attr-defined]
    assert EVENT.data == '{"type": "x"}'


def test_replace_asdict_and_repr_see_the_fields() -> None:
    changed = dataclasses.replace(EVENT, data="[DONE]")
    assert isinstance(changed, ServerSentEvent)
    assert (changed.data, changed.event, changed.offset) == ("[DONE]", "content_block_delta", 42)
    assert dataclasses.asdict(EVENT) == {"event": "content_block_delta", "data": '{"type": "x"}', "id": "7",
                                         "retry": 1500, "raw": b"event: content_block_delta\n", "offset": 42}
    assert repr(ServerSentEvent(data="hi")) == (
        "ServerSentEvent(event='message', data='hi', id=None, retry=None, raw=b'', offset=0)")


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy, lambda e: pickle.loads(pickle.dumps(e))],
                         ids=["copy", "deepcopy", "pickle"])
def test_copies_and_pickles_keep_every_field(clone: object) -> None:
    again = clone(EVENT)  # type: ignore[operator]
    assert type(again) is ServerSentEvent and again == EVENT
    assert again.raw == EVENT.raw and again.retry == 1500


def test_json_decodes_the_data() -> None:
    event = ServerSentEvent(data='{"choices": [{"delta": {"content": "Привет"}}]}')
    assert event.json() == {"choices": [{"delta": {"content": "Привет"}}]}
    assert ServerSentEvent(data="42").json() == 42
    assert ServerSentEvent(data='"a"\n').json() == "a"  # multi-line data keeps its LF, JSON allows it


@pytest.mark.parametrize("data", ["[DONE]", "", '{"choices": [', "data: {}", "{'a': 1}", "NaN-ish"])
def test_json_raises_json_decode_error_on_anything_else(data: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        ServerSentEvent(data=data).json()


# -- IssueLog --------------------------------------------------------------------------


def test_issue_log_keeps_issues_in_the_order_found() -> None:
    log = IssueLog()
    log.add(IssueKind.BOM, 0, "BOM")
    log.add(IssueKind.UNKNOWN_FIELD, 10, "unknown field 'foo' ignored")
    log.add(IssueKind.BOM, 20, "again")
    assert log.issues == [ParseIssue(IssueKind.BOM, 0, "BOM"),
                          ParseIssue(IssueKind.UNKNOWN_FIELD, 10, "unknown field 'foo' ignored"),
                          ParseIssue(IssueKind.BOM, 20, "again")]
    assert log.counts == {IssueKind.BOM: 2, IssueKind.UNKNOWN_FIELD: 1}


def test_issue_log_keeps_the_first_issues_of_a_kind_and_counts_the_rest_exactly() -> None:
    log = IssueLog()
    flood = MAX_ISSUES_PER_KIND * 3 + 7
    for i in range(flood):
        log.add(IssueKind.INVALID_RETRY, i, f"#{i}")
    log.add(IssueKind.INVALID_ID, flood, "another kind is not crowded out")
    kept = [issue for issue in log.issues if issue.kind == IssueKind.INVALID_RETRY]
    assert [issue.offset for issue in kept] == list(range(MAX_ISSUES_PER_KIND))
    assert log.counts[IssueKind.INVALID_RETRY] == flood
    assert log.issues[-1] == ParseIssue(IssueKind.INVALID_ID, flood, "another kind is not crowded out")
    assert len(log.issues) == MAX_ISSUES_PER_KIND + 1


def test_issue_logs_do_not_share_state() -> None:
    first, second = IssueLog(), IssueLog()
    first.add(IssueKind.BOM, 0, "")
    assert second.issues == [] and not second.counts


def test_issue_kinds_are_the_documented_strings() -> None:
    assert {str(kind) for kind in IssueKind} == {
        "invalid-utf8", "bom", "invalid-retry", "invalid-id", "unknown-field", "oversized-event",
        "incomplete-event", "missing-final-newline",
        # the AWS event stream's (core/eventstream.py)
        "bad-prelude-crc", "bad-message-crc", "invalid-frame", "unparsed",
        # a streamed JSON array's (core/jsonarray.py)
        "unexpected-data"}


# -- decode_utf8 -----------------------------------------------------------------------


def test_valid_utf8_decodes_without_an_issue() -> None:
    log = IssueLog()
    assert decode_utf8("Привет 🌍 café".encode(), 100, log) == "Привет 🌍 café"
    assert log.issues == []


def test_invalid_utf8_is_replaced_and_logged_at_its_stream_offset() -> None:
    log = IssueLog()
    data = "Café".encode("latin-1") + b" ok"  # b"Caf\xe9 ok"
    assert decode_utf8(data, 1000, log) == "Caf\ufffd ok"
    [issue] = log.issues
    assert issue.kind == IssueKind.INVALID_UTF8 and issue.offset == 1003
    assert "\\xe9" in issue.detail and "U+FFFD" in issue.detail


def test_a_cut_multibyte_character_is_invalid_at_its_first_byte() -> None:
    log = IssueLog()
    data = "ab🌍".encode()[:-1]  # the last character lacks its final byte
    assert decode_utf8(data, 0, log) == "ab\ufffd"
    assert [(i.kind, i.offset) for i in log.issues] == [(IssueKind.INVALID_UTF8, 2)]


def test_the_bom_is_text_to_decode_utf8() -> None:
    # Dropping the stream's one leading BOM is the parser's job, not the decoder's.
    log = IssueLog()
    assert decode_utf8(BOM + b"x", 0, log) == "\ufeffx" and log.issues == []


# -- preview ---------------------------------------------------------------------------


def test_preview_is_a_repr_cut_to_the_limit() -> None:
    assert preview(b"data: [DONE]") == "'data: [DONE]'"
    assert preview("x" * 40) == repr("x" * 40)
    assert preview("x" * 41) == repr("x" * 40 + "…")
    assert preview(b"abcdef", limit=3) == repr("abc…")


def test_preview_shows_control_and_invalid_bytes_printably() -> None:
    shown = preview(b"a\r\nb\xff")
    assert "\n" not in shown and "\r" not in shown
    assert shown == repr("a\r\nb\ufffd")
