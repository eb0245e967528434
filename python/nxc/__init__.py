# SPDX-License-Identifier: Apache-2.0
"""nxc: move memory between processes (shm, tcp, UCX).

`nxc.nixl_connect` has the API of Dynamo's `dynamo.nixl_connect`; its names
are also importable from `nxc` itself."""

from . import nixl_connect
from ._lib import lib as _clib
from .nixl_connect import *  # noqa: F401,F403
from .nixl_connect import __all__ as _nc_all

__version__ = _clib.nxc_version().decode()
__all__ = list(_nc_all) + ["nixl_connect", "__version__"]
