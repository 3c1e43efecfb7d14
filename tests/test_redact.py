"""Redaction: headers, URLs, log text, whole flows (nothing secret survives a
save, the stream survives byte for byte) and `ssemedic redact IN OUT`."""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from helpers import sse_event
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.http import Headers
from mitmproxy.io import FlowReader, FlowWriter
from mitmproxy.test import tflow

from ssemedic.core import recording
from ssemedic.files.cli import main
from ssemedic.files.redact import (
    MARK,
    add_arguments,
    redact_data,
    redact_flow,
    redact_headers,
    redact_text,
    redact_url,
    run,
)

OPENAI_KEY = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_Zq7-Wk0"
ANTHROPIC_KEY = "sk-ant-api03-Qw3rTy6uIo9pAs2dFg5hJk8lZx1cVb4nM7-Ab0CdEfGhAA"
GEMINI_KEY = "AIzaSyD4x7Kq2mPz9Lw5Rt8Yv1Nb3Hc6Jf0Gs4E"
AZURE_KEY = "0f9e8d7c6b5a49382716a5b4c3d2e1f0"
SESSION = "s3ss10n-c00k1e-v4lu3-9f8e7d6c"
CSRF = "csrf-t0k3n-5a4b3c2d1e"
PROXY_PASSWORD = "pr0xy-p4ssw0rd-77aa"
PROXY_BASIC = base64.b64encode(f"alice:{PROXY_PASSWORD}".encode()).decode()
USER_PASSWORD = "us3r-p4ss-in-url-31cd"
BODY_KEY = "b0dy-4p1-k3y-0a1b2c3d4e5f"
SET_COOKIE = "r3sp0nse-s3ss10n-6b7c8d"
SECRETS = [OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY, AZURE_KEY, SESSION, CSRF, PROXY_PASSWORD, PROXY_BASIC,
           USER_PASSWORD, BODY_KEY, SET_COOKIE]

