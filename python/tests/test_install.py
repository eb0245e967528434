# SPDX-License-Identifier: Apache-2.0
"""`pip install ./python` into a venv (Debian 12: pip refuses system installs)
finds the installed library by its soname, not the checkout's build tree."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, "build", "release")


def run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert out.returncode == 0, f"{cmd}: {out.stdout}{out.stderr}"
    return out.stdout


def test_pip_install_into_venv(tmp_path):
    try:
        import ensurepip  # noqa: F401 - python3-venv
    except ImportError:
        pytest.skip("python3-venv is not installed")
    if not os.path.isdir(BUILD) or shutil.which("cmake") is None:
        pytest.skip("no release build to install")
    prefix = tmp_path / "prefix"
    run(["cmake", "--install", BUILD, "--prefix", str(prefix)])
    src = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "python"), src,
                    ignore=shutil.ignore_patterns("tests", "__pycache__", "build", "*.egg-info"))
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    py = str(venv / "bin" / "python")
    run([py, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-index", str(src)])
    libdir = next(str(p.parent) for p in prefix.rglob("libnxc.so.0"))
    env = {k: v for k, v in os.environ.items() if k not in ("NXC_LIBRARY", "PYTHONPATH")}
    env["LD_LIBRARY_PATH"] = libdir
    out = run([py, "-c", "import nxc, nxc._lib as l, nxc.nixl_connect as c; "
               "print(nxc.__file__); print(l.path); c.Connector().close()"],
              env=env, cwd=str(tmp_path))
    where, lib = out.split()
    assert where.startswith(str(venv))
    assert lib == "libnxc.so.0" or lib.startswith(libdir), lib
