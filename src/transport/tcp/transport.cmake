# SPDX-License-Identifier: Apache-2.0
# The tcp transport: the stream engine over IPv4. Sources relative to src/.
set(nxc_tp_sources transport/tcp/tcp.c transport/stream/stream.c)
