"""Run the server: check where it may listen, bind, serve with uvicorn, save sessions on exit.

Security by default: it listens on loopback; any other address is refused unless an API key
is set (then every route but /health checks `Authorization: Bearer`), because the sessions it
serves hold the user's conversations and code. The socket is bound here, before uvicorn
starts, so a port in use is one error line, and `--port 0` can report the port it got.

Stopping (Ctrl+C, SIGTERM): uvicorn drains the open requests (up to 10 s; a stream still
running then is cancelled and its turn rewound), then every session's KV snapshot is written,
so the next start resumes each without re-decoding it.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from localctx.engine.base import Engine
from localctx.errors import BadInput, Exit, LocalctxError
from localctx.serve.app import ModelCard, make_app
from localctx.serve.metrics import ServeMetrics
from localctx.serve.slots import SlotOptions
from localctx.serve.worker import ModelWorker, WorkerOptions

log = logging.getLogger("localctx.serve")
DRAIN_SECONDS = 10


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None
    max_queue: int = 32
    max_body: int = 16 << 20  # 16 MiB: a ~4M-character history resent whole
    window: int | None = None
    repo: Path | None = None
    evict: str = "window"  # the sink window's eviction policy (kv/scoring.py)
    recent: int | None = None


class ServerStopped(Exception):
    """Ctrl+C or SIGTERM, after uvicorn's graceful shutdown."""


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def check_bind(host: str, port: int, api_key: str | None) -> None:
    if not 0 <= port <= 65535:
        raise BadInput(f"--port must be 0-65535, got {port}")
    if not is_loopback(host) and not api_key:
        raise LocalctxError(
            f"refusing to listen on {host} without an API key: anyone who reaches it could "
            "read and write your sessions; pass --api-key KEY (or LOCALCTX_API_KEY)",
            Exit.USAGE,
        )


def listen(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BadInput(f"--host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def model_id(path: Path) -> str:
    """The catalogue name of the loaded file, else its file name without .gguf."""
    from localctx.models.catalogue import Catalogue

    for entry in Catalogue.load().entries.values():
        if entry.path.resolve() == path.resolve():
            return entry.name
    return path.stem


@dataclass
class Served:
    """What `build` assembles: the model thread, the ASGI app, and the repository it owns."""

    worker: ModelWorker
    app: Any
    repo: Any = None

    def close(self) -> None:
        self.worker.stop()
        if self.repo is not None:
            self.repo.store.close()


def build(engine: Engine, config: ServeConfig, *, model_path: Path) -> Served:
    """The worker (not started) and the Starlette app over it."""
    repo = None
    if config.repo is not None:
        from localctx.ingest import attach

        repo = attach(config.repo, token_counter=lambda text: len(engine.tokenize(text)))
    name = model_id(model_path)
    metrics = ServeMetrics(model=name, queue_limit=config.max_queue)
    worker = ModelWorker(
        engine,
        model_id=name,
        metrics=metrics,
        slots=SlotOptions(
            window=config.window, repo=repo, evict=config.evict, recent=config.recent
        ),
        options=WorkerOptions(max_queue=config.max_queue),
    )
    card = ModelCard(name, model_path, engine.model_name)
    app = make_app(worker, card, api_key=config.api_key, max_body=config.max_body)
    return Served(worker, app, repo)


def uvicorn_server(app: Any, max_queue: int) -> Any:
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            http="h11",
            ws="none",
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=DRAIN_SECONDS,
            limit_concurrency=max(64, 4 * max_queue),
        )
    )


def serve(
    engine: Engine,
    config: ServeConfig,
    *,
    model_path: Path,
    announce: Callable[[str], None],
) -> None:
    """Serve until stopped; the engine stays the caller's to close."""
    check_bind(config.host, config.port, config.api_key)
    served = build(engine, config, model_path=model_path)
    sock = listen(config.host, config.port)
    port = sock.getsockname()[1]
    server = uvicorn_server(served.app, config.max_queue)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:  # what uvicorn re-raises after its graceful shutdown lands here
        signal.signal(sig, _stopped)
    host = f"[{config.host}]" if ":" in config.host else config.host
    try:
        served.worker.start()
        announce(
            f"serving {served.worker.model_id} on http://{host}:{port}/v1 (ctx {engine.n_ctx}, "
            f"kv {engine.settings.type_k}, window {config.window or engine.n_ctx})"
        )
        server.run(sockets=[sock])
    except ServerStopped:
        pass
    finally:
        served.close()
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopped(sig: int, frame: FrameType | None) -> None:
    raise ServerStopped(signal.Signals(sig).name)
