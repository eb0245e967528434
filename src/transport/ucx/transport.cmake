# SPDX-License-Identifier: Apache-2.0
# The ucx transport needs UCX's pkg-config module; without it the transport
# is left out of the build (and of the registry) rather than failing it.
pkg_check_modules(UCX QUIET IMPORTED_TARGET GLOBAL ucx)
if(UCX_FOUND)
  set(nxc_tp_sources
      transport/ucx/ucx.c
      transport/ucx/peer.c
      transport/ucx/control.c
      transport/ucx/msg.c
      transport/ucx/rma.c
      transport/ucx/lifecycle.c
      transport/ucx/ucx_check.c)
  set(nxc_tp_pkg_modules UCX ucx)
else()
  set(nxc_tp_missing "UCX (pkg-config module ucx) not found")
endif()
