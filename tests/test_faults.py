"""core/faults.py: the catalogue (a severity, a message and a fix for every
kind), which kinds are quiet, and a Fault as a value and as JSON."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from ssemedic.core.faults import CATALOGUE, QUIET, Entry, Fault, FaultKind, Severity
from ssemedic.files.report import SEVERITY_STYLES

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_kind_has_exactly_one_entry() -> None:
    assert list(CATALOGUE) == list(FaultKind)
    assert all(isinstance(entry, Entry) for entry in CATALOGUE.values())


def test_kinds_are_lowercase_hyphenated_names() -> None:
    for kind in FaultKind:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", str(kind)), kind


def test_severities_are_the_three_documented_ones_and_each_has_a_style() -> None:
    assert [str(s) for s in Severity] == ["error", "warning", "info"]
    assert set(SEVERITY_STYLES) == {str(s) for s in Severity}
    assert {entry.severity for entry in CATALOGUE.values()} == set(Severity)  # every severity is used


@pytest.mark.parametrize("kind", list(FaultKind), ids=str)
def test_every_message_is_one_line_phrase(kind: FaultKind) -> None:
    # The live log prints "FAULT <kind>: <detail> — <message>".
    message = CATALOGUE[kind].message
    assert message.strip() == message and message
    assert "\n" not in message and not message.endswith(".")


@pytest.mark.parametrize("kind", list(FaultKind), ids=str)
def test_every_kind_has_a_fix_in_one_line_of_sentences(kind: FaultKind) -> None:
    # The live log prints "  fix: <hint>" on one line after the FAULT line.
    hint = CATALOGUE[kind].hint
    assert hint.strip() == hint and len(hint) > len("Fix it.")
    assert "\n" not in hint and hint.endswith(".")
    assert hint != CATALOGUE[kind].message


def test_hints_are_not_shared_between_kinds() -> None:
    hints = [entry.hint for entry in CATALOGUE.values()]
    assert len(set(hints)) == len(hints)


@pytest.mark.parametrize("kind", list(FaultKind), ids=str)
def test_a_hint_that_offers_ssemedic_repair_says_which_repair(kind: FaultKind) -> None:
    hint = CATALOGUE[kind].hint
    repairs = {"reframe", "normalise", "headers", "decompress", "sanitize", "done", "letta"}  # README "Repair"
    if "ssemedic_repair" in hint:
        named = set(re.findall(r"repair `([a-z]+)`", hint))
        assert named and named <= repairs, hint


# -- quiet kinds --------------------------------------------------------------------------


def test_quiet_kinds_are_the_ones_the_readme_names() -> None:
    # README "Diagnosis": these only get one dim note line per stream.
    assert {str(kind) for kind in QUIET} == {
        "utf8-split", "event-split", "missing-no-transform", "missing-accel-buffering", "bom"}


def test_every_info_kind_is_quiet_and_no_error_is() -> None:
    for kind, entry in CATALOGUE.items():
        if entry.severity == Severity.INFO:
            assert kind in QUIET, kind
        if entry.severity == Severity.ERROR:
            assert kind not in QUIET, kind


def test_readme_names_only_real_kinds_and_each_quiet_one() -> None:
    section = README.split("### Diagnosis", 1)[1].split("\n### ", 1)[0]
    named = set(re.findall(r"`([a-z0-9]+(?:-[a-z0-9]+)+|bom|stall|truncated)`", section))
    real = {str(kind) for kind in FaultKind}
    assert named - real == set()  # no kind the code does not know
    assert {str(kind) for kind in QUIET} <= named


# -- Fault -------------------------------------------------------------------------------


def test_a_fault_reads_its_severity_message_and_hint_from_the_catalogue() -> None:
    for kind, entry in CATALOGUE.items():
        fault = Fault(kind, "detail")
        assert (fault.severity, fault.message, fault.hint) == (entry.severity, entry.message, entry.hint)
        assert fault.quiet == (kind in QUIET)


def test_a_fault_is_a_frozen_value() -> None:
    fault = Fault(FaultKind.STALL, "12.0 s between events 3 and 4", event_index=4)
    assert fault == Fault(FaultKind.STALL, "12.0 s between events 3 and 4", event_index=4)
    assert fault != Fault(FaultKind.STALL, "12.0 s between events 3 and 4", event_index=5)
    assert len({fault, Fault(FaultKind.STALL, "12.0 s between events 3 and 4", event_index=4)}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        fault.detail = "other"  # type: ignore[misc]


def test_to_dict_is_json_with_the_documented_keys() -> None:
    fault = Fault(FaultKind.INVALID_JSON, "Expecting value", event_index=2, offset=120)
    data = fault.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data == {
        "kind": "invalid-json",
        "severity": "error",
        "message": CATALOGUE[FaultKind.INVALID_JSON].message,
        "hint": CATALOGUE[FaultKind.INVALID_JSON].hint,
        "detail": "Expecting value",
        "event_index": 2,
        "offset": 120,
    }
    assert type(data["kind"]) is str and type(data["severity"]) is str  # plain strings, not enum members


def test_to_dict_leaves_out_an_unknown_location_and_keeps_zero() -> None:
    assert "event_index" not in Fault(FaultKind.MISSING_DONE).to_dict()
    assert "offset" not in Fault(FaultKind.MISSING_DONE).to_dict()
    at_start = Fault(FaultKind.BOM, offset=0).to_dict()
    assert at_start["offset"] == 0 and "event_index" not in at_start
    first = Fault(FaultKind.INVALID_JSON, event_index=0).to_dict()
    assert first["event_index"] == 0 and "offset" not in first
    assert Fault(FaultKind.MISSING_DONE).to_dict()["detail"] == ""
