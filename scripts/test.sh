#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The full test suite: installs what is missing, then builds and runs every
# test twice: a release build, and an ASan+UBSan build.
#   scripts/test.sh            both builds
#   scripts/test.sh release    only the release build
#   scripts/test.sh asan       only the sanitizer build
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
[ $# -gt 0 ] || set -- release asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for f in "$@"; do
  echo "== build: $f"
  scripts/build.sh "$f"
  echo "== test: $f"
  (cd "build/$f" && ctest --output-on-failure --timeout 900)
done
# The Python package (python/), against the release build's library. Debian's
# interpreter: apt's python3-* packages live there, not in other pythons.
# About 3 minutes on an idle 2-CPU VM, 6 on a loaded one: 256 MiB transfers
# on every transport and 10,000-op runs (python/tests/test_endurance.py).
for f in "$@"; do
  if [ "$f" = release ]; then
    echo "== test: python (build/release)"
    NXC_LIBRARY="$PWD/build/release/src/libnxc.so.0" PYTHONPATH="$PWD/python" \
      timeout 1200 /usr/bin/python3 -m pytest -q -p no:cacheprovider python/tests
  fi
done
