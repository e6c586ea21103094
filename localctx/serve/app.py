"""The HTTP surface: Starlette routes over the ModelWorker. No model code, no HTTP parsing.

Why Starlette on uvicorn: a small, well-kept ASGI toolkit on the reference ASGI server (h11, a
strict pure-Python HTTP/1.1 parser), both widely deployed; Starlette's StreamingResponse
watches for `http.disconnect` while it streams, which is what lets a client that goes away
cancel its generation within one token. FastAPI would add pydantic validation whose error
messages we would rewrite anyway (OpenAI's error shape, one sentence per problem); aiohttp
would bring its own parser and client stack that nothing else here uses.

Routes: POST /v1/chat/completions (JSON or server-sent events), GET /v1/models, GET /health,
GET /metrics (Prometheus text). With an API key, every route but /health wants
`Authorization: Bearer KEY`, compared in constant time. Bodies over `max_body` get 413 before
they are read whole; every error is OpenAI's error object, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from localctx.serve.metrics import render
from localctx.serve.protocol import (
    SESSION_HEADER,
    ApiError,
    ChatRequest,
    chunk,
    completion,
    completion_id,
    parse_chat_request,
    usage_chunk,
)
from localctx.serve.worker import Delta, Done, Event, Failed, Job, ModelWorker

log = logging.getLogger("localctx.serve")
CHAT = "/v1/chat/completions"
KEEPALIVE_SECONDS = 15.0  # an SSE comment while queued, so proxies and clients do not time out
CLIENT_GONE = 499  # nginx's code for "the client closed the connection", in /metrics


class ModelCard:
    """What /v1/models lists and which `model` values a request may name."""

    def __init__(self, model_id: str, model_path: Path, gguf_name: str) -> None:
        self.id = model_id
        self.path = model_path
        self.aliases = {model_id, model_path.name, model_path.stem, str(model_path), gguf_name}

    def listing(self) -> list[dict[str, Any]]:
        from localctx.models.catalogue import Catalogue

        created = int(self.path.stat().st_mtime) if self.path.exists() else 0
        rows = [_model_row(self.id, created, loaded=True)]
        for entry in Catalogue.load().entries.values():
            if entry.name != self.id and entry.installed:
                rows.append(_model_row(entry.name, int(entry.path.stat().st_mtime), loaded=False))
        return rows

    def check(self, requested: str | None) -> None:
        if requested is None or requested in self.aliases:
            return
        installed = {row["id"] for row in self.listing()}
        if requested in installed:
            raise ApiError(
                400,
                f"model '{requested}' is installed, but this server runs '{self.id}' "
                f"(start another: localctx serve --model {requested} --port …)",
                param="model",
                code="model_not_loaded",
            )
        raise ApiError(
            404,
            f"the model '{requested}' does not exist here; this server runs '{self.id}'",
            param="model",
            code="model_not_found",
        )


def _model_row(name: str, created: int, *, loaded: bool) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "localctx",
        "loaded": loaded,
    }


class JobStream(StreamingResponse):
    """A StreamingResponse that reports, deterministically, when it ends without finishing."""

    def __init__(self, body: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(
            body,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def make_app(
    worker: ModelWorker,
    card: ModelCard,
    *,
    api_key: str | None = None,
    max_body: int = 16 << 20,
) -> Starlette:
    metrics = worker.metrics
    key = api_key.encode() if api_key else None

    def authorize(request: Request) -> None:
        if key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not (scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key)):
            raise ApiError(
                401,
                "a valid API key is required (Authorization: Bearer KEY)",
                code="invalid_api_key",
            )

    async def chat(request: Request) -> Response:
        try:
            authorize(request)
            body = await _read_json(request, max_body)
            req = parse_chat_request(body, session_header=request.headers.get(SESSION_HEADER))
            card.check(req.model)
            loop = asyncio.get_running_loop()
            events: asyncio.Queue[Event] = asyncio.Queue()

            def sink(event: Event) -> None:
                if isinstance(event, Delta) and not req.stream:
                    return  # a whole answer is sent once; its pieces need not cross threads
                with contextlib.suppress(RuntimeError):  # the loop closed at shutdown
                    loop.call_soon_threadsafe(events.put_nowait, event)

            job = Job(req, sink)
            worker.submit(job)
        except ApiError as exc:
            metrics.request(CHAT, exc.status)
            return _error(exc)
        if req.stream:
            state = {"status": CLIENT_GONE}

            def closed() -> None:
                if state["status"] == CLIENT_GONE:
                    worker.abandon(job)
                metrics.request(CHAT, state["status"])

            return JobStream(_sse(req, card.id, events, state), closed)
        return await _whole(request, req, card.id, job, events, worker)

    async def models(request: Request) -> Response:
        try:
            authorize(request)
        except ApiError as exc:
            metrics.request("/v1/models", exc.status)
            return _error(exc)
        metrics.request("/v1/models", 200)
        return JSONResponse({"object": "list", "data": card.listing()})

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "model": card.id,
                "queue_depth": worker.queue.depth,
                "busy": worker.busy,
            }
        )

    async def prometheus(request: Request) -> Response:
        try:
            authorize(request)
        except ApiError as exc:
            metrics.request("/metrics", exc.status)
            return _error(exc)
        return PlainTextResponse(
            render(metrics.snapshot()), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {
            404: f"no such endpoint: {request.method} {request.url.path} "
            f"(this server speaks {CHAT}, /v1/models, /health, /metrics)",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(exc.status_code, str(exc.detail))
        metrics.request("other", exc.status_code)
        return _error(ApiError(exc.status_code, message, code=None))

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("internal error on %s: %s: %s", request.url.path, type(exc).__name__, exc)
        metrics.request(request.url.path, 500)
        return _error(ApiError(500, f"internal error: {type(exc).__name__}", kind="server_error"))

    return Starlette(
        routes=[
            Route(CHAT, chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )


async def _sse(
    req: ChatRequest, model: str, events: asyncio.Queue[Event], state: dict[str, int]
) -> AsyncIterator[str]:
    cid = completion_id()
    yield _data(chunk(cid, model, {"role": "assistant", "content": ""}))
    while True:
        try:
            event = await asyncio.wait_for(events.get(), KEEPALIVE_SECONDS)
        except TimeoutError:
            yield ": waiting for the model\n\n"
            continue
        if isinstance(event, Delta):
            yield _data(chunk(cid, model, {"content": event.text}))
        elif isinstance(event, Done):
            yield _data(chunk(cid, model, {}, event.finish_reason, extra=event.extra))
            if req.include_usage:
                yield _data(usage_chunk(cid, model, event.usage))
            state["status"] = 200
            yield "data: [DONE]\n\n"
            return
        else:
            state["status"] = event.error.status
            yield _data(event.error.body())
            yield "data: [DONE]\n\n"
            return


async def _whole(
    request: Request,
    req: ChatRequest,
    model: str,
    job: Job,
    events: asyncio.Queue[Event],
    worker: ModelWorker,
) -> Response:
    """A non-streamed answer; a client that disconnects while waiting abandons its job."""
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        while True:
            getter = asyncio.ensure_future(events.get())
            done, _ = await asyncio.wait({getter, gone}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                worker.abandon(job)
                worker.metrics.request(CHAT, CLIENT_GONE)
                return Response(status_code=CLIENT_GONE)
            event = getter.result()
            if isinstance(event, Done):
                worker.metrics.request(CHAT, 200)
                cid = completion_id()
                return JSONResponse(
                    completion(
                        cid, model, event.content, event.finish_reason, event.usage, event.extra
                    )
                )
            if isinstance(event, Failed):
                worker.metrics.request(CHAT, event.error.status)
                return _error(event.error)
    except asyncio.CancelledError:  # the server stopped waiting (shutdown): so does the model
        worker.abandon(job)
        raise
    finally:
        gone.cancel()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise _too_large(len(body), limit)
    if not body.strip():
        raise ApiError(400, "the request body is empty: send a JSON object")
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"the request body is not valid JSON: {exc.msg} (line {exc.lineno}, "
            f"column {exc.colno})",
        ) from None
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text") from None
    except RecursionError:
        raise ApiError(400, "the request body nests too deeply") from None


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body ({size:,} bytes or more) is over the limit of "
        f"{limit:,} bytes (localctx serve --max-body)",
        code="body_too_large",
    )


def _data(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _error(exc: ApiError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
