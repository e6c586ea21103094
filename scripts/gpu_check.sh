#!/usr/bin/env bash
# One prepared run for a machine with an NVIDIA GPU: build the CUDA wheel of llama-cpp-python,
# then, with every layer offloaded, run `bench all --json`, the product path at 32K and 128K
# cells, the 32K and 128K needle runs and `bench qa` on the held-out set, and write every
# figure into one JSON file: ${OUT:-.bench}/gpu/gpu.json (each part also on its own).
# A part that fails is recorded with its exit code; the others still run.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_CUDA=on}"
scripts/setup.sh qwen2.5-coder-0.5b qwen2.5-coder-1.5b smollm2-135m gemma3-270m all-minilm-l6-v2 || exit $?
out="${OUT:-$root/.bench}/gpu"
mkdir -p "$out"
lc=(.venv/bin/localctx)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1

part() {  # part NAME CMD... : stdout to NAME.json, stderr to NAME.log, exit code kept
  local name="$1"; shift
  echo "gpu_check: $name" >&2
  "$@" > "$out/$name.json" 2> "$out/$name.log"
  echo "$?" > "$out/$name.rc"
}
part plan "${lc[@]}" plan qwen2.5-coder-1.5b --ctx 131072 --json
part bench_all "${lc[@]}" bench all --json --out "$out/all"
part product "${lc[@]}" bench product --model qwen2.5-coder-0.5b --ctx 32768 --ctx 131072 --force --json
part needle_32k "${lc[@]}" bench needle --model qwen2.5-coder-0.5b --history 32768 --window 4096 --facts 5 --summaries 0 --json
part needle_128k "${lc[@]}" bench needle --model qwen2.5-coder-0.5b --history 131072 --window 4096 --facts 5 --summaries 0 --json
part qa_15b "${lc[@]}" bench qa --model qwen2.5-coder-1.5b --json
.venv/bin/python - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
report = {"gpu": (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").exists() else ""}
for rc in sorted(out.glob("*.rc")):
    name = rc.stem
    try:
        body = json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        body = None
    tail = (out / f"{name}.log").read_text()[-2000:] if (out / f"{name}.log").exists() else ""
    report[name] = {"rc": int(rc.read_text().strip() or 1), "result": body, "log_tail": tail}
(out / "gpu.json").write_text(json.dumps(report, indent=1) + "\n")
print(out / "gpu.json")
PY
