"""RemoteEngine: the chat loop's engine on another machine's OpenAI-compatible server.

Point localctx at a bigger box (`--remote http://host:8080`, a llama-server or any server
speaking /v1/chat/completions with streaming) and keep the conversation, its memory tiers and
the session on this machine. The server owns its own KV cache, so what needs the cache or the
logits stays with the local engine:

- works remotely: chat and ask (streamed replies, cancellation between chunks, stop reason,
  token counts from the server's usage report), session history, recall, and summaries
  (the summarizer's prompt goes to the server's completion endpoint: state_get/state_set
  save and restore the request text, which is all the state this side has);
- needs the local engine: the sink window's in-place shift (kv_shift), KV snapshot files
  (state_save/load), perplexity and anything reading logits, exact KV byte figures.

How it fits the Engine protocol without a tokenizer: like FakeEngine, a "token" is one UTF-8
byte. `format_chat` renders messages as a prefix-stable transcript (record separator, role,
unit separator, content), so the session appends each message as an increment exactly as it
does with ChatML; the position mirror then *is* the request, and `generate` parses it back into
messages and sends them. The sink window works on it too: the mirror cannot shift, so the
policy's re-prefill fallback rebuilds it, which costs nothing here. Budgets are in bytes
(n_ctx = the server's context x 4 bytes per token; --window is in bytes).

Must not import llama_cpp: it runs where no local model is installed.
"""

from __future__ import annotations

import codecs
import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from localctx.engine.base import (
    ChatMessage,
    EngineSettings,
    GenerationStats,
    KvAllocation,
    MakeRoom,
    ModelFacts,
    Sampling,
    TokenEvent,
)
from localctx.engine.bytetokens import ByteTokens
from localctx.engine.cancellation import Cancellation
from localctx.engine.kvstate import CachedKeys
from localctx.engine.queries import RecentQueries
from localctx.errors import BadInput, EngineFailed

DEFAULT_CTX_TOKENS = 8192
BYTES_PER_TOKEN = 4  # budget units: the mirror counts bytes, servers count tokens
READ_TIMEOUT_S = 120.0  # one connect or one read; a server that goes quiet fails after it
REPLY_DEADLINE_S = 600.0  # a whole reply: keep-alive comments do not extend it
MAX_LISTING_BYTES = 8 << 20  # /v1/models: a few KB on llama-server, ~1 MB on big gateways
MAX_LINE_BYTES = 1 << 20  # one server-sent-events line; a chunk holds a token or a few
MAX_TOKEN_BYTES = 32  # a token is rarely over 16 bytes: a reply past max_tokens x 32 stops too
_LOCAL_ONLY = "needs the local engine (the remote server keeps its KV cache and logits)"
_FINISH = {"stop": "eog", "length": "length"}
_RS, _US = "\x1e", "\x1f"  # ASCII record and unit separators: never in chat text


def base_url(url: str) -> str:
    """'http://host:8080', '…/v1' or '…/v1/chat/completions' -> 'http://host:8080/v1'."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput(f"--remote needs an http(s) URL like http://host:8080, got '{url}'")
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/v1"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return f"{parts.scheme}://{parts.netloc}{path}/v1"


def request_body(messages: list[dict[str, str]], sampling: Sampling, model: str) -> dict[str, Any]:
    """The /v1/chat/completions request for one streamed reply."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.seed,
    }
    if sampling.temperature > 0:
        body["top_k"] = sampling.top_k  # llama-server's extension; others ignore it
    return body


