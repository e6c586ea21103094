#!/usr/bin/env bash
# Sets everything up (idempotent) and opens the chat app on the default model over the
# current directory. Extra arguments go to `localctx chat`.
set -euo pipefail
here="$(pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh" >&2
cd "$here"
exec "$root/.venv/bin/localctx" chat "$@"
