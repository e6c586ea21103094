"""The engine: the only package that imports llama_cpp.

`base` holds the Engine protocol and its plain data types (no native import, so the rest of the
product and the fake engine load without llama.cpp); `llama` implements it on llama-cpp-python's
low-level API; `fake` is a deterministic stand-in for UI and unit tests. `cachetypes` (K/V cache
types and llama.cpp's rules for them) and `allocation` (bytes per token from llama.cpp's own
allocation report) are what a context is created with and reports: they live here so that the
engine, the floor every other package stands on, imports nothing above it (kv/ included).
"""

from localctx.engine.base import (
    ChatMessage,
    Engine,
    EngineSettings,
    GenerationStats,
    Sampling,
    TokenEvent,
)

__all__ = [
    "ChatMessage",
    "Engine",
    "EngineSettings",
    "GenerationStats",
    "Sampling",
    "TokenEvent",
    "load_engine",
]


def load_engine(settings: EngineSettings) -> Engine:
    """Load the real llama.cpp engine (imports llama_cpp on first use)."""
    from localctx.engine.llama import LlamaEngine

    return LlamaEngine(settings)
