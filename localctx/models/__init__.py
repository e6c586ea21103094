"""The model catalogue (models.toml), GGUF metadata without loading weights, and pulls.

Knows nothing of llama.cpp: metadata comes from the `gguf` package, so `models info` and the
planner work before (and without) a llama-cpp-python build.
"""

from localctx.models.catalogue import Catalogue, ModelEntry, resolve_model

__all__ = ["Catalogue", "ModelEntry", "resolve_model"]
