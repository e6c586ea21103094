"""The OpenAI chat-completions wire format: requests checked field by field, responses built.

Pure (no I/O, no model): the HTTP layer hands in the decoded JSON body and gets a ChatRequest
or an ApiError carrying the status, OpenAI's error `type`/`code` and the offending `param`, so
every bad request is one clear sentence and never a traceback.

Strictness follows OpenAI's own server: an argument it does not know is refused ("unrecognized
request argument"), a known one of the wrong type is refused, and the arguments that would
change the answer in ways localctx cannot honour (n > 1, tools, logprobs, JSON mode) are refused
rather than silently ignored. Arguments that only tune what localctx's sampler lacks
(frequency/presence penalties, logit_bias, metadata) are accepted and ignored, because every
common client sends them with neutral values.

Defaults differ from OpenAI's in one place, on purpose: temperature 0 (greedy, as `localctx ask`),
so the same prompt gives the same answer through the API and the command line.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from localctx.engine.base import Sampling

MAX_STOPS = 4  # OpenAI's limit
MAX_SESSION_NAME = 200
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
SESSION_HEADER = "x-localctx-session"

# OpenAI arguments accepted and not used: localctx's sampler has no equivalent, and clients send
# them with neutral values (Continue, Open WebUI, the openai package's defaults).
IGNORED = {
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
    "prediction",
    "reasoning_effort",
    "modalities",
    "audio",
    "web_search_options",
    "safety_identifier",
    "prompt_cache_key",
    "verbosity",
}
# Accepted only at their neutral value: anything else would change the answer's shape.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (1,),
    "logprobs": (False,),
    "top_logprobs": (0,),
    "tools": ([],),
    "functions": ([],),
    "tool_choice": ("none",),
    "function_call": ("none",),
}
KNOWN = (
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "repeat_penalty",
        "stop",
        "seed",
        "stream",
        "stream_options",
        "user",
        "response_format",
    }
    | IGNORED
    | set(NEUTRAL)
)


class ApiError(Exception):
    """An error a client gets as OpenAI's error object, with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True)
class Message:
    role: str  # system | user | assistant ("developer" arrives as system)
    content: str


@dataclass(frozen=True)
class ChatRequest:
    model: str | None
    system: str | None  # the leading system message, if the client sent one
    history: tuple[Message, ...]  # everything after it; the last one is the user's
    sampling: Sampling
    stream: bool
    include_usage: bool
    session: str | None  # X-Localctx-Session header, else `user`; None: stateless
    ignored: tuple[str, ...] = field(default=())  # arguments accepted without effect


