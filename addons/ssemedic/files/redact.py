"""Redaction: take credentials out of headers, URLs, log text and saved flows,
so a recording can be shared as a bug report.

A secret becomes ``[REDACTED]`` (``REDACTED`` inside URLs, where brackets
would be percent-encoded). What stays readable is only what is public and
helps the diagnosis: the auth scheme (``Bearer [REDACTED]``), cookie names,
Set-Cookie attributes, and the published prefix of a known key format
(``sk-ant-api03-[REDACTED]`` shows an Anthropic key was sent to OpenAI).

There is no fingerprint of the redacted value. A plain hash of a short or
low-entropy secret (a password, a test key) can be guessed offline, and a
hash keyed per process cannot be compared across the recordings that users
share, which is the only place a comparison would help.

The response body of a flow is never touched: it is the evidence (a key
echoed by the model stays in it; redact_text hides it in what is printed).
Redaction errs toward hiding too much: a word after "bearer" in prose is
hidden too, and when redacting a flow fails, its credential fields are
dropped (redact_flow_or_drop).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from ..core import recording
from .sources import SourceError, read_flow_file

logger = logging.getLogger("ssemedic")

MARK = "[REDACTED]"
URL_MARK = "REDACTED"

# -- what counts as a secret ---------------------------------------------------

_SECRET_EXACT = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie",
    "key", "sig", "auth", "pwd",
})
# "token" but not "tokens" or "tokenizer": rate-limit headers such as
# x-ratelimit-remaining-tokens and parameters such as max_tokens are the
# diagnosis, not secrets.
_SECRET_PART = re.compile(
    r"token(?!s(?:$|[-_.])|i[sz])|secret|passw(?:or)?d|api[-_.]?key|signature|subscription[-_.]?key"
)
# Words that are secrets as a header or query name but far too common as a
# field name in log text and JSON ({"key": "color"}, "next token: ...").
_TOO_COMMON_IN_TEXT = frozenset({"key", "sig", "auth", "token"})
# Schemes that may precede the credentials in a value (RFC 9110 §11.4).
_SCHEME = r"(?i:bearer|basic|digest|token|apikey|aws4-hmac-sha256|negotiate|ntlm)"


def is_secret_name(name: str) -> bool:
    """Whether a header, query parameter or field with this name holds a secret."""
    lowered = name.strip().lower()
    return lowered in _SECRET_EXACT or _SECRET_PART.search(lowered) is not None


# Known key formats: a public prefix, then the secret. Strategy: one
# alternation, one (prefix, body) group pair per family; the body must look
# random (a digit or a run of 20 letters and digits), so "task-management-
# system-for-teams" is not taken for an "sk-" key.
_KEY_FAMILIES = (
    # OpenAI, Anthropic, OpenRouter, DeepSeek and most OpenAI-compatible APIs.
    (r"sk-(?:ant-(?:api|admin)\d\d-|proj-|or-v1-|svcacct-|admin-)?", r"[A-Za-z0-9_-]{20,}"),
    (r"AIza", r"[A-Za-z0-9_-]{30,}"),  # Google (Gemini)
    (r"xai-|gsk_|hf_|pplx-|r8_", r"[A-Za-z0-9]{20,}"),  # xAI, Groq, Hugging Face, Perplexity, Replicate
    (r"gh[pousr]_|github_pat_", r"[A-Za-z0-9_]{20,}"),  # GitHub
)
_KEY = re.compile("|".join(f"({prefix})({body})" for prefix, body in _KEY_FAMILIES))
#: Every key format starts with one of these (a text without them holds no key).
_KEY_LITERALS = ("sk-", "AIza", "xai-", "gsk_", "hf_", "pplx-", "r8_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
                 "github_pat_")
_RANDOM_RUN = re.compile(r"[0-9]|[A-Za-z0-9]{20}")


def _key_sub(mark: str) -> Callable[[re.Match[str]], str]:
    def replace(m: re.Match[str]) -> str:
        groups = m.groups()
        for i in range(0, len(groups), 2):
            prefix, body = groups[i], groups[i + 1]
            if prefix is not None:
                return prefix + mark if _RANDOM_RUN.search(body) else m.group(0)
        return m.group(0)  # pragma: no cover - one pair always matched

    return replace


_KEY_TEXT = _key_sub(MARK)
_KEY_URL = _key_sub(URL_MARK)


def _is_redacted(value: str) -> bool:
    return value.endswith((MARK, URL_MARK))


def _mask(secret: str) -> str:
    """``secret`` as the marker, after the public prefix of a known key format."""
    if _is_redacted(secret):
        return secret
    m = _KEY.fullmatch(secret)
    masked = _KEY_TEXT(m) if m is not None else secret
    return masked if masked != secret else MARK


# -- headers -------------------------------------------------------------------

_SCHEMED = re.compile(rf"^({_SCHEME}|[A-Za-z][A-Za-z0-9._~+/-]*)([ \t]+)(\S.*)$", re.DOTALL)
_KNOWN_SCHEMED = re.compile(rf"^({_SCHEME})([ \t]+)(\S.*)$", re.DOTALL)


def _mask_header(name: str, value: str) -> str:
    lowered = name.lower()
    if not value.strip():
        return value
    if lowered == "cookie":
        pairs = [_mask_cookie_pair(pair.strip()) for pair in value.split(";") if pair.strip()]
        return "; ".join(pairs) if pairs else value
    if lowered == "set-cookie":
        first, sep, attributes = value.partition(";")
        return _mask_cookie_pair(first.strip()) + sep + attributes
    # Authorization values are "scheme credentials" (RFC 9110 §11.4); other
    # headers only keep a scheme word ssemedic knows.
    scheme = (_SCHEMED if lowered.endswith("authorization") else _KNOWN_SCHEMED).match(value)
    if scheme is not None:
        return scheme.group(1) + scheme.group(2) + _mask(scheme.group(3).strip())
    return _mask(value.strip())


def _mask_cookie_pair(pair: str) -> str:
    name, sep, value = pair.partition("=")
    if not sep:
        return _mask(pair)
    return f"{name.strip()}={MARK}" if value.strip() else pair


def redact_headers(headers: MutableMapping[str, str]) -> list[str]:
    """Redact secret header values in place and return the changed names.

    ``headers`` is a mitmproxy ``Headers`` (every field, repeated ones too,
    in order) or a plain dict.
    """
    changed: list[str] = []
    fields = getattr(headers, "fields", None)
    if isinstance(fields, tuple):  # mitmproxy Headers: (bytes, bytes) fields
        new_fields = []
        for raw_name, raw_value in fields:
            name = raw_name.decode("utf-8", "surrogateescape")
            value = raw_value.decode("utf-8", "surrogateescape")
            masked = _mask_header(name, value) if is_secret_name(name) else _mask_keys(value)
            if masked != value:
                raw_value = masked.encode("utf-8", "surrogateescape")
                _note(changed, name)
            new_fields.append((raw_name, raw_value))
        if changed:
            headers.fields = tuple(new_fields)  # type: ignore[attr-defined]
        return changed
    for name, value in list(headers.items()):
        masked = _mask_header(name, value) if is_secret_name(name) else _mask_keys(value)
        if masked != value:
            headers[name] = masked
            _note(changed, name)
    return changed


def _mask_keys(value: str) -> str:
    """A header value of any name with bearer credentials and known key
    formats hidden (``X-Upstream-Auth: Bearer sk-...`` is as secret as
    Authorization)."""
    if not may_hold_secret(value):
        return value
    return _KEY.sub(_KEY_TEXT, _TEXT_BEARER.sub(_text_bearer, value))


def _note(changed: list[str], item: str) -> None:
    if item.lower() not in (c.lower() for c in changed):
        changed.append(item)


# -- URLs ----------------------------------------------------------------------

_URL_PARTS = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:)?(//[^/?#]*)?(.*)$", re.DOTALL)


def redact_url(url: str) -> str:
    """``url`` with userinfo, secret query values and key-like path segments
    replaced by REDACTED; every other byte stays as it was."""
    return _redact_url(url)[0]


def _redact_url(url: str) -> tuple[str, list[str]]:
    m = _URL_PARTS.match(url)
    assert m is not None  # every string matches
    scheme, authority, rest = m.group(1) or "", m.group(2) or "", m.group(3)
    changed: list[str] = []
    if "@" in authority:
        userinfo, _, host = authority[2:].rpartition("@")
        if userinfo != URL_MARK:
            authority = f"//{URL_MARK}@{host}"
            changed.append("userinfo")
    rest, more = _redact_target(rest)
    return scheme + authority + rest, changed + more


def _redact_target(target: str) -> tuple[str, list[str]]:
    """A request target (path, query, fragment): key formats in the path,
    secret parameters in the query and fragment."""
    changed: list[str] = []
    rest, hash_, fragment = target.partition("#")
    path, question, query = rest.partition("?")
    redacted_path = _KEY.sub(_KEY_URL, path)
    if redacted_path != path:
        changed.append("path key")
    query, names = _redact_params(query)
    changed.extend(f"query {name}" for name in names)
    if hash_:
        fragment, names = _redact_params(fragment)
        changed.extend(f"fragment {name}" for name in names)
    return redacted_path + question + query + hash_ + fragment, changed


def _redact_params(params: str) -> tuple[str, list[str]]:
    """``a=1&key=2`` style parameters with secret values replaced; the names changed."""
    changed: list[str] = []
    parts = params.split("&")
    for i, part in enumerate(parts):
        name, sep, value = part.partition("=")
        if sep and value and not _is_redacted(value) and is_secret_name(unquote_plus(name)):
            parts[i] = f"{name}={URL_MARK}"
            _note(changed, unquote_plus(name))
        else:
            keyless = _KEY.sub(_KEY_URL, part)
            if keyless != part:
                parts[i] = keyless
                _note(changed, unquote_plus(name) if sep else "value")
    return "&".join(parts), changed


# -- free text -----------------------------------------------------------------

# Each pattern can only start where its match can (the start of a run, a
# separator), so every one runs in linear time on any input.
_TEXT_USERINFO = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*://)([^\s/?#@\"'<>\\\[\]]+)@")
_TEXT_PARAM = re.compile(r"(?<=[?&#;])([^=&#;?\s\"'<>\\]+)=([^&#;?\s\"'<>\\\[\]]+)")
# A name and a separator (":" or "=", maybe between quotes, maybe
# JSON-escaped inside a JSON string); then, for a secret name only, an
# optional scheme and the credentials. Strategy: the value is matched apart,
# so text after a harmless name ("sk-…": "Authorization: x") is still
# searched, and each character is scanned a bounded number of times.
#
# JSON stays valid because a value never holds a quote or a backslash, so it
# cannot run past the end of a string; never starts with ":" (the quote
# before it then closed a key); and a value after a quoted name but without
# an opening quote (a number, true, null) is left alone.
_Q = r"(\\?[\"'])?"
_TEXT_FIELD = re.compile(rf"(?<![A-Za-z0-9_-])([A-Za-z][A-Za-z0-9_-]*)({_Q}[ \t]*[:=][ \t]*{_Q})")
_TEXT_VALUE = re.compile(
    rf"(?:({_SCHEME})([ \t]+))?([^\s\"'\\,;:&<>()\[\]{{}}][^\s\"'\\,;&<>()\[\]{{}}]*)"
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_REDACTED_NEXT = re.compile(r"[ \t]+[^\s\[]*\[REDACTED\]")
_TEXT_COOKIE = re.compile(
    rf"(?i)(?<![A-Za-z0-9_-])((?:set-)?cookie{_Q}[ \t]*:[ \t]*{_Q})([^\"'\\\s:,{{}}\[\]][^\"'\\\r\n]*)"
)
_TEXT_BEARER = re.compile(r"(?i)\b(bearer[ \t]+)([A-Za-z0-9._~+/-]+=*)")


def _redact_fields(text: str) -> str:
    out: list[str] = []
    done = pos = 0
    while (m := _TEXT_FIELD.search(text, pos)) is not None:
        pos = m.end()
        name, _, opening, closing = m.groups()
        lowered = name.lower()
        if lowered in _TOO_COMMON_IN_TEXT or lowered.endswith("cookie") or not is_secret_name(name):
            continue
        if opening and not closing:
            continue  # "password": 123 — a JSON literal, not a string
        v = _TEXT_VALUE.match(text, pos)
        if v is None:
            continue
        scheme, space, secret = v.groups()
        pos = v.end()
        if _is_redacted(secret) or text.startswith(MARK, pos):
            continue  # already redacted, e.g. "sk-proj-[REDACTED]"
        if not scheme and _WORD.fullmatch(secret) and _REDACTED_NEXT.match(text, pos):
            continue  # "Bearer" before already redacted credentials
        out += [text[done : v.start()], scheme + space if scheme else "", _mask(secret)]
        done = pos
    out.append(text[done:])
    return "".join(out)


def _text_cookie(m: re.Match[str]) -> str:
    head, opening, closing, value = m.groups()
    if opening and not closing:
        return m.group(0)
    name = "set-cookie" if head.lower().startswith("set-") else "cookie"
    return head + _mask_header(name, value)


def _text_param(m: re.Match[str]) -> str:
    name, value = m.groups()
    if _is_redacted(value) or not is_secret_name(unquote_plus(name)):
        return m.group(0)
    return f"{name}={URL_MARK}"


def _text_bearer(m: re.Match[str]) -> str:
    if m.string.startswith(MARK, m.end()):
        return m.group(0)  # already "Bearer sk-proj-[REDACTED]"
    return m.group(1) + _mask(m.group(2))


def _text_userinfo(m: re.Match[str]) -> str:
    return m.group(0) if m.group(2) == URL_MARK else f"{m.group(1)}{URL_MARK}@"


# Every pattern redact_text applies needs one of these to match: "=" after
# one of "?&#;" for parameters, "@" and "://" for userinfo, or one of the
# words: a secret field name (is_secret_name, less the names too common in
# text), "cookie", "bearer", a key format's prefix. Most log lines and stream
# events hold none and skip the patterns: measured on a busy machine, an
# event line took 60-100 µs through them all (5-10 µs with this check) and a
# JSONL event object 500 µs, too much for every event of a long stream.
_WORDS = (
    "cookie", "auth", "pwd", "token", "secret", "passw", "key", "signature", "bearer",
    "sk-", "aiza", "xai-", "gsk_", "hf_", "pplx-", "r8_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
)


def may_hold_secret(text: str) -> bool:
    """False when redact_text would certainly leave ``text`` as it is; a
    JSON serialisation of a value may hold a secret only if a string in it
    does (JSON escapes none of these characters)."""
    # Substring tests on the lowered text: a regex alternation of the same
    # words with re.IGNORECASE took 30 µs on an 80-character line.
    lowered = text.lower()
    if "=" in lowered and any(c in lowered for c in "?&#;"):
        return True
    if "@" in lowered and "://" in lowered:
        return True
    for word in _WORDS:
        if word in lowered:
            return True
    return False


def redact_text(text: str) -> str:
    """``text`` (a log line, a JSONL line, a label) with credentials hidden:
    URL userinfo and secret query values, ``Authorization: ...`` and other
    secret ``name: value`` / ``name=value`` fields, cookies, bearer tokens,
    and known key formats anywhere. Output stays valid JSON if input was."""
    return _redact_text(text) if may_hold_secret(text) else text


def _redact_text(text: str) -> str:
    """redact_text without the quick check: every pattern whose literal
    parts are in the text. Strategy: a substring test runs at memory speed,
    a pattern at about 1-4 MB/s on large text (a 1 MiB answer took 1 s
    through all six), and a pattern cannot match where its literals are
    missing. Each test looks at the text as the previous step left it."""
    if "://" in text and "@" in text:
        text = _TEXT_USERINFO.sub(_text_userinfo, text)
    if "=" in text and ("?" in text or "&" in text or "#" in text or ";" in text):
        text = _TEXT_PARAM.sub(_text_param, text)
    lowered = text.lower()
    if "cookie" in lowered:
        text = _TEXT_COOKIE.sub(_text_cookie, text)
    if ":" in text or "=" in text:
        text = _redact_fields(text)
    if "bearer" in lowered:
        text = _TEXT_BEARER.sub(_text_bearer, text)
    if any(prefix in text for prefix in _KEY_LITERALS):
        text = _KEY.sub(_KEY_TEXT, text)
    return text


def redact_data(value: Any) -> Any:
    """A copy of a JSON-like value (a report, a JSONL object) with redact_text
    applied to every string in it, keys included."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_data(k): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value


