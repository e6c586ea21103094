"""Explicit memory: what the user pins (/remember) and what the user removes (/forget).

Forgetting must reach every copy: the rows in the recall store (a message takes the segments
that hold it, and so their summaries), the running summaries built from them (rebuilt by the
store), and any KV snapshot whose tokens contain them — a snapshot is the model's view of the
text and would bring it back on resume. Shared by the session (/forget in chat) and
`localctx memory forget`.
"""

from __future__ import annotations

from typing import Any

from localctx.memory.recall import Forgotten, RecallStore
from localctx.memory.snapshots import SnapshotStore


def forget_everywhere(
    store: RecallStore, snapshots: SnapshotStore | None, id_or_query: str
) -> tuple[Forgotten, list[str]]:
    """Delete from the recall store, then every snapshot that holds a deleted item.

    Returns what was deleted and the snapshot keys removed.
    """
    gone = store.forget(id_or_query)
    if snapshots is None or not gone.ids:
        return gone, []
    messages, cores = gone.numbers("m"), gone.numbers("c")
    sessions = set(gone.sessions)

    def holds(meta: dict[str, Any]) -> bool:
        return (
            bool(messages & set(meta.get("message_ids", ())))
            or bool(cores & set(meta.get("core_ids", ())))
            # a session snapshot's pinned region holds its running summary, which changed
            or (meta.get("kind") == "session" and meta.get("session") in sessions)
        )

    return gone, snapshots.forget_where(holds)
