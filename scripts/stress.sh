#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Stress (issue 8): the tests labelled `stress` (the data and lifecycle
# conformance suites and the fan-in/fan-out tests, on every transport) run
# again and again, several at a time, beside CPU hogs that steal the cores
# from them. A test that passes on a quiet machine but not here is flaky,
# and no failure is allowed. Needs an existing build (scripts/build.sh);
# installs what the tests need when missing (scripts/setup.sh --dev).
#   scripts/stress.sh [release|asan]     default: release
# Environment:
#   STRESS_REPEAT   runs of each test (ctest --repeat until-fail:N)     10
#   STRESS_JOBS     tests at once (ctest -j)                             4
#   STRESS_HOGS     busy-looping processes beside them                   nproc
#   STRESS_TIMEOUT  seconds for the whole run before it is stopped      3600
#   STRESS_REGEX    only the stress tests matching this (ctest -R)       all
# Prints a summary (runs, failures, slowest run per test) and exits non-zero
# on any failure or on the overall timeout. The hogs and every process the
# run started are killed on the way out, whatever the way out is.
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
dir=build/$flavour
repeat=${STRESS_REPEAT:-10}
jobs=${STRESS_JOBS:-4}
nhogs=${STRESS_HOGS:-$(nproc)}
limit=${STRESS_TIMEOUT:-3600}
if [ ! -f "$dir/CTestTestfile.cmake" ]; then
  echo "stress: $dir is not built (scripts/build.sh $flavour)" >&2
  exit 2
fi
scripts/setup.sh --dev
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Every process of this run carries this mark in its environment, so the
# cleanup finds test processes that left ctest's process group (the harness
# puts each test in its own group) and were orphaned by a timeout.
mark="NXC_STRESS_RUN=$$.$(date +%s%N)"
export "${mark?}"
log=$(mktemp /tmp/nxc-stress.XXXXXX)

hogs=()
summarized=0
# A hog spins and checks between bursts that this script is still alive, so
# it also ends (within a fraction of a second) if the script is SIGKILLed
# and its trap never runs.
hog() {
  local parent=$1 i
  while kill -0 "$parent" 2>/dev/null; do
    for ((i = 0; i < 20000; i++)); do :; done
  done
}

# One line per run in ctest's output: "Test #N: name ....   Passed   12.34 sec"
summary() {
  summarized=1
  echo "== stress summary ($flavour, $(($(date +%s) - start))s, $jobs jobs, $nhogs hogs)"
  awk '
    match($0, /Test +#[0-9]+: [^ ]+ /) {
      split(substr($0, RSTART, RLENGTH), f, " ")
      name = f[3]; runs[name]++
      if ($0 ~ /Passed/) {
        t = $(NF - 1) + 0
        if (t > slow[name]) slow[name] = t
      } else {
        bad[name]++; why = $0; sub(/.*\.\.\.* */, "", why); fails = fails "  " name ": " why "\n"
      }
    }
    END {
      for (n in runs) {
        printf "  %-28s %3d runs, %d failed, slowest pass %6.1f s\n", n, runs[n], bad[n], slow[n] | "sort"
        total += runs[n]; nbad += bad[n]
      }
      close("sort")
      printf "  %d runs, %d failed\n", total, nbad
      if (nbad) printf "failures:\n%s", fails
    }' "$log"
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM HUP
  for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
  # Anything of this run still alive: ctest and the tests when the run was
  # interrupted, a test orphaned by the timeout.
  for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}
    pid=${pid%/environ}
    [ "$pid" = $$ ] && continue
    if { tr '\0' '\n' <"$env"; } 2>/dev/null | grep -qxF "$mark"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  if [ "$summarized" = 0 ]; then
    summary
    echo "stress: interrupted" >&2
  fi
  rm -f "$log"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

start=$(date +%s)
for ((h = 0; h < nhogs; h++)); do
  hog $$ &
  hogs+=($!)
done

args=(--test-dir "$dir" -L stress -j"$jobs" --repeat until-fail:"$repeat" --output-on-failure)
[ -n "${STRESS_REGEX:-}" ] && args+=(-R "$STRESS_REGEX")
echo "== stress: $flavour, each test up to $repeat runs, $jobs at a time, $nhogs CPU hogs," \
  "limit ${limit}s"
# In the background, so that a signal runs the trap at once (bash runs traps
# only between foreground commands).
timeout --kill-after=30 "$limit" ctest "${args[@]}" > >(tee "$log") 2>&1 &
set +e
wait $!
status=$?
set -e
sleep 0.2 # let tee write the last lines
summary
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "stress: stopped after ${limit}s (STRESS_TIMEOUT)" >&2
elif [ "$status" != 0 ]; then
  echo "stress: FAILED (a test failed at least once; its output is above)" >&2
else
  echo "stress: passed"
fi
exit "$status"
