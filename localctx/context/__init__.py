"""What the KV cache holds for one conversation, and every operation that changes its layout.

    [sinks | pinned: system prompt, core memory, repo digest, running summary |
     recalled snippets | rolling window of messages | free]

- `cache`: KvContext, the owner: appends messages as template increments, runs the window
  policy, builds the pinned region, resumes from and saves snapshots, rebuilds, takes a
  stopped message back, lends the cache to the summarizer and gives it back.
- `ledger`: the ownership record (who owns each cached token) a rebuild and an eviction read.
- `pinned`: the pinned region as tokens (stable part + summary) and the snapshot identity.
- `layout`: the text of the layout, rendered with the model's own chat template (pure).
- `window`: the policy factory and the view the gauge reads from another thread.
- `rollback`: reported stages and the cache marks a stopped message is taken back to.

Sits above memory/ (it reads snapshots and shortens summaries) and below the session, which
decides what goes in. Must not: touch the recall store, render, or import llama_cpp / textual.
"""
