/* SPDX-License-Identifier: Apache-2.0 */
/* Scoped transport options (options.c), checked at connector creation. */
#ifndef NXC_CORE_OPTIONS_H
#define NXC_CORE_OPTIONS_H

#include "nxc/nxc.h"

/* Check and keep the items of the `options` parameter. */
nxc_status_t nxc__options_parse(nxc_connector_t *c, const char *text);
/* A shorthand field (tcp_address) sets option scope.key: checked alike,
 * and refused when the options text set that key too. */
nxc_status_t nxc__option_shorthand(nxc_connector_t *c, const char *field, const char *scope,
                                   const char *key, const char *value);

#endif
