#!/usr/bin/env bash
# Drives the real chat app in tmux (send-keys / capture-pane) on the real default model, as a
# person would: wait for the model, ask, watch the reply stream, stop a reply with Esc, run
# slash commands, shrink the terminal to 60x20, quit with Ctrl+Q, then resume the session.
# Prints each screen it checks and exits non-zero at the first expectation that fails.
#
#   scripts/tui_check.sh            # uses a throwaway LOCALCTX_HOME; models stay where they are
#   KEEP=1 scripts/tui_check.sh     # leave the tmux session and home for a look afterwards
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.venv/bin/localctx"
name="localctx-tui-check-$$"
models="${LOCALCTX_MODELS:-$("$root/.venv/bin/python" -c 'from localctx import paths; print(paths.models_dir())')}"
home="$(mktemp -d /tmp/localctx-tui-check.XXXXXX)"
repo="$home/repo"
mkdir -p "$repo"
printf 'def parse_depot(code):\n    """Return the depot for an access code like 4471."""\n    return code\n' >"$repo/depot.py"

cleanup() {
  if [[ -z "${KEEP:-}" ]]; then
    tmux kill-session -t "$name" 2>/dev/null || true
    rm -rf "$home"
  else
    echo "kept: tmux attach -t $name   (home $home)"
  fi
}
trap cleanup EXIT

screen() { tmux capture-pane -p -t "$name"; }
show() { echo "----- $1"; screen; }
# wait_for TEXT SECONDS: poll the screen until TEXT appears
wait_for() {
  local text="$1" limit="${2:-60}" start=$SECONDS
  until screen | grep -qF -- "$text"; do
    if ((SECONDS - start > limit)); then
      show "TIMEOUT waiting for: $text"
      exit 1
    fi
    sleep 0.3
  done
}
# wait_re REGEX SECONDS: like wait_for, for an extended regular expression
wait_re() {
  local re="$1" limit="${2:-60}" start=$SECONDS
  until screen | grep -qE -- "$re"; do
    if ((SECONDS - start > limit)); then
      show "TIMEOUT waiting for /$re/"
      exit 1
    fi
    sleep 0.3
  done
}
type_line() { tmux send-keys -t "$name" -l -- "$1"; tmux send-keys -t "$name" Enter; }

launch() {
  tmux new-session -d -s "$name" -x 120 -y 36 \
    "LOCALCTX_HOME='$home' LOCALCTX_MODELS='$models' '$bin' chat --ctx 2048 --window 512 $* ; echo EXITED rc=\$?; sleep 30"
}

t0=$SECONDS
launch --session tui-check
wait_for "ready" 180
echo "app ready after $((SECONDS - t0)) s (model loaded in a worker; the screen came first)"
show "start"

type_line "What is the capital of France? Answer in one sentence."
wait_for "reply tokens" 300
show "after a question (reply streamed, footer with tok/s)"
screen | grep -q "KV f16" || { echo "no KV line in the gauge"; exit 1; }

type_line "/remember the blue depot access code is 4471"
wait_for "pinned to core memory" 20
type_line "/recall depot"
wait_for "core c1" 20
show "/remember then /recall"

type_line "/frobnicate"
wait_for "unknown command /frobnicate" 10
type_line "/ingest /no/such/dir"
wait_for "no such directory" 10
show "bad input: unknown command and a missing path (notices)"

type_line "/repo $repo"
wait_for "attaching" 60
wait_for "ready" 180
show "/repo attached"

# A long paste goes through the sink window: the cache evicts, the UI stays live (F2 works
# while the worker prefills), and the context panel shows the latest eviction.
head -c "${PASTE_KB:-12}000" "$root/tests/data/devils-dictionary-excerpt.txt" >"$home/paste.txt"
printf '\n\nSummarize the text above in one sentence.' >>"$home/paste.txt"
tmux load-buffer -b lc "$home/paste.txt"
tmux paste-buffer -p -d -b lc -t "$name"
wait_for "Summarize the text above" 60
tmux send-keys -t "$name" Enter
wait_for "reading the prompt" 30
tmux send-keys -t "$name" F2
wait_for "KV █" 20
show "during the prefill of a ${PASTE_KB:-12} KB paste: F2 collapsed the side panel at once"
tmux send-keys -t "$name" F2
wait_for "reply tokens" 600
wait_re "evictions [1-9]" 60
show "after the paste: evictions counted, the running summary written by the model"

type_line "Write a long story about a lighthouse keeper, at least 400 words."
wait_for "generating" 60
sleep 1.5
tmux send-keys -t "$name" Escape
wait_for "stopped" 20
show "Esc stopped the reply"

tmux resize-window -t "$name" -x 60 -y 20
sleep 1
show "60x20: the side panel collapses to one gauge line"
screen | grep -q "KV " || { echo "no one-line gauge at 60x20"; exit 1; }
tmux resize-window -t "$name" -x 120 -y 36
sleep 0.5

tmux send-keys -t "$name" C-q
wait_for "EXITED rc=0" 30
show "after Ctrl+Q"
screen | grep -q "session .tui-check. saved" || { echo "no save line"; exit 1; }
tmux kill-session -t "$name"

launch --session tui-check
wait_for "ready" 180
wait_for "lighthouse keeper" 30
show "resumed session: the transcript is back"
tmux send-keys -t "$name" C-q
wait_for "EXITED rc=0" 30
echo "tui_check: all checks passed in $((SECONDS - t0)) s"
