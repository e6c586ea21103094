"""Needle in a long conversation: are facts pushed out of the KV window still answerable?

A conversation is built from public-domain prose (user messages of ~200 tokens) with N facts
("The access code for the blue depot is 4471.") planted at random depths, decoded through the
real session and sink window — so every fact leaves the cache as an EvictedSegment and lands in
the recall store exactly as in a chat — then one question per fact is asked.

Reported per run: recall hit rate (the fact's value is in the recalled region of that turn),
answer accuracy (the value appears in the model's answer), seconds per question turn, the
first-token time of each question (from the user's message, through recall and prefill, to
the first answer text: it must not grow with the history behind it), bytes on disk of the
stores. Retrieval runs on the verbatim recall store; summarizing every segment with
the model would cost seconds each on a CPU (a 4K history evicts ~30 segments), so the run
summarizes at most `summaries` segments and reports their cost separately.

Must not: write to the user's stores (everything lives in a temporary directory).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from localctx.bench.settings import bench_settings
from localctx.engine import Sampling, load_engine
from localctx.errors import BadInput
from localctx.kv.scoring import needs_queries
from localctx.memory.recall import RecallStore
from localctx.memory.snapshots import SnapshotStore
from localctx.session import Session

HISTORIES = (8192, 32768, 131072)
WINDOWS = (1024, 2048)
MESSAGE_TOKENS = 200  # filler per user message
CHARS_PER_TOKEN = 4.2  # English prose with SmolLM2's tokenizer (measured on the filler, ±10%)
COLORS = (
    "blue",
    "red",
    "green",
    "amber",
    "violet",
    "silver",
    "golden",
    "black",
    "white",
    "orange",
    "crimson",
    "teal",
)
PLACES = (
    "depot",
    "harbor",
    "archive",
    "tower",
    "bunker",
    "station",
    "vault",
    "warehouse",
    "lab",
    "garage",
)
ANSWER = Sampling(max_tokens=24, temperature=0.0)


@dataclass(frozen=True)
class Fact:
    subject: str  # "blue depot"
    value: str  # "4471"
    depth: int  # tokens of history before it

    @property
    def statement(self) -> str:
        return f"Remember this: the access code for the {self.subject} is {self.value}."

    @property
    def question(self) -> str:
        return f"What is the access code for the {self.subject}? Answer with the number."

    @property
    def paraphrase(self) -> str:
        """The same question without the fact's template words ("access code")."""
        return f"Which number opens the {self.subject}? Reply with digits only."


@dataclass
class NeedleRun:
    model: str
    history_tokens: int  # tokens actually fed (the requested size is `requested_history`)
    requested_history: int
    window: int
    facts: int
    recall_hit_rate: float
    answer_accuracy: float
    seconds_per_turn: float
    first_token_p50: float | None  # the user's message to the first answer text, median
    store_bytes: int
    min_windows_out: float  # the shallowest fact's distance from the question, in windows
    evictions: int
    summaries: int
    seconds_per_summary: float
    summary_facts: float  # share of planted facts whose value is in the running summary
    paraphrase: bool
    history_seconds: float
    answers: list[dict[str, Any]]
    evict: str = "window"  # the sink window's eviction policy
    recall: bool = True
    retained: float = 0.0  # share of facts whose value the cache still held after the history
    gaps: int = 0  # scattered runs in the cache after the history


def plant_facts(n: int, history: int, window: int, rng: random.Random) -> list[Fact]:
    """Distinct subjects and values at random depths, as far out as the history allows: at
    least 10 windows before the questions when history > 10 windows, else in its first half."""
    if n > len(COLORS) * len(PLACES):
        raise BadInput(f"at most {len(COLORS) * len(PLACES)} facts, got {n}")
    latest = history - 10 * window if history > 10 * window else history // 2
    subjects = rng.sample([f"{c} {p}" for c in COLORS for p in PLACES], n)
    values = rng.sample(range(1000, 10000), n)
    depths = sorted(rng.randrange(0, max(1, latest)) for _ in range(n))
    return [Fact(s, str(v), d) for s, v, d in zip(subjects, values, depths, strict=True)]


