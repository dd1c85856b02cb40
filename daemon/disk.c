/* disk: the one thread that syncs files, so the loop never waits for it. */

/*
 * Every fdatasync/fsync the daemon needs while running (spool jobs, state
 * file saves, and the reads that must come after a save: disk_load) is a
 * work item run by one worker thread, in submission
 * order; its completion comes back to the loop through an eventfd watched
 * by the base, and the item's done callback runs there.  One worker keeps
 * jobs of one spool and saves of one file in order without any locking
 * beyond the queue (a slow sync of one spool delays the others' syncs,
 * never the loop).  The thread touches only the item: buffers and
 * descriptors belong to it until done is called.
 *
 * A second thread does the last closes of files the spools deleted or
 * replaced (spool_set_closer): that is where ext4 frees their blocks,
 * which took up to 57 ms in the backfill bench.  It has a queue of its own
 * so that freeing never delays a sync; nothing comes back from it.
 *
 * Ownership: a state-file save returns its item; the owner that goes away
 * first calls disk_cancel() on it, after which its callback is never
 * called (the file is still written).  Spool jobs are detached by
 * spool_close() instead (see lib/spool.c).  disk_free() comes after every
 * owner is gone: it lets the worker finish the queue, then completes what
 * is left without blocking on anything but that.
 */
#include <sys/eventfd.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct disk_work {
	struct disk_work *next;
	int		(*run)(void *);
	void		(*done)(void *, int);
	void		*arg;
	int		 err;
	/* State-file saves and loads. */
	char		*path;
	struct buf	 data;
	disk_done_cb	 cb;
	disk_loaded_cb	 lcb;
	size_t		 max;
	void		*cb_arg;
};

/*
 * Last closes that may wait for the closer thread: DISK_CLOSES_MAX, at most
 * nofile / 16, at least 2.  Past that (a stuck disk while a sink goes on
 * acknowledging) the loop closes, rather than hold descriptors the
 * daemon's own work needs.
 */
#define DISK_CLOSES_MAX		256

struct disk {
	pthread_t	 thread;
	pthread_mutex_t	 mtx;
	pthread_cond_t	 cond;
	struct disk_work *todo, **todo_tail;	/* FIFO, worker's */
	struct disk_work *done, **done_tail;	/* FIFO, loop's */
	bool		 stop;
	int		 efd;
	struct event	*ev;
	uint64_t	 submitted, completed;

	/* The closer thread's own queue (see the top). */
	pthread_t	 cthread;
	pthread_mutex_t	 cmtx;
	pthread_cond_t	 ccond;
	int		 cfds[DISK_CLOSES_MAX];
	unsigned	 ncfds, cmax;
	bool		 cstop;
};

static void
work_push(struct disk_work ***tail, struct disk_work *w)
{
	w->next = NULL;
	**tail = w;
	*tail = &w->next;
}

/* The worker: run items in order, hand them back, wake the loop. */
static void *
disk_main(void *arg)
{
	struct disk	*d = arg;
	struct disk_work *w;
	uint64_t	 one = 1;

	pthread_mutex_lock(&d->mtx);
	for (;;) {
		while (d->todo == NULL && !d->stop)
			pthread_cond_wait(&d->cond, &d->mtx);
		if ((w = d->todo) == NULL)
			break;
		if ((d->todo = w->next) == NULL)
			d->todo_tail = &d->todo;
		pthread_mutex_unlock(&d->mtx);
		errno = 0;
		w->err = w->run(w->arg) == -1 ? (errno ? errno : EIO) : 0;
		pthread_mutex_lock(&d->mtx);
		work_push(&d->done_tail, w);
		while (write(d->efd, &one, sizeof(one)) == -1 &&
		    errno == EINTR)
			;
	}
	pthread_mutex_unlock(&d->mtx);
	return NULL;
}

/* The closer: close what is queued; at stop, what is left, then end. */
static void *
disk_closer_main(void *arg)
{
	struct disk	*d = arg;
	int		 fd;

	pthread_mutex_lock(&d->cmtx);
	for (;;) {
		while (d->ncfds == 0 && !d->cstop)
			pthread_cond_wait(&d->ccond, &d->cmtx);
		if (d->ncfds == 0)
			break;
		fd = d->cfds[--d->ncfds];
		pthread_mutex_unlock(&d->cmtx);
		close(fd);
		pthread_mutex_lock(&d->cmtx);
	}
	pthread_mutex_unlock(&d->cmtx);
	return NULL;
}

/* Completions: call every finished item's done, in order. */
static void
disk_complete(struct disk *d)
{
	struct disk_work *w, *list;

	pthread_mutex_lock(&d->mtx);
	list = d->done;
	d->done = NULL;
	d->done_tail = &d->done;
	pthread_mutex_unlock(&d->mtx);
	while ((w = list) != NULL) {
		list = w->next;
		d->completed++;
		w->done(w->arg, w->err);
		free(w);
	}
}

static void
disk_event_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t	 n;

	while (read(fd, &n, sizeof(n)) == -1 && errno == EINTR)
		;
	disk_complete(arg);
}

