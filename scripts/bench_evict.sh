#!/usr/bin/env bash
# The eviction-policy table in the README: `bench ppl` for every policy at equal KV cells,
# on two public-domain texts, three windows and two cache types, one run at a time (the
# policies alternate inside each setting, so drift on a noisy machine hits them alike).
# Prints one JSON line per run. Usage: scripts/bench_evict.sh [MODEL] [TOKENS] [POLICIES]
# (~50 min on 2 CPU cores with the default SmolLM2, 3,000 tokens and all four policies)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
model="${1:-smollm2-135m}"
tokens="${2:-3000}"
policies="${3:-window keynorm snapkv h2o}"
for text in tests/data/devils-dictionary-excerpt.txt tests/data/jargon-file-excerpt.txt; do
  for kv in f16 q8_0; do
    for window in 256 512 1024; do
      for evict in $policies; do
        .venv/bin/localctx bench ppl -m "$model" --text "$text" --tokens "$tokens" \
          --window "$window" --kv "$kv" --evict "$evict" --json |
          .venv/bin/python -c 'import json,sys; d=json.load(sys.stdin); d["text"]=sys.argv[1]; print(json.dumps({k: d.get(k) for k in ("text","kv","window","evict","recent","ppl","evictions","gaps","score_seconds","seconds")}), flush=True)' "$(basename "$text" .txt)"
      done
    done
  done
done
