"""`localctx serve`: an OpenAI-compatible HTTP endpoint over localctx's sessions.

Any OpenAI client (Continue, Aider, Open WebUI, the `openai` package) gets what plain
llama.cpp servers lack: a sink-window KV cache at constant memory, a session per conversation
that decodes only what is new in the history it resends, the memory tiers behind it, and live
KV figures on /metrics.

    protocol  the wire format: requests checked, responses built (pure)
    history   resent history vs stored messages: what to keep, what to decode (pure)
    gate      what of a reply may be streamed yet, given stops and stripping (pure)
    queue     FIFO per session, round-robin across sessions, bounded (503 beyond)
    journal   what a killed server left unfinished
    slots     which session's KV state is in the engine; parking the others
    worker    the one model thread: a request's turn, all or nothing
    metrics   counters and the Prometheus text
    app       Starlette routes (the only HTTP code)
    server    bind checks, uvicorn, shutdown

The HTTP stack (Starlette, uvicorn) is imported only here: the headless core never sees it
(an import-linter contract).
"""

from localctx.serve.server import ServeConfig, serve

__all__ = ["ServeConfig", "serve"]
