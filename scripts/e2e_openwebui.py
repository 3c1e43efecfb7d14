#!/usr/bin/env python3
"""Drives a running Open WebUI through its two chat paths, scenario by
scenario, and checks what users see: what Open WebUI saved (text or error)
and what ssemedic diagnosed (called by e2e_openwebui.sh).

Open WebUI has one OpenAI connection per demo-upstream scenario through each
of two mitmdumps, one inspect-only and one with ``ssemedic_repair=true``. The
connection's ``prefix_id`` names the mitmdump, the demo upstream names its one
model after the scenario (from the ``/s/<scenario>/`` path prefix), so the
model ``repair.truncated`` is the truncated scenario behind the repairing
mitmdump. The Letta agent sits behind an OpenAI-style router: its base URL is
``/s/letta-send-message/api/v1/agents/agent-e2e/proxy``, to which Open WebUI
appends ``/models`` and ``/chat/completions``.

The API path is what a script or an OpenAI client does: it POSTs
``/api/chat/completions`` with ``stream: true`` and reads the SSE stream that
Open WebUI relays. The web-UI path is what the 0.12.4 browser sends for the
first message of a new chat: the same request plus ``session_id``, ``id`` (the
assistant message), ``parent_id: null`` and ``user_message``, and no
``chat_id``. Open WebUI then creates the chat itself, consumes the stream in a
background task, saves the assistant message, and answers at once with
``{"status", "task_ids", "chat_id"}``; we poll the saved chat.

The chats run one at a time. Each stream is told apart by ssemedic's JSONL:
the one new summary, on that scenario's request path, in that mitmdump's
file, after that chat. Its provider and faults are checked against what the
scenario is (see EXPECTED); the saved text against what the scenario sends.

Only the stdlib is used, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# scripts/ is on sys.path: it is this file's folder.
from demo_upstream import ERROR_OBJECT, ERROR_THEN_DONE_TEXT, HEALTHY_TEXT, SCENARIOS, _truncated_events

QUESTION = "Почему ответ приходит по частям?"
EMAIL = "e2e@ssemedic.invalid"
REQUEST_TIMEOUT = 60.0
STREAM_TIMEOUT = 90.0
SAVE_TIMEOUT = 60.0
#: How long a stream's summary may take to reach the JSONL after its chat.
SUMMARY_TIMEOUT = 10.0

LETTA = "letta-send-message"
#: Where the router serves the Letta agent OpenAI-style (Open WebUI appends
#: /chat/completions and /models to a connection's base URL).
LETTA_ROUTER_BASE = "/api/v1/agents/agent-e2e/proxy"
#: The mitmdumps, by the prefix_id of their connections.
MITMDUMPS = ("inspect", "repair")


def base_path(scenario: str) -> str:
    """The connection's base path on the mitmdump for ``scenario``."""
    return f"/s/{scenario}" + (LETTA_ROUTER_BASE if scenario == LETTA else "/v1")


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
    head, rest = body[:end], body[end:]
    out: list[str] = []
    data: list[str] = []
    for raw in head.split(b"\n"):
        line = raw.decode("utf-8", "replace")
        if not line:
            if data:
                out.append("\n".join(data))
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return out, rest


def assemble(events: list[str]) -> dict[str, Any]:
    """Text, reasoning, errors and the end marker of an OpenAI chat stream,
    read as Open WebUI's own frontend does: ``choices[0].delta``."""
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
    result: dict[str, Any] = {"text": "", "errors": [], "events": 0, "done": False, "unparsed": 0}
    if "event-stream" in ctype:
        events, rest = sse_data(chunks)
        result = assemble(events)
        if rest:
            result["unfinished_event"] = rest[:300].decode("utf-8", "replace")
    else:
        result["body"] = b"".join(chunks)[:500].decode("utf-8", "replace")
    result.update(status=status, content_type=ctype, chunks=len(chunks), bytes=sum(map(len, chunks)))
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
    error = message.get("error")
    return {"chat_id": chat_id, "text": message.get("content") or "", "error": error,
            "error_content": error.get("content") if isinstance(error, dict) else error,
            "done": message.get("done"), "seconds": round(time.monotonic() - started, 2)}


