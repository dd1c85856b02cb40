/*
 * alertrelayd: the daemon's map (HACKING.md draws it) and the rule that
 * keeps its transitions safe; main (alertrelayd.c) includes this, every
 * other file in daemon/ includes internal.h, which declares what the
 * rooms share.
 *
 * Ownership rule.  Every request whose answer arrives later (token,
 * alerts page, check-tenant, backfill, SMTP, etcd, a page commit's disk
 * syncs) has exactly one owner, the object whose field holds its struct
 * http_req (struct smtp_job, struct commit, or timer), and the callback's
 * argument is that owner or something that owns it.  Freeing or
 * reconfiguring the owner cancels the request (http_cancel, smtp_cancel:
 * the callback never runs) or detaches it (commit_detach: the commit
 * finishes on its own, the callback never runs).
 * Nobody else keeps a pointer to an object that can be freed under it:
 * a callback that must reach a
 * sibling looks it up afresh from the common owner (the token's answer
 * goes to its tenant, which finds the catch-ups waiting at that moment),
 * and an object a callback may still reach is freed from a deferred
 * event.  An answer to a request made for an older configuration is never
 * used by the new one (the token carries a credential fingerprint).
 */
#ifndef ALERTRELAYD_H
#define ALERTRELAYD_H

#include "internal.h"

#endif
