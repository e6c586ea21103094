"""The memory tiers at work for a session: what is recalled before a question, where an
evicted segment goes the moment it leaves the window, and the summaries written between turns.

Before each answer the user's message is searched (BM25, and vectors over the repository) over
the recall store and the attached repo, and the best passages that fit a token budget are
decoded right before it (`_recall`); with `expand` the code search also searches the model's
guess at the answering code, written with the cache lent out (`_code_query`). Every segment
the window evicts goes to the recall store verbatim (`_store_segment`) and is summarized by
the same model *between* turns (`summarize_pending`), never while tokens stream.

Must not: render anything, or import llama_cpp / textual.
"""

from __future__ import annotations

from pathlib import Path

from localctx.errors import EngineFailed, StoreFull, StoreUnwritable
from localctx.kv.segment import EvictedSegment
from localctx.memory import retrieval, summarizer
from localctx.memory.expand import expand_query
from localctx.memory.retrieval import RecalledItem
from localctx.session_base import SessionBase
from localctx.turns import EvictionReport, SegmentEvicted, SummaryWritten


class MemoryTiers(SessionBase):
    # ------------------------------------------------------------------ memory between turns
    def summarize_pending(self, max_segments: int | None = None) -> int:
        """Summarize evicted segments still pending (this run's or a crashed run's) with the
        loaded model, updating running summaries. Call between turns; returns how many."""
        if self.store is None or self.ephemeral:  # an ephemeral session's die with it
            return 0
        pending = self.store.pending_segments(max_segments, session_id=self._sid)
        if not pending:
            return 0
        try:
            saved = self.context.lend()
        except EngineFailed as exc:  # an engine that cannot save its state (a remote server)
            self.notices.append(f"summaries wait for a local model: {exc}")
            return 0
        written = 0
        try:  # a cancel stops it between segments, or inside one (that one stays pending)
            with self.context.stage("summarizing", len(pending), unit="segments") as stage:
                for seg, summary, running in summarizer.summarize_all(
                    self.engine, self.store, pending, self.summary_budget, self.context.count
                ):
                    if seg.session_id == self._sid:
                        self.running_summary = running
                        self.context.pinned_dirty = True
                        self._events.append(SummaryWritten(seg.id, summary, running))
                    if self.last_eviction and self.last_eviction.segment_id == seg.id:
                        self.last_eviction.summary = summary
                    written += 1
                    stage.advance(1)
        except (StoreFull, StoreUnwritable) as exc:  # the segments stay pending, verbatim
            self.notices.append(f"summaries wait for a writable store: {exc}")
        finally:
            self.context.give_back(saved)
        return written

    # ------------------------------------------------------------------ recall
    def _recall(self, query: str) -> list[RecalledItem]:
        if self.store is None or not self.recall:
            return []
        held = self.context.owners_in_cache()
        exclude = {f"m{m}" for m in held if m > 0 and m not in self._evicted_message_ids}
        exclude |= {f"m{m}" for m in self.store.covered_message_ids(self._sid)}
        candidates = retrieval.gather(
            query,
            self.store,
            exclude=exclude,
            archival=self.repo,
            code_query=self._code_query(query),
            session_id=None if self.recall_all else self._sid,
            max_chars=max(160, min(600, self.recall_budget * 2)),  # ~3-4 chars per token
        )
        return retrieval.select_within_budget(candidates, self.recall_budget, self.context.count)

    def _code_query(self, query: str) -> str:
        """The question, and with `expand` the model's guess at the code that answers it."""
        self.last_expansion = ""
        if not self.expand or self.repo is None:
            return query
        try:
            saved = self.context.lend()
        except EngineFailed:  # a remote server: no state to lend
            return query
        try:
            self.last_expansion = expand_query(self.engine, query, Path(self.repo.repo).name)
        finally:
            self.context.give_back(saved)
        return f"{query}\n{self.last_expansion}" if self.last_expansion else query

    # ------------------------------------------------------------------ evicted segments
    def _store_segment(self, seg: EvictedSegment, text: str, real: list[int]) -> None:
        """An evicted segment, the moment it is evicted: to the store (or kept here)."""
        self._evicted_message_ids.update(real)
        seg_id = None
        if self.store is not None:
            seg_id = self.store.add_segment(
                self._sid,
                seq=seg.seq,
                text=text,
                n_tokens=seg.n_tokens,
                message_ids=real,
                stream=(seg.stream_start, seg.stream_end),
            )
        else:
            self.evictions.append(seg)
        self.last_eviction = EvictionReport(seg_id, seg.n_tokens, text, runs=max(1, len(seg.runs)))
        self._events.append(SegmentEvicted(self.last_eviction))