GEMINI_URL = f"https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?key={GEMINI_KEY}&alt=sse"
GEMINI_BODY = (
    sse_event({"candidates": [{"content": {"parts": [{"text": "Привет, "}], "role": "model"}}]})
    + sse_event({"candidates": [{"content": {"parts": [{"text": "мир! 🌍"}], "role": "model"},
                                 "finishReason": "STOP"}],
                 "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}})
)


def forms(secret: str) -> set[bytes]:
    """Every way a secret could sit in a saved flow."""
    raw = secret.encode()
    return {raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), quote(secret, safe="").encode(),
            quote_plus(secret).encode(), json.dumps(secret).encode()}


def secret_flow() -> Any:
    """A saved Gemini stream with secrets in every place a request can hold one."""
    f = tflow.tflow(resp=True)
    f.request.method = "POST"
    f.request.url = GEMINI_URL
    f.request.authority = f"alice:{USER_PASSWORD}@generativelanguage.googleapis.com"
    f.request.headers["Authorization"] = f"Bearer {OPENAI_KEY}"
    f.request.headers["x-api-key"] = ANTHROPIC_KEY
    f.request.headers["x-goog-api-key"] = GEMINI_KEY
    f.request.headers["api-key"] = AZURE_KEY
    f.request.headers["Proxy-Authorization"] = f"Basic {PROXY_BASIC}"
    f.request.headers["Cookie"] = f"session={SESSION}; theme=dark"
    f.request.headers["X-CSRF-Token"] = CSRF
    f.request.headers["content-type"] = "application/json"
    f.request.content = json.dumps({"api_key": BODY_KEY, "contents": [{"parts": [{"text": "Hi"}]}]}).encode()
    f.response.headers["content-type"] = "text/event-stream"
    f.response.headers.add("Set-Cookie", f"sid={SET_COOKIE}; Path=/; HttpOnly")
    f.response.headers.add("Set-Cookie", f"other={SET_COOKIE}x; Secure")
    f.response.headers["x-ratelimit-remaining-tokens"] = "99000"
    f.response.content = GEMINI_BODY
    start = f.request.timestamp_start
    f.metadata["ssemedic"] = {"version": recording.VERSION, "provider": "gemini",
                              "timeline": recording.pack([0, len(GEMINI_BODY) // 2], [start + 0.3, start + 0.5]),
                              "ended_at": start + 0.6}
    f.metadata["proxyauth"] = ("alice", PROXY_PASSWORD)
    return f


def saved(flows: list[Any]) -> bytes:
    out = io.BytesIO()
    writer = FlowWriter(out)
    for f in flows:
        writer.add(f)
    return out.getvalue()


def write(path: Path, flows: list[Any]) -> Path:
    path.write_bytes(saved(flows))
    return path


def cli_args(src: Path, dst: Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args([str(src), str(dst)])


def json_report(capsys: pytest.CaptureFixture[str], path: Path) -> list[dict[str, Any]]:
    assert main(["report", "--json", str(path)]) == 0
    reports: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return reports


# -- headers --------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (f"Bearer {OPENAI_KEY}", f"Bearer sk-proj-{MARK}"),
    ("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", f"Bearer {MARK}"),
    ("Basic dXNlcjpwYXNz", f"Basic {MARK}"),
    ("AWS4-HMAC-SHA256 Credential=AKIAX/20260101/us-east-1/bedrock/aws4_request, Signature=ab12",
     f"AWS4-HMAC-SHA256 {MARK}"),
    ("just-a-bare-token", MARK),
])
def test_authorization_keeps_the_scheme_and_hides_the_credentials(value: str, expected: str) -> None:
    headers = {"Authorization": value}
    assert redact_headers(headers) == ["Authorization"]
    assert headers["Authorization"] == expected


def test_proxy_authorization_is_redacted() -> None:
    headers = {"Proxy-Authorization": f"Basic {PROXY_BASIC}"}
    assert redact_headers(headers) == ["Proxy-Authorization"]
    assert headers["Proxy-Authorization"] == f"Basic {MARK}"


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("api-key", AZURE_KEY, MARK),
    ("x-api-key", ANTHROPIC_KEY, f"sk-ant-api03-{MARK}"),
    ("x-goog-api-key", GEMINI_KEY, f"AIza{MARK}"),
    ("anthropic-api-key", ANTHROPIC_KEY, f"sk-ant-api03-{MARK}"),
    ("X-ApiKey", "k-1234", MARK),
    ("Ocp-Apim-Subscription-Key", AZURE_KEY, MARK),
])
def test_api_key_headers_are_redacted_showing_only_a_known_key_prefix(name: str, value: str, expected: str) -> None:
    headers = {name: value}
    assert redact_headers(headers) == [name]
    assert headers[name] == expected


@pytest.mark.parametrize("name", ["X-Auth-Token", "x-amz-security-token", "X-CSRF-Token", "X-Client-Secret",
                                  "x-upstream-password", "X-Goog-Signature", "private-token"])
def test_headers_named_like_tokens_secrets_or_passwords_are_redacted(name: str) -> None:
    headers = {name: "opaque-value-123"}
    assert redact_headers(headers) == [name]
    assert headers[name] == MARK


@pytest.mark.parametrize("name", ["x-ratelimit-remaining-tokens", "anthropic-ratelimit-input-tokens-limit",
                                  "x-ratelimit-limit-tokens", "content-type", "openai-processing-ms",
                                  "sec-websocket-key", "x-goog-api-client"])
def test_rate_limit_token_counts_and_ordinary_headers_are_kept(name: str) -> None:
    headers = {name: "12345"}
    assert redact_headers(headers) == []
    assert headers == {name: "12345"}


def test_cookie_keeps_the_names_and_hides_the_values() -> None:
    headers = {"Cookie": f"session={SESSION};theme=dark; flag"}
    assert redact_headers(headers) == ["Cookie"]
    assert headers["Cookie"] == f"session={MARK}; theme={MARK}; {MARK}"


def test_every_set_cookie_field_keeps_its_attributes_order_and_case() -> None:
    headers = Headers([(b"Set-Cookie", f"sid={SESSION}; Path=/; HttpOnly".encode()),
                       (b"Content-Type", b"text/event-stream"),
                       (b"set-cookie", b"b=2; Secure")])
    assert redact_headers(headers) == ["Set-Cookie"]
    assert headers.fields == ((b"Set-Cookie", f"sid={MARK}; Path=/; HttpOnly".encode()),
                              (b"Content-Type", b"text/event-stream"),
                              (b"set-cookie", f"b={MARK}; Secure".encode()))