def parse_event(line: str) -> dict[str, Any] | None:
    """One server-sent-events line -> its JSON chunk; None for keep-alives, {} for [DONE]."""
    line = line.strip()
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return {}
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise EngineFailed(f"the remote server sent a malformed stream line: {data[:80]}") from None
    if isinstance(chunk, dict) and "error" in chunk:
        error = chunk["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise EngineFailed(f"the remote server failed: {message}")
    return chunk if isinstance(chunk, dict) else None


def render_transcript(messages: Sequence[ChatMessage], *, add_generation_prompt: bool) -> str:
    """Prefix-stable: rendering [a, b] starts with rendering [a] (what the session relies on)."""
    text = "".join(f"{_RS}{m['role']}{_US}{_clean(m['content'])}" for m in messages)
    return text + (f"{_RS}assistant{_US}" if add_generation_prompt else "")


def parse_transcript(text: str) -> list[dict[str, str]]:
    """The messages a transcript holds; the open assistant turn at the end is the prompt.

    Text without separators (a raw prompt) is one user message; text before the first
    separator (what remains when a window evicted a message's head) joins no message.
    """
    if _RS not in text:
        return [{"role": "user", "content": text}] if text.strip() else []
    messages = []
    for part in text.split(_RS)[1:]:
        role, sep, content = part.partition(_US)
        if sep and role:
            messages.append({"role": role, "content": content})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"].strip():
        messages.pop()
    return messages


def _clean(content: str) -> str:
    return content.replace(_RS, " ").replace(_US, " ")


class RemoteEngine(Cancellation, ByteTokens):
    """An Engine whose model runs behind an OpenAI-compatible URL. One caller at a time."""

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        n_ctx: int | None = None,
        timeout: float = READ_TIMEOUT_S,
        deadline: float = REPLY_DEADLINE_S,
        api_key: str | None = None,
    ) -> None:
        if not deadline > 0:
            raise BadInput(f"the reply deadline must be more than 0 seconds, got {deadline}")
        self.url = base_url(url)
        self.timeout = min(timeout, deadline)
        self.deadline = deadline
        self._api_key = api_key
        served, trained = self._discover()
        self._model = model or served or "default"
        tokens = n_ctx or trained or DEFAULT_CTX_TOKENS
        self.settings = EngineSettings(model_path=Path(self.url), n_ctx=tokens * BYTES_PER_TOKEN)
        self.stats = GenerationStats()
        self._pos: list[int] = []
        self._closed = False

    # ------------------------------------------------------------------ model facts
    @property
    def n_ctx(self) -> int:
        return self.settings.n_ctx

    @property
    def n_vocab(self) -> int:
        return 256

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def chat_template_source(self) -> str:
        return "remote server"

    @property
    def model_facts(self) -> ModelFacts:
        # The sink window cannot shift this mirror, and rebuilding it is a list copy: the
        # policy's "re-prefill" notice (written for M-RoPE models) does not apply here.
        return ModelFacts(rebuild_is_free=True)

    # ------------------------------------------------------------------ text (bytes: ByteTokens)
    def format_chat(
        self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> str:
        return render_transcript(messages, add_generation_prompt=add_generation_prompt)

    def is_eog(self, token: int) -> bool:
        return False

    # ------------------------------------------------------------------ decoding
    @property
    def n_past(self) -> int:
        return len(self._pos)

    @property
    def tokens(self) -> list[int]:
        return list(self._pos)

    @property
    def cells_used(self) -> int:
        return len(self._pos)

    def decode(self, tokens: Sequence[int], *, make_room: MakeRoom | None = None) -> None:
        """Record the request text; nothing is sent until `generate`."""
        self.check_cancel("prefill stopped")
        if make_room and tokens:
            make_room(len(tokens))
        if len(self._pos) + len(tokens) > self.n_ctx:
            raise EngineFailed(f"the request is over {self.n_ctx} bytes: use a smaller window")
        self._pos.extend(tokens)
        self.stats.prefill_tokens = len(tokens)
        self.stats.prefill_seconds = 0.0

    def generate(
        self,
        sampling: Sampling,
        *,
        cancel: threading.Event | None = None,
        make_room: MakeRoom | None = None,
    ) -> Iterator[TokenEvent]:
        """Stream the reply to the request the mirror holds; one event per byte of the reply.

        Each byte is appended to the mirror when the caller asks for the next one (as the
        local engine decodes a token), so a caller that stops early leaves the last one out.
        Room is made once per streamed chunk (a token on llama-server), not per byte. The
        reply stops at `max_tokens` chunks (or max_tokens x MAX_TOKEN_BYTES bytes) even when
        the server ignores max_tokens, and at the reply deadline even when it keeps the
        connection alive with comments; closing the connection stops generation there.
        """
        if not self._pos:
            raise BadInput("nothing to continue from: decode a prompt first")
        messages = parse_transcript(self.detokenize(self._pos))
        if not messages:
            raise BadInput("the request holds no message to answer")
        body = request_body(messages, sampling, self._model)
        self.stats.decode_tokens = 0
        self.stats.stop_reason = "length"
        start = time.perf_counter()
        deadline = time.monotonic() + self.deadline
        text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        index = pieces = 0
        byte_budget = sampling.max_tokens * MAX_TOKEN_BYTES
        with self._open("chat/completions", body) as response:
            for piece in self._reply_pieces(response, deadline):
                data = piece.encode("utf-8")
                if pieces >= sampling.max_tokens or index + len(data) > byte_budget:
                    self.stats.stop_reason = "length"
                    break  # the budget is ours to keep, whatever the server does
                pieces += 1
                self.stats.decode_tokens = max(self.stats.decode_tokens, pieces)
                if make_room:
                    make_room(len(data))
                for byte in data:
                    if (cancel is not None and cancel.is_set()) or self.cancelled:
                        self.stats.stop_reason = "cancelled"
                        break  # closing the connection stops generation on llama-server
                    yield TokenEvent(byte, text.decode(bytes([byte])), index, self.n_past)
                    self._pos.append(byte)
                    index += 1
                if self.stats.stop_reason == "cancelled":
                    break
        self.stats.decode_seconds = time.perf_counter() - start

    def _reply_pieces(self, response: Any, deadline: float) -> Iterator[str]:
        """The reply's text pieces from a server-sent-events response; stats as they arrive.

        Every read is bounded (MAX_LINE_BYTES a line) and timed (the reply deadline), and a
        reply that is not a stream of events is an error, never an empty answer.
        """
        kind = response.headers.get("Content-Type")
        if kind is not None and "event-stream" not in kind.lower():
            raise EngineFailed(
                f"the remote server answered with {kind.split(';')[0]}, not a stream of "
                f"server-sent events: is {self.url} an OpenAI-compatible server?"
            )
        events = 0
        while True:
            if time.monotonic() > deadline:
                raise EngineFailed(
                    f"the remote server did not finish its reply within {self.deadline:.0f} s"
                    " (raise --remote-timeout for long replies)"
                )
            raw_line = self._read_line(response)
            if not raw_line:
                break
            chunk = parse_event(raw_line.decode("utf-8", errors="replace"))
            if chunk is None:
                continue
            events += 1
            if not chunk:
                break
            usage = chunk.get("usage") or {}
            if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                self.stats.decode_tokens = max(0, usage["completion_tokens"])
            for choice in chunk.get("choices") or []:
                if not isinstance(choice, dict):
                    continue
                delta = choice.get("delta") or {}
                piece = delta.get("content") if isinstance(delta, dict) else None
                if isinstance(piece, str) and piece:
                    yield piece
                if choice.get("finish_reason"):
                    reason = str(choice["finish_reason"])
                    self.stats.stop_reason = _FINISH.get(reason, reason)
        if not events:
            raise EngineFailed(
                f"the remote server's reply held no server-sent events: is {self.url} an "
                "OpenAI-compatible server?"
            )

    def _read_line(self, response: Any) -> bytes:
        try:
            line = bytes(response.readline(MAX_LINE_BYTES + 1))
        except (OSError, http.client.HTTPException) as exc:
            raise EngineFailed(f"the remote server's reply broke off: {_reason(exc)}") from None
        if len(line) > MAX_LINE_BYTES:
            raise EngineFailed(
                f"the remote server sent a stream line over {MAX_LINE_BYTES >> 20} MiB; "
                "stopped reading (not an OpenAI-compatible stream?)"
            )
        return line

    def decode_all_logits(self, tokens: Sequence[int]) -> np.ndarray:
        raise EngineFailed(f"per-token logits (perplexity): {_LOCAL_ONLY}")

    def last_logits(self) -> np.ndarray:
        raise EngineFailed(f"logits: {_LOCAL_ONLY}")

    # ------------------------------------------------------------------ KV (local mirror only)
    def kv_remove(self, p0: int, p1: int) -> bool:
        """Forget request text; the server's prompt cache reuses the common prefix itself."""
        end = len(self._pos) if p1 < 0 else min(p1, len(self._pos))
        if p0 <= 0 and end >= len(self._pos):
            self._pos = []
        elif end >= len(self._pos):
            del self._pos[max(p0, 0) :]
        else:
            return False  # a hole in the middle would make the request something else
        return True

    def kv_shift(self, p0: int, p1: int, delta: int) -> None:
        raise EngineFailed(f"shifting the KV cache: {_LOCAL_ONLY}")

    def kv_remove_runs(self, runs: Sequence[tuple[int, int]]) -> None:
        raise EngineFailed(f"removing runs from the KV cache: {_LOCAL_ONLY}")

    def recent_queries(self) -> RecentQueries | None:
        return None

    def watch_queries_from(self, position: int) -> None:
        return None  # no queries to capture here

    def kv_keys(self, layers: tuple[int, ...] | None = None) -> CachedKeys:
        raise EngineFailed(f"reading the KV cache's keys (scored eviction): {_LOCAL_ONLY}")

    def kv_clear(self) -> None:
        self._pos = []

    @property
    def can_shift(self) -> bool:
        return False

    def pos_range(self) -> tuple[int, int]:
        return (0, len(self._pos) - 1) if self._pos else (-1, -1)

    def kv_allocation(self) -> KvAllocation:
        return KvAllocation(0, 0, 0, (), lines=(f"remote: {self.url} owns its KV cache",))

    # ------------------------------------------------------------------ state
    def state_get(self) -> bytes:
        """The request this engine would send: all of its "state" (the server keeps the KV).

        That is what lets the session lend the engine to the summarizer and give it back:
        summaries are written remotely, with the server's own completion endpoint."""
        return bytes(self._pos)

    def state_set(self, data: bytes | memoryview, tokens: Sequence[int]) -> None:
        if bytes(tokens) != data:
            raise EngineFailed("a remote engine's state is its request text, and these differ")
        self._pos = list(tokens)

    def state_save(self, path: Path) -> int:
        raise EngineFailed(f"KV snapshots: {_LOCAL_ONLY}")

    def state_load(self, path: Path) -> list[int]:
        raise EngineFailed(f"KV snapshots: {_LOCAL_ONLY}")

    # ------------------------------------------------------------------ lifetime
    def backend_info(self) -> dict[str, Any]:
        return {"backend": "remote", "url": self.url, "model": self._model, "rpc": False}

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ HTTP
    def _discover(self) -> tuple[str | None, int | None]:
        """GET /v1/models: the served model id and (llama-server) its trained context."""
        try:
            with self._open("models", None) as response:
                body = response.read(MAX_LISTING_BYTES + 1)
        except EngineFailed:
            raise
        except ValueError:  # a server without a listing (404): the defaults serve
            return None, None
        except (OSError, http.client.HTTPException) as exc:
            raise EngineFailed(
                f"the remote server's model listing broke off: {_reason(exc)}"
            ) from None
        if len(body) > MAX_LISTING_BYTES:
            raise EngineFailed(
                f"the remote server's /v1/models reply is over {MAX_LISTING_BYTES >> 20} MiB;"
                " stopped reading (not an OpenAI-compatible server?)"
            )
        try:
            listing = json.loads(body or b"{}")
        except ValueError:
            return None, None
        models = listing.get("data") or [] if isinstance(listing, dict) else []
        if not isinstance(models, list) or not models or not isinstance(models[0], dict):
            return None, None
        meta = models[0].get("meta") or {}
        trained = meta.get("n_ctx_train") if isinstance(meta, dict) else None
        served = models[0].get("id")
        return (
            served if isinstance(served, str) else None,
            trained if isinstance(trained, int) and trained > 0 else None,
        )

    def _open(self, path: str, body: dict[str, Any] | None) -> Any:
        headers = {"Accept": "application/json, text/event-stream"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(f"{self.url}/{path}", data=data, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            if body is None and exc.code == 404:
                raise ValueError("no model listing") from None
            try:
                detail = exc.read(300).decode("utf-8", errors="replace").strip()
            except (OSError, http.client.HTTPException):
                detail = ""
            detail = " ".join(detail.split())
            raise EngineFailed(f"the remote server answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EngineFailed(f"the remote server {self.url} is not reachable: {reason}") from None
        except http.client.HTTPException as exc:  # BadStatusLine: something else listens there
            raise EngineFailed(
                f"the remote server {self.url} did not answer in HTTP ({_reason(exc)})"
            ) from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:120]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_remote(
    url: str, *, model: object = None, deadline: float = REPLY_DEADLINE_S
) -> RemoteEngine:
    """The CLI's way in: --remote URL [--model ID] [--remote-timeout S]; the API key from
    LOCALCTX_REMOTE_API_KEY."""
    return RemoteEngine(
        url,
        model=model if isinstance(model, str) else None,
        deadline=deadline,
        api_key=os.environ.get("LOCALCTX_REMOTE_API_KEY") or None,
    )
