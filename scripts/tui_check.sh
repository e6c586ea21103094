#!/usr/bin/env bash
# Drives the real chat app in tmux (send-keys / capture-pane) on the real default model, as a
# person would: wait for the model, ask, watch the reply stream, regenerate it, stop a reply
# with Esc, run slash commands, paste 20 KB and watch the prefill's progress, stop a paste
# while it is read, list the sessions, shrink the terminal to 60x20, change /kv and /window,
# quit with Ctrl+Q, then resume the session with its transcript, /kv and /window.
# Prints each screen it checks and exits non-zero at the first expectation that fails.
#
#   scripts/tui_check.sh            # uses a throwaway LOCALCTX_HOME; models stay where they are
#   KEEP=1 scripts/tui_check.sh     # leave the tmux session and home for a look afterwards
#   PYTHON=/path/to/python scripts/tui_check.sh   # another interpreter (it runs this checkout)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
bin="$py -m localctx"  # from $root: this checkout's code, whatever the venv has installed
name="localctx-tui-check-$$"
models="${LOCALCTX_MODELS:-$("$py" -c 'from localctx import paths; print(paths.models_dir())')}"
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
# wait_gone TEXT SECONDS: until TEXT is off the screen (a closed dialog). A key sent before
# Textual has taken an Escape can fuse with it into Alt+key, so Esc is always waited out.
wait_gone() {
  local text="$1" limit="${2:-30}" start=$SECONDS
  while screen | grep -qF -- "$text"; do
    if ((SECONDS - start > limit)); then
      show "TIMEOUT waiting for this to go: $text"
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

# --no-repo: the checkout is a git repository, which chat would otherwise attach.
# Retried: right after the last session is killed, tmux's server may still be exiting.
launch() {
  local try
  for try in 1 2 3 4 5; do
    tmux new-session -d -s "$name" -x 120 -y 36 \
      "cd '$root' && LOCALCTX_HOME='$home' LOCALCTX_MODELS='$models' $bin chat --no-repo --ctx 2048 $* ; echo EXITED rc=\$?; sleep 30" \
      && return
    sleep 1
  done
  echo "tmux would not start a session"; exit 1
}
# The reply under a question as the transcript column shows it (the lines between the
# question and the reply's footer); empty until the footer is there.
reply_to() {
  screen | cut -c1-74 | awk -v q="$1" '
    index($0, q) {on=1; body=""; next}
    on && /reply tokens/ {print body; exit}
    on {body = body $0 "\n"}'
}
# wait_reply QUESTION SECONDS: until the reply under QUESTION has its footer
wait_reply() {
  local start=$SECONDS
  until [[ -n "$(reply_to "$1")" ]]; do
    if ((SECONDS - $start > ${2:-300})); then show "TIMEOUT waiting for the reply to: $1"; exit 1; fi
    sleep 0.3
  done
}
paste_file() { tmux load-buffer -b lc "$1"; tmux paste-buffer -p -d -b lc -t "$name"; }

t0=$SECONDS
launch --window 512 --session tui-check
wait_for "○ ready" 180
echo "app ready after $((SECONDS - t0)) s (model loaded in a worker; the screen came first)"
show "start"

type_line "What is the capital of France? Answer in one sentence."
wait_for "reply tokens" 300
show "after a question (reply streamed, footer with tok/s)"
screen | grep -q "KV f16" || { echo "no KV line in the gauge"; exit 1; }

# A regenerated reply is sampled (temperature 0.8), so it may repeat a short, likely answer:
# like a person, press Ctrl+R again, up to three times, until it differs.
sea="Write a short poem about the sea, four lines."
type_line "$sea"
wait_reply "$sea" 300
wait_for "○ ready" 120
first="$(reply_to "$sea")"
second="$first"
for try in 1 2 3; do
  tmux send-keys -t "$name" C-r
  sleep 1  # the old reply leaves at once; its replacement has no footer until done
  wait_reply "$sea" 300
  wait_for "regenerated" 30
  wait_for "○ ready" 120
  second="$(reply_to "$sea")"
  [[ -n "$second" && "$first" != "$second" ]] && break
done
show "Ctrl+R regenerated the answer (try $try)"
[[ -n "$second" && "$first" != "$second" ]] || { echo "regenerate gave the same reply 3 times"; exit 1; }
grep -q "(no reply)" <<<"$second" && { echo "regenerate gave no reply"; exit 1; }

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
wait_for "repo repo" 180
wait_for "○ ready" 180
show "/repo attached (the status line names it)"

# A long paste goes through the sink window: its size shows before it is sent, the prefill
# reports n/N tokens and an ETA, the cache evicts, the UI stays live (F2 works while the
# worker prefills), the status is not `ready` until the summaries are written, and the
# context panel shows the latest eviction.
kb="${PASTE_KB:-20}"
head -c "${kb}000" "$root/tests/data/devils-dictionary-excerpt.txt" >"$home/paste.txt"
printf '\n\nSummarize the text above in one sentence.' >>"$home/paste.txt"
paste_file "$home/paste.txt"
wait_for "Summarize the text above" 60
wait_re "KiB · ≈[0-9.]+K tokens · over the 512 window" 10
show "a ${kb} KB paste in the prompt: its size shows before it is sent"
tmux send-keys -t "$name" Enter
wait_re "reading the prompt [0-9,]+/[0-9,]+ tokens · ETA" 120
show "during the prefill of a ${kb} KB paste: n/N tokens and an ETA"
tmux send-keys -t "$name" F2
wait_for "KV █" 20
show "F2 collapsed the side panel at once, during the prefill"
tmux send-keys -t "$name" F2
wait_for "reply tokens" 900
wait_re "evictions [1-9]" 60
wait_for "○ ready" 600
show "after the paste: evictions counted, the running summary written by the model"

# The same paste, stopped while it is read: nothing is sent, the text is back in the prompt.
printf 'Once more: ' >"$home/again.txt"
cat "$home/paste.txt" >>"$home/again.txt"
paste_file "$home/again.txt"
wait_for "Summarize the text above" 60
tmux send-keys -t "$name" Enter
wait_re "reading the prompt [0-9,]+/" 120
tmux send-keys -t "$name" Escape
wait_for "nothing was sent" 60
wait_for "○ ready · stopped" 30
show "Esc while the paste was read: taken back, returned to the prompt"
tmux send-keys -t "$name" F7 BSpace  # clear the prompt: select all, delete
wait_for "Ask about your code" 10

type_line "/sessions"
wait_for "Sessions · Enter opens" 20
wait_for "tui-check" 20
show "/sessions lists this session with its newest message, age and size"
tmux send-keys -t "$name" Escape
wait_gone "Sessions · Enter opens" 10

type_line "Write a long story about a lighthouse keeper, at least 400 words."
wait_for "● generating" 300
sleep 1.5
tmux send-keys -t "$name" Escape
wait_for "○ ready · stopped" 60
show "Esc stopped the reply"

tmux resize-window -t "$name" -x 60 -y 20
sleep 1
show "60x20: the side panel collapses to one gauge line"
screen | grep -q "KV " || { echo "no one-line gauge at 60x20"; exit 1; }
screen | grep -q "○ ready" || { echo "the state is not first at 60x20"; exit 1; }
tmux resize-window -t "$name" -x 120 -y 36
sleep 0.5

type_line "/kv q8_0"
wait_for "KV q8_0" 120
wait_for "○ ready" 120
type_line "/window 256"
wait_for "window 256" 120
wait_for "○ ready" 120
show "/kv q8_0 and /window 256"

tmux send-keys -t "$name" C-q
wait_for "EXITED rc=0" 30
show "after Ctrl+Q"
screen | grep -q "session .tui-check. saved" || { echo "no save line"; exit 1; }
screen | grep -q "localctx chat --session tui-check" || { echo "no resume hint"; exit 1; }
tmux kill-session -t "$name"

launch --session tui-check  # no --kv, no --window: the session's own come back
wait_for "○ ready" 180
wait_for "lighthouse keeper" 30
wait_for "KV q8_0" 10
wait_for "window 256" 10
show "resumed session: the transcript, /kv q8_0 and /window 256 are back"
tmux send-keys -t "$name" C-q
wait_for "EXITED rc=0" 30
echo "tui_check: all checks passed in $((SECONDS - t0)) s"