def conversation(text: str, history: int, facts: list[Fact]) -> list[str]:
    """User messages: filler chunks with each fact inserted at its depth (pure)."""
    size = int(MESSAGE_TOKENS * CHARS_PER_TOKEN)
    need = int(history * CHARS_PER_TOKEN)
    body = (text * (need // max(1, len(text)) + 1))[:need]
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    pending = list(facts)
    out: list[str] = []
    for i, chunk in enumerate(chunks):
        while pending and pending[0].depth <= i * MESSAGE_TOKENS:
            out.append(pending.pop(0).statement)
        out.append(chunk)
    out.extend(f.statement for f in pending)
    return out


def run_needle(
    model_path: Path,
    *,
    history: int,
    window: int,
    n_facts: int,
    text: str,
    seed: int = 0,
    summaries: int = 2,
    threads: int | None = None,
    paraphrase: bool = False,
    evict: str = "window",
    recent: int | None = None,
    recall: bool = True,
) -> NeedleRun:
    if history < 2 * window:
        raise BadInput(f"history {history} must be at least twice the window {window}")
    rng = random.Random(seed)
    facts = plant_facts(n_facts, history, window, rng)
    messages = conversation(text, history, facts)
    settings = bench_settings(
        model_path=model_path,
        n_ctx=window,
        n_threads=threads,
        capture_queries=needs_queries(evict),
    )
    with (
        tempfile.TemporaryDirectory(prefix="localctx-needle-") as tmp,
        load_engine(settings) as engine,
    ):
        store = RecallStore(Path(tmp) / "recall.sqlite3")
        snapshots = SnapshotStore(Path(tmp) / "snapshots")
        session = Session(
            engine,
            store=store,
            snapshots=snapshots,
            name="needle",
            window=window,
            summarize_per_turn=0,
            evict=evict,
            recent=recent,
            recall=recall,
        )
        start = time.perf_counter()
        fed = 0
        for message in messages:  # counted as decoded (template and all), not as requested
            before = _seen(session)
            session.feed("user", message)
            fed += max(0, _seen(session) - before)
        history_seconds = time.perf_counter() - start
        cached = engine.detokenize(engine.tokens)
        retained = sum(f.value in cached for f in facts)
        gaps = session.policy.stats().gaps if session.policy is not None else 0
        start = time.perf_counter()
        summarized = session.summarize_pending(summaries) if summaries else 0
        per_summary = (time.perf_counter() - start) / summarized if summarized else 0.0
        answers: list[dict[str, Any]] = []
        turn_seconds = []
        first_token: list[float] = []
        for fact in facts:
            start = time.perf_counter()
            seen: list[float] = []

            def mark(_text: str, seen: list[float] = seen) -> None:
                if not seen:
                    seen.append(time.perf_counter())

            question = fact.paraphrase if paraphrase else fact.question
            result = session.ask(question, ANSWER, on_text=mark)
            turn_seconds.append(time.perf_counter() - start)
            if seen:
                first_token.append(seen[0] - start)
            recalled = " ".join(item.text for item in result.recalled)
            answers.append(
                {
                    "subject": fact.subject,
                    "value": fact.value,
                    "depth": fact.depth,
                    "recalled": fact.value in recalled,
                    "correct": fact.value in result.answer,
                    "question": question,
                    "answer": result.answer[:120],
                    "first_token_seconds": round(seen[0] - start, 3) if seen else None,
                }
            )
        evictions = session.eviction_count
        running = session.running_summary
        for answer in answers:
            answer["in_summary"] = answer["value"] in running
        store_bytes = store.file_bytes() + snapshots.stats()["snapshot_bytes"]
        store.close()
    n = max(1, len(facts))
    return NeedleRun(
        model=engine.model_name,
        history_tokens=fed,
        requested_history=history,
        window=window,
        facts=len(facts),
        recall_hit_rate=round(sum(a["recalled"] for a in answers) / n, 3),
        answer_accuracy=round(sum(a["correct"] for a in answers) / n, 3),
        seconds_per_turn=round(sum(turn_seconds) / n, 3),
        first_token_p50=round(statistics.median(first_token), 3) if first_token else None,
        store_bytes=store_bytes,
        min_windows_out=round((history - max(f.depth for f in facts)) / window, 2),
        evictions=evictions,
        summaries=summarized,
        seconds_per_summary=round(per_summary, 3),
        summary_facts=round(sum(a["in_summary"] for a in answers) / n, 3),
        paraphrase=paraphrase,
        history_seconds=round(history_seconds, 2),
        answers=answers,
        evict=evict,
        recall=recall,
        retained=round(retained / n, 3),
        gaps=gaps,
    )


def _seen(session: Session) -> int:
    policy = session.policy
    return int(policy.stats().tokens_seen) if policy is not None else session.engine.n_past


def grid(history: int | None, window: int | None) -> list[tuple[int, int]]:
    """The runs to do: a flag pins its axis, a missing one takes the whole grid."""
    histories = (history,) if history else HISTORIES
    windows = (window,) if window else WINDOWS
    return [(h, w) for h in histories for w in windows]


def to_json(run: NeedleRun) -> dict[str, Any]:
    return asdict(run)
