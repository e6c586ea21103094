"""KV cache: cache types and their rules, the sink-window planner (pure) and its policy.

- `types`: K/V cache types and the rules llama.cpp imposes on them, with reasons.
- `planner`: which block to evict, as a pure function of positions (exhaustively tested).
- `policy`: SinkWindow, which applies the plan through the engine and keeps the bookkeeping
  the gauge reads (cells per region, evictions, tokens seen, bytes per token).
- `segment`: EvictedSegment and EvictionQueue, the contract with the memory tier.
- `allocation`: bytes per token from llama.cpp's own allocation report.

Applies its decisions through the Engine protocol only; never touches SQLite or the UI.
"""
