"""Hostile files for `ssemedic report`, `redact` and `replay`: outputs that
are not regular files, bodies that cannot be decoded, broken HAR, invalid
NDJSON lines and flow files cut short. Each gets one clear line, never a
traceback, and never a success it did not earn."""

from __future__ import annotations

import argparse
import errno
import gzip
import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import ndjson_line, sse_event
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.io import FlowReader, FlowWriter
from mitmproxy.test import tflow

from ssemedic.files import redact, replay, sources
from ssemedic.files.cli import main
from ssemedic.files.sources import SourceError, load, read_flows

CHUNK = {"object": "chat.completion.chunk", "model": "gpt-4o",
         "choices": [{"index": 0, "delta": {"content": "Привет"}}]}
STOP = {"object": "chat.completion.chunk", "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
BODY = sse_event(CHUNK) + sse_event(STOP) + b"data: [DONE]\n\n"


def stream_flow(number: int = 0) -> Any:
    flow = tflow.tflow(resp=True)
    flow.request.method = "POST"
    flow.request.path = f"/v1/chat/completions?n={number}"
    flow.request.content = b'{"model": "gpt-4o", "stream": true, "messages": []}'
    flow.response.headers["content-type"] = "text/event-stream"
    flow.response.content = BODY
    return flow


def flow_bytes(flows: list[Any]) -> tuple[bytes, list[int]]:
    """The flow file for ``flows`` and the offset where each flow ends."""
    out = io.BytesIO()
    writer = FlowWriter(out)
    ends = []
    for flow in flows:
        writer.add(flow)
        ends.append(out.tell())
    return out.getvalue(), ends


def report_json(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["report", "--json", str(path)])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else []), err


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("ssemedic: error:")]
    assert len(lines) == 1, err
    return lines[0]


def redact_args(src: Path, dst: Path, *, partial: bool = False) -> argparse.Namespace:
    return argparse.Namespace(input=str(src), output=str(dst), partial=partial)


@pytest.fixture
def flows_file(tmp_path: Path) -> Path:
    path = tmp_path / "in.flows"
    path.write_bytes(flow_bytes([stream_flow()])[0])
    return path


# -- 1. redact writes regular files only, atomically --------------------------------