def test_redacting_twice_changes_nothing_the_second_time() -> None:
    headers = Headers(authorization=f"Bearer {OPENAI_KEY}", cookie="a=1", x_api_key=ANTHROPIC_KEY)
    assert redact_headers(headers)
    fields = headers.fields
    assert redact_headers(headers) == []
    assert headers.fields == fields


def test_empty_secret_header_is_left_as_it_is() -> None:
    headers = {"Authorization": ""}
    assert redact_headers(headers) == []


# -- URLs -------------------------------------------------------------------------


def test_gemini_key_in_the_query_is_hidden_and_alt_sse_kept() -> None:
    assert redact_url(GEMINI_URL) == GEMINI_URL.replace(GEMINI_KEY, "REDACTED")
    assert redact_url(GEMINI_URL).endswith("?key=REDACTED&alt=sse")


@pytest.mark.parametrize("name", ["key", "KEY", "api_key", "apikey", "api-key", "access_token", "token", "secret",
                                  "password", "sig", "signature", "auth", "client_secret", "refresh_token",
                                  "X-Amz-Signature", "X-Amz-Security-Token", "Access%5FToken"])
def test_secret_query_values_are_hidden_whatever_the_case(name: str) -> None:
    url = f"https://api.example.com/v1/x?a=1&{name}=s3cr3t%2Fvalue&b=2"
    assert redact_url(url) == f"https://api.example.com/v1/x?a=1&{name}=REDACTED&b=2"


def test_url_without_secrets_is_unchanged_byte_for_byte() -> None:
    url = "http://localhost:11434/api/chat?max_tokens=5&q=a%2Fb+c&empty=&flag#frag"
    assert redact_url(url) == url


def test_userinfo_is_hidden_and_the_host_kept() -> None:
    assert redact_url(f"https://alice:{USER_PASSWORD}@api.example.com:8443/v1?x=1") == \
        "https://REDACTED@api.example.com:8443/v1?x=1"
    assert redact_url("https://ghp_only-a-token@github.com/") == "https://REDACTED@github.com/"


def test_key_like_path_segments_and_values_are_hidden() -> None:
    assert redact_url(f"https://proxy.example/{OPENAI_KEY}/v1/chat/completions") == \
        "https://proxy.example/sk-proj-REDACTED/v1/chat/completions"
    assert redact_url(f"https://x.example/v1?model=gpt&q={GEMINI_KEY}") == "https://x.example/v1?model=gpt&q=AIzaREDACTED"


def test_secrets_in_the_fragment_are_hidden() -> None:
    assert redact_url("https://app.example/cb#access_token=abc&state=1") == "https://app.example/cb#access_token=REDACTED&state=1"


def test_a_relative_target_is_redacted_too() -> None:
    assert redact_url(f"/v1beta/models/m:streamGenerateContent?key={GEMINI_KEY}&alt=sse") == \
        "/v1beta/models/m:streamGenerateContent?key=REDACTED&alt=sse"


# -- text -------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "shown"), [
    ("sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4", "sk-"),
    (OPENAI_KEY, "sk-proj-"),
    ("sk-svcacct-" + "Zz9" * 15, "sk-svcacct-"),
    (ANTHROPIC_KEY, "sk-ant-api03-"),
    ("sk-or-v1-" + "0123456789abcdef" * 4, "sk-or-v1-"),
    (GEMINI_KEY, "AIza"),
    ("xai-" + "Q1w2E3r4T5y6U7i8O9p0" * 4, "xai-"),
    ("gsk_" + "A1s2D3f4G5h6J7k8L9z0" * 2 + "Xx9Y", "gsk_"),
    ("hf_" + "qWeRtYuIoPaSdFgHjKlZxCvBnMqWeRtYu", "hf_"),
    ("ghp_" + "16C7e42F292c6912E7710c838347Ae178B4a", "ghp_"),
])
def test_each_key_format_is_hidden_anywhere_in_text(key: str, shown: str) -> None:
    line = f"[a1b2c3] upstream said: invalid key '{key}', check it."
    assert redact_text(line) == f"[a1b2c3] upstream said: invalid key '{shown}{MARK}', check it."


