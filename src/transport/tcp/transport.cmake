# SPDX-License-Identifier: Apache-2.0
# The tcp transport: the stream engine over IPv4. Sources relative to src/.
include(${CMAKE_CURRENT_LIST_DIR}/../stream/stream.cmake)
set(nxc_tp_sources transport/tcp/tcp.c ${nxc_stream_sources})
