#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install what is missing, then configure and build one flavour of nxc,
# warnings as errors.
#   scripts/build.sh release   -> build/release (RelWithDebInfo, gcc)
#   scripts/build.sh asan      -> build/asan    (Debug, ASan + UBSan, gcc)
#   scripts/build.sh tsan      -> build/tsan    (RelWithDebInfo, ThreadSanitizer, gcc;
#                                                run it with UCX_MEM_EVENTS=no)
#   scripts/build.sh clang     -> build/clang   (RelWithDebInfo, clang and the
#                                                libFuzzer target: setup.sh --dev)
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
setup=(scripts/setup.sh)
case "$flavour" in
  release) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan) args=(-DCMAKE_BUILD_TYPE=Debug -DNXC_SANITIZE=ON) ;;
  tsan) args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DNXC_TSAN=ON) ;;
  clang)
    args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DNXC_FUZZ=ON)
    setup+=(--dev)
    ;;
  *) echo "build: unknown flavour '$flavour' (release|asan|tsan|clang)" >&2; exit 2 ;;
esac
"${setup[@]}"
cmake -S . -B "build/$flavour" -DNXC_WERROR=ON "${args[@]}" >/dev/null
# The progress lines are filtered out; the build's own status is what this
# script returns (pipefail: the pipeline fails when cmake does, whatever the
# filter found to print).
cmake --build "build/$flavour" -j"$(nproc)" 2>&1 | { grep -vE '^\[ *[0-9]+%\]' || true; }
