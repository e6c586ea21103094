"""The gauge region: memory bars, the KV cache split by region, throughput, tier sizes."""
