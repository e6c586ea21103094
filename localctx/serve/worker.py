"""ModelWorker: the one thread that owns the engine and serves queued requests in turn.

llama.cpp contexts are not thread-safe and there is one KV cache, so every engine call happens
here, one request at a time, taken from the FairQueue. A request's turn: load its session
(SessionSlots), match the resent history against the stored one and rewind where they part
(localctx.serve.history), decode the new messages, stream the reply through the TextGate, and
report each piece back to the HTTP side through the job's `sink` (thread-safe, never blocks).

All-or-nothing turns: the journal records the turn before it starts; a client that goes away
sets the job's cancel event, which `Session.stream` checks before every token (so generation
stops within one token) and the worker checks between the messages it decodes; the session is
then rewound to where the turn began, so nothing half-written stays — in the store, the
index, or the cache. Prefill cancellation hook: the same event is what `Session.stream`
receives as `cancel=`, so once the session stops a prefill on it (within one ubatch) a
disconnect mid-prefill needs no change here; whatever the session raises for a cancelled
prefill is handled like a cancelled generation.

Summaries of evicted segments are written while the queue is idle (one segment at a time,
~1-3 s each with SmolLM2-135M on 2 cores, so a new request waits for at most one), and before a
turn only when a session's backlog passes `summary_backlog` (32).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from localctx.engine.base import Engine, Sampling
from localctx.errors import LocalctxError
from localctx.gauge import GaugeSampler
from localctx.memory.retrieval import RecalledItem
from localctx.serve.gate import TextGate
from localctx.serve.history import HistoryPlan, plan_history
from localctx.serve.journal import ServeJournal
from localctx.serve.metrics import ServeMetrics
from localctx.serve.protocol import ApiError, ChatRequest, Message, Usage
from localctx.serve.queue import FairQueue, QueueClosed, QueueFull
from localctx.serve.slots import SessionSlot, SessionSlots, SlotOptions
from localctx.session import DEFAULT_SYSTEM, PLAIN_STOPS, Session
from localctx.turns import Recalled, TokensGenerated

log = logging.getLogger("localctx.serve")
IDLE_TICK = 0.25  # seconds between idle checks of the queue
SAMPLE_EVERY = 0.25  # seconds between gauge readings while generating (0.46 ms each)


# ---------------------------------------------------------------------- what the HTTP side gets
@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Done:
    content: str
    finish_reason: str  # "stop" | "length"
    usage: Usage
    extra: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    error: ApiError


Event = Delta | Done | Failed


@dataclass(eq=False)
class Job:
    request: ChatRequest
    sink: Callable[[Event], None]
    cancel: threading.Event = field(default_factory=threading.Event)
    arrived: float = field(default_factory=time.perf_counter)
    started: float | None = None  # when the model thread took it

    @property
    def lane(self) -> Hashable:
        return self.request.session if self.request.session is not None else self


class Cancelled(Exception):
    """The client went away: the turn is rewound."""


class MeteredEngine:
    """The engine, counting the tokens decoded as prompt (every `decode` call: new messages,
    recalled snippets, rebuilds, summaries). Generated tokens go through `generate`.

    Why a wrapper: the session and its sink window call `decode` from several places, and the
    engine's own stats keep only the last call; counting here gives the exact "decoded only the
    new tokens" figure usage and /metrics report."""

    def __init__(self, engine: Engine) -> None:
        self.inner = engine
        self.decoded = 0

    def decode(self, tokens: Sequence[int], *, make_room: Any = None) -> None:
        self.decoded += len(tokens)
        self.inner.decode(tokens, make_room=make_room)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass(frozen=True)
class WorkerOptions:
    max_queue: int = 32
    idle_summary_after: float = 1.0  # seconds without a request before summaries run
    # Pending segments above which a turn summarizes one first. High on purpose: under a
    # steady load a summary (~1-3 s) before every turn would halve throughput, and pending
    # segments are recalled verbatim meanwhile; idle time catches up.
    summary_backlog: int = 32


