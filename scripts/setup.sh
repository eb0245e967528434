#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install the Debian packages nxc needs, when they are missing. Safe to run
# again; does nothing when all are present.
#   scripts/setup.sh         what building and running nxc need (demo, build)
#   scripts/setup.sh --dev   also what testing, fuzzing, benchmarking and the
#                            CI checks add (test, stress, CI, bench/compare)
set -euo pipefail

dev=0
case "${1:-}" in
  "") ;;
  --dev) dev=1 ;;
  *) echo "setup: unknown argument '$1' (--dev)" >&2; exit 2 ;;
esac

packages=(
  build-essential cmake pkg-config   # toolchain
  libucx-dev                         # UCX transport
  libyajl-dev                        # metadata JSON
  libjansson-dev                     # the tests' own JSON (a second parser checks the first)
  libsodium-dev                      # random keys, constant-time compare
  libssl-dev                         # libcrypto: base64 of the metadata blob
  zlib1g-dev                         # metadata compression
  uuid-dev                           # notification keys (UUID4)
  uthash-dev                         # the core's indexes of live ops and grants
)
if ((dev)); then
  packages+=(
    clang libclang-rt-14-dev         # clang build, libFuzzer build of the metadata fuzzer
    clang-format                     # CI format check
    iproute2 procps                  # network namespaces in tests, ps
    ucx-utils                        # ucx_info/ucx_perftest (bench/compare, bench/twohost)
    iperf3 gnuplot-nox               # bench/compare peers and plot
    python3 python3-pytest python3-pytest-asyncio python3-venv  # the Python package (python/)
    python3-numpy python3-pydantic python3-torch
  )
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install packages (run as root or with sudo)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ((dev)); then
  echo "setup: all build, test and development packages present"
else
  echo "setup: all build packages present"
fi
