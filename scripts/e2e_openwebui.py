#!/usr/bin/env python3
"""Drives a running Open WebUI through its two chat paths and checks what
the client, Open WebUI and ssemedic each saw (called by e2e_openwebui.sh).

The API path is what a script or an OpenAI client does: it POSTs
``/api/chat/completions`` with ``stream: true`` and reads the SSE stream that
Open WebUI relays. The web-UI path is what the 0.12.4 browser sends for the
first message of a new chat: the same request plus ``session_id``, ``id`` (the
assistant message), ``parent_id: null`` and ``user_message``, and no
``chat_id``. Open WebUI then creates the chat itself (a ``chat_id`` given
instead must name an existing chat, or it answers 404), consumes the stream in
a background task, saves the assistant message, and answers at once with
``{"status", "task_ids", "chat_id"}``; we poll the saved chat.

``--story truncated`` checks the truncation story instead. Open WebUI has two
connections to the demo upstream's ``truncated`` scenario, one through an
inspect-only mitmdump (model ``inspect.truncated``) and one through a
mitmdump with ``ssemedic_repair=true`` (model ``repair.truncated``), and both
chat paths run once per connection. Without repair the cut must be silent in
Open WebUI yet diagnosed by ssemedic; with repair it must reach Open WebUI as
an error that it saves with the message. Each stream is told apart by its
flow id: the one that starts in ssemedic's log while that chat runs.

Only the stdlib is used, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from demo_upstream import HEALTHY_TEXT  # scripts/ is on sys.path: it is this file's folder

QUESTION = "Почему ответ приходит по частям?"
EMAIL = "e2e@ssemedic.invalid"
REQUEST_TIMEOUT = 60.0
STREAM_TIMEOUT = 90.0
SAVE_TIMEOUT = 60.0


class Failure(Exception):
    """The check could not be carried out (a service died, timed out, refused)."""


# -- HTTP ---------------------------------------------------------------------


class WebUI:
    """A tiny Open WebUI client on urllib."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.token: str | None = None

    def _request(self, method: str, path: str, body: Any = None) -> urllib.request.Request:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return urllib.request.Request(self.base + path, data=data, headers=headers, method=method)

    def json(self, method: str, path: str, body: Any = None, timeout: float = REQUEST_TIMEOUT) -> Any:
        try:
            with urllib.request.urlopen(self._request(method, path, body), timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:500].decode("utf-8", "replace")
            raise Failure(f"{method} {path}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise Failure(f"{method} {path}: {exc}") from None

    def stream(self, path: str, body: Any) -> tuple[int, str, list[bytes]]:
        """POST and read the whole (streamed) answer: status, content type and
        the body as the chunks that arrived, within STREAM_TIMEOUT."""
        deadline = time.monotonic() + STREAM_TIMEOUT
        chunks: list[bytes] = []
        try:
            with urllib.request.urlopen(self._request("POST", path, body), timeout=REQUEST_TIMEOUT) as response:
                status, ctype = response.status, response.headers.get("Content-Type", "")
                while chunk := response.read1(65536):
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise Failure(f"POST {path}: the stream did not end within {STREAM_TIMEOUT:g} s")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", ""), [exc.read()]
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise Failure(f"POST {path}: {exc} after {sum(map(len, chunks))} bytes") from None
        return status, ctype, chunks


# -- services -------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def check_services(watch: dict[str, int], logs: Path) -> None:
    for name, pid in watch.items():
        if not alive(pid):
            raise Failure(f"{name} (pid {pid}) exited early; its log ends:\n{tail(logs / f'{name}.log')}")


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"  (cannot read {path}: {exc.strerror})"
    return "\n".join("  | " + line for line in text.splitlines()[-lines:])


def wait_healthy(webui: WebUI, watch: dict[str, int], logs: Path, timeout: float) -> float:
    started = time.monotonic()
    while True:
        check_services(watch, logs)
        try:
            with urllib.request.urlopen(webui.base + "/health", timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            pass
        if time.monotonic() - started > timeout:
            raise Failure(f"Open WebUI not healthy after {timeout:g} s; its log ends:\n{tail(logs / 'openwebui.log')}")
        time.sleep(1)


# -- SSE as the client sees it ----------------------------------------------------


def sse_data(chunks: list[bytes]) -> tuple[list[str], bytes]:
    """The ``data`` of every dispatched event in the body, and any trailing
    bytes of an event the stream never finished (which, per WHATWG
    "interpreting an event stream", a client discards at end of stream).

    The body is split on bytes before decoding, so a character cut across
    chunks is decoded whole; only what an OpenAI-style stream uses is kept:
    data lines, and dispatch on a blank line.
    """
    body = b"".join(chunks).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = body.rfind(b"\n\n") + 2 if b"\n\n" in body else 0
    head, tail = body[:end], body[end:]
    out: list[str] = []
    data: list[str] = []
    for raw in head.split(b"\n"):
        line = raw.decode("utf-8", "replace")
        if not line:
            if data:
                out.append("\n".join(data))
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value.removeprefix(" "))
    return out, tail


def assemble(events: list[str]) -> dict[str, Any]:
    """Text, reasoning, errors and the end marker of an OpenAI chat stream."""
    text: list[str] = []
    reasoning: list[str] = []
    errors: list[Any] = []
    done = False
    finish = None
    unparsed = 0
    for data in events:
        if data.strip() == "[DONE]":
            done = True
            continue
        try:
            payload = json.loads(data)
        except ValueError:
            unparsed += 1
            continue
        if not isinstance(payload, dict):
            continue
        if "error" in payload:
            errors.append(payload["error"])
        for choice in payload.get("choices") or []:
            delta = choice.get("delta") or {}
            text.append(delta.get("content") or "")
            reasoning.append(delta.get("reasoning_content") or delta.get("reasoning") or "")
            finish = choice.get("finish_reason") or finish
    return {"text": "".join(text), "reasoning": "".join(reasoning), "errors": errors, "done": done,
            "finish_reason": finish, "events": len(events), "unparsed": unparsed}


# -- the two chat paths -------------------------------------------------------------


def api_path(webui: WebUI, model: str) -> dict[str, Any]:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    status, ctype, chunks = webui.stream("/api/chat/completions", body)
    result: dict[str, Any] = {"text": "", "errors": [], "events": 0}
    if "event-stream" in ctype:
        events, tail = sse_data(chunks)
        result = assemble(events)
        if tail:
            result["unfinished_event"] = tail[:300].decode("utf-8", "replace")
    result.update(status=status, content_type=ctype, chunks=len(chunks), bytes=sum(map(len, chunks)))
    if "event-stream" not in ctype:
        result["body"] = b"".join(chunks)[:500].decode("utf-8", "replace")
    return result


def webui_path(webui: WebUI, model: str) -> dict[str, Any]:
    """Send a first message the way the 0.12.4 browser does for a new chat
    (``parent_id: null``, no ``chat_id``: Open WebUI creates the chat) and
    wait for the saved assistant message."""
    user_id, assistant_id = str(uuid.uuid4()), str(uuid.uuid4())
    user_message = {"id": user_id, "parentId": None, "childrenIds": [], "role": "user", "content": QUESTION,
                    "timestamp": int(time.time()), "models": [model]}
    body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": QUESTION}],
        # A made-up socket id: nothing listens on it, but its presence is what
        # makes Open WebUI run the chat as a background task and save it.
        "session_id": f"ssemedic-e2e-{uuid.uuid4().hex[:12]}",
        "id": assistant_id,
        "parent_id": None,
        "user_message": user_message,
        "background_tasks": {"title_generation": False, "tags_generation": False, "follow_up_generation": False},
    }
    started = time.monotonic()
    ack = webui.json("POST", "/api/chat/completions", body)
    if not isinstance(ack, dict) or not ack.get("chat_id") or not ack.get("status"):
        raise Failure(f"the web-UI request was not accepted as a background task: {ack!r}")
    chat_id = ack["chat_id"]
    message: dict[str, Any] = {}
    while time.monotonic() - started < SAVE_TIMEOUT:
        chat = webui.json("GET", f"/api/v1/chats/{chat_id}")
        message = ((chat.get("chat") or {}).get("history") or {}).get("messages", {}).get(assistant_id) or {}
        if message.get("done"):
            break
        if message.get("error") and not webui.json("GET", f"/api/tasks/chat/{chat_id}").get("task_ids"):
            break  # an error saved and no task left to finish the message
        time.sleep(0.5)
    else:
        raise Failure(f"the assistant message of chat {chat_id} was not saved as done within {SAVE_TIMEOUT:g} s; "
                      f"last seen: {json.dumps(message, ensure_ascii=False)[:500]}")
    reasoning = "".join(
        part.get("text", "")
        for item in message.get("output") or [] if isinstance(item, dict) and item.get("type") == "reasoning"
        for part in (item.get("content") or item.get("summary") or []) if isinstance(part, dict)
    )
    return {"chat_id": chat_id, "task_ids": ack.get("task_ids"), "text": message.get("content", ""),
            "reasoning": reasoning, "error": message.get("error"), "done": message.get("done"),
            "seconds": round(time.monotonic() - started, 2)}


