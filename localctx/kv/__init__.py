"""KV cache: the sink-window eviction plans (pure), the policies that apply them, scores.

- `plans`: which block (or scored cells) to evict, as a pure function of positions
  (exhaustively tested); `EvictionSpan` is one such block.
- `policy`: SinkWindow, which applies the plan through the engine and keeps the bookkeeping
  the gauge reads (cells per region, evictions, tokens seen, bytes per token).
- `scoring`, `attention`: the scores of the attention-aware policies.
- `segment`: EvictedSegment and EvictionQueue, the contract with the memory tier.

Cache types and llama.cpp's allocation report live in the engine (engine.cachetypes,
engine.allocation): the engine reads them when it creates a context and never imports kv/.
Applies its decisions through the Engine protocol only; never touches SQLite or the UI.
"""
