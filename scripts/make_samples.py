#!/usr/bin/env python3
"""Writes the sample stream captures in recordings/samples/.

Each sample is a raw response body as an upstream sent it, built from the
provider's documented format. Run it again after changing a sample here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "recordings" / "samples"


def sse(payload: Any, event: str | None = None) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {data}\n\n"


def chat_chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-9f3kXq2",
        "object": "chat.completion.chunk",
        "created": 1763700000,
        "model": "qwen3-32b",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def openai_chat_russian() -> str:
    """A healthy chat stream: reasoning, Russian text with emoji, a tool call, usage, [DONE]."""
    out = [sse(chat_chunk({"role": "assistant", "content": ""}))]
    for piece in ["Пользователь ", "спрашивает ", "о погоде ", "в Москве."]:
        out.append(sse(chat_chunk({"reasoning_content": piece})))
    for piece in ["Сейчас ", "проверю ", "погоду ", "в Москве ", "🌦️", "…"]:
        out.append(sse(chat_chunk({"content": piece})))
    out.append(sse(chat_chunk({"tool_calls": [{"index": 0, "id": "call_7Qm", "type": "function",
                                               "function": {"name": "get_weather", "arguments": ""}}]})))
    for piece in ['{"city": ', '"Москва", ', '"units": "c"}']:
        out.append(sse(chat_chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})))
    out.append(sse(chat_chunk({}, "tool_calls")))
    usage = {"prompt_tokens": 48, "completion_tokens": 31, "total_tokens": 79}
    out.append(sse({**chat_chunk({}), "choices": [], "usage": usage}))
    out.append(sse("[DONE]"))
    return "".join(out)


def openai_chat_error_then_done() -> str:
    """The router bug: an error in the middle of a 200 stream, then [DONE] anyway."""
    out = [sse(chat_chunk({"role": "assistant", "content": ""}))]
    for piece in ["Конечно! ", "Вот ", "список ", "из пяти "]:
        out.append(sse(chat_chunk({"content": piece})))
    out.append(sse({"error": {"message": "upstream connection reset by peer", "type": "server_error",
                              "code": "upstream_error"}}))
    out.append(sse("[DONE]"))
    return "".join(out)


def letta_send_message() -> str:
    """Letta's legacy form: the reply hides in a send_message tool call."""
    base = {"id": "message-2b7c", "date": "2026-11-20T10:00:00+00:00"}
    call = {"name": "send_message", "tool_call_id": "call_Hx1"}
    args = json.dumps({"message": "Привет! Я запомнил, что вы любите чай 🍵"}, ensure_ascii=False)
    out = [sse({**base, "message_type": "reasoning_message",
                "reasoning": "Пользователь поздоровался, отвечу через send_message."})]
    for start in range(0, len(args), 17):
        out.append(sse({**base, "message_type": "tool_call_message",
                        "tool_call": {**call, "arguments": args[start:start + 17]}}))
    out.append(sse({**base, "id": "message-2b7d", "message_type": "tool_return_message",
                    "tool_return": "None", "status": "success", "tool_call_id": "call_Hx1",
                    "name": "send_message"}))
    out.append(sse({"message_type": "stop_reason", "stop_reason": "end_turn"}))
    out.append(sse({"message_type": "usage_statistics", "completion_tokens": 41, "prompt_tokens": 2310,
                    "total_tokens": 2351, "step_count": 1}))
    out.append(sse("[DONE]"))
    return "".join(out)


def ollama_chat() -> str:
    """An Ollama /api/chat NDJSON stream with thinking."""
    def line(**fields: Any) -> str:
        return json.dumps({"model": "qwen3:8b", "created_at": "2026-11-20T10:00:00.000Z", **fields},
                          ensure_ascii=False) + "\n"
    out = [line(message={"role": "assistant", "content": "", "thinking": "Коротко ответить."}, done=False)]
    for piece in ["Да", ", ", "конечно", "! ", "👍"]:
        out.append(line(message={"role": "assistant", "content": piece}, done=False))
    out.append(line(message={"role": "assistant", "content": ""}, done=True, done_reason="stop",
                    total_duration=812000000, load_duration=21000000, prompt_eval_count=26,
                    prompt_eval_duration=90000000, eval_count=9, eval_duration=640000000))
    return "".join(out)


SAMPLES = {
    "openai-chat-russian.sse": openai_chat_russian,
    "openai-chat-error-then-done.sse": openai_chat_error_then_done,
    "letta-send-message.sse": letta_send_message,
    "ollama-chat.ndjson": ollama_chat,
}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in SAMPLES.items():
        (OUT / name).write_bytes(build().encode("utf-8"))
        print(f"wrote recordings/samples/{name}")


if __name__ == "__main__":
    main()
