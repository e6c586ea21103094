"""Progress of long work as the core reports it: a stage, done of total, seconds so far.

The session reports prefills ("reading the prompt", "rebuilding context") in tokens after every
batch it decodes, and summaries in segments; front ends turn a report into `n/N tokens · ETA`
with `describe`. Pure: no clock of its own (the reporter measures `seconds`), no UI.

Why the ETA is a plain rate over the whole stage: prefill throughput on a CPU is flat within a
stage (the attention cost grows with the context, but a batch of 512 dominates), and a rate
over the last batch alone jumps when another process takes a core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    stage: str  # "reading the prompt", "rebuilding context", "summarizing", ...
    done: int
    total: int
    unit: str = "tokens"  # or "segments"
    seconds: float = 0.0  # since the stage began

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the stage's rate so far; None until something is done."""
        if self.done <= 0 or self.seconds <= 0 or self.total <= self.done:
            return None
        return self.seconds / self.done * (self.total - self.done)


ProgressCallback = Callable[[Progress], object]  # what it returns is ignored


def duration(seconds: float) -> str:
    """`42 s`, `3 min 05 s`, `1 h 02 min`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def describe(p: Progress) -> str:
    """`reading the prompt 1,024/5,210 tokens · ETA 17 s` (the ETA once there is a rate)."""
    if p.total:
        head = f"{p.stage} {p.done:,}/{p.total:,} {p.unit}"
    else:  # no total known (files of an ingest)
        head = f"{p.stage} {p.done:,} {p.unit}" if p.done else p.stage
    eta = p.eta_seconds
    return f"{head} · ETA {duration(eta)}" if eta is not None else head