def test_authorization_bearer_inside_a_log_line() -> None:
    line = f"[a1b2c3] request headers: Authorization: Bearer {OPENAI_KEY} · content-type: application/json"
    assert redact_text(line) == f"[a1b2c3] request headers: Authorization: Bearer sk-proj-{MARK} · content-type: application/json"
    assert redact_text("authorization: bearer opaque.jwt.value") == f"authorization: bearer {MARK}"


def test_other_credential_fields_in_text_are_hidden() -> None:
    assert redact_text("Proxy-Authorization: Basic dXNlcjpwYXNz") == f"Proxy-Authorization: Basic {MARK}"
    assert redact_text(f"curl -H 'x-goog-api-key: {GEMINI_KEY}'") == f"curl -H 'x-goog-api-key: AIza{MARK}'"
    assert redact_text(f"Cookie: session={SESSION}; theme=dark") == f"Cookie: session={MARK}; theme={MARK}"
    assert redact_text("password=hunter2 user=bob") == f"password={MARK} user=bob"


def test_a_field_right_after_a_harmless_one_is_still_found() -> None:
    assert redact_text('{"model": "Authorization: abc", "x": "password=hunter2"}') == \
        f'{{"model": "Authorization: {MARK}", "x": "password={MARK}"}}'


def test_a_json_literal_after_a_secret_name_is_left_alone() -> None:
    assert redact_text('{"password": 123, "api_key": null}') == '{"password": 123, "api_key": null}'


def test_stream_label_with_a_gemini_url_is_redacted_like_the_url() -> None:
    assert redact_text(f"stream started: POST {GEMINI_URL} · provider gemini") == \
        f"stream started: POST {redact_url(GEMINI_URL)} · provider gemini"
    assert redact_text(f"GET https://alice:{USER_PASSWORD}@h.example/x") == "GET https://REDACTED@h.example/x"


def test_redact_data_redacts_every_string_in_a_report() -> None:
    report = {"source": f"POST {GEMINI_URL}", "status": 200, "errors": [{"message": f"bad key {OPENAI_KEY}"}],
              "usage": None, "faults": ()}
    assert redact_data(report) == {"source": f"POST {redact_url(GEMINI_URL)}", "status": 200,
                                   "errors": [{"message": f"bad key sk-proj-{MARK}"}], "usage": None, "faults": []}


def test_a_jsonl_line_stays_valid_json() -> None:
    payload = {"type": "event", "data": json.dumps({"api_key": BODY_KEY, "note": f"Bearer {OPENAI_KEY}"}),
               "headers": {"authorization": f"Bearer {OPENAI_KEY}", "x-api-key": ANTHROPIC_KEY}}
    line = redact_text(json.dumps(payload))
    assert json.loads(line)["headers"] == {"authorization": f"Bearer sk-proj-{MARK}", "x-api-key": f"sk-ant-api03-{MARK}"}
    assert json.loads(json.loads(line)["data"]) == {"api_key": MARK, "note": f"Bearer sk-proj-{MARK}"}


@pytest.mark.parametrize("text", [
    "max_tokens: 100, next token: hello, {\"key\": \"color\"}",
    "a task-management-system-for-teams and a risk-assessment-framework-overview",
    "x-ratelimit-remaining-tokens=99000",
    "GET http://localhost:11434/api/chat?stream=true",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_redact_text_takes_linear_time_on_hostile_input() -> None:
    for bad in ["a." * 100_000, "a;" * 100_000, "?" + "a&" * 100_000, "sk-" * 60_000, "x://" * 50_000,
                "Bearer " * 30_000, "cookie: " * 30_000, "api_key:" * 30_000, "a=" * 100_000 + MARK,
                "a:" * 100_000 + MARK, "?a=" * 60_000 + MARK, "bearer " * 30_000 + MARK]:
        started = time.perf_counter()
        redact_text(bad)
        assert time.perf_counter() - started < 2, bad[:10]


_KEY_RE = re.compile(r"sk-[A-Za-z0-9]{20,}")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60), st.from_regex(r"sk-[A-Za-z0-9]{20,60}", fullmatch=True), st.text(max_size=60))
def test_redact_text_never_raises_nor_leaves_an_sk_key(before: str, key: str, after: str) -> None:
    out = redact_text(before + key + after)
    assert key not in out
    assert not _KEY_RE.search(out)