class ModelWorker:
    def __init__(
        self,
        engine: Engine,
        *,
        model_id: str,
        metrics: ServeMetrics,
        slots: SlotOptions | None = None,
        options: WorkerOptions | None = None,
        journal: ServeJournal | None = None,
    ) -> None:
        self.model_id = model_id
        self.options = options or WorkerOptions()
        self.metrics = metrics
        self.engine = MeteredEngine(engine)
        self.sampler = GaugeSampler(self.engine)
        self.journal = journal or ServeJournal()
        self.slots = SessionSlots(self.engine, slots or SlotOptions(), self.journal, metrics)
        self.queue: FairQueue[Job] = FairQueue(self.options.max_queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="localctx-model", daemon=True)
        self._last_done = time.monotonic()
        self._service = 1.0  # seconds a request takes, smoothed (for Retry-After)
        self._plain = engine.chat_template_source.startswith("none")

    # ------------------------------------------------------------------ HTTP side
    def start(self) -> None:
        self.slots.recover()
        self._publish(None)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue a request; raise ApiError(503) when the queue is full or closing."""
        try:
            depth = self.queue.put(job.lane, job)
        except QueueFull as full:
            raise ApiError(
                503,
                f"the server is busy ({full.depth} requests waiting); retry later",
                kind="server_error",
                code="queue_full",
                headers={"Retry-After": str(self.retry_after())},
            ) from None
        except QueueClosed:
            raise ApiError(503, "the server is shutting down", kind="server_error") from None
        self.metrics.set(queue_depth=depth)

    def abandon(self, job: Job) -> None:
        """The client went away: drop the job if it waits, stop it if it runs."""
        job.cancel.set()
        if self.queue.discard(job.lane, job):
            self.metrics.set(queue_depth=self.queue.depth)

    def retry_after(self) -> int:
        return max(1, min(120, math.ceil((self.queue.depth + 1) * self._service)))

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new requests, finish the running one, save every session, stop the thread."""
        for job in self.queue.close():
            job.sink(Failed(ApiError(503, "the server is shutting down", kind="server_error")))
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self._shutdown()

    @property
    def busy(self) -> bool:
        return self.metrics.in_progress > 0

    # ------------------------------------------------------------------ the model thread
    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                job = self.queue.take(timeout=IDLE_TICK)
                self.metrics.set(queue_depth=self.queue.depth)
                if job is None:
                    try:
                        self._idle()
                    except Exception:  # idle work must never take the model thread down
                        log.exception("idle work failed")
                elif not job.cancel.is_set():
                    self._serve(job)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        try:
            self.slots.close_all()
        finally:
            self.journal.close()

    def _serve(self, job: Job) -> None:
        started = job.started = time.perf_counter()
        self.metrics.set(in_progress=1)
        try:
            job.sink(self._turn(job))
        except (Cancelled, KeyboardInterrupt):  # the engine aborts a prefill with the latter
            log.info("request cancelled; its turn was rewound")
            # Heard only if the client is still there (a cancel that did not come from it).
            job.sink(
                Failed(
                    ApiError(
                        503,
                        "the request was cancelled before it finished; retry",
                        kind="server_error",
                        code="cancelled",
                    )
                )
            )
        except ApiError as exc:
            job.sink(Failed(exc))
        except LocalctxError as exc:
            log.warning("request failed: %s", exc)
            job.sink(Failed(ApiError(500, str(exc), kind="server_error")))
        except Exception as exc:
            log.exception("request failed with an internal error")
            job.sink(
                Failed(
                    ApiError(
                        500, f"internal error: {type(exc).__name__}: {exc}", kind="server_error"
                    )
                )
            )
        finally:
            self.metrics.set(in_progress=0)
            self._service = 0.7 * self._service + 0.3 * (time.perf_counter() - started)
            self._last_done = time.monotonic()

    def _turn(self, job: Job) -> Done:
        req = job.request
        system = req.system if req.system is not None else DEFAULT_SYSTEM
        slot = self.slots.acquire(req.session, system)
        try:
            return self._run(job, slot, system)
        finally:
            self._publish(slot.session)
            self.slots.release(slot)

    def _run(self, job: Job, slot: SessionSlot, system: str) -> Done:
        req, session, meter = job.request, slot.session, self.engine
        name = slot.name or "(stateless)"
        decoded_at_start = meter.decoded
        if session.set_system_prompt(system):
            log.info("session %s: a new system prompt; the context was re-decoded", name)
        session.prepare_turn(summarize=False)
        slot.started = True
        summary_tokens = self._catch_up_summaries(slot)
        stored = [Message(m["role"], m["content"]) for m in session.messages]
        plan = plan_history(stored, req.history)
        keep = plan.keep
        evictions_before = session.eviction_count
        if slot.name is not None:
            self.journal.begin(slot.name, keep)  # before the rewind: a kill mid-way finishes it
        rewound = ""
        try:
            if plan.rewinds:
                rewound = self._rewind(session, name, plan, len(req.history))
            context_tokens = meter.decoded - decoded_at_start - summary_tokens
            done = self._reply(job, session, plan.new, decoded_at_start + summary_tokens)
        except BaseException:
            self._undo(slot, keep)
            raise
        finally:
            self.metrics.count("evictions", session.eviction_count - evictions_before)
        if slot.name is not None:
            self.journal.end(slot.name)  # committed: only now is the client told it is done
        slot.may_have_pending = True
        self.metrics.add(context=context_tokens)
        done.extra["session"] = slot.name
        done.extra["history"] = {
            "stored": plan.stored,
            "received": len(req.history),
            "kept": plan.keep,
            "rewound": rewound or None,
        }
        return done

    def _rewind(self, session: Session, name: str, plan: HistoryPlan, received: int) -> str:
        how = session.rewind(plan.keep)
        log.info(
            "session %s: the history differs from the stored one at message %d (stored %d, "
            "received %d); %s back to message %d",
            name,
            plan.diverged_at,
            plan.stored,
            received,
            how,
            plan.keep,
        )
        self.metrics.count("rewinds")
        if how == "rebuilt":
            self.metrics.count("rebuilds")
        return how

    def _reply(self, job: Job, session: Session, new: Sequence[Message], decoded_from: int) -> Done:
        sampling: Sampling = job.request.sampling
        for message in new[:-1]:
            if job.cancel.is_set():
                raise Cancelled
            session.feed(message.role, message.content)
        if job.cancel.is_set():
            raise Cancelled
        gate = TextGate(sampling.stop + (PLAIN_STOPS if self._plain else ()))
        prompt_tokens: int | None = None
        decoded = 0
        generated = 0
        sampled_at = time.perf_counter()
        recalled: tuple[RecalledItem, ...] = ()
        events = session.turn(new[-1].content, sampling, cancel=job.cancel)
        try:
            for event in events:
                if isinstance(event, Recalled):
                    recalled = event.items
                if not isinstance(event, TokensGenerated):
                    continue
                if prompt_tokens is None:  # the prompt is decoded; this token is not yet
                    prompt_tokens = self.engine.cells_used
                    decoded = self.engine.decoded - decoded_from
                    self.metrics.first_token(time.perf_counter() - job.arrived)
                generated += 1
                delta = gate.push(event.text)
                if delta:
                    job.sink(Delta(delta))
                if time.perf_counter() - sampled_at >= SAMPLE_EVERY:
                    self._publish(session)
                    sampled_at = time.perf_counter()
        finally:
            events.close()  # the session stores the reply (or its part) in its finally
        stats = self.engine.stats
        if job.cancel.is_set() and stats.stop_reason == "cancelled":
            raise Cancelled
        if prompt_tokens is None:  # no token before the end (an immediate end of turn)
            prompt_tokens = self.engine.cells_used
            decoded = self.engine.decoded - decoded_from
        content = session.messages[-1]["content"]
        rest = gate.finish(content)
        if rest:
            job.sink(Delta(rest))
        length = stats.stop_reason == "length" and generated >= sampling.max_tokens
        usage = Usage(prompt_tokens, generated, max(0, prompt_tokens - decoded))
        self.metrics.add(
            prompt_decoded=decoded, prompt_cached=usage.cached_tokens, completion=generated
        )
        self.metrics.set(last_prefill_tps=stats.prefill_tps, last_decode_tps=stats.decode_tps)
        reading = self.sampler.sample()
        extra: dict[str, Any] = {
            "decoded_prompt_tokens": decoded,
            "prefill_tps": round(stats.prefill_tps, 2),
            "decode_tps": round(stats.decode_tps, 2),
            "queued_seconds": round((job.started or job.arrived) - job.arrived, 3),
            "recalled": [item.to_json() for item in recalled],
            "kv": {
                "cells_used": reading.kv.cells_used,
                "window": reading.kv.window,
                "regions": reading.kv.regions,
                "evictions": session.eviction_count,
                "tokens_seen": reading.kv.tokens_seen,
            },
        }
        return Done(content, "length" if length else "stop", usage, extra)

    def _undo(self, slot: SessionSlot, keep: int) -> None:
        """Take the abandoned or failed turn back out of the session."""
        if slot.ephemeral:
            return  # deleted with its request anyway
        try:
            slot.session.rewind(keep)
            self.metrics.count("rewinds")
        except Exception as exc:
            self.slots.discard(slot, f"rewinding an abandoned turn failed ({exc})")
            return  # the journal still holds `pending`: the reopen rewinds the store
        if slot.name is not None:
            self.journal.end(slot.name)

    def _catch_up_summaries(self, slot: SessionSlot) -> int:
        """Before a turn: one summary when the backlog is long (bounded wait)."""
        session = slot.session
        if slot.ephemeral or session.store is None:
            return 0
        pending = session.store.pending_segments(
            self.options.summary_backlog + 1, session_id=session.session_id
        )
        if len(pending) <= self.options.summary_backlog:
            return 0
        return self._summarize(session)

    def _idle(self) -> None:
        if time.monotonic() - self._last_done < self.options.idle_summary_after:
            return
        slot = self.slots.loaded
        if slot is None or slot.ephemeral or not slot.started or not slot.may_have_pending:
            return
        if self._summarize(slot.session):
            self._publish(slot.session)
        else:
            slot.may_have_pending = False  # until its next turn evicts something

    def _summarize(self, session: Session) -> int:
        before = self.engine.decoded
        try:
            written = session.summarize_pending(1)
        except LocalctxError as exc:
            log.warning("session %s: summary failed: %s", session.name, exc)
            return 0
        if not written:
            return 0
        self.metrics.count("summaries", written)
        tokens = self.engine.decoded - before
        self.metrics.add(summary=tokens)
        return tokens

    def _publish(self, session: Session | None) -> None:
        """A gauge reading for /metrics, taken here where reading the window is safe."""
        self.sampler.policy = session.policy if session is not None else None
        try:
            self.metrics.set(reading=self.sampler.sample())
        except LocalctxError as exc:  # a window that lost track: the last reading stays
            log.warning("gauge reading failed: %s", exc)
