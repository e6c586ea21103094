"""The pinned region (system prompt, core memory, repo digest, running summary) as tokens, and
the identity a KV snapshot of this context is keyed by.

The region is split where the running summary starts: the stable part can come from a prefix
snapshot (a summary update then re-decodes only the summary), the rest changes between turns.

Must not: decode (context.cache does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from localctx.context import layout
from localctx.engine.base import Engine
from localctx.memory import summarizer
from localctx.memory.snapshots import SnapshotIdentity, llama_cpp_version, model_sha256

SNAPSHOT_MIN_TOKENS = 256  # below this a prefill costs about as much as reading the file


@dataclass(frozen=True)
class PinnedParts:
    """The pinned region's tokens, split where the running summary starts: the stable part
    (system, core memory, repo digest) can come from a snapshot; the summary changes."""

    stable: list[int]
    rest: list[int]

    @property
    def tokens(self) -> list[int]:
        return self.stable + self.rest

    @property
    def stable_worth_saving(self) -> bool:
        return len(self.stable) >= SNAPSHOT_MIN_TOKENS

    @classmethod
    def build(
        cls,
        engine: Engine,
        system: str,
        core: list[str],
        summary: str,
        digest: str,
        *,
        max_tokens: int,
    ) -> PinnedParts:
        """Render and tokenize; over `max_tokens`, shorten the digest, then the summary."""

        def count(text: str) -> int:
            return len(engine.tokenize(text))

        for _ in range(8):
            parts = cls._render(engine, system, core, summary, digest)
            excess = len(parts.tokens) - max_tokens
            if excess <= 0:
                return parts
            if digest:
                digest = digest[: max(0, len(digest) - excess * 5)]  # ~4 chars per token
            elif summary:
                summary = summarizer.keep_newest(summary, max(0, count(summary) - excess), count)
            else:
                break
        return parts  # only the system prompt and core memory are left: keep them whole

    @classmethod
    def _render(
        cls, engine: Engine, system: str, core: list[str], summary: str, digest: str
    ) -> PinnedParts:
        full = layout.pinned_render(
            engine.format_chat, layout.pinned_text(system, core, summary, digest)
        )
        cut = full.find(layout.SUMMARY_HEADER) if summary.strip() else -1
        stable, rest = (full[:cut], full[cut:]) if cut >= 0 else (full, "")
        return cls(
            engine.tokenize(stable, add_special=True),
            engine.tokenize(rest) if rest else [],
        )


def identity_for(engine: Engine, window: int | None) -> SnapshotIdentity:
    settings = engine.settings
    path = Path(settings.model_path)
    sha = model_sha256(path) if path.is_file() else f"unhashed:{engine.model_name}"
    return SnapshotIdentity(
        model_sha256=sha,
        model_name=engine.model_name,
        llama_cpp=llama_cpp_version(),
        type_k=settings.type_k,
        type_v=settings.type_v,
        n_ctx=engine.n_ctx,
        swa_full=settings.swa_full,
        window=window,
    )
