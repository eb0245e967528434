#!/usr/bin/env bash
# Install the Debian packages nxc needs to build, test and benchmark, when
# they are missing. Safe to run again; does nothing when all are present.
set -euo pipefail

packages=(
  build-essential cmake pkg-config   # toolchain
  libucx-dev ucx-utils               # UCX transport, ucx_info/ucx_perftest
  libjansson-dev                     # metadata JSON
  libsodium-dev                      # base64, random keys, constant-time compare
  zlib1g-dev                         # metadata compression
  uuid-dev                           # notification keys (UUID4)
  clang libclang-rt-14-dev           # libFuzzer build of the metadata fuzzer
  clang-format                       # CI format check
  iproute2 procps                    # network namespaces in tests, ps
  iperf3 gnuplot-nox                 # bench/compare peers and plot
)

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
echo "setup: all build dependencies present"