# -- what ssemedic wrote ----------------------------------------------------------------


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


def summaries_on(jsonl: Path, path: str) -> list[dict[str, Any]]:
    """ssemedic's summaries of the streams requested on ``path``, in the order they ended."""
    out = []
    for obj in jsonl_objects(jsonl):
        if obj.get("type") != "summary":
            continue
        _, _, url = str(obj.get("source", "")).partition(" ")
        if urlsplit(url).path == path:
            out.append(obj)
    return out


# -- one scenario through one mitmdump ----------------------------------------------------


@dataclass
class Case:
    """One scenario through one mitmdump: what each chat path and ssemedic saw."""

    scenario: str
    repair: bool
    jsonl: Path
    api: dict[str, Any] = field(default_factory=dict)
    web: dict[str, Any] = field(default_factory=dict)
    #: The ssemedic summaries new after each chat path, on this case's request path.
    streams: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"api": [], "web": []})
    passed: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.scenario} {'repair' if self.repair else 'inspect'}"

    @property
    def model(self) -> str:
        return f"{MITMDUMPS[self.repair]}.{self.scenario}"

    @property
    def request_path(self) -> str:
        return base_path(self.scenario) + "/chat/completions"

    def run(self, webui: WebUI, watch: dict[str, int], logs: Path) -> None:
        for chat_path, send in (("api", api_path), ("web", webui_path)):
            print(f"[e2e] {self.name}: {'API' if chat_path == 'api' else 'web-UI'} path, model {self.model}",
                  flush=True)
            before = {s.get("flow") for s in summaries_on(self.jsonl, self.request_path)}
            started = time.monotonic()
            result = send(webui, self.model)
            result.setdefault("seconds", round(time.monotonic() - started, 2))
            setattr(self, chat_path, result)
            check_services(watch, logs)
            # The summary is written when mitmdump ends the flow, which may
            # come a moment after Open WebUI has what it needs.
            deadline = time.monotonic() + SUMMARY_TIMEOUT
            while True:
                new = [s for s in summaries_on(self.jsonl, self.request_path) if s.get("flow") not in before]
                if new or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.streams[chat_path] = new

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        if ok:
            self.passed += 1
        else:
            self.failures.append(what + (f"\n        {detail}" if detail else ""))

    def stream(self, chat_path: str) -> dict[str, Any]:
        """The chat's one stream, or {} when there was not exactly one."""
        found = self.streams[chat_path]
        return found[0] if len(found) == 1 else {}


