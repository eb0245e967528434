# SPDX-License-Identifier: Apache-2.0
"""examples/python/multimodal.py runs and verifies every byte."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("pattern,transport", [("read", "shm"), ("write", "tcp"), ("read", "ucx")])
def test_multimodal_example(pattern, transport):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python")
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "python", "multimodal.py"),
         "--pattern", pattern, "--transport", transport, "--requests", "4"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{pattern}: 4/4 requests verified" in out.stdout
    assert f"transport: {transport}" in out.stdout