struct disk *
disk_new(struct event_base *base)
{
	struct disk	*d;
	int		 rc;

	d = xcalloc(1, sizeof(*d));
	d->todo_tail = &d->todo;
	d->done_tail = &d->done;
	if ((d->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1)
		fatal("eventfd");
	if ((d->ev = event_new(base, d->efd, EV_READ | EV_PERSIST,
	    disk_event_cb, d)) == NULL || event_add(d->ev, NULL) == -1)
		fatalx("event_new");
	pthread_mutex_init(&d->mtx, NULL);
	pthread_cond_init(&d->cond, NULL);
	d->cmax = nofile_share(DISK_CLOSES_MAX, 16);
	pthread_mutex_init(&d->cmtx, NULL);
	pthread_cond_init(&d->ccond, NULL);
	if ((rc = pthread_create(&d->thread, NULL, disk_main, d)) != 0 ||
	    (rc = pthread_create(&d->cthread, NULL, disk_closer_main,
	    d)) != 0) {
		errno = rc;
		fatal("pthread_create");
	}
	return d;
}

void
disk_free(struct disk *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->mtx);
	d->stop = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->mtx);
	pthread_join(d->thread, NULL);
	pthread_mutex_lock(&d->cmtx);
	d->cstop = true;
	pthread_cond_signal(&d->ccond);
	pthread_mutex_unlock(&d->cmtx);
	pthread_join(d->cthread, NULL);
	disk_complete(d);
	event_free(d->ev);
	close(d->efd);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->mtx);
	pthread_cond_destroy(&d->ccond);
	pthread_mutex_destroy(&d->cmtx);
	free(d);
}

/* Queue an item for the worker. */
static void
disk_submit(struct disk *d, struct disk_work *w)
{
	pthread_mutex_lock(&d->mtx);
	work_push(&d->todo_tail, w);
	d->submitted++;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->mtx);
}

static int
spool_work_run(void *arg)
{
	return spool_job_run(arg);
}

/* A spool job: errors are in the job, spool_job_done reports them. */
static void
spool_work_done(void *arg, int err)
{
	spool_job_done(arg);
}

/* The spool executor (spool_set_executor): the worker runs the job. */
static void
disk_spool_submit(void *arg, struct spool_job *job)
{
	struct disk_work *w;

	w = xcalloc(1, sizeof(*w));
	w->run = spool_work_run;
	w->done = spool_work_done;
	w->arg = job;
	disk_submit(arg, w);
}

/*
 * The spools' closer (spool_set_closer): fd's name is gone; its last close
 * frees the file's blocks on the closer thread.  With the queue full (see
 * DISK_CLOSES_MAX) the loop closes it.
 */
static void
disk_close(void *arg, int fd)
{
	struct disk	*d = arg;

	pthread_mutex_lock(&d->cmtx);
	if (d->ncfds >= d->cmax) {
		pthread_mutex_unlock(&d->cmtx);
		close(fd);
		return;
	}
	d->cfds[d->ncfds++] = fd;
	pthread_cond_signal(&d->ccond);
	pthread_mutex_unlock(&d->cmtx);
}

void
disk_attach_spool(struct disk *d, struct spool *sp)
{
	spool_set_executor(sp, d != NULL ? disk_spool_submit : NULL, d);
	spool_set_closer(sp, d != NULL ? disk_close : NULL, d);
}

static int
save_run(void *arg)
{
	struct disk_work *w = arg;

	return file_write_atomic(w->path, w->data.data, w->data.len, 0600);
}

static void
save_done(void *arg, int err)
{
	struct disk_work *w = arg;

	if (w->cb != NULL)
		w->cb(w->cb_arg, err);
	free(w->path);
	buf_clear(&w->data);
}

/* An item on the file at path (a save or a load), for the owner arg. */
static struct disk_work *
file_work(const char *path, int (*run)(void *), void (*done)(void *, int),
    void *arg)
{
	struct disk_work *w;

	w = xcalloc(1, sizeof(*w));
	w->run = run;
	w->done = done;
	w->arg = w;
	w->path = xstrdup(path);
	buf_init(&w->data);
	w->cb_arg = arg;
	return w;
}

struct disk_work *
disk_save(struct disk *d, const char *path, struct buf *data,
    disk_done_cb cb, void *arg)
{
	struct disk_work *w = file_work(path, save_run, save_done, arg);

	w->data = *data;
	buf_init(data);
	w->cb = cb;
	disk_submit(d, w);
	return w;
}

static int
load_run(void *arg)
{
	struct disk_work *w = arg;

	return file_read_all(w->path, w->max, &w->data);
}

static void
load_done(void *arg, int err)
{
	struct disk_work *w = arg;

	if (w->lcb != NULL)
		w->lcb(w->cb_arg, err, &w->data);
	free(w->path);
	buf_clear(&w->data);
}

struct disk_work *
disk_load(struct disk *d, const char *path, size_t max, disk_loaded_cb cb,
    void *arg)
{
	struct disk_work *w = file_work(path, load_run, load_done, arg);

	w->max = max;
	w->lcb = cb;
	disk_submit(d, w);
	return w;
}

void
disk_cancel(struct disk_work *w)
{
	if (w != NULL)
		w->cb = NULL, w->lcb = NULL;
}

uint64_t
disk_pending(const struct disk *d)
{
	return d->submitted - d->completed;
}