# -- expectations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    """What ssemedic must say about a scenario's stream: its provider (and
    where that came from), the fault kinds it must name, and the note the
    repair must leave (None: the scenario needs no repair)."""

    provider: str
    provider_source: str
    kinds: frozenset[str]
    repair_note: str | None


EXPECTED: dict[str, Diagnosis] = {
    "healthy": Diagnosis("openai-chat", "request", frozenset(), None),
    "truncated": Diagnosis("openai-chat", "request", frozenset({"truncated"}),
                           "silent cut turned into an error event"),
    # The upstream sends an error in the 200 stream (error-in-stream) and a
    # [DONE] after it anyway (done-after-error).
    "error-then-done": Diagnosis("openai-chat", "request", frozenset({"error-in-stream", "done-after-error"}),
                                 "[DONE] after an error suppressed"),
    "invalid-json": Diagnosis("openai-chat", "request", frozenset({"invalid-json"}),
                              "event with invalid JSON dropped"),
    # The path says OpenAI chat; the payload is Letta's, and its reply hides
    # in a send_message tool call. A warning, not an error: the stream is whole.
    LETTA: Diagnosis("letta", "payload", frozenset({"text-in-tool-call"}),
                     "Letta event given the OpenAI chat chunk shape"),
    # A 4 s pause mid-answer: Open WebUI's own timeout is longer, so the answer
    # is whole and no fault is an error; with --set ssemedic_keepalive=1 the
    # same holds while Open WebUI reads past the `: keepalive` comments.
    "silence": Diagnosis("openai-chat", "request", frozenset(), None),
}
ASSERTED = tuple(EXPECTED)

#: What ssemedic's repair says in the error event it puts in place of a silent
#: cut (addons/ssemedic/core/repair.py TRUNCATION_MESSAGE ends with this).
REPAIR_MARK = "(repaired by ssemedic)"


def _delivered_text(events: list[bytes]) -> str:
    """The ``delta.content`` of the whole chat events among ``events``."""
    out = []
    for event in events:
        if event.endswith(b"\n\n") and event.startswith(b"data: {"):
            for choice in json.loads(event[6:])["choices"]:
                out.append(choice["delta"].get("content") or "")
    return "".join(out)


#: What the truncated scenario delivers in whole events before it stops in
#: the middle of the next one.
TRUNCATED_TEXT = _delivered_text(_truncated_events("truncated"))


def is_cut_answer(text: str) -> bool:
    """Whether ``text`` is a non-empty, strict beginning of the healthy answer:
    what the truncated scenario delivers before it stops."""
    return 0 < len(text) < len(HEALTHY_TEXT) and HEALTHY_TEXT.startswith(text)


def error_kinds(stream: dict[str, Any]) -> set[str]:
    return {f.get("kind") for f in stream.get("faults") or [] if f.get("severity") == "error"}


def check_diagnosis(case: Case) -> None:
    """ssemedic saw one stream per chat and diagnosed it as EXPECTED says."""
    want = EXPECTED[case.scenario]
    for chat_path in ("api", "web"):
        label = "API" if chat_path == "api" else "web-UI"
        found = case.streams[chat_path]
        case.check(f"ssemedic: one stream on {case.request_path} for the {label} chat", len(found) == 1,
                   f"{len(found)} new summaries in {case.jsonl}: {[s.get('flow') for s in found]}")
        stream = case.stream(chat_path)
        if not stream:
            continue
        flow = str(stream.get("flow", ""))[:8]
        got = (stream.get("provider"), stream.get("provider_source"))
        case.check(f"ssemedic [{flow}] ({label}): provider {want.provider} from the {want.provider_source}",
                   got == (want.provider, want.provider_source), f"got provider {got[0]} from the {got[1]}")
        kinds = {f.get("kind") for f in stream.get("faults") or []}
        case.check(f"ssemedic [{flow}] ({label}): diagnosed {', '.join(sorted(want.kinds)) or 'no fault'}",
                   want.kinds <= kinds, f"missing {sorted(want.kinds - kinds)}; faults: {sorted(kinds)}")
        unexpected = error_kinds(stream) - want.kinds
        case.check(f"ssemedic [{flow}] ({label}): no other error-level fault", not unexpected,
                   f"unexpected: {sorted(unexpected)}")
        notes = [note for note in stream.get("notes") or [] if note.startswith("repaired:")]
        if not case.repair:
            case.check(f"ssemedic [{flow}] ({label}): nothing repaired", not notes, f"notes: {notes}")
        elif want.repair_note:
            case.check(f"ssemedic [{flow}] ({label}): repair note '{want.repair_note}'",
                       any(want.repair_note in note for note in notes), f"notes: {notes}")


def check_text(case: Case, what: str, got: str, want: str) -> None:
    if got == want:
        case.check(what, True)
        return
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), min(len(got), len(want)))
    case.check(what, False, f"got {len(got)} chars, want {len(want)}; first difference at {at}: "
                            f"got {got[at:at + 40]!r}, want {want[at:at + 40]!r}")


def check_clean(case: Case, text: str) -> None:
    """Both paths show ``text`` completely: no error, nothing unparsed."""
    api, web = case.api, case.web
    check_text(case, "API path: the streamed text", api["text"], text)
    case.check("API path: HTTP 200, ended with [DONE], no error event, nothing unparsed",
               api["status"] == 200 and api["done"] and not api["errors"] and not api["unparsed"],
               f"status={api['status']} done={api['done']} errors={api['errors']} unparsed={api['unparsed']}")
    check_text(case, "web-UI path: the saved text", web["text"], text)
    case.check("web-UI path: saved as done, without an error", web["done"] is True and not web["error"],
               f"done={web['done']!r} error={web['error']!r}")


def expect_healthy(case: Case) -> None:
    check_clean(case, HEALTHY_TEXT)


def expect_truncated(case: Case) -> None:
    api, web = case.api, case.web
    check_text(case, "API path: the text of the whole events before the cut", api["text"], TRUNCATED_TEXT)
    # Stripped at the end, as every saved answer (see expect_error_then_done).
    check_text(case, "web-UI path: the saved text is that of the whole events before the cut, stripped",
               web["text"], TRUNCATED_TEXT.strip())
    if not case.repair:
        case.check("API path: the cut arrives silently (HTTP 200, no error event, no [DONE])",
                   api["status"] == 200 and not api["errors"] and not api["done"],
                   f"status={api['status']} errors={api['errors']} done={api['done']}")
        case.check("web-UI path: the cut answer is saved as complete, with no error",
                   web["done"] is True and not web["error"], f"done={web['done']!r} error={web['error']!r}")
    else:
        errors = json.dumps(api["errors"], ensure_ascii=False)
        case.check("API path: the client receives the error event that names the repair",
                   api["status"] == 200 and REPAIR_MARK in errors, f"status={api['status']} errors={errors}")
        content = json.dumps(web["error_content"], ensure_ascii=False)
        case.check("web-UI path: the saved message has the error that names the repair",
                   bool(web["error_content"]) and REPAIR_MARK in content, f"done={web['done']!r} error={web['error']!r}")


def expect_error_then_done(case: Case) -> None:
    api, web = case.api, case.web
    check_text(case, "API path: the text before the error", api["text"], ERROR_THEN_DONE_TEXT)
    case.check("API path: the upstream's error event reaches the client",
               api["status"] == 200 and api["errors"] == [ERROR_OBJECT], f"errors={api['errors']}")
    # The one difference the `done` repair makes for the client: no [DONE]
    # after the error, so nothing claims the answer ended well.
    if case.repair:
        case.check("API path: no [DONE] after the error", not api["done"], f"done={api['done']}")
    else:
        case.check("API path: [DONE] after the error, as the upstream sent it", api["done"], f"done={api['done']}")
    # The web-UI path strips the last text part when the stream ends (0.12.4
    # utils/middleware.py, "Clean up the last message item"): the text before
    # the error ends in a space, the saved one does not.
    check_text(case, "web-UI path: the saved text is what came before the error, stripped", web["text"],
               ERROR_THEN_DONE_TEXT.strip())
    case.check("web-UI path: the saved message has the upstream's error", web["error_content"] == ERROR_OBJECT,
               f"done={web['done']!r} error={web['error']!r}")


def expect_invalid_json(case: Case) -> None:
    api, web = case.api, case.web
    check_text(case, "API path: the streamed text", api["text"], HEALTHY_TEXT)
    check_text(case, "web-UI path: the saved text", web["text"], HEALTHY_TEXT)
    case.check("web-UI path: saved as done, without an error", web["done"] is True and not web["error"],
               f"done={web['done']!r} error={web['error']!r}")
    case.check("API path: HTTP 200, ended with [DONE], no error event",
               api["status"] == 200 and api["done"] and not api["errors"],
               f"status={api['status']} done={api['done']} errors={api['errors']}")
    # Open WebUI relays the garbage line to an API client as it is; the
    # sanitize repair drops it before Open WebUI sees it.
    want = 0 if case.repair else 1
    case.check(f"API path: {want} event that is not JSON reached the client", api["unparsed"] == want,
               f"unparsed={api['unparsed']}")


def expect_letta(case: Case) -> None:
    if case.repair:
        check_clean(case, HEALTHY_TEXT)
        return
    api, web = case.api, case.web
    check_text(case, "API path: the streamed text is empty (no choices[0].delta.content)", api["text"], "")
    check_text(case, "web-UI path: the saved answer is empty", web["text"], "")
    case.check("web-UI path: saved as done, without an error", web["done"] is True and not web["error"],
               f"done={web['done']!r} error={web['error']!r}")


EXPECT: dict[str, Callable[[Case], None]] = {
    "healthy": expect_healthy,
    "truncated": expect_truncated,
    "error-then-done": expect_error_then_done,
    "invalid-json": expect_invalid_json,
    LETTA: expect_letta,
    "silence": expect_healthy,
}


# -- the report -----------------------------------------------------------------------


def describe_text(text: str) -> str:
    if text == HEALTHY_TEXT:
        return f"healthy ({len(text)})"
    if not text:
        return "empty"
    if text in (ERROR_THEN_DONE_TEXT, ERROR_THEN_DONE_TEXT.strip()):
        return f"text before error ({len(text)})"
    if is_cut_answer(text):
        return f"healthy cut ({len(text)}/{len(HEALTHY_TEXT)})"
    return repr(text[:30] + "…" if len(text) > 30 else text)


def describe_error(error: Any) -> str:
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail") or error
    text = error if isinstance(error, str) else json.dumps(error, ensure_ascii=False)
    return text if len(text) <= 28 else text[:27] + "…"


def describe_api(api: dict[str, Any]) -> str:
    out = [describe_text(api["text"])]
    out += [f"error: {describe_error(e)}" for e in api["errors"]]
    if api.get("unparsed"):
        out.append(f"{api['unparsed']} not JSON")
    out.append("[DONE]" if api["done"] else "no [DONE]")
    return ", ".join(out)


def describe_web(web: dict[str, Any]) -> str:
    out = [describe_text(web["text"])]
    if web["error"]:
        out.append(f"error: {describe_error(web['error_content'])}")
    return ", ".join(out)


def describe_stream(case: Case) -> str:
    """Provider and the faults that matter (error level, or expected) of each chat's stream."""
    out = []
    want = EXPECTED.get(case.scenario)
    for chat_path in ("api", "web"):
        stream = case.stream(chat_path)
        if not stream:
            out.append(f"{len(case.streams[chat_path])} streams")
            continue
        kinds = sorted(k for k in {f.get("kind") for f in stream.get("faults") or []}
                       if k in error_kinds(stream) or (want and k in want.kinds))
        out.append(f"{stream.get('provider')}: {', '.join(kinds) or '-'}")
    return out[0] if out[0] == out[1] else " | ".join(out)


