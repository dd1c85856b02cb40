/* commit: a page's commit, its disk syncs off the loop (disk.c's thread). */

/*
 * A reader (the alerts catch-up, the incident reader, a backfill) that has
 * queued a page on its tenant's outputs commits it: every routed output's
 * spool and every notifier's spool is synced on the disk thread; once all
 * of them are durable, the tenant's state as it was when the commit began
 * is saved there too (temp file, fsync, rename, directory fsync); then the
 * reader hears done(arg, 0, NULL) from the loop and goes on.  The loop
 * never waits for the disk, and the saved cursor never runs ahead of the
 * records: the state is taken when the commit begins, and the syncs it
 * waits for cover every record appended before that, by any reader of the
 * tenant (a tenant that queued nothing since its last commit, with none
 * in flight, waits for none).  When a spool cannot be written, nothing
 * is saved and done(arg, errno, output) lets the reader forget the page
 * (tenant_state_reread) and back off, as it did when the syncs ran in the
 * loop.
 *
 * Saves of one tenant run in the order the commits began (the disk thread
 * is first in, first out, and a commit's syncs complete no earlier than
 * those of a commit that began before it on the same spools), so the file
 * ends with the newest state.
 *
 * Ownership: the tenant owns its commits (a list, t->commits).  A reader
 * that goes away detaches its commit (commit_detach): its done is never
 * called, and the commit still finishes, saving the state (it is exact:
 * only durable records are in it) or, when a spool failed, re-reading the
 * tenant's saved state itself.  tenant_free detaches the tenant
 * (commit_tenant_gone): the commit keeps its own copy of the path and the
 * bytes.  An output or notifier freed meanwhile cancels the wait
 * (ECANCELED, from spool_close): that commit saves nothing.  While stopping
 * the relay waits for r->commits to reach 0 (relay.c), so the pages of a
 * SIGTERM are saved before the outputs close.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* One spool sync a commit waits for. */
struct commit_wait {
	struct commit	*c;
	struct sink	*sink;		/* or */
	struct notifier	*notifier;
	char		*output;	/* the sink's name, for the reader */
	uint64_t	 ticket;
	bool		 pending;
};

struct commit {
	struct commit	*next;		/* the tenant's list */
	struct relay	*relay;
	struct tenant	*t;		/* NULL once the tenant is freed */
	char		*name;		/* the tenant's, for logs */
	char		*path;		/* its state file */
	struct buf	 state;		/* the state when the commit began */
	bool		 save;
	struct commit_wait *waits;
	size_t		 nwaits;
	unsigned	 pending;	/* waits not yet called back */
	int		 err;		/* of the first output that failed */
	char		*output;	/* its name */
	struct disk_work *work;		/* the save, once submitted */
	struct event	*ev;		/* done with nothing to wait for */
	commit_done_cb	 done;		/* NULL: detached */
	void		*arg;
};