# -- flows ---------------------------------------------------------------------

_BODY_KEYS = ("api_key", "apiKey")
_JSON_FIELD = re.compile(r'"(api_key|apiKey)"(\s*:\s*)("(?:[^"\\]|\\.)*")')


def redact_flow(flow: Any, *, in_flight: bool = False) -> list[str]:
    """Redact an HTTP flow in place and return what was redacted (names, never values).

    Covers request and response headers and trailers, the request URL
    (userinfo, query, key-like path segments), "api_key"/"apiKey" fields in
    a JSON request body, secret fields of a form body, the error message, and
    the password mitmproxy's proxyauth addon keeps in flow.metadata. The
    response body is left byte for byte. What was redacted is added to
    the recording (see recording.py).

    ``in_flight``: the flow is at its ``response`` hook, after a streamed
    body; mitmproxy sends the response trailers only after that hook, so
    they are left as they are.
    """
    changed: list[str] = []
    request = flow.request
    changed += [f"request header {n}" for n in redact_headers(request.headers)]
    if request.trailers is not None:
        changed += [f"request trailer {n}" for n in redact_headers(request.trailers)]
    if "@" in request.authority:  # only set by hand: mitmproxy drops userinfo when parsing
        userinfo, _, host = request.authority.rpartition("@")
        if userinfo != URL_MARK:
            request.authority = f"{URL_MARK}@{host}"
            changed.append("request URL userinfo")
    path, what = _redact_target(request.path)
    if what:
        request.path = path
        changed += [f"request URL {w}" for w in what]
    changed += _redact_body(request)
    response = flow.response
    if response is not None:
        changed += [f"response header {n}" for n in redact_headers(response.headers)]
        if response.trailers is not None and not in_flight:
            changed += [f"response trailer {n}" for n in redact_headers(response.trailers)]
    error = flow.error
    if error is not None and error.msg:
        msg = redact_text(error.msg)
        if msg != error.msg:
            error.msg = msg
            changed.append("error message")
    # proxyauth keeps (username, password) for the whole connection; the
    # addon reads its own copy, so replacing the flow's tuple is safe live.
    auth = flow.metadata.get("proxyauth")
    if isinstance(auth, tuple | list) and len(auth) == 2 and auth[1] not in (MARK, None, ""):
        flow.metadata["proxyauth"] = (auth[0], MARK)
        changed.append("proxyauth password")
    if changed:
        recording.add_redacted(flow, changed)
    return changed


