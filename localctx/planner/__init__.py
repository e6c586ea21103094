"""GGUF-metadata byte math, device budgets and recommendations. Never loads weights."""
