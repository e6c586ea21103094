#!/usr/bin/env bash
# Sets everything up (idempotent) and opens the chat app on the default model over the
# current directory (it is ingested on first use, incrementally afterwards). Extra arguments
# go to `localctx chat`; pass --repo PATH to chat over another repository.
set -euo pipefail
here="$(pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh" >&2
cd "$here"
case " $* " in
  *" --repo "*|*" --repo="*) exec "$root/.venv/bin/localctx" chat "$@" ;;
  *) exec "$root/.venv/bin/localctx" chat --repo "$here" "$@" ;;
esac