def parse_chat_request(body: Any, *, session_header: str | None = None) -> ChatRequest:
    """Check a decoded /v1/chat/completions body; raise ApiError(400) naming the problem."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {_kind(body)}")
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise ApiError(
            400, f"unrecognized request argument supplied: {unknown[0]}", param=unknown[0]
        )
    for name, neutral in NEUTRAL.items():
        value = body.get(name)
        if value is not None and not any(value == v and type(value) is type(v) for v in neutral):
            raise ApiError(
                400, f"'{name}' is not supported by localctx serve (got {value!r})", param=name
            )
    _response_format(body.get("response_format"))
    system, history = _messages(body.get("messages"))
    max_tokens = _max_tokens(body)
    temperature = _number(body, "temperature", 0.0, low=0.0, high=2.0)
    top_p = _number(body, "top_p", 0.95, low=0.0, high=1.0)
    top_k = _integer(body, "top_k", 40, low=0)
    repeat_penalty = _number(body, "repeat_penalty", 1.1, low=0.0, high=10.0)
    seed = _integer(body, "seed", 0, low=-(2**63), high=2**64 - 1)
    stream = _boolean(body, "stream", False)
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise ApiError(400, "'stream_options' must be an object", param="stream_options")
        include_usage = _boolean(options, "include_usage", False, name="stream_options")
        if not stream:
            raise ApiError(
                400, "'stream_options' is only allowed when 'stream' is true", param="stream"
            )
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, f"'model' must be a string, not {_kind(model)}", param="model")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise ApiError(400, f"'user' must be a string, not {_kind(user)}", param="user")
    session = session_header if session_header is not None else user
    session = _session_name(session, "X-Localctx-Session" if session_header else "user")
    sampling = Sampling(
        max_tokens=max_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        repeat_penalty=repeat_penalty,
        seed=seed,
        stop=_stops(body.get("stop")),
    )
    ignored = tuple(sorted(name for name in IGNORED if body.get(name) not in (None, 0, {}, [])))
    return ChatRequest(
        model=model or None,
        system=system,
        history=tuple(history),
        sampling=sampling,
        stream=stream,
        include_usage=include_usage,
        session=session,
        ignored=ignored,
    )


def _messages(raw: Any) -> tuple[str | None, list[Message]]:
    if raw is None:
        raise ApiError(400, "'messages' is required", param="messages")
    if not isinstance(raw, list):
        raise ApiError(400, f"'messages' must be an array, not {_kind(raw)}", param="messages")
    if not raw:
        raise ApiError(400, "'messages' must hold at least one message", param="messages")
    out: list[Message] = []
    for i, item in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where} must be an object, not {_kind(item)}", param=where)
        role = item.get("role")
        if not isinstance(role, str):
            raise ApiError(400, f"{where}.role must be a string", param=f"{where}.role")
        if role in ("tool", "function"):
            raise ApiError(
                400, f"{where}: '{role}' messages are not supported (no tool calls)", param=where
            )
        if role not in ROLES:
            raise ApiError(
                400,
                f"{where}.role must be one of system, developer, user, assistant (got '{role}')",
                param=f"{where}.role",
            )
        if item.get("tool_calls") or item.get("function_call"):
            raise ApiError(400, f"{where}: tool calls are not supported", param=where)
        out.append(Message(ROLES[role], _content(item.get("content"), where)))
    system = None
    if out[0].role == "system":
        system, out = out[0].content, out[1:]
    if not out:
        raise ApiError(
            400, "'messages' holds only a system message: add a user message", param="messages"
        )
    if out[-1].role != "user":
        raise ApiError(
            400,
            f"the last message must be the user's (got '{out[-1].role}')",
            param=f"messages[{len(raw) - 1}]",
        )
    return system, out


def _content(raw: Any, where: str) -> str:
    """A string, or OpenAI's array of content parts of which only text parts are taken."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        texts = []
        for j, part in enumerate(raw):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else _kind(part)
                raise ApiError(
                    400,
                    f"{where}.content[{j}]: only text parts are supported (got {kind})",
                    param=f"{where}.content",
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise ApiError(
                    400, f"{where}.content[{j}].text must be a string", param=f"{where}.content"
                )
            texts.append(text)
        return "".join(texts)
    raise ApiError(
        400,
        f"{where}.content must be a string or an array of text parts, not {_kind(raw)}",
        param=f"{where}.content",
    )


def _response_format(raw: Any) -> None:
    if raw is None:
        return
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ApiError(
            400, "'response_format' must be an object with a 'type'", param="response_format"
        )
    if raw["type"] != "text":
        raise ApiError(
            400,
            f"response_format '{raw['type']}' is not supported (only 'text')",
            param="response_format",
        )


def _max_tokens(body: dict[str, Any]) -> int:
    name = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    return _integer(body, name, 512, low=1, high=1 << 20)


def _stops(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ApiError(400, "'stop' must be a string or an array of strings", param="stop")
    if len(stops) > MAX_STOPS:
        raise ApiError(400, f"'stop' takes at most {MAX_STOPS} sequences", param="stop")
    if any(not s for s in stops):
        raise ApiError(400, "'stop' sequences must not be empty", param="stop")
    return tuple(stops)


def _session_name(raw: str | None, source: str) -> str | None:
    if raw is None:
        return None
    name = raw.strip()
    if not name:
        return None
    if len(name) > MAX_SESSION_NAME or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ApiError(
            400,
            f"{source}: a session name is 1-{MAX_SESSION_NAME} printable characters",
            param="user" if source == "user" else None,
        )
    return name


def _number(body: dict[str, Any], name: str, default: float, *, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, f"'{name}' must be a number, not {_kind(value)}", param=name)
    if not low <= value <= high:
        raise ApiError(
            400, f"'{name}' must be between {low:g} and {high:g} (got {value:g})", param=name
        )
    return float(value)


def _integer(body: dict[str, Any], name: str, default: int, *, low: int, high: int = 2**31) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ApiError(400, f"'{name}' must be an integer, not {_kind(value)}", param=name)
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' must be between {low} and {high} (got {value})", param=name)
    return value


def _boolean(body: dict[str, Any], key: str, default: bool, *, name: str | None = None) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        where = f"{name}.{key}" if name else key
        raise ApiError(400, f"'{where}' must be true or false, not {_kind(value)}", param=where)
    return value


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------- responses
@dataclass(frozen=True)
class Usage:
    prompt_tokens: int  # cells the model attended to when it began the reply
    completion_tokens: int
    cached_tokens: int  # of the prompt, already in the KV cache (not decoded for this request)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def completion(
    cid: str, model: str, content: str, finish: str, usage: Usage, extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage.to_json(),
        "localctx": extra,
    }


def chunk(
    cid: str,
    model: str,
    delta: dict[str, Any],
    finish: str | None = None,
    *,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if extra is not None:
        body["localctx"] = extra
    return body


def usage_chunk(cid: str, model: str, usage: Usage) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage.to_json(),
    }