def test_redact_refuses_to_replace_a_fifo(
    tmp_path: Path, flows_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    assert redact.run(redact_args(flows_file, fifo)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line == f"ssemedic: error: {fifo}: is a FIFO, not a regular file; ssemedic redact writes only regular files"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.flows", "out.fifo"]  # no temporary left


def test_redact_refuses_a_directory_as_output(
    tmp_path: Path, flows_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    directory = tmp_path / "out"
    directory.mkdir()
    assert redact.run(redact_args(flows_file, directory)) == 2
    assert "is a directory, not a regular file" in one_error_line(capsys.readouterr().err)
    assert directory.is_dir() and not any(directory.iterdir())


def test_redact_refuses_to_replace_a_device(
    tmp_path: Path, flows_file: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # A device node of our own (the null device's numbers) in tmp_path, not
    # /dev/null itself: a regression would replace the machine's device.
    device = tmp_path / "null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (OSError, AttributeError) as exc:
        pytest.skip(f"cannot create a device node here: {exc}")
    assert redact.run(redact_args(flows_file, device)) == 2
    assert "is a character device, not a regular file" in one_error_line(capsys.readouterr().err)
    assert stat.S_ISCHR(os.lstat(device).st_mode)


def test_redact_writes_through_a_symlink_and_keeps_the_link(tmp_path: Path, flows_file: Path) -> None:
    target = tmp_path / "real.flows"
    target.write_bytes(b"old")
    link = tmp_path / "link.flows"
    link.symlink_to(target)
    assert redact.run(redact_args(flows_file, link)) == 0
    assert link.is_symlink()
    with target.open("rb") as f:
        assert len(list(FlowReader(f).stream())) == 1


def test_redact_keeps_the_permissions_of_the_file_it_replaces(tmp_path: Path, flows_file: Path) -> None:
    out = tmp_path / "out.flows"
    out.write_bytes(b"old")
    out.chmod(0o640)
    assert redact.run(redact_args(flows_file, out)) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert out.read_bytes() == flows_file.read_bytes()  # nothing to redact in these flows


def test_redact_reports_a_failed_sync_and_leaves_the_old_output(
    tmp_path: Path, flows_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out.flows"
    out.write_bytes(b"old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert redact.run(redact_args(flows_file, out)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"ssemedic: error: {out}: cannot write: {os.strerror(errno.ENOSPC)}")
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.flows", "out.flows"]


# -- 2. a body that cannot be decoded is not parsed ---------------------------------


@pytest.mark.parametrize(("encoding", "raw"), [
    ("gzip, br", gzip.compress(BODY)),  # stacked codings: not decoded here
    ("compress", b"\x1f\x9d\x90" + BODY[:40]),  # an encoding nobody decodes
    ("gzip", b"\x1f\x8b\x08\x00garbage, not deflate data" * 3),  # a supported one, broken
])
def test_undecodable_body_is_said_so_and_not_diagnosed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], encoding: str, raw: bytes,
) -> None:
    flow = stream_flow()
    flow.response.headers["content-encoding"] = encoding
    flow.response.raw_content = raw
    path = tmp_path / "enc.flows"
    path.write_bytes(flow_bytes([flow])[0])
    code, [report], err = report_json(capsys, path)
    assert code == 0 and err == ""
    assert report["faults"] == [] and report["issues"] == []
    assert report["events"] == 0 and report["complete"] is None
    assert report["timing"]["bytes"] == len(raw)
    assert any("body not inspected" in note and ("decode" in note or "content-encoding" in note)
               for note in report["notes"]), report["notes"]
    assert main(["report", str(path)]) == 0
    assert "unknown: body not inspected" in capsys.readouterr().out


# -- 3. a broken HAR is an error, not an NDJSON stream -------------------------------


@pytest.mark.parametrize("content", [
    b'{"log": {"entries": [',
    b'{\n  "log": {\n    "version": "1.2",\n    "entries": [\n      {"request": ',
    b'\xef\xbb\xbf{"log": {"entries": [}',
])
def test_broken_har_is_one_error_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
) -> None:
    path = tmp_path / "browser.har"
    path.write_bytes(content)
    code, reports, err = report_json(capsys, path)
    assert code == 2 and reports == []
    assert one_error_line(err).startswith(f"ssemedic: error: {path}: looks like a HAR file but is not valid JSON: ")
    assert err.count("\n") == 1


def test_ndjson_whose_objects_have_a_log_key_is_still_ndjson(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "logs.ndjson"
    path.write_bytes(ndjson_line({"log": "a"}) + ndjson_line({"log": "b"}))
    code, [report], _ = report_json(capsys, path)
    assert code == 0 and report["framing"] == "ndjson" and report["events"] == 2


# -- 4. an invalid NDJSON line is an issue, as an invalid SSE payload is -------------


OLLAMA_LAST = {"model": "llama3", "message": {"role": "assistant", "content": "!"}, "done": True,
               "done_reason": "stop"}


@pytest.mark.parametrize(("name", "body", "index"), [
    ("generic ndjson", ndjson_line({"a": 1}) + b"{not json}\n" + ndjson_line({"b": 2}), 1),
    ("ollama ndjson, first line", b"{not json}\n" + ndjson_line(OLLAMA_LAST), 0),
    ("generic sse", sse_event({"a": 1}) + b"data: {not json}\n\n", 1),
    ("openai sse, first event", b"data: {not json}\n\n" + BODY, 0),
])
def test_invalid_json_payload_is_an_issue_and_a_fault(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, body: bytes, index: int,
) -> None:
    path = tmp_path / "capture"
    path.write_bytes(body)
    code, [report], _ = report_json(capsys, path)
    assert code == 0
    [issue] = report["issues"]
    assert issue["kind"] == "invalid-json" and issue["event_index"] == index and "{not json}" in issue["detail"]
    assert [f["kind"] for f in report["faults"] if f["kind"] == "invalid-json"] == ["invalid-json"]


def test_generic_payloads_that_are_not_meant_as_json_are_no_issue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "capture.sse"
    path.write_bytes(b"data: hello\n\ndata: {\"a\": [1, 2]}\n\ndata: [DONE]\n\n")
    code, [report], _ = report_json(capsys, path)
    assert code == 0 and report["provider"] == "generic" and report["issues"] == [] and report["faults"] == []


# -- 5. a damaged flow file gives every flow before the damage ------------------------


@pytest.fixture
def cut_file(tmp_path: Path) -> tuple[Path, int, int]:
    """100 flows cut in the middle of a flow: (path, flows intact, cut offset)."""
    data, ends = flow_bytes([stream_flow(n) for n in range(100)])
    cut = len(data) // 2
    if cut in ends:
        cut += 7  # inside the next flow, not between two
    intact = sum(end <= cut for end in ends)
    path = tmp_path / "cut.flows"
    path.write_bytes(data[:cut])
    return path, intact, ends[intact - 1]


def test_report_on_a_cut_flow_file_gives_every_intact_flow_then_says_where(
    cut_file: tuple[Path, int, int], capsys: pytest.CaptureFixture[str],
) -> None:
    path, intact, offset = cut_file
    assert 45 <= intact <= 55
    code, reports, err = report_json(capsys, path)
    assert code == 1
    assert [r["source"].split()[1] for r in reports] == [f"#{n}" for n in range(1, intact + 1)]
    assert all(r["text"] == "Привет" for r in reports)
    line = one_error_line(err)
    assert line.startswith(f"ssemedic: error: {path}: reading stopped at flow #{intact + 1} "
                           f"(byte {offset:,} of {path.stat().st_size:,}): the file ends inside this flow")
    assert "the file was cut" in line and f"the {intact} flows before it are reported" in line


def test_garbage_in_the_middle_of_a_flow_file_is_said_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    data, ends = flow_bytes([stream_flow(n) for n in range(3)])
    path = tmp_path / "bad.flows"
    path.write_bytes(data[: ends[0]] + b"5:hello!" + data[ends[0]:])
    code, reports, err = report_json(capsys, path)
    assert code == 1 and len(reports) == 1
    assert f"reading stopped at flow #2 (byte {ends[0]:,} of " in one_error_line(err)
    assert "not a valid flow" in err


def test_har_with_a_broken_entry_gives_the_entries_before_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    har = SaveHar().make_har([stream_flow(n) for n in range(3)])
    har["log"]["entries"][1]["request"] = {"no": "method"}
    path = tmp_path / "browser.har"
    path.write_text(json.dumps(har), encoding="utf-8")
    code, reports, err = report_json(capsys, path)
    assert code == 1 and len(reports) == 1
    line = one_error_line(err)
    assert line.startswith(f"ssemedic: error: {path}: reading stopped at HAR entry #2: ")
    assert "KeyError" in line and line.endswith("; the flow before it is reported")


def test_a_flow_file_cut_inside_its_first_flow_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = flow_bytes([stream_flow()])
    path = tmp_path / "cut.flows"
    path.write_bytes(data[:500])
    code, reports, err = report_json(capsys, path)
    assert code == 2 and reports == []
    assert one_error_line(err) == (f"ssemedic: error: {path}: not a readable mitmproxy flow or HAR file: the file "
                                   f"ends inside this flow (500 of its {len(data):,} bytes are there): the file was cut")


def test_strict_readers_name_the_damage(cut_file: tuple[Path, int, int]) -> None:
    path, intact, _ = cut_file
    read = sources.read_flow_file(path)
    assert len(read.flows) == intact and read.damage is not None and read.damage.flow == intact + 1
    for strict in (read_flows, load):
        with pytest.raises(SourceError, match=rf"reading stopped at flow #{intact + 1} "):
            strict(path)


def test_redact_writes_nothing_from_a_damaged_input_by_default(
    cut_file: tuple[Path, int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path, intact, _ = cut_file
    out = tmp_path / "out.flows"
    assert redact.run(redact_args(path, out)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"reading stopped at flow #{intact + 1}" in line
    assert line.endswith(f"nothing written (--partial writes the {intact} flows before it)")
    assert not out.exists()


def test_redact_partial_writes_the_flows_before_the_damage_and_exits_1(
    cut_file: tuple[Path, int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path, intact, _ = cut_file
    out = tmp_path / "out.flows"
    assert main(["redact", "--partial", str(path), str(out)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.endswith(f"{out} holds only the {intact} flows before it")
    with out.open("rb") as f:
        assert len(list(FlowReader(f).stream())) == intact


def test_replay_serves_the_flows_before_the_damage_and_exits_1(
    cut_file: tuple[Path, int, int], capsys: pytest.CaptureFixture[str],
) -> None:
    path, intact, _ = cut_file
    recording = replay.load(path)
    assert len(recording.responses) == intact
    assert recording.skipped[-1].startswith(f"flow #{intact + 1} (byte ")
    args = argparse.Namespace(file=str(path), host="127.0.0.1", port=0, speed=1.0, no_delay=True, max_seconds=0.2)
    assert replay.run(args) == 1
    line = one_error_line(capsys.readouterr().err)
    assert line.endswith(f"only the {intact} flows before it were served")


# -- inputs that can be read only once (a pipe, ``<(curl ...)``) -----------------------


def _open_writer(fifo: Path, seconds: float) -> int | None:
    """The FIFO's write end once a reader has it open, or None after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                raise
        time.sleep(0.01)
    return None


def piped(tmp_path: Path, data: bytes) -> Path:
    """A FIFO that a thread fills with ``data`` once, as a shell pipe would.
    A reader that opens it again gets an empty pipe (end of file) for two
    seconds, so code that reads it twice fails instead of hanging."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def fill() -> None:
        fd = _open_writer(fifo, 30.0)
        if fd is None:
            return
        os.set_blocking(fd, True)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except BrokenPipeError:
            pass  # the reader had seen enough
        while (again := _open_writer(fifo, 2.0)) is not None:
            os.close(again)
            time.sleep(0.01)

    threading.Thread(target=fill, daemon=True).start()
    return fifo


def test_report_reads_a_piped_capture_once_and_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = BODY * 3000  # more than the 64 KiB sniffed first
    assert len(body) > 64 * 1024
    code, [report], _ = report_json(capsys, piped(tmp_path, body))
    assert code == 0 and report["timing"]["bytes"] == len(body) and report["events"] == 9000


def test_report_reads_a_piped_flow_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = flow_bytes([stream_flow(n) for n in range(40)])
    assert len(data) > 64 * 1024
    code, reports, _ = report_json(capsys, piped(tmp_path, data))
    assert code == 0 and len(reports) == 40


def test_redact_reads_a_piped_flow_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = flow_bytes([stream_flow(n) for n in range(40)])
    out = tmp_path / "out.flows"
    assert redact.run(redact_args(piped(tmp_path, data), out)) == 0
    assert out.read_bytes() == data


def test_a_pipe_of_zeros_is_refused_after_its_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, reports, err = report_json(capsys, piped(tmp_path, bytes(70_000)))
    assert code == 2 and reports == [] and "not an SSE or NDJSON capture" in one_error_line(err)


# -- output that cannot be delivered -----------------------------------------------------


def ssemedic(*args: str, **popen: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ssemedic", *args], stderr=subprocess.PIPE, **popen)


def test_report_to_a_full_device_is_an_error_not_a_success(tmp_path: Path) -> None:
    if not Path("/dev/full").is_char_device():
        pytest.skip("no /dev/full here")
    capture = tmp_path / "body.sse"
    capture.write_bytes(BODY)
    for args in (["report", str(capture)], ["report", "--json", str(capture)], ["faults", "--json"]):
        with open("/dev/full", "wb") as full:  # opened for writing only: the device stays as it is
            process = ssemedic(*args, stdout=full)
            _, err = process.communicate(timeout=60)
        assert process.returncode == 2, (args, err)
        assert err.decode() == "ssemedic: error: cannot write the output: No space left on device\n"


def test_report_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    path = tmp_path / "many.flows"
    path.write_bytes(flow_bytes([stream_flow(n) for n in range(100)])[0])
    process = ssemedic("report", "--json", str(path), stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.read(1) == b"["  # like `| head -c 1`
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and err == b""
