"""KV cache: cache types and their rules, the sink-window planner (pure) and its policy.

Applies its decisions through the Engine protocol only; never touches SQLite or the UI.
"""