# -- what ssemedic logged -------------------------------------------------------------


def ssemedic_log(mitm_log: Path, jsonl: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """mitmdump's ssemedic lifecycle lines and the JSONL summary objects."""
    try:
        text = mitm_log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    # ssemedic's own lines start with the flow id; all but the per-event ones.
    lines = [line for line in text.splitlines()
             if re.match(r"\[[0-9a-f]{6}\] ", line) and not re.match(r"\[[0-9a-f]{6}\] #\d", line)]
    summaries = [obj for obj in jsonl_objects(jsonl) if obj.get("type") == "summary"]
    return lines, summaries


def jsonl_objects(jsonl: Path) -> list[dict[str, Any]]:
    """Every object of ssemedic's JSONL file (up to the first unreadable line)."""
    objects = []
    try:
        for line in jsonl.read_text(encoding="utf-8").splitlines():
            obj = json.loads(line)
            if isinstance(obj, dict):
                objects.append(obj)
    except (OSError, ValueError):
        pass
    return objects


def started_flows(mitm_log: Path) -> list[str]:
    """The short ids of the chat streams ssemedic announced, in order."""
    lines, _ = ssemedic_log(mitm_log, Path("/nonexistent"))
    return [line[1:7] for line in lines if "] stream started:" in line and "/chat/completions" in line]


def panel_text(mitm_log: Path, flow: str) -> str:
    """The end-of-stream panel printed after ``flow``'s completed/aborted line,
    with the box drawing removed and whitespace collapsed, so text that rich
    wrapped across lines reads as one."""
    try:
        text = re.sub(r"\x1b\[[0-9;]*m", "", mitm_log.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return ""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if re.match(rf"\[{flow}\] (completed|aborted):", line):
            inside = True
        elif inside:
            out.append(line)
            if line.startswith("╰"):
                break
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", " ".join(out)).split())


# -- checks -------------------------------------------------------------------------


class Checks:
    def __init__(self) -> None:
        self.failed = 0
        self.passed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"\n      {detail}" if detail and not ok else ""), flush=True)

    def equal_text(self, name: str, got: str, want: str) -> None:
        if got == want:
            self.check(name, True)
            return
        at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        self.check(name, False, f"got {len(got)} chars, want {len(want)}; first difference at {at}: "
                                f"got {got[at:at + 40]!r}, want {want[at:at + 40]!r}")


