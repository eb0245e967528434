# SPDX-License-Identifier: Apache-2.0
# The stream engine's sources, relative to src/; the transports built on it
# (shm, tcp) add them to theirs. Not a transport of its own: no transport.cmake.
set(nxc_stream_sources transport/stream/conn.c transport/stream/passive.c
                       transport/stream/active.c transport/stream/peer.c)