def redact_flow_or_drop(flow: Any, *, in_flight: bool = False) -> list[str]:
    """redact_flow, failing closed: if it raises, everything that may hold a
    credential is dropped instead (drop_secrets), never kept."""
    try:
        return redact_flow(flow, in_flight=in_flight)
    except Exception as exc:
        logger.error("ssemedic could not redact a flow (%s); its credential fields are dropped instead",
                     _where(exc))
        return drop_secrets(flow, in_flight=in_flight)


def _where(exc: BaseException) -> str:
    """The exception's type and where it was raised: never its message or
    locals, which may quote the very secret that was to be hidden."""
    frames = traceback.extract_tb(exc.__traceback__)
    place = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return type(exc).__name__ + place


def drop_secrets(flow: Any, *, in_flight: bool = False) -> list[str]:
    """What redact_flow hides, removed outright, with as little parsing as
    possible: headers and trailers that have a secret name or hold a bearer
    token or key, the request URL's userinfo, query and fragment, the request
    body, the error message and the proxyauth password.

    Strategy: each step on its own, so one that fails does not stop the
    others, and a failed step falls back to removing the whole part."""
    dropped: list[str] = []
    request, response = flow.request, flow.response
    parts = [("request header", request, "headers"), ("request trailer", request, "trailers")]
    if response is not None:
        parts.append(("response header", response, "headers"))
        if not in_flight:
            parts.append(("response trailer", response, "trailers"))
    for what, message, attribute in parts:
        headers = getattr(message, attribute, None)
        if headers is None:
            continue
        try:
            kept = [(n, v) for n, v in headers.fields if not _is_credential_field(n, v)]
            if len(kept) != len(headers.fields):
                headers.fields = tuple(kept)
                dropped.append(f"{what}s with credentials dropped")
        except Exception as exc:
            logger.error("ssemedic could not pick the %ss with credentials (%s): dropping them all", what,
                         _where(exc))
            headers.fields = ()
            dropped.append(f"every {what} dropped")

    def url() -> None:
        host = request.authority.rpartition("@")[2]
        if host != request.authority:
            request.authority = host
        path = _KEY.sub(_KEY_URL, request.path.partition("#")[0].partition("?")[0])
        if path != request.path:
            request.path = path
            dropped.append("request URL query dropped")

    def body() -> None:
        if request.raw_content:
            request.raw_content = b""
            dropped.append("request body dropped")

    def error() -> None:
        if flow.error is not None and flow.error.msg:
            flow.error.msg = "(dropped: ssemedic could not redact it)"
            dropped.append("error message dropped")

    def proxyauth() -> None:
        if flow.metadata.pop("proxyauth", None) is not None:
            dropped.append("proxyauth dropped")

    def no_url() -> None:
        request.authority, request.path = request.authority.rpartition("@")[2], "/"

    def no_error() -> None:
        flow.error = None

    for step, fallback in ((url, no_url), (body, None), (error, no_error), (proxyauth, None)):
        try:
            step()
        except Exception as exc:
            logger.error("ssemedic could not drop a credential field (%s)", _where(exc))
            if fallback is not None:
                fallback()
    try:
        recording.add_redacted(flow, ["redaction failed: credential fields dropped", *dropped])
    except Exception as exc:
        logger.error("ssemedic could not note the dropped fields in the flow (%s)", _where(exc))
    return dropped