def show(label: str, value: Any) -> None:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    print(f"  {label}: {text}")


def show_results(api: dict[str, Any], web: dict[str, Any], lines: list[str], summaries: list[dict[str, Any]],
                 title: str = "") -> None:
    """Print what the client received, what Open WebUI saved and what ssemedic logged."""
    print(f"\n== {title}API path (what the client received)")
    for key in ("status", "content_type", "seconds", "chunks", "bytes", "events", "done", "finish_reason", "errors",
                "unparsed", "unfinished_event", "body", "reasoning", "text"):
        if key in api:
            show(key, api[key])
    print(f"== {title}web-UI path (what Open WebUI saved)")
    for key in ("chat_id", "seconds", "done", "error", "reasoning", "text"):
        show(key, web[key])
    print(f"== {title}ssemedic (mitmdump log)")
    for line in lines:
        print(f"  {line}")
    print(f"== {title}ssemedic (JSONL summaries)")
    for summary in summaries:
        fields = {key: summary.get(key) for key in ("provider", "status", "complete", "finish_reason", "errors",
                                                       "notes")}
        show(f"{summary.get('flow', '?')[:6]}", fields)
        for issue in summary.get("issues") or []:
            show("  issue", f"{issue.get('kind')}: {issue.get('detail')}")
        for fault in summary.get("faults") or []:
            show("  fault", f"{fault.get('kind')} ({fault.get('severity')}, x{fault.get('count', 1)}): "
                            f"{fault.get('message')}")
        show("  text", summary.get("text", ""))
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--webui", required=True, help="Open WebUI's base URL")
    parser.add_argument("--scenario", default="healthy")
    parser.add_argument("--story", choices=["truncated"],
                        help="check a story across two connections instead (see the module docstring)")
    parser.add_argument("--mitm-log", type=Path, required=True, help="mitmdump's log (with --story: inspect-only)")
    parser.add_argument("--jsonl", type=Path, required=True, help="ssemedic's JSONL (with --story: inspect-only)")
    parser.add_argument("--repair-mitm-log", type=Path, help="with --story: the log of the mitmdump that repairs")
    parser.add_argument("--repair-jsonl", type=Path, help="with --story: the JSONL of the mitmdump that repairs")
    parser.add_argument("--logs", type=Path, required=True, help="folder with <name>.log per watched service")
    parser.add_argument("--watch", action="append", default=[], metavar="NAME=PID",
                        help="a service that must stay alive")
    parser.add_argument("--health-timeout", type=float, default=180)
    args = parser.parse_args(argv)
    if args.story and not (args.repair_mitm_log and args.repair_jsonl):
        parser.error("--story needs --repair-mitm-log and --repair-jsonl")
    watch = {name: int(pid) for name, _, pid in (w.partition("=") for w in args.watch)}
    webui = WebUI(args.webui)
    try:
        return run_story(webui, args, watch) if args.story else run(webui, args, watch)
    except Failure as exc:
        print(f"FAIL  {exc}", flush=True)
        return 1
    except KeyboardInterrupt:
        print("[e2e] interrupted", flush=True)
        return 130


