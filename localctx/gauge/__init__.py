"""Readings of RAM, VRAM, KV regions, throughput and store sizes. Never blocks the decode loop."""