def _is_credential_field(raw_name: bytes, raw_value: bytes) -> bool:
    name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
    return is_secret_name(name) or _KEY.search(value) is not None or _TEXT_BEARER.search(value) is not None


def _redact_body(request: Any) -> list[str]:
    raw = request.raw_content
    if not raw:
        return []
    content_type = request.headers.get("content-type", "").lower()
    is_form = "application/x-www-form-urlencoded" in content_type
    encoded = request.headers.get("content-encoding", "").strip().lower() not in ("", "identity")
    if not is_form and not encoded and raw.lstrip()[:1] not in (b"{", b"["):
        return []  # neither JSON nor a form: nothing to parse
    content = request.get_content(strict=False)
    if not content:
        return []
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return []
    if is_form:
        new, names = _redact_params(text)
        changed = [f"request body form {n}" for n in names]
    else:
        new, changed = _redact_json_keys(text)
    if changed:
        request.content = new.encode("utf-8")
    return changed


def _redact_json_keys(text: str) -> tuple[str, list[str]]:
    """A JSON body with every "api_key"/"apiKey" string redacted, at any
    depth (a nested one is as secret as a top-level one).

    Strategy: edit the text in place, so every other byte stays as sent,
    then parse the result to check; re-serialise only if an odd spelling
    (a \\u escape in the name) defeated the edit."""
    if not text.lstrip().startswith(("{", "[")):
        return text, []
    try:
        body = json.loads(text)
        found = _json_secrets(body, replace=False)
    except (ValueError, RecursionError):
        return text, []
    if not found:
        return text, []

    def replace(m: re.Match[str]) -> str:
        try:
            value = json.loads(m.group(3))
        except ValueError:
            return m.group(0)  # not a field after all; the check below decides
        return m.group(0) if value in ("", MARK) else f'"{m.group(1)}"{m.group(2)}"{MARK}"'

    new = _JSON_FIELD.sub(replace, text)
    try:
        left = _json_secrets(json.loads(new), replace=False)
    except (ValueError, RecursionError):
        left = found
    if left:
        _json_secrets(body, replace=True)
        new = json.dumps(body, ensure_ascii=False)
    names: list[str] = []
    for name in found:
        _note(names, f"request body {name}")
    return new, names


