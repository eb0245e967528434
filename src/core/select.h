/* SPDX-License-Identifier: Apache-2.0 */
/* Transport selection (select.c): which transport moves a transfer. */
#ifndef NXC_CORE_SELECT_H
#define NXC_CORE_SELECT_H

#include <stdbool.h>

#include "core/connector.h"
#include "core/metadata.h"
#include "nxc/nxc.h"
#include "transport/transport.h"

/* Choose the transport for a transfer to the peer of `md` from memory of
 * `kind`: the first, in this connector's order (fallbacks last unless the
 * user ordered them), that the peer offers and that says it reaches the peer.
 * `note` (may be NULL) hears every transport's verdict; with `all`, the ones
 * after the choice are asked too (nxc-info). NULL when none fits; then
 * *why_p (may be NULL) is the status a begin fails with: NXC_ERR_UNREACHABLE
 * when a transport found the peer gone, else NXC_ERR_NO_TRANSPORT. */
typedef void (*nxc__select_note_fn)(void *arg, const nxc__tp_t *tp, bool chosen, const char *why);
nxc__tp_t *nxc__select_transport(nxc_connector_t *c, const nxc__metadata_t *md,
                                 nxc_device_kind_t kind, const nxc__md_section_t **sec_p,
                                 nxc__select_note_fn note, void *arg, bool all,
                                 nxc_status_t *why_p);
/* Set op->tp to the transport of an active op (lock held), with the
 * peer's section for it in *sec_p; else fail naming every transport's
 * reason. */
nxc_status_t nxc__select_op_transport(nxc_connector_t *c, nxc_op_t *op,
                                      const nxc__md_section_t **sec_p);
/* Can a transport of `c` move memory of device `d`? NXC_ERR_NOT_SUPPORTED
 * naming `what` ("local") if none. */
nxc_status_t nxc__check_device(nxc_connector_t *c, nxc_device_t d, const char *what);

#endif