def sign_in(webui: WebUI, args: argparse.Namespace, watch: dict[str, int], wanted: list[str]) -> None:
    """Wait for Open WebUI, sign in, and make sure it lists the ``wanted`` models."""
    print(f"[e2e] waiting for Open WebUI's /health (at most {args.health_timeout:g} s)", flush=True)
    print(f"[e2e] Open WebUI healthy after {wait_healthy(webui, watch, args.logs, args.health_timeout):.1f} s",
          flush=True)
    signin = webui.json("POST", "/api/v1/auths/signin", {"email": EMAIL, "password": "e2e"})
    webui.token = signin.get("token") if isinstance(signin, dict) else None
    if not webui.token:
        raise Failure(f"signin returned no token: {signin!r}")
    models = [m.get("id") for m in webui.json("GET", "/api/models").get("data", [])]
    for model in wanted:
        if model not in models:
            raise Failure(f"GET /api/models does not list {model!r}: {models}")
    print(f"[e2e] signed in; models: {models}", flush=True)


def run(webui: WebUI, args: argparse.Namespace, watch: dict[str, int]) -> int:
    model = args.scenario  # the demo upstream names its one model after the scenario
    sign_in(webui, args, watch, [model])

    print("[e2e] API path: POST /api/chat/completions, stream true", flush=True)
    started = time.monotonic()
    api = api_path(webui, model)
    api["seconds"] = round(time.monotonic() - started, 2)
    check_services(watch, args.logs)
    print("[e2e] web-UI path: POST /api/chat/completions as the browser, then poll the saved chat", flush=True)
    web = webui_path(webui, model)

    # The summary of the last stream is written when mitmdump ends the flow,
    # which may come a moment after Open WebUI has what it needs.
    deadline = time.monotonic() + 10
    while True:
        lines, summaries = ssemedic_log(args.mitm_log, args.jsonl)
        if len(summaries) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.25)

    show_results(api, web, lines, summaries)

    if args.scenario != "healthy":
        print(f"[e2e] scenario {args.scenario}: shown above, not asserted (only healthy is)")
        return 0

    checks = Checks()
    checks.equal_text("API path: streamed text equals the upstream's answer", api.get("text", ""), HEALTHY_TEXT)
    checks.check("API path: the stream ended with [DONE] and no error",
                 bool(api.get("done")) and not api.get("errors"), f"done={api.get('done')} errors={api.get('errors')}")
    checks.equal_text("web-UI path: saved message text equals the upstream's answer", web["text"] or "", HEALTHY_TEXT)
    checks.check("web-UI path: saved as done, without an error", bool(web["done"]) and not web["error"],
                 f"done={web['done']} error={web['error']}")
    started_lines = [line for line in lines if "stream started:" in line and "/chat/completions" in line]
    completed_lines = [line for line in lines if "] completed:" in line]
    checks.check("ssemedic logged 'stream started' for both chats", len(started_lines) >= 2,
                 f"{len(started_lines)} such lines in {args.mitm_log}")
    checks.check("ssemedic logged 'completed' for both chats", len(completed_lines) >= 2,
                 f"{len(completed_lines)} such lines in {args.mitm_log}")
    matching = [s for s in summaries if s.get("text") == HEALTHY_TEXT]
    checks.check("ssemedic JSONL: a summary per chat whose text equals the answer", len(matching) >= 2,
                 f"{len(matching)} of {len(summaries)} summaries in {args.jsonl} have the answer's text")
    print(f"\n{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


# -- the truncation story -----------------------------------------------------------

#: What ssemedic's repair says in the error event it puts in place of a silent
#: cut (addons/ssemedic/repair.py TRUNCATION_MESSAGE ends with this).
REPAIR_MARK = "(repaired by ssemedic)"
#: The repair note in the stream's summary (repair.py Repairer._ending).
REPAIR_NOTE = "silent cut turned into an error event"


def is_cut_answer(text: str) -> bool:
    """Whether ``text`` is a non-empty, strict beginning of the healthy answer:
    what the truncated scenario delivers before it stops."""
    return 0 < len(text) < len(HEALTHY_TEXT) and HEALTHY_TEXT.startswith(text)


class Leg:
    """One connection of the story: its model, its mitmdump's outputs, and
    what each chat path and ssemedic saw through it."""

    def __init__(self, name: str, title: str, model: str, mitm_log: Path, jsonl: Path) -> None:
        self.name, self.title, self.model = name, title, model
        self.mitm_log, self.jsonl = mitm_log, jsonl
        self.api: dict[str, Any] = {}
        self.web: dict[str, Any] = {}
        self.flows: dict[str, list[str]] = {"api": [], "web": []}

    def run(self, webui: WebUI, watch: dict[str, int], logs: Path) -> None:
        print(f"[e2e] {self.name}: API path with model {self.model}", flush=True)
        before = started_flows(self.mitm_log)
        started = time.monotonic()
        self.api = api_path(webui, self.model)
        self.api["seconds"] = round(time.monotonic() - started, 2)
        check_services(watch, logs)
        # The chat's stream is announced when its response headers arrive,
        # before the client has anything; so every stream new in the log now
        # belongs to this chat.
        seen = started_flows(self.mitm_log)
        self.flows["api"] = seen[len(before):]
        print(f"[e2e] {self.name}: web-UI path with model {self.model}", flush=True)
        self.web = webui_path(webui, self.model)
        self.flows["web"] = started_flows(self.mitm_log)[len(seen):]
        # The summary is written when mitmdump ends the flow, which may come a
        # moment after Open WebUI has saved the message.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(
            self.summary(flow) for flow in self.flows["api"] + self.flows["web"]
        ):
            time.sleep(0.25)

    def flow(self, path: str) -> str:
        """The one stream of a chat path, or "" when there was not exactly one."""
        flows = self.flows[path]
        return flows[0] if len(flows) == 1 else ""

    def objects(self, kind: str, flow: str) -> list[dict[str, Any]]:
        return [obj for obj in jsonl_objects(self.jsonl)
                if flow and obj.get("type") == kind and str(obj.get("flow", "")).startswith(flow)]

    def summary(self, flow: str) -> dict[str, Any]:
        found = self.objects("summary", flow)
        return found[-1] if found else {}

    def fault_lines(self, flow: str, kind: str) -> list[str]:
        lines, _ = ssemedic_log(self.mitm_log, self.jsonl)
        return [line for line in lines if flow and line.startswith(f"[{flow}] FAULT {kind}")]

    def show(self) -> None:
        lines, summaries = ssemedic_log(self.mitm_log, self.jsonl)
        show_results(self.api, self.web, lines, summaries, f"{self.title}: ")
        print(f"  streams by chat path: API {self.flows['api']}, web-UI {self.flows['web']}")
        for path in ("api", "web"):
            panel = panel_text(self.mitm_log, self.flow(path))
            notes = re.findall(r"note (.*?)(?= note |$)", panel)
            print(f"  panel notes ({'API' if path == 'api' else 'web-UI'} stream): {notes or '(none)'}")
        print()


