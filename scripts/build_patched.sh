#!/usr/bin/env bash
# Builds a llama-cpp-python wheel from its sdist with localctx's patches to the vendored
# llama.cpp applied (patches/*.patch, in name order), and any CMAKE_ARGS (GPU or RPC backends).
# The product works unpatched; a patch only adds something it detects at run time (see
# patches/README.md). With no patches this is simply "build the wheel with these CMAKE_ARGS".
#
#   scripts/build_patched.sh [--out DIR] [--sdist FILE] [--check]
#     --out DIR     where the wheel goes (default: .whl/)
#     --sdist FILE  use this sdist instead of downloading it
#     --check       only check that every patch applies cleanly, build nothing
#   CMAKE_ARGS="-DGGML_RPC=ON" scripts/build_patched.sh     # e.g. an RPC-enabled CPU build
#   .venv/bin/pip install --force-reinstall --no-deps .whl/llama_cpp_python-*.whl
#
# A full build takes ~6 min on 2 cores. The wheel is tagged with the host's platform; it is
# not for redistribution.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="0.3.36"
# The llama.cpp commit vendored in llama-cpp-python 0.3.36 (2026-10-01); every patch in
# patches/ is made against it, and the build refuses an sdist that vendors another one.
commit="0c1e57098bba43ac29e6e3b677cdceebdd22334f"
out="$root/.whl"
sdist=""
check_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --sdist) sdist="$2"; shift 2 ;;
    --check) check_only=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "build_patched: unknown option $1" >&2; exit 2 ;;
  esac
done

python="$root/.venv/bin/python"
[ -x "$python" ] || python="$(command -v python3)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if [ -z "$sdist" ]; then
  echo "build_patched: downloading the llama-cpp-python $version sdist"
  "$python" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work"
  sdist="$(ls "$work"/llama_cpp_python-*.tar.gz)"
fi
tar -xzf "$sdist" -C "$work"
src="$work/llama_cpp_python-$version"
[ -d "$src/vendor/llama.cpp" ] || { echo "build_patched: $sdist has no vendor/llama.cpp" >&2; exit 1; }

vendored="$(cat "$src/.git/modules/vendor/llama.cpp/HEAD" 2>/dev/null || echo unknown)"
if [ "$vendored" != "$commit" ]; then
  echo "build_patched: the sdist vendors llama.cpp $vendored, patches are made for $commit" >&2
  exit 1
fi

shopt -s nullglob
patches=("$root"/patches/*.patch)
for p in "${patches[@]}"; do
  # --dry-run first, so a patch that no longer applies leaves nothing half-applied.
  if ! patch -p1 --forward --batch --dry-run -d "$src/vendor/llama.cpp" < "$p" >/dev/null; then
    echo "build_patched: $(basename "$p") does not apply to llama.cpp $commit" >&2
    exit 1
  fi
  patch -p1 --forward --batch --quiet -d "$src/vendor/llama.cpp" < "$p"
  echo "build_patched: applied $(basename "$p")"
done
[ ${#patches[@]} -gt 0 ] || echo "build_patched: no patches in patches/ (building the vendored llama.cpp as is)"
if [ "$check_only" = 1 ]; then
  echo "build_patched: ${#patches[@]} patch(es) apply cleanly to llama.cpp $commit"
  exit 0
fi

mkdir -p "$out"
echo "build_patched: building the wheel (CMAKE_ARGS=${CMAKE_ARGS:-none}); ~6 min on 2 cores"
CMAKE_ARGS="${CMAKE_ARGS:-}" "$python" -m pip wheel -q --no-deps -w "$out" "$src"
ls -1 "$out"/llama_cpp_python-"$version"-*.whl
