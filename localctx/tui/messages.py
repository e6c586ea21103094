"""Messages the workers post to the UI, each named for what happened (past tense).

Workers never touch widgets: they post one of these and the app routes it. A reading that goes
stale (GaugeSampled) is replaceable, so when frames fall behind the queue keeps only the newest
one instead of replaying old memory figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

from localctx.engine.base import Engine
from localctx.turns import EvictionReport, TurnResult

if TYPE_CHECKING:
    from localctx.gauge import GaugeReading
    from localctx.session import Session


class ModelLoaded(Message):
    """A model finished loading; the session built on it is ready for turns."""

    def __init__(
        self, engine: Engine, session: Session, seconds: float, notices: list[str] | None = None
    ) -> None:
        super().__init__()
        self.engine = engine
        self.session = session
        self.seconds = seconds
        self.notices = notices or []  # from closing the previous session


class ModelPullProgressed(Message):
    """Bytes of a model pull written so far."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__()
        self.done = done
        self.total = total

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ModelPullProgressed)


class ModelPulled(Message):
    """A model pull finished (or found the file already present)."""

    def __init__(self, path: Any, downloaded: bool) -> None:
        super().__init__()
        self.path = path
        self.downloaded = downloaded


class GenerationStarted(Message):
    """A turn began: the prompt is being prefilled."""

    def __init__(self, prompt: str) -> None:
        super().__init__()
        self.prompt = prompt


class TokensGenerated(Message):
    """A batch of streamed reply text (several tokens, a few batches per second)."""

    def __init__(self, text: str, n_tokens: int) -> None:
        super().__init__()
        self.text = text
        self.n_tokens = n_tokens


@dataclass(frozen=True)
class TurnFigures:
    """A finished turn: the session's own figures, and what the UI adds to them."""

    result: TurnResult
    max_tokens: int = 0  # the limit the reply ran under (said when it was hit)
    note: str = ""  # e.g. "regenerated (temperature 0.8, seed 123)"


class GenerationFinished(Message):
    """A turn ended: eog, length or cancelled. The transcript is final for this reply."""

    def __init__(self, figures: TurnFigures) -> None:
        super().__init__()
        self.figures = figures


class SegmentEvicted(Message):
    """The sink window evicted a block; `report` says how much and its text (turns)."""

    def __init__(self, report: EvictionReport) -> None:
        super().__init__()
        self.report = report


class GaugeSampled(Message):
    """A fresh gauge reading. Replaceable: only the newest pending reading is drawn."""

    def __init__(self, reading: GaugeReading) -> None:
        super().__init__()
        self.reading = reading

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GaugeSampled)


class ContextChanged(Message):
    """What the model sees changed (recall, summary, eviction): redraw the context panel."""


class IngestProgressed(Message):
    """Files walked so far in an /ingest run. Replaceable like a gauge reading."""

    def __init__(self, done: int, total: int | None, current: str, work_id: int = 0) -> None:
        super().__init__()
        self.done = done
        self.total = total
        self.current = current
        self.work_id = work_id

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, IngestProgressed)


class IngestFinished(Message):
    """An /ingest or /repo run finished; `summary` is one line for the transcript."""

    def __init__(self, summary: str, repo: Any = None) -> None:
        super().__init__()
        self.summary = summary
        self.repo = repo


class CommandAnswered(Message):
    """A slash command that ran in a worker finished; its answer goes in the transcript."""

    def __init__(self, title: str, markdown: str) -> None:
        super().__init__()
        self.title = title
        self.markdown = markdown


class MemoryListed(Message):
    """Rows for the memory screen (a browse or a search finished)."""

    def __init__(self, query: str, rows: list[Any], core: str = "") -> None:
        super().__init__()
        self.query = query
        self.rows = rows
        self.core = core  # "core memory 45/128 tokens"


class SessionSaved(Message):
    """The session (messages, summary, KV snapshot) was written; `where` says what."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where


class WorkStarted(Message):
    """A worker took the model (a turn, summaries, a rebuild, a load): the status says what,
    and says `ready` again only at WorkFinished."""

    def __init__(self, activity: str, work_id: int) -> None:
        super().__init__()
        self.activity = activity
        self.work_id = work_id


class WorkProgressed(Message):
    """How far a long step got (a localctx.progress.Progress). Replaceable: only the newest
    pending report is drawn."""

    def __init__(self, progress: Any, work_id: int) -> None:
        super().__init__()
        self.progress = progress
        self.work_id = work_id

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, WorkProgressed) and message.work_id == self.work_id


class WorkFinished(Message):
    """The worker released the model; `note` is said after `ready` (e.g. "stopped")."""

    def __init__(self, note: str, work_id: int) -> None:
        super().__init__()
        self.note = note
        self.work_id = work_id


class PromptWithdrawn(Message):
    """A message was stopped while the model read it: it was taken back whole, not sent."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class SessionsListed(Message):
    """Rows for the sessions picker (localctx.memory.recall.SessionSummary)."""

    def __init__(self, rows: list[Any]) -> None:
        super().__init__()
        self.rows = rows


class ModelsListed(Message):
    """Rows for the model picker: (entry, installed, fit text)."""

    def __init__(self, rows: list[Any]) -> None:
        super().__init__()
        self.rows = rows