def run_story(webui: WebUI, args: argparse.Namespace, watch: dict[str, int]) -> int:
    scenario = args.story
    inspect = Leg("inspect-only", "inspect-only (mitmdump without repair)", f"inspect.{scenario}",
                  args.mitm_log, args.jsonl)
    repair = Leg("repair", "repair (mitmdump with ssemedic_repair=true)", f"repair.{scenario}",
                 args.repair_mitm_log, args.repair_jsonl)
    sign_in(webui, args, watch, [inspect.model, repair.model])
    for leg in (inspect, repair):
        leg.run(webui, watch, args.logs)
    for leg in (inspect, repair):
        leg.show()

    checks = Checks()
    for leg in (inspect, repair):
        for path in ("api", "web"):
            checks.check(f"{leg.name}: one ssemedic stream for the {'API' if path == 'api' else 'web-UI'} path chat",
                         bool(leg.flow(path)), f"streams announced in {leg.mitm_log} meanwhile: {leg.flows[path]}")

    # 1. Without repair: silent in Open WebUI, loud in ssemedic.
    web, flow = inspect.web, inspect.flow("web")
    checks.check("inspect-only, web-UI path: the cut stream is saved as a complete message with no error",
                 web["done"] is True and not web["error"], f"done={web['done']!r} error={web['error']!r}")
    checks.check("inspect-only, web-UI path: the saved text is the answer's beginning, cut short",
                 is_cut_answer(web["text"] or ""), f"{len(web['text'] or '')} chars: {web['text']!r}")
    checks.check(f"inspect-only, ssemedic log: 'FAULT truncated' for the web-UI chat's stream [{flow}]",
                 bool(inspect.fault_lines(flow, "truncated")), f"no '[{flow}] FAULT truncated' in {inspect.mitm_log}")
    checks.check(f"inspect-only, ssemedic JSONL: a fault of kind truncated for flow {flow}",
                 any(f.get("kind") == "truncated" for f in inspect.objects("fault", flow)),
                 f"faults of that flow in {inspect.jsonl}: {[f.get('kind') for f in inspect.objects('fault', flow)]}")
    notes = [note for f in ("api", "web") for note in inspect.summary(inspect.flow(f)).get("notes") or []]
    checks.check("inspect-only, ssemedic: nothing was repaired (no 'repaired:' note in either summary)",
                 not any(note.startswith("repaired:") for note in notes), f"notes: {notes}")
    api, flow = inspect.api, inspect.flow("api")
    checks.check("inspect-only, API path: the client gets the cut silently (HTTP 200, no error event, no [DONE])",
                 api.get("status") == 200 and not api.get("errors") and not api.get("done"),
                 f"status={api.get('status')} errors={api.get('errors')} done={api.get('done')}")
    checks.check("inspect-only, API path: the text received is the answer's beginning, cut short",
                 is_cut_answer(api.get("text", "")), f"{len(api.get('text', ''))} chars: {api.get('text', '')!r}")
    checks.check(f"inspect-only, ssemedic: the API chat's stream [{flow}] diagnosed truncated too (log and JSONL)",
                 bool(inspect.fault_lines(flow, "truncated"))
                 and any(f.get("kind") == "truncated" for f in inspect.objects("fault", flow)))

    # 2. With repair: the cut reaches Open WebUI as an error it saves and shows.
    web, flow = repair.web, repair.flow("web")
    error = web["error"] if isinstance(web["error"], dict) else {}
    content = error.get("content")
    checks.check("repair, web-UI path: the saved message has the error ssemedic put in place of the cut "
                 "(error.content non-empty, naming the repair)",
                 bool(content) and REPAIR_MARK in json.dumps(content, ensure_ascii=False),
                 f"done={web['done']!r} error={web['error']!r}")
    checks.check("repair, web-UI path: the text before the cut is kept",
                 is_cut_answer(web["text"] or ""), f"{len(web['text'] or '')} chars: {web['text']!r}")
    checks.check(f"repair, ssemedic log: the stream [{flow}] was still diagnosed 'FAULT truncated'",
                 bool(repair.fault_lines(flow, "truncated")), f"no '[{flow}] FAULT truncated' in {repair.mitm_log}")
    checks.check(f"repair, ssemedic log: '{REPAIR_NOTE}' in the summary panel of [{flow}]",
                 REPAIR_NOTE in panel_text(repair.mitm_log, flow),
                 f"panel of [{flow}] in {repair.mitm_log}: {panel_text(repair.mitm_log, flow)[-300:]!r}")
    notes = repair.summary(flow).get("notes") or []
    checks.check(f"repair, ssemedic JSONL: the summary of flow {flow} notes '{REPAIR_NOTE}'",
                 any(REPAIR_NOTE in note for note in notes), f"notes: {notes}")
    api, flow = repair.api, repair.flow("api")
    api_errors = json.dumps(api.get("errors"), ensure_ascii=False)
    checks.check("repair, API path: the client receives the error event (data: {\"error\": ...}) naming the repair",
                 api.get("status") == 200 and bool(api.get("errors")) and REPAIR_MARK in api_errors,
                 f"status={api.get('status')} errors={api.get('errors')}")
    checks.check("repair, API path: the text before the error is the answer's beginning",
                 is_cut_answer(api.get("text", "")), f"{len(api.get('text', ''))} chars: {api.get('text', '')!r}")
    checks.check(f"repair, ssemedic: the API chat's stream [{flow}] was repaired too (JSONL note)",
                 any(REPAIR_NOTE in note for note in repair.summary(flow).get("notes") or []),
                 f"notes: {repair.summary(flow).get('notes')}")
    print(f"\n{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