_PIECES = st.sampled_from(list("aAzZ09 :=;&?#@/-_.\"'\\[]\n\t") + [
    "Bearer ", "Authorization: ", "cookie: ", "?key=", "://u:p@", MARK, "sk-", "sk-proj-", "AIza", "api_key", "x" * 20,
])


@settings(max_examples=1000, deadline=None)
@given(st.lists(_PIECES, max_size=30).map("".join))
def test_redact_text_is_idempotent(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.lists(_PIECES, max_size=6).map("".join), st.lists(_PIECES, max_size=20).map("".join),
                       max_size=4))
def test_redact_text_keeps_a_json_line_valid_json(obj: dict[str, str]) -> None:
    line = json.dumps(obj, ensure_ascii=False)
    json.loads(redact_text(line))  # raises if the line is no longer JSON


# -- flows ------------------------------------------------------------------------


def test_no_secret_survives_in_a_saved_redacted_flow() -> None:
    f = secret_flow()
    before = saved([f])
    for secret in SECRETS:
        assert secret.encode() in before or base64.b64encode(secret.encode()) in before or secret == PROXY_BASIC
    redact_flow(f)
    after = saved([f])
    state = json.dumps(f.get_state(), default=lambda b: b.decode("latin-1")).encode()
    for secret in SECRETS:
        for form in forms(secret):
            assert form not in after, (secret, form)
            assert form not in state, (secret, form)


def test_redact_flow_says_what_it_redacted_and_records_it_in_metadata() -> None:
    f = secret_flow()
    changed = redact_flow(f)
    assert changed == [
        "request header Authorization", "request header x-api-key", "request header x-goog-api-key",
        "request header api-key", "request header Proxy-Authorization", "request header Cookie",
        "request header X-CSRF-Token", "request URL userinfo", "request URL query key", "request body api_key",
        "response header Set-Cookie", "proxyauth password",
    ]
    meta = f.metadata["ssemedic"]
    assert meta["redacted"] == changed
    assert meta["provider"] == "gemini" and "timeline" in meta and "ended_at" in meta  # kept
    assert f.response.headers["x-ratelimit-remaining-tokens"] == "99000"
    assert f.metadata["proxyauth"] == ("alice", MARK)
    assert redact_flow(f) == [] and f.metadata["ssemedic"]["redacted"] == changed  # idempotent


def test_response_body_is_byte_identical_and_the_saved_flow_reports_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    original = write(tmp_path / "original.mitm", [secret_flow()])
    f = secret_flow()
    redact_flow(f)
    assert f.response.raw_content == GEMINI_BODY
    redacted = write(tmp_path / "redacted.mitm", [f])
    before, after = json_report(capsys, original), json_report(capsys, redacted)
    assert after[0]["text"] == before[0]["text"] == "Привет, мир! 🌍"
    assert after[0]["timing"]["ttfb_ms"] is not None  # the timeline survived
    assert GEMINI_KEY in before[0]["source"] and GEMINI_KEY not in after[0]["source"]
    for report in before + after:
        report.pop("source")
    assert after == before


def test_json_body_keeps_every_other_byte() -> None:
    f = tflow.tflow()
    f.request.content = b'{ "model":"m",\n  "apiKey" : "k-123",  "stream": true, "nested": [{"api_key": "k-\\"9"}] }'
    assert redact_flow(f) == ["request body apiKey", "request body api_key"]
    assert f.request.content == (b'{ "model":"m",\n  "apiKey" : "[REDACTED]",  "stream": true, '
                                 b'"nested": [{"api_key": "[REDACTED]"}] }')
    assert f.request.headers["content-length"] == str(len(f.request.content))


