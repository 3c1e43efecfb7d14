"""Broken streams are marked in the flow list (mitm/marking.py, the addon's
ssemedic_mark): a marker and a comment naming the error-level faults; a
user's own marker and comment survive; saved flows keep them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e import ROOT, mitmdump, run_mitmdump
from mitmproxy import exceptions, flowfilter, io
from mitmproxy.test import taddons

from ssemedic.core.faults import Fault, FaultKind
from ssemedic.core.view import cells
from ssemedic.mitm.contentview import WIDTH
from ssemedic.mitm.addon import Medic
from ssemedic.mitm.marking import MARKER, comment_line, mark

RECORDINGS = ROOT / "recordings"
MEDIC = str(ROOT / "addons" / "medic.py")


def loaded(name: str) -> Any:
    with (RECORDINGS / f"{name}.flows").open("rb") as f:
        (flow,) = list(io.FlowReader(f).stream())
    return flow


def replayed(*names: str, **options: Any) -> list[Any]:
    """Each recording's flow after the addon's response hook, as ``-nr`` runs it."""
    flows = [loaded(name) for name in names]
    addon = Medic()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ssemedic_log="off", **options)
        for f in flows:
            addon.response(f)
    return flows


# -- the marking itself -----------------------------------------------------------------


class Flow:
    marked = ""
    comment = ""


TRUNCATED = Fault(FaultKind.TRUNCATED)
ERROR = Fault(FaultKind.ERROR_IN_STREAM, "boom")
SPLIT = Fault(FaultKind.EVENT_SPLIT)


def test_error_faults_get_the_marker_and_a_comment_in_order_seen() -> None:
    f = Flow()
    assert mark(f, [SPLIT, ERROR, TRUNCATED, ERROR])  # type: ignore[arg-type]
    assert (f.marked, f.comment) == (MARKER, "ssemedic: error-in-stream, truncated")


def test_warnings_alone_mark_nothing() -> None:
    f = Flow()
    assert not mark(f, [SPLIT, Fault(FaultKind.MISSING_NO_TRANSFORM)])  # type: ignore[arg-type]
    assert (f.marked, f.comment) == ("", "")
    assert comment_line([SPLIT]) is None


def test_a_users_marker_and_comment_survive() -> None:
    f = Flow()
    f.marked, f.comment = ":star:", "my note: look at this"
    assert mark(f, [TRUNCATED])  # type: ignore[arg-type]
    assert f.marked == ":star:"
    assert f.comment == "my note: look at this\nssemedic: truncated"


def test_running_again_rewrites_only_its_own_line() -> None:
    f = Flow()
    f.comment = "mine\nssemedic: truncated\nmore of mine"
    mark(f, [ERROR])  # type: ignore[arg-type]
    assert f.comment == "mine\nssemedic: error-in-stream\nmore of mine"
    assert not mark(f, [ERROR])  # type: ignore[arg-type]  # nothing new: no change


def test_the_marker_is_one_mitmproxy_accepts() -> None:
    from mitmproxy.types import _MarkerType

    assert _MarkerType().is_valid(None, None, MARKER)  # type: ignore[arg-type]


# -- through the addon --------------------------------------------------------------------


def test_replayed_broken_flows_are_marked_healthy_ones_not() -> None:
    truncated, healthy, error = replayed("truncated", "healthy", "error-then-done")
    assert (truncated.marked, truncated.comment) == (MARKER, "ssemedic: truncated")
    assert (error.marked, error.comment) == (MARKER, "ssemedic: error-in-stream, done-after-error")
    assert (healthy.marked, healthy.comment) == ("", "")


def test_a_users_mark_on_a_replayed_flow_survives() -> None:
    flow = loaded("truncated")
    flow.marked, flow.comment = ":red_circle:", "seen in prod"
    addon = Medic()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, ssemedic_log="off")
        addon.response(flow)
    assert (flow.marked, flow.comment) == (":red_circle:", "seen in prod\nssemedic: truncated")


def test_the_option_turns_marking_off() -> None:
    (truncated,) = replayed("truncated", ssemedic_mark="off")
    assert (truncated.marked, truncated.comment) == ("", "")


def test_a_bad_option_value_is_refused_in_one_line() -> None:
    addon = Medic()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match=r"^ssemedic_mark: 'maybe' is not true or false"):
            tctx.configure(addon, ssemedic_mark="maybe")
        assert addon.mark_on


# -- saved flows and real processes --------------------------------------------------------


@pytest.fixture
def three(tmp_path: Path) -> Path:
    path = tmp_path / "three.flows"
    path.write_bytes(b"".join((RECORDINGS / f"{n}.flows").read_bytes() for n in ("truncated", "healthy", "error-then-done")))
    return path


def test_marks_go_into_saved_flows_and_filters_find_them(three: Path, tmp_path: Path) -> None:
    out = tmp_path / "marked.flows"
    done = run_mitmdump(["-q", "-nr", str(three), "-s", MEDIC, "--set", "ssemedic_log=off", "-w", str(out)])
    assert done.returncode == 0, done.stderr
    with out.open("rb") as f:
        flows = list(io.FlowReader(f).stream())
    paths = lambda expr: [f.request.path.split("/")[2] for f in flows if flowfilter.parse(expr)(f)]  # noqa: E731
    assert paths("~comment truncated") == ["truncated"]
    assert paths("~marked") == ["truncated", "error-then-done"]
    assert paths("!~marked") == ["healthy"]
    # And mitmdump's own filter, reading the saved file without ssemedic.
    shown = run_mitmdump(["-nr", str(out), "~comment done-after-error"])
    assert shown.returncode == 0, shown.stderr
    assert "/s/error-then-done/" in shown.stdout
    assert "/s/truncated/" not in shown.stdout and "/s/healthy/" not in shown.stdout


def test_the_dumper_filter_sees_the_mark_during_replay(three: Path) -> None:
    # Not the positional filter: it also filters reading (readfile_filter), before any hook ran.
    done = run_mitmdump(["-nr", str(three), "-s", MEDIC, "--set", "ssemedic_log=off",
                         "--set", "dumper_filter=~comment truncated"])
    assert done.returncode == 0, done.stderr
    assert "/s/truncated/" in done.stdout
    assert "/s/healthy/" not in done.stdout and "/s/error-then-done/" not in done.stdout


CHECKER = '''
import json
from mitmproxy import ctx

class Checker:
    """Writes every flow's marker and comment when mitmdump stops."""
    def __init__(self):
        self.flows = []
    def response(self, flow):
        self.flows.append(flow)
    def done(self):
        with open({out!r}, "w") as f:
            json.dump([[fl.request.path, fl.marked, fl.comment] for fl in self.flows], f)