static void
commit_unlink(struct commit *c)
{
	struct commit	**pp;

	if (c->t == NULL)
		return;
	for (pp = &c->t->commits; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	c->t->ncommits--;
	c->t = NULL;
}

/* The end: tell the reader (if any), then free. */
static void
commit_finish(struct commit *c, int error, const char *output)
{
	commit_done_cb	 done = c->done;
	void		*arg = c->arg;
	struct tenant	*t = c->t;
	size_t		 i;

	commit_unlink(c);
	c->relay->commits--;
	/* A detached commit that failed forgets the page itself. */
	if (error != 0 && done == NULL && t != NULL)
		tenant_state_reread(t);
	if (done != NULL)
		done(arg, error, output);
	if (c->ev != NULL)
		event_free(c->ev);
	buf_clear(&c->state);
	for (i = 0; i < c->nwaits; i++)
		free(c->waits[i].output);
	free(c->waits);
	free(c->output);
	free(c->path);
	free(c->name);
	free(c);
}

static void
commit_saved_cb(void *arg, int error)
{
	struct commit	*c = arg;

	c->work = NULL;
	/* The reader logs its own failure; a detached one is logged here. */
	if (error != 0 && c->done == NULL)
		log_tenant(LOG_ERR, c->name, "cannot save state %s: %s",
		    c->path, strerror(error));
	else if (c->t != NULL)
		c->t->state_unsaved = false;
	commit_finish(c, error, NULL);
}

/* Every spool is durable (or one failed): save, or end. */
static void
commit_synced(struct commit *c)
{
	if (c->err != 0) {
		commit_finish(c, c->err, c->output);
		return;
	}
	if (!c->save) {
		commit_finish(c, 0, NULL);
		return;
	}
	c->work = disk_save(c->relay->disk, c->path, &c->state,
	    commit_saved_cb, c);
}

static void
commit_synced_cb(void *arg, int error)
{
	struct commit_wait *w = arg;
	struct commit	*c = w->c;

	w->pending = false;
	if (error != 0 && w->sink != NULL && c->err == 0) {
		c->err = error;
		c->output = w->output;
		w->output = NULL;
	} else if (error != 0 && w->notifier != NULL && error != ECANCELED)
		log_tenant(LOG_WARNING, c->name, "notify %s: cannot write "
		    "mail spool: %s", notifier_conf(w->notifier)->name,
		    strerror(error));
	if (--c->pending == 0)
		commit_synced(c);
}

/* Nothing to wait for: end from the loop, never from commit_start. */
static void
commit_now_cb(evutil_socket_t fd, short what, void *arg)
{
	commit_synced(arg);
}

/* Ask one spool for a sync; false when it could not start. */
static void
commit_wait_start(struct commit *c, struct commit_wait *w)
{
	struct relay	*r = c->relay;
	int		 rc;

	w->c = c;
	if (w->sink != NULL)
		rc = sink_sync_async(w->sink, r->disk, commit_synced_cb, w,
		    &w->ticket);
	else
		rc = notifier_sync_async(w->notifier, r->disk,
		    commit_synced_cb, w, &w->ticket);
	if (rc == 1) {
		w->pending = true;
		c->pending++;
	} else if (rc == -1) {
		w->pending = true;
		c->pending++;
		commit_synced_cb(w, errno != 0 ? errno : EIO);
	}
}

struct commit *
commit_start(struct tenant *t, bool save, commit_done_cb done, void *arg)
{
	struct relay	*r = t->relay;
	struct commit	*c;
	size_t		 i;
	bool		 wait;

	/*
	 * A tenant that queued nothing since its last commit, with none in
	 * flight, waits for no spool: another tenant's slow page on the same
	 * output must not hold its idle polls.
	 */
	wait = t->unsynced || t->ncommits > 0;
	t->unsynced = false;
	c = xcalloc(1, sizeof(*c));
	c->relay = r;
	c->t = t;
	c->name = xstrdup(t->name);
	c->path = xstrdup(t->state_path);
	/* A state file found unusable stays as it is for cursor set. */
	c->save = save && !t->state_bad;
	c->done = done;
	c->arg = arg;
	buf_init(&c->state);
	if (c->save) {
		t->state_unsaved = true;
		tenant_state_format(&t->state, &c->state);
	}
	c->next = t->commits;
	t->commits = c;
	t->ncommits++;
	r->commits++;
	c->nwaits = wait ? t->nsinks + r->nnotifiers : 0;
	c->waits = xcalloc(c->nwaits ? c->nwaits : 1, sizeof(*c->waits));
	c->pending = 1;			/* held while the waits start */
	for (i = 0; i < c->nwaits; i++) {
		if (i < t->nsinks) {
			c->waits[i].sink = t->sinks[i];
			c->waits[i].output = xstrdup(sink_conf(t->sinks[i])->name);
		}
		else
			c->waits[i].notifier = r->notifiers[i - t->nsinks];
		commit_wait_start(c, &c->waits[i]);
	}
	if (--c->pending == 0) {
		c->ev = evtimer_new(r->base, commit_now_cb, c);
		timer_in(c->ev, 0);
	}
	return c;
}

void
commit_detach(struct commit *c)
{
	if (c != NULL)
		c->done = NULL;
}

void
commit_tenant_gone(struct tenant *t)
{
	struct commit	*c;

	while ((c = t->commits) != NULL) {
		c->done = NULL;
		commit_unlink(c);
	}
}
