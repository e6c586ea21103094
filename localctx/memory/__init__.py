"""Tiered memory: recall store, archival store, KV snapshots, summarizer, retrieval.

Never imports the TUI.
"""
