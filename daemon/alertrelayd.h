/*
 * Kept for the files that still include it (ctl.c, cluster.c, notify.c):
 * the daemon's shared declarations are in internal.h (ownership rule at
 * its top).  Include internal.h instead; this file goes once none does.
 *
 * ctl.c: read a tenant and an output through tenant_stats() and
 * sink_stats() (struct tenant_stats, struct sink_stats in internal.h),
 * not struct tenant's fields, and never the access token.
 */
#ifndef ALERTRELAYD_H
#define ALERTRELAYD_H

#include "internal.h"

#endif