def _json_secrets(node: Any, *, replace: bool) -> list[str]:
    """The names of the secret fields in a parsed JSON value (replaced by MARK with ``replace``)."""
    found: list[str] = []
    if isinstance(node, dict):
        for name, value in node.items():
            if name in _BODY_KEYS and isinstance(value, str) and value not in ("", MARK):
                found.append(name)
                if replace:
                    node[name] = MARK
            else:
                found += _json_secrets(value, replace=replace)
    elif isinstance(node, list):
        for value in node:
            found += _json_secrets(value, replace=replace)
    return found


# -- `ssemedic redact IN OUT` ----------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``ssemedic redact``."""
    parser.add_argument("input", metavar="IN", help="a mitmproxy flow file (mitmdump -w) or a HAR file")
    parser.add_argument("output", metavar="OUT", help="the redacted mitmproxy flow file to write (not IN)")
    parser.add_argument("--partial", action="store_true",
                        help="if IN is damaged, write the flows before the damage (exit status 1) instead of nothing")


def run(args: argparse.Namespace) -> int:
    """Redact every flow of args.input into args.output; the exit status.

    0 when every flow was read and written. 2, with one error line, when
    nothing was written: IN unreadable, OUT not a regular file or not
    writable, or IN damaged without ``--partial``. 1 when IN was damaged
    and ``--partial`` wrote the flows before the damage."""
    source, given = Path(args.input), Path(args.output)
    try:
        target = _output_path(given)
        if _same_file(source, target):
            raise SourceError(f"{given}: is the input file; write the redacted flows to another file")
        read = read_flow_file(source)
    except SourceError as exc:
        print(f"ssemedic: error: {exc}", file=sys.stderr)
        return 2
    flows, damage = read.flows, read.damage
    if damage is not None and not getattr(args, "partial", False):
        them = "the flow" if len(flows) == 1 else f"the {len(flows)} flows"
        print(f"ssemedic: error: {damage}; nothing written (--partial writes {them} before it)", file=sys.stderr)
        return 2
    from mitmproxy import http

    kept = []
    redacted = 0
    for number, flow in enumerate(flows, 1):
        if not isinstance(flow, http.HTTPFlow):
            print(f"#{number} {flow.type} flow: left out (only HTTP flows can be redacted)", file=sys.stderr)
            continue
        changed = redact_flow(flow)
        redacted += bool(changed)
        kept.append(flow)
        label = f"{flow.request.method} {redact_url(flow.request.pretty_url)}"
        extra = "; websocket messages NOT redacted" if flow.websocket is not None else ""
        print(f"#{number} {label}: {', '.join(changed) or 'nothing to redact'}{extra}", file=sys.stderr)
    try:
        write_flows(target, kept)
    except SourceError as exc:
        print(f"ssemedic: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ssemedic: error: {given}: cannot write: {exc.strerror or exc}; nothing written", file=sys.stderr)
        return 2
    left_out = len(flows) - len(kept)
    print(
        f"ssemedic: redacted {redacted} of {len(flows)} flows into {given}"
        + (f" ({left_out} non-HTTP left out)" if left_out else ""),
        file=sys.stderr,
    )
    if damage is not None:
        them = "the flow" if len(flows) == 1 else f"the {len(flows)} flows"
        print(f"ssemedic: error: {damage}; {given} holds only {them} before it", file=sys.stderr)
        return 1
    return 0


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False  # one of them does not exist


