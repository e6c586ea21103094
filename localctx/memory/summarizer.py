"""Summaries written by the loaded model: one per evicted segment, and the running summary.

The prompts ask for facts, names, numbers and decisions because those are what a later turn
asks about and what a 135M model drops first. The running summary is bounded: new segment
summaries are appended, and when the total passes the budget the model condenses it
(recursively: a summary of summaries), and if the model's condensation is still too long the
oldest lines are dropped — the bound holds whatever the model writes.

Must not: run while tokens are streaming, or own the KV cache. The functions here clobber the
engine's cache; the session saves the conversation state around them (state_get/state_set,
~2 ms per 1,000 tokens) and calls them only between turns. A stopped summary raises Cancelled
and commits nothing: its segment stays pending.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from localctx.engine.base import ChatMessage, Engine, Sampling
from localctx.errors import Cancelled
from localctx.memory.recall import PendingSegment, RecallStore

SEGMENT_PROMPT = (
    "Summarize this excerpt of a conversation in at most three sentences. Keep every fact, "
    "name, number, code and decision exactly as written; leave out everything else.\n\n"
    "Excerpt:\n{text}"
)
CONDENSE_PROMPT = (
    "Condense these notes into at most {words} words. Keep every fact, name, number, code "
    "and decision exactly as written.\n\nNotes:\n{text}"
)
SYSTEM = "You write short, factual summaries."
SUMMARY_SAMPLING = Sampling(max_tokens=64, temperature=0.0, repeat_penalty=1.3)

CountTokens = Callable[[str], int]


def segment_messages(text: str) -> list[ChatMessage]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": SEGMENT_PROMPT.format(text=text.strip())},
    ]


def condense_messages(text: str, budget_tokens: int) -> list[ChatMessage]:
    words = max(20, budget_tokens * 2 // 3)  # ~1.3 tokens per English word
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": CONDENSE_PROMPT.format(words=words, text=text.strip())},
    ]


def append_summary(running: str, new: str) -> str:
    """The running summary with one more segment summary (pure)."""
    new = " ".join(new.split())
    if not new:
        return running
    return f"{running}\n{new}".strip() if running else new


def keep_newest(text: str, budget_tokens: int, count: CountTokens) -> str:
    """Drop the oldest lines (then words) until `text` fits the budget (pure given `count`)."""
    lines = [line for line in text.splitlines() if line.strip()]
    while lines and count("\n".join(lines)) > budget_tokens:
        if len(lines) == 1:
            words = lines[0].split()
            lines[0] = " ".join(words[len(words) // 4 + 1 :])
            if not lines[0]:
                lines = []
        else:
            lines.pop(0)
    return "\n".join(lines)


def run_prompt(engine: Engine, messages: list[ChatMessage], sampling: Sampling) -> str:
    """Prefill `messages` into an empty cache and return the greedy completion (clobbers KV)."""
    engine.kv_clear()
    tokens = engine.tokenize(engine.format_chat(messages), add_special=True)
    room = engine.n_ctx - sampling.max_tokens - 1
    if len(tokens) > room:  # keep the instruction (head) and the newest text (tail)
        tokens = tokens[:64] + tokens[len(tokens) - (room - 64) :]
    engine.decode(tokens)
    text = "".join(event.text for event in engine.generate(sampling))
    engine.kv_clear()
    if engine.stats.stop_reason == "cancelled":  # half a summary must not be committed
        raise Cancelled("summary stopped")
    return " ".join(text.split())


def pieces(text: str, room_tokens: int, count: CountTokens) -> list[str]:
    """`text` cut into consecutive pieces of at most `room_tokens` (by `count`), at line or
    word boundaries where it can (pure given `count`)."""
    if count(text) <= room_tokens:
        return [text]
    out: list[str] = []
    rest = text
    while rest:
        n = count(rest)
        if n <= room_tokens:
            out.append(rest)
            break
        cut = max(1, len(rest) * room_tokens // n)
        while cut > 1 and count(rest[:cut]) > room_tokens:
            cut = cut * 9 // 10
        for sep in ("\n", " "):  # a whole line or word, if one ends in the back half
            at = rest.rfind(sep, cut // 2, cut)
            if at > 0:
                cut = at + 1
                break
        out.append(rest[:cut])
        rest = rest[cut:]
    return out


def summarize_segment(engine: Engine, text: str) -> str:
    """One segment's summary; a segment too long for one prompt is summarized in pieces,
    never cut in the middle (run_prompt keeps only the head and tail of what overflows)."""
    overhead = len(engine.tokenize(engine.format_chat(segment_messages(""))))
    room = engine.n_ctx - SUMMARY_SAMPLING.max_tokens - overhead - 8
    parts = pieces(text, max(64, room), lambda t: len(engine.tokenize(t)))
    summaries = [run_prompt(engine, segment_messages(part), SUMMARY_SAMPLING) for part in parts]
    summary = " ".join(s for s in summaries if s)
    # A model that answers with nothing must not lose the segment from the running summary:
    # fall back to its first sentence, verbatim.
    return summary or text.strip().split("\n")[0][:300]


def update_running(
    engine: Engine, running: str, new_summary: str, budget_tokens: int, count: CountTokens
) -> str:
    """Append, condense with the model when over budget, then enforce the bound."""
    merged = append_summary(running, new_summary)
    if count(merged) <= budget_tokens:
        return merged
    # Condense to half the budget, so the next few segment summaries append without another
    # model call (each call is a prefill + up to `budget` decoded tokens, seconds on a CPU).
    condensed = run_prompt(
        engine,
        condense_messages(merged, budget_tokens // 2),
        Sampling(max_tokens=budget_tokens // 2, temperature=0.0, repeat_penalty=1.3),
    )
    # Keep the newest segment's summary verbatim after the condensed past: the latest facts
    # are the ones the next turns most often ask about.
    candidate = append_summary(condensed, new_summary) if condensed else merged
    return keep_newest(candidate, budget_tokens, count)


def summarize_all(
    engine: Engine,
    store: RecallStore,
    pending: Sequence[PendingSegment],
    budget_tokens: int,
    count: CountTokens,
) -> Iterator[tuple[PendingSegment, str, str]]:
    """Summarize each segment and update its session's running summary, committing both in
    one transaction per segment (a kill mid-way leaves the rest pending, verbatim)."""
    for seg in pending:
        summary = summarize_segment(engine, seg.text)
        running = update_running(
            engine, store.running_summary(seg.session_id), summary, budget_tokens, count
        )
        store.set_summary(seg.id, summary, running=(seg.session_id, running))
        yield seg, summary, running
