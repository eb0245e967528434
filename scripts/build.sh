#!/usr/bin/env bash
# Configure and build one flavour of nxc, warnings as errors.
#   scripts/build.sh release   -> build/release (RelWithDebInfo)
#   scripts/build.sh asan      -> build/asan    (Debug, ASan + UBSan)
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
case "$flavour" in
  release) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan) args=(-DCMAKE_BUILD_TYPE=Debug -DNXC_SANITIZE=ON) ;;
  *) echo "build: unknown flavour '$flavour' (release|asan)" >&2; exit 2 ;;
esac
cmake -S . -B "build/$flavour" -DNXC_WERROR=ON "${args[@]}" >/dev/null
cmake --build "build/$flavour" -j"$(nproc)" 2>&1 | grep -vE '^\[ *[0-9]+%\]' || true
test "${PIPESTATUS[0]}" -eq 0