def test_json_body_with_an_escaped_field_name_is_re_serialised_rather_than_leaked() -> None:
    f = tflow.tflow()
    f.request.content = b'{"api\\u005fkey": "k-123", "stream": true}'
    assert redact_flow(f) == ["request body api_key"]
    assert json.loads(f.request.content) == {"api_key": MARK, "stream": True}


def test_gzipped_json_body_is_redacted_and_stays_gzipped() -> None:
    f = tflow.tflow()
    f.request.headers["content-encoding"] = "gzip"
    f.request.content = json.dumps({"api_key": BODY_KEY}).encode()
    assert f.request.raw_content is not None and BODY_KEY.encode() not in f.request.raw_content
    assert redact_flow(f) == ["request body api_key"]
    assert json.loads(gzip.decompress(f.request.raw_content)) == {"api_key": MARK}


def test_form_body_secret_fields_are_redacted() -> None:
    f = tflow.tflow()
    f.request.headers["content-type"] = "application/x-www-form-urlencoded"
    f.request.content = b"grant_type=client_credentials&client_id=app&client_secret=s3cr3t"
    assert redact_flow(f) == ["request body form client_secret"]
    assert f.request.content == b"grant_type=client_credentials&client_id=app&client_secret=REDACTED"


def test_error_message_and_trailers_are_redacted() -> None:
    f = tflow.tflow(resp=True)
    f.error = tflow.terr(f"upstream refused {GEMINI_URL}")
    f.response.trailers = Headers(x_session_token="t0k")
    assert redact_flow(f) == ["response trailer x-session-token", "error message"]
    assert GEMINI_KEY not in f.error.msg


def test_in_flight_leaves_the_response_trailers_mitmproxy_has_yet_to_send() -> None:
    f = tflow.tflow(resp=True)
    f.request.headers["authorization"] = "Bearer abc"
    f.response.trailers = Headers(x_session_token="t0k")
    assert redact_flow(f, in_flight=True) == ["request header authorization"]
    assert f.response.trailers["x-session-token"] == "t0k"


def test_flow_without_secrets_is_left_untouched() -> None:
    f = tflow.tflow(resp=True)
    state = f.get_state()
    assert redact_flow(f) == []
    assert f.get_state() == state
    assert "ssemedic" not in f.metadata


# -- `ssemedic redact IN OUT` ---------------------------------------------------------


def test_run_round_trip_redacts_every_flow_and_reports_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    secret, plain = secret_flow(), tflow.tflow(resp=True)
    src = write(tmp_path / "in.mitm", [secret, plain])
    dst = tmp_path / "out.mitm"
    assert run(cli_args(src, dst)) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"#1 POST {redact_url(GEMINI_URL)}: request header Authorization,")
    assert err[1] == "#2 GET http://address:22/path: nothing to redact"
    assert err[2] == f"ssemedic: redacted 1 of 2 flows into {dst}"
    data = dst.read_bytes()
    assert not any(form in data for value in SECRETS for form in forms(value))
    with dst.open("rb") as f:
        flows = list(FlowReader(f).stream())
    assert [fl.id for fl in flows] == [secret.id, plain.id]
    assert flows[0].response.raw_content == GEMINI_BODY
    assert flows[1].get_state() == plain.get_state()


def test_run_reads_har_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    har = {"log": {"version": "1.2", "creator": {"name": "t", "version": "1"}, "entries": [{
        "startedDateTime": "2026-01-01T00:00:00.000Z", "time": 1,
        "request": {"method": "POST", "url": GEMINI_URL, "httpVersion": "HTTP/1.1",
                    "headers": [{"name": "x-goog-api-key", "value": GEMINI_KEY}], "cookies": [],
                    "queryString": [], "headersSize": -1, "bodySize": 0},
        "response": {"status": 200, "statusText": "OK", "httpVersion": "HTTP/1.1",
                     "headers": [{"name": "content-type", "value": "text/event-stream"}], "cookies": [],
                     "content": {"size": len(GEMINI_BODY), "mimeType": "text/event-stream",
                                 "text": GEMINI_BODY.decode()},
                     "redirectURL": "", "headersSize": -1, "bodySize": len(GEMINI_BODY)},
        "cache": {}, "timings": {"send": 0, "wait": 0, "receive": 0}}]}}
    src = tmp_path / "in.har"
    src.write_text(json.dumps(har), encoding="utf-8")
    dst = tmp_path / "out.mitm"
    assert run(cli_args(src, dst)) == 0
    assert GEMINI_KEY.encode() not in dst.read_bytes()
    assert "request header x-goog-api-key, request URL query key" in capsys.readouterr().err


