#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Install what is missing, build, and run the multimodal demo: an encode
# worker hands image embeddings to a prefill worker through nxc.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release
exec build/release/examples/multimodal/nxc-multimodal-demo "$@"