def table(cases: list[Case]) -> str:
    rows = [("scenario", "repair", "API path received", "web-UI path saved", "ssemedic (both streams)", "result")]
    for case in cases:
        verdict = ("FAIL" if case.failures else "PASS") if case.scenario in EXPECT else "shown"
        rows.append((case.scenario, "yes" if case.repair else "no", describe_api(case.api), describe_web(case.web),
                     describe_stream(case), verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def show_details(case: Case) -> None:
    """Everything each side saw, for a case that failed or was not asserted."""
    print(f"\n== {case.name}")
    print(f"  API path:    {json.dumps(case.api, ensure_ascii=False)[:1500]}")
    print(f"  web-UI path: {json.dumps(case.web, ensure_ascii=False)[:1500]}")
    for chat_path in ("api", "web"):
        for stream in case.streams[chat_path]:
            faults = [f"{f.get('kind')} ({f.get('severity')})" for f in stream.get("faults") or []]
            print(f"  ssemedic [{str(stream.get('flow'))[:8]}] ({chat_path}): provider {stream.get('provider')} "
                  f"from the {stream.get('provider_source')}; faults {faults}; notes {stream.get('notes')}; "
                  f"text {stream.get('text', '')[:80]!r}")


# -- main -------------------------------------------------------------------------------


def scenario_list(values: list[str]) -> list[str]:
    """The scenarios named (repeatable, comma-separated), or every asserted one."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    for name in names:
        if name not in SCENARIOS:
            raise SystemExit(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return list(dict.fromkeys(names)) or list(ASSERTED)


def connections(args: argparse.Namespace) -> int:
    """Print Open WebUI's OPENAI_API_BASE_URLS, OPENAI_API_KEYS and
    OPENAI_API_CONFIGS for the scenarios, one a line."""
    urls: list[str] = []
    configs: dict[str, dict[str, str]] = {}
    for prefix, base in zip(MITMDUMPS, (args.inspect, args.repair), strict=True):
        for scenario in scenario_list(args.scenario):
            configs[str(len(urls))] = {"prefix_id": prefix}
            urls.append(base.rstrip("/") + base_path(scenario))
    print(";".join(urls))
    print(";".join("dummy" for _ in urls))
    print(json.dumps(configs))
    return 0


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
    missing = [model for model in wanted if model not in models]
    if missing:
        raise Failure(f"GET /api/models does not list {missing}: {models}")
    print(f"[e2e] signed in; {len(models)} models: {', '.join(models)}", flush=True)


def run(args: argparse.Namespace) -> int:
    watch = {name: int(pid) for name, _, pid in (w.partition("=") for w in args.watch)}
    webui = WebUI(args.webui)
    jsonl = {False: args.inspect_jsonl, True: args.repair_jsonl}
    cases = [Case(scenario, repair, jsonl[repair]) for scenario in scenario_list(args.scenario)
             for repair in (False, True)]
    started = time.monotonic()
    sign_in(webui, args, watch, [case.model for case in cases])
    for case in cases:
        case.run(webui, watch, args.logs)
    print(f"[e2e] {2 * len(cases)} chats in {time.monotonic() - started:.1f} s", flush=True)
    for case in cases:
        if case.scenario in EXPECT:
            check_diagnosis(case)
            EXPECT[case.scenario](case)
    for case in cases:
        if case.failures or case.scenario not in EXPECT:
            show_details(case)
        for failure in case.failures:
            print(f"FAIL  {case.name}: {failure}")
    (args.logs / "results.json").write_text(json.dumps(
        [{"case": c.name, "api": c.api, "web": c.web, "streams": c.streams, "failures": c.failures} for c in cases],
        ensure_ascii=False, indent=1), encoding="utf-8")
    passed = sum(case.passed for case in cases)
    failed = sum(len(case.failures) for case in cases)
    print(f"\n{table(cases)}\n")
    unasserted = sorted({case.scenario for case in cases} - set(EXPECT))
    if unasserted:
        print(f"shown, not asserted (no expectation for them): {', '.join(unasserted)}")
    print(f"{passed} checks passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    conn = sub.add_parser("connections", help="print the Open WebUI connection settings, one a line")
    conn.add_argument("--inspect", required=True, help="the inspect-only mitmdump's base URL")
    conn.add_argument("--repair", required=True, help="the repairing mitmdump's base URL")
    conn.add_argument("--scenario", action="append", default=[])
    go = sub.add_parser("run", help="run the chats and check them")
    go.add_argument("--webui", required=True, help="Open WebUI's base URL")
    go.add_argument("--scenario", action="append", default=[],
                    help=f"a demo upstream scenario (repeatable; default: {', '.join(ASSERTED)})")
    go.add_argument("--inspect-jsonl", type=Path, required=True, help="the inspect-only mitmdump's ssemedic JSONL")
    go.add_argument("--repair-jsonl", type=Path, required=True, help="the repairing mitmdump's ssemedic JSONL")
    go.add_argument("--logs", type=Path, required=True, help="folder with <name>.log per watched service")
    go.add_argument("--watch", action="append", default=[], metavar="NAME=PID", help="a service that must stay alive")
    go.add_argument("--health-timeout", type=float, default=180)
    args = parser.parse_args(argv)
    if args.command == "connections":
        return connections(args)
    try:
        return run(args)
    except Failure as exc:
        print(f"FAIL  {exc}", flush=True)
        return 1
    except KeyboardInterrupt:
        print("[e2e] interrupted", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
