/*
 * The durable spool: an append-only, checksummed queue of encoded messages
 * per output, kept in segment files under one directory.  Records become
 * readable once spool_sync() has made them durable; the reader acknowledges
 * what the SIEM has taken, and fully acknowledged segments are deleted.
 */
#ifndef AR_SPOOL_H
#define AR_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* A position in the spool: segment number and byte offset in it. */
struct spool_pos {
	uint64_t	seg;
	uint64_t	off;
};

struct spool;

/*
 * Open (creating, mode 0700) the spool in dir.  Scans existing segments,
 * verifies every record's checksum, truncates a torn tail and reports any
 * corrupt record with its file and offset (via log_warnx).
 */
struct spool	*spool_open(const char *dir, uint64_t max_bytes, char *err,
		    size_t errlen);
/* Syncs, closes, frees; NULL is a no-op. */
void		 spool_close(struct spool *);
void		 spool_set_max(struct spool *, uint64_t);
/* Segment size (default 16 MiB); for tests. */
void		 spool_set_segment_size(struct spool *, uint64_t);

/* Append one record (buffered).  0, or -1 with errno (ENOSPC, EIO...). */
int		 spool_append(struct spool *, const void *, size_t);
/*
 * Make every appended record durable (write + fdatasync), waiting for it.
 * 0 or -1; EBUSY while an asynchronous sync is in flight.
 */
int		 spool_sync(struct spool *);
/* Save the ack file if it changed (no sync): for an idle reader. */
void		 spool_save_ack(struct spool *);

/*
 * Asynchronous syncs (see the top of spool.c).  A job is the write and
 * fdatasync of what was appended, run by an executor on another thread;
 * one job per spool is in flight at a time.
 */
struct spool_job;
/* Run job on any thread (touches nothing but the job); then call done. */
typedef void	(*spool_submit_cb)(void *arg, struct spool_job *);
/* A waiter: error is 0 (durable) or an errno value. */
typedef void	(*spool_synced_cb)(void *arg, int error);

/* Hand jobs to submit from now on (NULL: syncs run inline, waiting). */
void		 spool_set_executor(struct spool *, spool_submit_cb, void *);
/*
 * Hand the last close of a file the spool deleted or replaced (a segment,
 * the old "ack") to closer, which closes fd on another thread, where the
 * file's blocks are freed (NULL: close here).  See "Freeing" in spool.c.
 */
typedef void	(*spool_closer_cb)(void *arg, int fd);
void		 spool_set_closer(struct spool *, spool_closer_cb, void *);
/* Called (from spool_job_done) whenever new records became readable. */
void		 spool_set_ready_cb(struct spool *, void (*)(void *), void *);
/*
 * Ask for every record appended so far to be made durable.  Returns 0
 * when it already is (no callback), -1 with errno when no sync could be
 * started (no callback), or 1: cb(arg, error) will be called once from
 * spool_job_done(), or from spool_close() with ECANCELED, and *ticket
 * names the request for spool_sync_cancel().  Without an executor the
 * sync runs inline and only 0 or -1 are returned.
 */
int		 spool_sync_async(struct spool *, spool_synced_cb, void *,
		    uint64_t *ticket);
/* Forget a request: its callback is never called.  Unknown: no-op. */
void		 spool_sync_cancel(struct spool *, uint64_t ticket);
/* Bytes appended and not yet durable (buffered or in flight). */
uint64_t	 spool_unsynced(const struct spool *);

/* For executors: the file I/O of a job (thread-safe); 0 or -1. */
int		 spool_job_run(struct spool_job *);
/*
 * On the loop, after spool_job_run: apply the result, start the next job
 * if one is wanted, call the waiters.  Frees the job (also when its spool
 * was closed meanwhile: then nothing else happens).
 */
void		 spool_job_done(struct spool_job *);
/* At or over spool_max_bytes of undelivered data. */
bool		 spool_full(const struct spool *);
uint64_t	 spool_bytes(const struct spool *);	/* undelivered */
uint64_t	 spool_records(const struct spool *);	/* undelivered */

/* Position just past the last durable record (valid after spool_sync). */
void		 spool_tail(const struct spool *, struct spool_pos *);
int		 spool_pos_cmp(const struct spool_pos *, const struct spool_pos *);
/* Position of the first undelivered record. */
void		 spool_head(const struct spool *, struct spool_pos *);
/*
 * Read the durable record at *pos into out (replacing its contents) and
 * advance *pos past it.  Returns 1 when a record was read, 0 at the end of
 * durable data, -1 on an I/O error.  Corrupt records are skipped with a
 * warning naming the file and offset.
 */
int		 spool_read(struct spool *, struct spool_pos *, struct buf *);
/* Everything before pos has been delivered; frees finished segments. */
int		 spool_ack(struct spool *, const struct spool_pos *);

#endif
