#!/usr/bin/env bash
# Sets everything up (idempotent) and opens the chat app on the default model. Like
# `localctx chat`, it chats over the current directory when that is a git repository (never
# the home directory; it is ingested on first use, incrementally afterwards). Extra arguments
# go to `localctx chat`: --repo PATH for another repository, --no-repo for none.
set -euo pipefail
here="$(pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh" >&2
cd "$here"
exec "$root/.venv/bin/localctx" chat "$@"