def test_run_refuses_to_overwrite_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "in.mitm", [secret_flow()])
    data = src.read_bytes()
    link = tmp_path / "link.mitm"
    link.symlink_to(src)
    for dst in (src, link, tmp_path / "." / "in.mitm"):
        assert run(cli_args(src, dst)) == 2
        err = capsys.readouterr().err
        assert err == f"ssemedic: error: {dst}: is the input file; write the redacted flows to another file\n"
    assert src.read_bytes() == data


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "empty file"),
    (b"data: {\"x\": 1}\n\n", "not a mitmproxy flow or HAR file"),
    (b'{"model": "llama3", "response": "hi", "done": false}\n', "not a readable mitmproxy flow or HAR file"),
    (b"12:not a flow,", "not a readable mitmproxy flow or HAR file"),
    (b"\x00\x01binary", "not a mitmproxy flow or HAR file"),
])
def test_not_a_flow_file_is_one_error_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, reason: str,
) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(content)
    dst = tmp_path / "out.mitm"
    assert run(cli_args(src, dst)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ssemedic: error: {src}: {reason}") and err.count("\n") == 1
    assert not dst.exists()


def test_missing_input_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cli_args(tmp_path / "nope.mitm", tmp_path / "out.mitm")) == 2
    assert capsys.readouterr().err == f"ssemedic: error: {tmp_path / 'nope.mitm'}: cannot read: No such file or directory\n"


def test_unwritable_output_is_one_error_line_and_leaves_no_temporary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    src = write(tmp_path / "in.mitm", [secret_flow()])
    dst = tmp_path / "missing-dir" / "out.mitm"
    assert run(cli_args(src, dst)) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"ssemedic: error: {dst}: cannot write:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mitm"]


def test_non_http_flows_are_left_out_and_said_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "in.mitm", [tflow.ttcpflow(), secret_flow()])
    dst = tmp_path / "out.mitm"
    assert run(cli_args(src, dst)) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "#1 tcp flow: left out (only HTTP flows can be redacted)"
    assert err[-1] == f"ssemedic: redacted 1 of 2 flows into {dst} (1 non-HTTP left out)"
    with dst.open("rb") as f:
        assert [fl.type for fl in FlowReader(f).stream()] == ["http"]


# Every key family's prefixes, as literals: redact_text runs the key pattern
# only on text that holds one of them (files/redact.py _KEY_LITERALS).
@pytest.mark.parametrize("prefix", ["sk-", "sk-proj-", "AIza", "xai-", "gsk_", "hf_", "pplx-", "r8_",
                                    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"])
def test_a_key_alone_in_prose_is_hidden(prefix: str) -> None:
    key = prefix + "Q1w2E3r4T5y6U7i8O9p0aS" * 2
    line = f"the model echoed {key} back to the user"  # no ':' or '=': only the key pattern applies
    assert redact_text(line) == f"the model echoed {prefix}{MARK} back to the user"


def test_every_key_family_starts_with_a_gating_literal() -> None:
    import re

    from ssemedic.files.redact import _KEY_FAMILIES, _KEY_LITERALS

    for prefix, _ in _KEY_FAMILIES:
        for alternative in ([prefix] if "(" in prefix else prefix.split("|")):
            head = re.match(r"[A-Za-z0-9_-]*(?:\[[a-z]+\][A-Za-z0-9_-]*)?", alternative)
            assert head is not None and head.group(0), alternative
            literal = head.group(0)
            spelled = ([literal] if "[" not in literal else
                       [re.sub(r"\[[a-z]+\]", c, literal) for c in re.search(r"\[([a-z]+)\]", literal).group(1)])
            for text in spelled:
                assert any(text.startswith(gate) for gate in _KEY_LITERALS), (alternative, text)