def _output_path(path: Path) -> Path:
    """Where OUT's bytes go: through a symlink to its target (the link stays
    a link); SourceError when that is not a regular file or a new name."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    _check_regular(path, target)
    return target


def _check_regular(given: Path, target: Path) -> None:
    """SourceError unless ``target`` is a regular file or does not exist yet:
    replacing a device, FIFO or directory with a file would destroy it, and
    writing into one would never give a flow file."""
    try:
        target.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SourceError(f"{given}: cannot write: {exc.strerror or exc}") from None
    if target.is_file():
        return
    kinds = (("a directory", target.is_dir), ("a FIFO", target.is_fifo), ("a socket", target.is_socket),
             ("a character device", target.is_char_device), ("a block device", target.is_block_device))
    what = next((name for name, test in kinds if test()), "not a regular file")
    raise SourceError(f"{given}: is {what}, not a regular file; ssemedic redact writes only regular files")


def write_flows(path: Path, flows: Iterable[Any]) -> None:
    """Write flows to the regular file ``path`` atomically.

    Strategy: the flows go to a new temporary file in the same directory,
    which is flushed to disk (fsync) and then renamed over ``path``, and the
    directory is synced so the rename lasts. A failure (an OSError) removes
    the temporary file and leaves an existing ``path`` as it was; readers
    never see half a file. An existing ``path`` keeps its permission bits.
    Raises SourceError when ``path`` exists and is not a regular file."""
    from mitmproxy.io import FlowWriter

    _check_regular(path, path)
    try:
        mode: int | None = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None  # a new file: the umask decides, as for any new file
    directory = path.parent
    temporary = _create_temporary(path)
    try:
        with open(temporary, "wb") as f:
            writer = FlowWriter(f)  # type: ignore[no-untyped-call]
            for flow in flows:
                writer.add(flow)
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        _check_regular(path, path)  # it could have been replaced while we wrote
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_directory(directory)


def _create_temporary(path: Path) -> Path:
    """A new, empty file beside ``path`` with a name no one else uses."""
    for _ in range(100):
        temporary = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temporary
    raise FileExistsError(f"no free temporary name beside {path}")


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable, where the system allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows, where directories cannot be opened
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename is done anyway
    finally:
        os.close(fd)
