# SPDX-License-Identifier: Apache-2.0
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)
for p in (PKG, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

TRANSPORTS = ["shm", "tcp", "ucx"]


@pytest.fixture(params=TRANSPORTS)
def transport(request, monkeypatch):
    """Each transport in turn, for this process and the children it spawns
    (NXC_TRANSPORTS); skipped where it cannot start."""
    import nxc.nixl_connect as connect

    monkeypatch.setenv("NXC_TRANSPORTS", request.param)
    try:
        connect.Connector().close()
    except connect.NotSupportedError as e:
        pytest.skip(f"{request.param} cannot start here: {e}")
    return request.param
