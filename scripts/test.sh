#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The full test suite: installs what is missing, then builds and runs every
# test twice: a release build, and an ASan+UBSan build.
#   scripts/test.sh            both builds
#   scripts/test.sh release    only the release build
#   scripts/test.sh asan       only the sanitizer build
#   scripts/test.sh tsan       the ThreadSanitizer build (CI runs it after the
#                              two above): the conformance suites on every
#                              transport, the fan-in/fan-out, shm and ucx
#                              security and selection tests, the unit tests
#                              and the examples, two at a time; any
#                              ThreadSanitizer report fails the run
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --dev
[ $# -gt 0 ] || set -- release asan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# The TSan run. libucm's memory hooks (UCX's memory events) crash under
# ThreadSanitizer, hence UCX_MEM_EVENTS=no. Every process writes its report,
# if any, to a file in a temporary directory (so a peer process whose exit
# status no test looks at is caught too); halt_on_error and exitcode make the
# report fail the process that found it. tests/tsan.supp names the reports of
# UCX's own code that are not nxc's to fix (never an nxc frame). The harness
# scales the big transfers of a TSan build down by itself (nxt_size in
# tests/harness/nxt.h). 3 to 4 minutes on the 2-core machine, 5 to 6.5 beside
# two busy loops.
# test_tcp_security is left out: its half_open case allows the server's
# 1000 ms stall timeout to close a silent connection 20 ms early at most,
# and under TSan beside two busy loops it closed one 27 ms early.
tsan_tests='^(conformance_.*|test_fan_.*|test_(shm|ucx)_security|test_selection|test_core|test_core_states|test_metadata|test_metadata_v2|test_env|test_sys|example_.*)$'
run_tsan() {
  local start logs status=0 reports
  start=$(date +%s)
  logs=$(mktemp -d /tmp/nxc-tsan.XXXXXX)
  (
    cd build/tsan
    export UCX_MEM_EVENTS=no
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:exitcode=66:suppressions=$PWD/../../tests/tsan.supp:log_path=$logs/report${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
    ctest --output-on-failure --timeout 900 -j2 -R "$tsan_tests"
  ) || status=$?
  reports=$(find "$logs" -type f | wc -l)
  if [ "$reports" != 0 ]; then
    find "$logs" -type f -exec cat {} +
    echo "tsan: $reports process(es) reported (above)" >&2
    status=1
  fi
  rm -rf "$logs"
  echo "== tsan: $(($(date +%s) - start)) s, $reports ThreadSanitizer reports"
  return "$status"
}

for f in "$@"; do
  echo "== build: $f"
  scripts/build.sh "$f"
  echo "== test: $f"
  if [ "$f" = tsan ]; then
    run_tsan
  else
    (cd "build/$f" && ctest --output-on-failure --timeout 900)
  fi
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
