# SPDX-License-Identifier: Apache-2.0
# The shm transport: the stream engine for control, process_vm_readv/writev
# for the bytes. Sources relative to src/.
include(${CMAKE_CURRENT_LIST_DIR}/../stream/stream.cmake)
set(nxc_tp_sources transport/shm/shm.c transport/shm/direct.c ${nxc_stream_sources})
