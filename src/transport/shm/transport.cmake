# SPDX-License-Identifier: Apache-2.0
# The shm transport: the stream engine for control, process_vm_readv/writev
# for the bytes. Sources relative to src/.
set(nxc_tp_sources transport/shm/shm.c transport/stream/stream.c)
