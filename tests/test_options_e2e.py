"""Bad ssemedic option values with real mitmproxy processes: at startup one
line names the option, the value and what it may be, and mitmdump exits
nonzero; at runtime (mitmweb) the old value stays and the message is one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e import MEDIC, ROOT, free_port, run_mitmdump, stop, wait_for_port

MITMWEB = str(Path(sys.executable).with_name("mitmweb"))

# (option, bad value, what the line says the value may be)
BAD_VALUES = [
    ("ssemedic_log", "loud", "is not one of events, summary, off"),
    ("ssemedic_filter", "~q (", "is not a valid filter expression"),
    ("ssemedic_repair", "maybe", "is not true or false"),
    ("ssemedic_repairs", "bogus", "known: all, reframe,"),
    ("ssemedic_letta_shape", "shapely", "is not one of auto, openai, letta"),
    ("ssemedic_inject", "nope", "known: split-utf8,"),
    ("ssemedic_redact", "sometimes", "is not true or false"),
    ("ssemedic_stall", "abc", "is not a number of seconds > 0"),
    ("ssemedic_max_text", "-1", "is not a whole number >= 0"),
    ("ssemedic_view_width", "9", "is not a whole number >= 40"),
]


def start(*settings: str) -> tuple[subprocess.CompletedProcess[str], float]:
    args = ["--listen-host", "127.0.0.1", "-p", str(free_port()), "-s", str(MEDIC)]
    for setting in settings:
        args += ["--set", setting]
    began = time.monotonic()
    result = run_mitmdump(args, timeout=30)  # raises if mitmdump goes on running
    return result, time.monotonic() - began


def lines_naming(option: str, result: subprocess.CompletedProcess[str]) -> list[str]:
    # mitmdump's log (where the line goes) is on stdout, its exit line on stderr.
    return [line for line in (result.stdout + result.stderr).splitlines() if option in line]


def assert_refused_in_one_line(result: subprocess.CompletedProcess[str], option: str, value: str, allowed: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output and "error in script" not in output, output
    lines = lines_naming(option, result)
    assert len(lines) == 1, output
    assert f"{option}: " in lines[0] and repr(value) in lines[0] and allowed in lines[0], lines[0]
    assert "logged during startup, exiting" in result.stderr, output  # mitmproxy's own exit


@pytest.mark.parametrize(("option", "value", "allowed"), BAD_VALUES, ids=[o for o, _, _ in BAD_VALUES])
def test_bad_value_stops_mitmdump_with_one_line(option: str, value: str, allowed: str) -> None:
    result, took = start(f"{option}={value}")
    assert_refused_in_one_line(result, option, value, allowed)
    assert took < 25, f"mitmdump took {took:.1f} s to stop"


def test_unwritable_jsonl_stops_mitmdump_with_one_line(tmp_path: Path) -> None:
    path = str(tmp_path / "missing" / "events.jsonl")
    result, _ = start(f"ssemedic_jsonl={path}")
    assert_refused_in_one_line(result, "ssemedic_jsonl", path, "cannot be opened for appending")


def test_every_bad_value_is_named_once() -> None:
    result, _ = start("ssemedic_stall=abc", "ssemedic_log=loud", "ssemedic_max_text=7")
    assert_refused_in_one_line(result, "ssemedic_stall", "abc", "seconds")
    assert_refused_in_one_line(result, "ssemedic_log", "loud", "events")
    assert lines_naming("ssemedic_max_text", result) == []


def test_good_values_start_mitmdump(tmp_path: Path) -> None:
    port = free_port()
    args = [str(Path(sys.executable).with_name("mitmdump")), "--listen-host", "127.0.0.1", "-p", str(port),
            "-s", str(MEDIC), "--set", "ssemedic_stall=2.5", "--set", "ssemedic_filter=~u /v1/",
            "--set", f"ssemedic_jsonl={tmp_path / 'events.jsonl'}", "--set", "ssemedic_repair=yes"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
    finally:
        stop(proc)
    assert proc.stdout is not None
    assert b"ssemedic_" not in proc.stdout.read()


@pytest.fixture(scope="module")
def mitmweb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    """mitmweb with ssemedic and a known web password; yields a client of its API."""
    tmp_path = tmp_path_factory.mktemp("mitmweb")
    web_port, proxy_port = free_port(), free_port()
    args = [MITMWEB, "--no-web-open-browser", "--web-host", "127.0.0.1", "--web-port", str(web_port),
            "--listen-host", "127.0.0.1", "-p", str(proxy_port), "-s", str(MEDIC),
            "--set", "web_password=test", "--set", f"ssemedic_jsonl={tmp_path / 'events.jsonl'}"]
    env = {**os.environ, "TERM": "dumb"}
    with (tmp_path / "mitmweb.log").open("wb") as sink:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for_port(web_port, proc)
        # The API takes the password as a bearer token and wants tornado's
        # XSRF cookie echoed in a header.
        xsrf = "ssemedic-test"
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=10,
                          headers={"Authorization": "Bearer test", "X-XSRFToken": xsrf},
                          cookies={"_mitmproxy_xsrf": xsrf}) as client:
            yield client, proc
    finally:
        stop(proc)


@pytest.mark.parametrize(("option", "value", "allowed"), BAD_VALUES, ids=[o for o, _, _ in BAD_VALUES])
def test_bad_value_at_runtime_keeps_the_old_one(mitmweb: tuple[httpx.Client, subprocess.Popen[bytes]],
                                                option: str, value: str, allowed: str) -> None:
    client, proc = mitmweb
    before = client.get("/options").json()[option]["value"]
    answer = client.put("/options", json={option: value})  # mitmweb's options editor
    assert answer.status_code == 400
    assert answer.text.startswith(f"{option}: ") and repr(value) in answer.text and allowed in answer.text
    assert "\n" not in answer.text
    command = client.post("/commands/set", json={"arguments": [option, value]})  # the console's :set
    assert command.json()["error"] == answer.text
    assert client.get("/options").json()[option]["value"] == before
    assert proc.poll() is None


def test_unwritable_jsonl_at_runtime_keeps_the_old_file(mitmweb: tuple[httpx.Client, subprocess.Popen[bytes]],
                                                        tmp_path: Path) -> None:
    client, _ = mitmweb
    before = client.get("/options").json()["ssemedic_jsonl"]["value"]
    answer = client.put("/options", json={"ssemedic_jsonl": str(tmp_path / "missing" / "x.jsonl")})
    assert answer.status_code == 400 and "cannot be opened for appending" in answer.text
    assert client.get("/options").json()["ssemedic_jsonl"]["value"] == before


def test_good_value_at_runtime_is_taken(mitmweb: tuple[httpx.Client, subprocess.Popen[bytes]]) -> None:
    client, _ = mitmweb
    assert client.put("/options", json={"ssemedic_stall": "5"}).status_code == 200
    assert client.get("/options").json()["ssemedic_stall"]["value"] == "5"