addons = [Checker()]
'''


def test_live_streams_are_marked_once_their_end_is_diagnosed(upstream: int, tmp_path: Path) -> None:
    out = tmp_path / "marks.json"
    checker = tmp_path / "checker.py"
    checker.write_text(CHECKER.format(out=str(out)))
    with mitmdump(upstream, tmp_path, "-s", str(checker), "--set", "ssemedic_log=off") as proxy:
        with httpx.Client(trust_env=False, timeout=20) as client:
            for scenario in ("truncated", "healthy", "error-then-done"):
                try:
                    client.post(f"{proxy.base}/s/{scenario}/v1/chat/completions?delay=0.001",
                                json={"model": "m", "stream": True, "messages": []}).read()
                except httpx.HTTPError:
                    pass  # a truncated body may end the read with an error: the proxy saw it all
        time.sleep(0.5)  # the end is diagnosed in a turn after the response hook
    marks = {path.split("/")[2]: (marked, comment) for path, marked, comment in json.loads(out.read_text())}
    assert marks == {
        "truncated": (MARKER, "ssemedic: truncated"),
        "healthy": ("", ""),
        "error-then-done": (MARKER, "ssemedic: error-in-stream, done-after-error"),
    }, proxy.output()


def test_flow_detail_4_prints_the_view(tmp_path: Path) -> None:
    done = run_mitmdump(["-nr", str(RECORDINGS / "truncated.flows"), "-s", MEDIC, "--set", "ssemedic_log=off",
                         "--flow-detail", "4"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("    verdict: broken · 1 error, 2 warnings, 2 infos")
    view = lines[start:]
    assert "    provider: openai-chat (sse)" in view
    assert "    complete: false  # no terminal signal" in view
    assert any(line.startswith("      - error truncated: ") for line in view)
    assert "    events:" in view and "    arrivals:" in view
    assert max(cells(line) for line in view) <= 4 + WIDTH  # the dumper indents by 4
