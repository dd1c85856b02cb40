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
/* Make every appended record durable (write + fdatasync).  0 or -1. */
int		 spool_sync(struct spool *);
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
