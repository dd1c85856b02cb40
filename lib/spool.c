/* The durable per-output spool: segment files, record checksums, the ack. */

/*
 * Layout.  The spool directory (mode 0700) holds segment files named
 * "%016llx.seg" (mode 0600), numbered upwards, and a file "ack".  Records
 * are appended to the last segment; a segment is closed when the next record
 * would take it past the segment size (16 MiB), so a record larger than that
 * gets a segment of its own.
 *
 * A record is a 12-byte header followed by the payload:
 *
 *	u32 magic	0x31535241, "ARS1" on disk (all fields little-endian)
 *	u32 length	payload bytes, at most SPOOL_MAX_RECORD
 *	u32 crc		crc32c over the length field and then the payload
 *
 * The crc covers the length so that a damaged length is detected too.
 *
 * Reading.  spool_read() checks every record's crc as it reads it, through
 * a window of 64 KiB of the segment: one pread per window, not two per
 * record (a sink emptying a backlog spent most of its longest loop turns
 * in those calls; tests/bench/RESULTS.md).  A read that does not continue
 * the previous one reads the disk again.
 *
 * Writing.  spool_append() only buffers; a job takes the buffer, writes it
 * at the end of the last segment (closing segments as they fill: a record
 * going past the segment size starts the next one, whose directory entry
 * the job fsyncs) and fdatasync()s it; only then do its records become
 * visible to spool_read(), which never moves past a segment a job in
 * flight still writes to.  When a write or a sync fails (ENOSPC, EFBIG,
 * EIO), the job truncates what it wrote, so no torn record is left behind,
 * and its records go back to the buffer for a later job to retry.
 *
 * Who runs the jobs.  Without an executor (spool_set_executor), inline:
 * spool_sync() takes, runs and completes one, and spool_append() does the
 * same first when the buffer (256 KiB) or the segment would overflow, as
 * this spool always did.  With one (the daemon's disk thread, daemon/
 * disk.c), the loop never waits: spool_sync_async() registers a waiter and
 * returns; jobs run on the thread and come back through spool_job_done().
 *
 * Why group commit on a thread (measured, tests/bench/RESULTS.md): with 20
 * tenants x 5,000 alerts at page_size = 1000 the loop spent 0.43-0.52 s of
 * a 3.0-3.5 s run in 708 fsync/fdatasync calls (six 256 KiB flushes per
 * page, the spool sync, the state file and its directory); on a slow disk
 * that time grows without bound and every tenant waits.  So: a waiter that
 * arrives while a job of this spool is in flight joins the next job, which
 * is taken when the last one in flight completes, so every page ready by
 * then shares one fdatasync; besides, a job is taken as soon as 1 MiB is
 * buffered (write behind), so the buffer stays small and nothing waits for
 * one huge write.  After (same bench, tests/bench/RESULTS.md "After"):
 * the loop thread makes one sync, at the spool's first open; with every
 * sync 10 ms longer the bench runs 2.26x the old code; with every sync
 * held, /metrics still answers in 5 ms.  Jobs of a spool run in order on
 * the one disk thread;
 * after a failure the jobs queued behind it do not write (struct
 * spool_io), and all their records are buffered again, in order, once the
 * last one is back.  A job owns its buffer and dup()ed descriptors, so the
 * thread shares nothing else with the loop; spool_close() detaches the
 * jobs in flight (they finish and are freed by spool_job_done; what they
 * wrote is found by the next open, as after a crash), calls every waiter
 * with ECANCELED, and drops records never handed to a job (never reported
 * durable, so their writers read them again).  A waiter's owner that goes
 * away first cancels it (spool_sync_cancel).
 * Until such a retry succeeds, spool_append() retries first (with an
 * executor: starts the retry) and refuses new records while it fails: a
 * writer that starts its page over after the error (as tenants do) must
 * not pile up copies of it in the buffer, which would all be written, as
 * duplicates, once space returns.
 * Durable records are never touched again.
 *
 * Opening.  Every record of every segment is verified.  A corrupt record
 * (bad magic, length or crc) is reported with log_warnx() and skipped by
 * scanning forward byte by byte for the next header whose crc matches.
 * Unrecoverable bytes at the end of the last segment are a torn write from
 * a crash and are truncated.  Memory holds one summary per segment, never
 * anything per record.
 *
 * Acknowledging.  "ack" holds the position of the first undelivered record
 * ("%016llx %llu %08x\n": segment, offset, crc32c of the text before the
 * crc).  It is replaced atomically (write "ack.tmp", rename), at most every
 * 100 ms, plus whenever segments are deleted and on spool_close(): after a
 * crash, records acknowledged during the last 100 ms may be sent again.
 * Duplicates are bounded that way; nothing undelivered is ever skipped.
 * Only spool_close() fsyncs it: an ack file that is older than the
 * deliveries, or lost or torn by a power failure (the crc tells), costs
 * duplicates, never records, so ten fsyncs a second would buy nothing.
 * A missing or corrupt ack file means starting from the oldest segment.
 *
 * Freeing.  Replacing "ack" and deleting a delivered segment change names
 * only; the blocks of the file that goes are freed when its last reference
 * goes, and on ext4 (with the discard option, or with the journal busy)
 * that can take milliseconds to tens of them.  Measured in the backfill
 * bench (perf sched, the loop thread): 196 waits in unlinkat, 0.60 s in
 * all, up to 57 ms, and 236 in renameat, up to 29 ms.  So with a closer
 * (spool_set_closer: a thread of daemon/disk.c's) the spool keeps a
 * descriptor of the file that goes (the segment's, or "ack" opened before
 * the rename) and hands it to the closer, whose thread does the freeing.
 * The names change at the same moments as before; only the freeing moves.
 */

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "spool.h"
#include "util.h"

#define SPOOL_MAGIC		0x31535241U
#define SPOOL_HDR		12
#define SPOOL_SEGMENT_SIZE	(16ULL * 1024 * 1024)
#define SPOOL_BUFFER		(256 * 1024)
#define SPOOL_MAX_RECORD	(256U * 1024 * 1024)
#define SPOOL_ACK_MS		100
#define SPOOL_WINDOW		(64 * 1024)

/* A read window over [0, end) of one segment, for sequential scans. */
struct spool_win {
	int		 fd;
	uint64_t	 end;
	char		*buf;
	size_t		 cap;
	uint64_t	 off;		/* file offset of buf[0] */
	size_t		 len;
};

/* What is kept per segment: no per-record index. */
struct spool_seg {
	uint64_t	 num;
	uint64_t	 size;		/* durable, verified length */
};

struct spool {
	char		*dir;
	char		*ackpath;
	int		 dirfd;
	uint64_t	 max;
	uint64_t	 segsize;

	struct spool_seg *segs;		/* ascending; the last one is written */
	size_t		 nsegs;
	int		 wfd;		/* the last segment, read-write */
	int		 rfd;		/* cached descriptor of segment rseg */
	uint64_t	 rseg;
	struct spool_win rwin;		/* spool_read's, over segment rwin_seg */
	uint64_t	 rwin_seg;

	struct buf	 pending;	/* appended, not yet durable */
	uint64_t	 npending;	/* records in it */
	int		 dirsync;	/* a segment was created: fsync dir */
	int		 trunc;		/* a failed write may have left bytes */
	int		 wfailed;	/* the last flush failed */
	int		 werrno;	/* ... with this error */

	/* Asynchronous syncs (see the top). */
	struct spool_job *jobs;		/* in flight, oldest first */
	struct spool_job **jobs_tail;
	size_t		 njobs;
	uint64_t	 jobs_bytes, jobs_records;	/* in flight */
	uint64_t	 jobseq;	/* sequence number of the last job */
	uint64_t	 wend;		/* where the next job writes */
	struct spool_io	*io;		/* shared with the jobs */
	int		 failing;	/* a job failed, others in flight */
	struct buf	 restore;	/* their records, to buffer again */
	uint64_t	 nrestore;
	struct buf	 spare[4];	/* jobs' buffers, for reuse */
	size_t		 nspare;
	struct spool_waiter *waiters;
	size_t		 nwaiters, waiters_cap;
	uint64_t	 tickets;	/* the last ticket handed out */
	spool_submit_cb	 submit;
	void		*submit_arg;
	spool_closer_cb	 closer;	/* last closes (see "Freeing") */
	void		*closer_arg;
	void		(*ready_cb)(void *);
	void		*ready_arg;

	struct spool_pos ack;		/* first undelivered record */
	int		 ackdirty;
	int		 ackfailed;	/* the last write failed (logged) */
	int64_t		 acktime;	/* mono_ms() of the last ack write */

	uint64_t	 bytes;		/* undelivered, headers included */
	uint64_t	 records;

	/*
	 * Where the reader's recent records end, with a running count, so
	 * spool_ack counts acknowledged records without re-reading them.
	 * Bounded; when it cannot help, spool_ack walks the records.
	 */
	struct spool_mark *marks;
	size_t		 mark_head, nmarks;
	uint64_t	 rd_seq, ack_seq;
	struct spool_pos rd_end;
	int		 rd_valid;
};

struct spool_mark {
	struct spool_pos pos;
	uint64_t	 seq;
};

/* A sync request: satisfied by job number need. */
struct spool_waiter {
	uint64_t	 ticket;
	uint64_t	 need;
	spool_synced_cb	 cb;
	void		*arg;
};

/* The bytes of data[from, from + len) go to segment seg at off. */
struct spool_piece {
	uint64_t	 seg;
	int		 fd;		/* a dup: the job's own */
	uint64_t	 off;
	size_t		 from, len;
};

/*
 * What a spool's jobs share on the executor's thread: after a failure the
 * jobs queued behind it do not write (they would leave a hole).  Reset by
 * the loop only when no job is in flight; refs are counted on the loop.
 */
struct spool_io {
	int		 failed;	/* errno of the failure, or 0 */
	unsigned	 refs;		/* the spool, and each job */
};

/*
 * A job owns its buffer and descriptors, so the thread that runs it shares
 * nothing with the loop but io; sp is cleared when the spool is closed
 * first.
 */
struct spool_job {
	struct spool_job *next;
	struct spool	*sp;
	struct spool_io	*io;
	uint64_t	 seq;
	struct buf	 data;
	uint64_t	 nrecords;
	struct spool_piece *pieces;
	size_t		 npieces;
	int		 dirfd;		/* a dup to fsync, or -1 */
	int		 trunc;		/* ftruncate pieces[0] first */
	int		 trunc_failed;	/* a failure left bytes behind */
	int		 async;		/* run by the executor */
	int		 err;		/* 0 or errno, set by spool_job_run */
	int		 skipped;	/* not run: an earlier job failed */
};

#define SPOOL_MARKS	16384

static int	pos_eq(const struct spool_pos *, const struct spool_pos *);
static void	mark_push(struct spool *, const struct spool_pos *);

static void
le32enc(unsigned char *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

static uint32_t
le32dec(const void *vp)
{
	const unsigned char *p = vp;

	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

/*
 * pread (write false) or pwrite exactly n bytes at off, through EINTR and
 * short transfers; reading past the end of the file is EIO.
 */
static int
pio_full(int fd, void *vp, size_t n, uint64_t off, bool write)
{
	char	*p = vp;
	ssize_t	 r;

	while (n > 0) {
		r = write ? pwrite(fd, p, n, (off_t)off) :
		    pread(fd, p, n, (off_t)off);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			return -1;
		if (r == 0) {
			errno = EIO;
			return -1;
		}
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int
pread_full(int fd, void *p, size_t n, uint64_t off)
{
	return pio_full(fd, p, n, off, false);
}

static int
pwrite_full(int fd, const void *p, size_t n, uint64_t off)
{
	return pio_full(fd, (void *)(uintptr_t)p, n, off, true);
}

static void
win_init(struct spool_win *w, int fd, uint64_t end)
{
	w->fd = fd;
	w->end = end;
	w->cap = SPOOL_WINDOW;
	w->buf = xmalloc(w->cap);
	w->off = w->len = 0;
}

static void
win_clear(struct spool_win *w)
{
	free(w->buf);
	w->buf = NULL;
}

/* Point *p at [off, off + n) (n <= cap, off + n <= end). */
static int
win_get(struct spool_win *w, uint64_t off, size_t n, const char **p)
{
	size_t	 want;

	if (off < w->off || off + n > w->off + w->len) {
		want = w->cap;
		if (w->end - off < want)
			want = (size_t)(w->end - off);
		w->len = 0;
		if (pread_full(w->fd, w->buf, want, off) == -1)
			return -1;
		w->off = off;
		w->len = want;
	}
	*p = w->buf + (off - w->off);
	return 0;
}

/*
 * Is there a valid record at off?  1 (payload length in *lenp), 0 with the
 * reason in *why, or -1 on an I/O error.
 */
static int
rec_valid(struct spool_win *w, uint64_t off, uint32_t *lenp,
    const char **why)
{
	const char	*p;
	uint32_t	 len, crc, c;
	uint64_t	 o, left;
	size_t		 n;

	if (off > w->end || w->end - off < SPOOL_HDR) {
		*why = "short header";
		return 0;
	}
	if (win_get(w, off, SPOOL_HDR, &p) == -1)
		return -1;
	if (le32dec(p) != SPOOL_MAGIC) {
		*why = "bad magic";
		return 0;
	}
	len = le32dec(p + 4);
	crc = le32dec(p + 8);
	if (len > SPOOL_MAX_RECORD || len > w->end - off - SPOOL_HDR) {
		*why = "bad length";
		return 0;
	}
	c = crc32c(0, p + 4, 4);
	for (o = off + SPOOL_HDR, left = len; left > 0; o += n, left -= n) {
		n = left < w->cap ? (size_t)left : w->cap;
		if (win_get(w, o, n, &p) == -1)
			return -1;
		c = crc32c(c, p, n);
	}
	if (c != crc) {
		*why = "bad checksum";
		return 0;
	}
	*lenp = len;
	return 1;
}

/* Find the first valid record after off: 1 with *next, 0 if none, -1. */
static int
rec_resync(struct spool_win *w, uint64_t off, uint64_t *next)
{
	static const unsigned char magic[4] = { 0x41, 0x52, 0x53, 0x31 };
	const char	*p, *q, *why;
	uint64_t	 o = off + 1, cand;
	uint32_t	 len;
	size_t		 n;
	int		 r;

	while (o <= w->end && w->end - o >= SPOOL_HDR) {
		n = w->end - o < w->cap ? (size_t)(w->end - o) : w->cap;
		if (win_get(w, o, n, &p) == -1)
			return -1;
		if ((q = memmem(p, n, magic, sizeof(magic))) == NULL) {
			o += n - (sizeof(magic) - 1);
			continue;
		}
		cand = o + (uint64_t)(q - p);
		if ((r = rec_valid(w, cand, &len, &why)) != 0) {
			*next = cand;
			return r;
		}
		o = cand + 1;
	}
	return 0;
}

/*
 * Walk the records of segment num from off to the window's end, counting
 * the valid ones that start at or after count_from; with warn, corrupt
 * records are logged.  *tail is where unrecoverable bytes start (the end
 * if there are none).
 */
static int
seg_walk(struct spool *sp, struct spool_win *w, uint64_t num, uint64_t off,
    uint64_t count_from, int warn, uint64_t *records, uint64_t *tail)
{
	const char	*why;
	uint64_t	 next;
	uint32_t	 len;
	int		 r;

	while (off < w->end) {
		if ((r = rec_valid(w, off, &len, &why)) == -1)
			return -1;
		if (r == 1) {
			if (off >= count_from)
				(*records)++;
			off += SPOOL_HDR + (uint64_t)len;
			continue;
		}
		if ((r = rec_resync(w, off, &next)) == -1)
			return -1;
		if (r == 0)
			break;
		if (warn)
			log_warnx("spool %s: corrupt record at %016" PRIx64
			    ".seg offset %" PRIu64 " (%s); skipping %" PRIu64
			    " bytes", sp->dir, num, off, why, next - off);
		off = next;
	}
	*tail = off;
	return 0;
}

static int
seg_cmp(const void *a, const void *b)
{
	const struct spool_seg *x = a, *y = b;

	if (x->num == y->num)
		return 0;
	return x->num < y->num ? -1 : 1;
}

/* Index of the first segment numbered num or higher (nsegs if none). */
static size_t
seg_find(const struct spool *sp, uint64_t num)
{
	size_t	 lo = 0, hi = sp->nsegs, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (sp->segs[mid].num < num)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void
seg_name(char *name, size_t len, uint64_t num)
{
	snprintf(name, len, "%016" PRIx64 ".seg", num);
}

/* Parse a segment file name; 0 and *num, or -1 if it is not one. */
static int
seg_parse(const char *name, uint64_t *num)
{
	uint64_t	 v = 0;
	int		 i, c;

	if (strlen(name) != 20 || strcmp(name + 16, ".seg") != 0)
		return -1;
	for (i = 0; i < 16; i++) {
		c = name[i];
		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return -1;
	}
	*num = v;
	return 0;
}

/* A descriptor to read segment num with (owned by the spool). */
static int
seg_fd(struct spool *sp, uint64_t num)
{
	char	 name[32];

	if (num == sp->segs[sp->nsegs - 1].num)
		return sp->wfd;
	if (sp->rfd != -1 && sp->rseg == num)
		return sp->rfd;
	if (sp->rfd != -1)
		close(sp->rfd);
	seg_name(name, sizeof(name), num);
	sp->rfd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	sp->rseg = num;
	return sp->rfd;
}

/* Create segment num as the new last segment. */
static int
seg_create(struct spool *sp, uint64_t num)
{
	char	 name[32];
	int	 fd;

	seg_name(name, sizeof(name), num);
	fd = openat(sp->dirfd, name,
	    O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1)
		return -1;
	if (fchmod(fd, 0600) == -1) {
		close(fd);
		unlinkat(sp->dirfd, name, 0);
		return -1;
	}
	if (sp->wfd != -1) {
		/* The old last segment stays readable through rfd. */
		if (sp->rfd != -1)
			close(sp->rfd);
		sp->rfd = sp->wfd;
		sp->rseg = sp->segs[sp->nsegs - 1].num;
	}
	sp->wfd = fd;
	sp->segs = xreallocarray(sp->segs, sp->nsegs + 1, sizeof(*sp->segs));
	sp->segs[sp->nsegs].num = num;
	sp->segs[sp->nsegs].size = 0;
	sp->nsegs++;
	sp->dirsync = 1;
	return 0;
}

/* The last close of a file whose name is gone: the closer's (see top). */
static void
close_later(struct spool *sp, int fd)
{
	if (fd == -1)
		return;
	if (sp->closer != NULL)
		sp->closer(sp->closer_arg, fd);
	else
		close(fd);
}

/* With a closer: a descriptor of name, which is about to go; else -1. */
static int
hold_open(struct spool *sp, const char *name)
{
	if (sp->closer == NULL)
		return -1;
	return openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

/*
 * Delete every segment numbered below num, except the one being written
 * (while opening, before wfd is set, there is none).
 */
static void
seg_drop_before(struct spool *sp, uint64_t num)
{
	char	 name[32];
	size_t	 n = 0;
	int	 fd;

	while (n < sp->nsegs && sp->segs[n].num < num &&
	    (sp->wfd == -1 || n + 1 < sp->nsegs)) {
		seg_name(name, sizeof(name), sp->segs[n].num);
		if (sp->rfd != -1 && sp->rseg == sp->segs[n].num) {
			fd = sp->rfd;
			sp->rfd = -1;
		} else
			fd = hold_open(sp, name);
		if (unlinkat(sp->dirfd, name, 0) == -1 && errno != ENOENT)
			log_warn("spool %s: cannot delete %s", sp->dir, name);
		close_later(sp, fd);
		n++;
	}
	if (n > 0) {
		memmove(sp->segs, sp->segs + n,
		    (sp->nsegs - n) * sizeof(*sp->segs));
		sp->nsegs -= n;
	}
}

/* Replace the ack file with line (write, optionally fsync, rename). */
static int
ack_store(struct spool *sp, const char *line, int durable)
{
	int	 fd, old, saved;

	fd = openat(sp->dirfd, "ack.tmp", O_WRONLY | O_CREAT | O_TRUNC |
	    O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1)
		return -1;
	if (fchmod(fd, 0600) == -1 ||
	    pwrite_full(fd, line, strlen(line), 0) == -1 ||
	    (durable && fdatasync(fd) == -1)) {
		saved = errno;
		close(fd);
		unlinkat(sp->dirfd, "ack.tmp", 0);
		errno = saved;
		return -1;
	}
	old = hold_open(sp, "ack");
	if (close(fd) == -1 ||
	    renameat(sp->dirfd, "ack.tmp", sp->dirfd, "ack") == -1) {
		saved = errno;
		unlinkat(sp->dirfd, "ack.tmp", 0);
		close_later(sp, old);
		errno = saved;
		return -1;
	}
	close_later(sp, old);
	if (durable)
		fsync(sp->dirfd);
	return 0;
}

/*
 * Write the ack position atomically (durable: also fsynced); failures are
 * logged here, once until a write succeeds again.
 */
static int
ack_write(struct spool *sp, int durable)
{
	char	 line[80];
	int	 n;

	n = snprintf(line, sizeof(line), "%016" PRIx64 " %" PRIu64,
	    sp->ack.seg, sp->ack.off);
	snprintf(line + n, sizeof(line) - (size_t)n, " %08" PRIx32 "\n",
	    crc32c(0, line, (size_t)n));
	sp->acktime = mono_ms();
	if (ack_store(sp, line, durable) == -1) {
		if (!sp->ackfailed)
			log_warn("spool %s: cannot save the ack file (records "
			    "may be sent again after a restart)", sp->dir);
		sp->ackfailed = 1;
		return -1;
	}
	if (sp->ackfailed)
		log_info("spool %s: ack file saved again", sp->dir);
	sp->ackfailed = 0;
	sp->ackdirty = 0;
	return 0;
}

/* Read the ack file into sp->ack; missing or corrupt means the start. */
static void
ack_load(struct spool *sp)
{
	struct buf		 b;
	unsigned long long	 seg, off;
	unsigned int		 crc;
	int			 n = 0;
	char			*sep;

	sp->ack.seg = sp->ack.off = 0;
	buf_init(&b);
	if (file_read_all(sp->ackpath, 128, &b) == -1) {
		if (errno != ENOENT)
			log_warn("spool %s: cannot read %s; delivering from "
			    "the oldest record", sp->dir, sp->ackpath);
		buf_clear(&b);
		return;
	}
	if (sscanf(b.data, "%16llx %20llu %8x\n%n", &seg, &off, &crc,
	    &n) != 3 || (size_t)n != b.len ||
	    (sep = strrchr(b.data, ' ')) == NULL ||
	    crc32c(0, b.data, (size_t)(sep - b.data)) != crc) {
		log_warnx("spool %s: corrupt %s; delivering from the oldest "
		    "record", sp->dir, sp->ackpath);
		buf_clear(&b);
		return;
	}
	sp->ack.seg = seg;
	sp->ack.off = off;
	buf_clear(&b);
}

/* Create the directory (0700 whatever the umask) and open it. */
static int
spool_mkdir(struct spool *sp, char *err, size_t errlen)
{
	if (mkdir(sp->dir, 0700) == -1 && errno != EEXIST)
		goto fail;
	if (chmod(sp->dir, 0700) == -1)
		goto fail;
	sp->dirfd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd == -1)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "spool %s: %s", sp->dir, strerror(errno));
	return -1;
}

/* List the segment files, sorted. */
static int
spool_list(struct spool *sp, char *err, size_t errlen)
{
	DIR		*d;
	struct dirent	*de;
	uint64_t	 num;
	int		 fd;

	if ((fd = dup(sp->dirfd)) == -1 || (d = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		snprintf(err, errlen, "spool %s: %s", sp->dir,
		    strerror(errno));
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (seg_parse(de->d_name, &num) == -1)
			continue;
		sp->segs = xreallocarray(sp->segs, sp->nsegs + 1,
		    sizeof(*sp->segs));
		sp->segs[sp->nsegs].num = num;
		sp->segs[sp->nsegs].size = 0;
		sp->nsegs++;
	}
	closedir(d);
	if (sp->nsegs > 1)
		qsort(sp->segs, sp->nsegs, sizeof(*sp->segs), seg_cmp);
	return 0;
}

/*
 * Verify segment i, set its size, add its undelivered bytes and records to
 * the totals, and truncate a torn tail of the last segment.
 */
static int
spool_verify(struct spool *sp, size_t i, char *err, size_t errlen)
{
	struct spool_seg *s = &sp->segs[i];
	struct spool_win w;
	struct stat	 st;
	char		 name[32];
	uint64_t	 from, tail;
	int		 fd, last = i + 1 == sp->nsegs;

	seg_name(name, sizeof(name), s->num);
	fd = openat(sp->dirfd, name, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC |
	    O_NOFOLLOW);
	if (fd == -1 || fstat(fd, &st) == -1)
		goto fail;
	from = s->num == sp->ack.seg ? sp->ack.off : 0;
	win_init(&w, fd, (uint64_t)st.st_size);
	if (seg_walk(sp, &w, s->num, 0, from, 1, &sp->records, &tail) == -1) {
		win_clear(&w);
		goto fail;
	}
	win_clear(&w);
	if (tail < (uint64_t)st.st_size && last) {
		log_warnx("spool %s: torn record at %s offset %" PRIu64
		    " (incomplete write); truncating %" PRIu64 " bytes",
		    sp->dir, name, tail, (uint64_t)st.st_size - tail);
		if (ftruncate(fd, (off_t)tail) == -1 || fdatasync(fd) == -1)
			goto fail;
	} else if (tail < (uint64_t)st.st_size)
		log_warnx("spool %s: corrupt record at %s offset %" PRIu64
		    " (no valid record follows); skipping %" PRIu64 " bytes",
		    sp->dir, name, tail, (uint64_t)st.st_size - tail);
	s->size = tail;
	if (from < s->size)
		sp->bytes += s->size - from;
	if (last)
		sp->wfd = fd;
	else
		close(fd);
	return 0;
fail:
	snprintf(err, errlen, "spool %s: %s: %s", sp->dir, name,
	    strerror(errno));
	if (fd != -1)
		close(fd);
	return -1;
}

/* Bring the ack position onto an existing segment, within its size. */
static void
spool_fix_ack(struct spool *sp)
{
	size_t	 i;

	i = seg_find(sp, sp->ack.seg);
	if (i == sp->nsegs)
		i = sp->nsegs - 1;
	if (sp->segs[i].num != sp->ack.seg) {
		sp->ack.seg = sp->segs[i].num;
		sp->ack.off = 0;
	}
	if (sp->ack.off > sp->segs[i].size)
		sp->ack.off = sp->segs[i].size;
}

struct spool *
spool_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen)
{
	struct spool	*sp;
	size_t		 i;

	sp = xcalloc(1, sizeof(*sp));
	sp->dir = xstrdup(dir);
	xasprintf(&sp->ackpath, "%s/ack", dir);
	sp->dirfd = sp->wfd = sp->rfd = -1;
	sp->max = max_bytes;
	sp->segsize = SPOOL_SEGMENT_SIZE;
	buf_init(&sp->pending);
	buf_init(&sp->restore);
	sp->jobs_tail = &sp->jobs;
	sp->io = xcalloc(1, sizeof(*sp->io));
	sp->io->refs = 1;
	sp->acktime = mono_ms();

	if (spool_mkdir(sp, err, errlen) == -1 ||
	    spool_list(sp, err, errlen) == -1)
		goto fail;
	ack_load(sp);
	/* Segments before the ack were delivered already. */
	seg_drop_before(sp, sp->ack.seg);
	if (sp->nsegs > 0 && sp->ack.seg < sp->segs[0].num) {
		sp->ack.seg = sp->segs[0].num;
		sp->ack.off = 0;
	}
	for (i = 0; i < sp->nsegs; i++) {
		if (spool_verify(sp, i, err, errlen) == -1)
			goto fail;
	}
	if (sp->nsegs == 0 &&
	    seg_create(sp, sp->ack.seg > 0 ? sp->ack.seg : 1) == -1) {
		snprintf(err, errlen, "spool %s: cannot create segment: %s",
		    sp->dir, strerror(errno));
		goto fail;
	}
	spool_fix_ack(sp);
	sp->wend = sp->segs[sp->nsegs - 1].size;
	if (sp->dirsync && fsync(sp->dirfd) == 0)
		sp->dirsync = 0;
	return sp;
fail:
	sp->ackdirty = 0;
	buf_reset(&sp->pending);
	spool_close(sp);
	return NULL;
}

#define SPOOL_CHUNK	(1024 * 1024)	/* a job is taken at this size */

static void
io_unref(struct spool_io *io)
{
	if (--io->refs == 0)
		free(io);
}

/* Close a job's descriptors and free it (its buffer may be kept). */
static void
job_free(struct spool *sp, struct spool_job *job)
{
	size_t	 i;

	for (i = 0; i < job->npieces; i++)
		close(job->pieces[i].fd);
	if (job->dirfd != -1)
		close(job->dirfd);
	if (sp != NULL && sp->nspare < nitems(sp->spare) &&
	    job->data.cap <= 4 * SPOOL_CHUNK) {
		buf_reset(&job->data);
		sp->spare[sp->nspare++] = job->data;
	} else
		buf_clear(&job->data);
	if (job->io != NULL)
		io_unref(job->io);
	free(job->pieces);
	free(job);
}

/* Add the piece data[from, end) at the write end of the last segment. */
static int
job_piece(struct spool *sp, struct spool_job *job, size_t from, size_t end)
{
	struct spool_piece *p;
	int		 fd;

	if ((fd = fcntl(sp->wfd, F_DUPFD_CLOEXEC, 0)) == -1)
		return -1;
	job->pieces = xreallocarray(job->pieces, job->npieces + 1,
	    sizeof(*job->pieces));
	p = &job->pieces[job->npieces++];
	p->seg = sp->segs[sp->nsegs - 1].num;
	p->fd = fd;
	p->off = sp->wend;
	p->from = from;
	p->len = end - from;
	return 0;
}

/* Put data (and n records) back in front of what is buffered. */
static void
pending_unshift(struct spool *sp, struct buf *data, uint64_t n)
{
	if (sp->pending.len > 0)
		buf_add(data, sp->pending.data, sp->pending.len);
	buf_clear(&sp->pending);
	sp->pending = *data;
	buf_init(data);
	sp->npending += n;
}

/*
 * Take what is buffered as the next job, split at segment boundaries; the
 * new segments are created here, their directory entry is synced by the
 * job.  NULL with errno 0 when there is nothing to do, or with errno when
 * a segment or a descriptor cannot be had (the records stay buffered).
 */
static struct spool_job *
job_take(struct spool *sp)
{
	struct spool_job *job;
	uint64_t	 cur, rl, wend0 = sp->wend;
	uint64_t	 seg0 = sp->segs[sp->nsegs - 1].num;
	size_t		 o, from = 0;
	int		 saved;

	errno = 0;
	if (sp->failing || (sp->pending.len == 0 && !sp->trunc &&
	    !sp->dirsync))
		return NULL;
	job = xcalloc(1, sizeof(*job));
	job->dirfd = -1;
	job->data = sp->pending;
	if (sp->nspare > 0)
		sp->pending = sp->spare[--sp->nspare];
	else
		buf_init(&sp->pending);
	job->nrecords = sp->npending;
	sp->npending = 0;
	job->trunc = sp->trunc;
	for (o = 0, cur = sp->wend; o < job->data.len; o += rl, cur += rl) {
		rl = SPOOL_HDR + le32dec(job->data.data + o + 4);
		if (cur == 0 || cur + rl <= sp->segsize)
			continue;
		if (job_piece(sp, job, from, o) == -1 ||
		    seg_create(sp, sp->segs[sp->nsegs - 1].num + 1) == -1)
			goto fail;
		sp->wend = 0;
		from = o;
		cur = 0;
	}
	if (job_piece(sp, job, from, job->data.len) == -1 || (sp->dirsync &&
	    (job->dirfd = fcntl(sp->dirfd, F_DUPFD_CLOEXEC, 0)) == -1))
		goto fail;
	sp->wend += job->data.len - from;
	sp->dirsync = sp->trunc = 0;
	job->sp = sp;
	job->io = sp->io;
	sp->io->refs++;
	job->seq = ++sp->jobseq;
	*sp->jobs_tail = job;
	sp->jobs_tail = &job->next;
	sp->njobs++;
	sp->jobs_bytes += job->data.len;
	sp->jobs_records += job->nrecords;
	return job;
fail:
	saved = errno;
	/* A segment created above stays, empty: the next job starts there. */
	sp->wend = sp->segs[sp->nsegs - 1].num == seg0 ? wend0 : 0;
	pending_unshift(sp, &job->data, job->nrecords);
	job->nrecords = 0;
	job_free(sp, job);
	errno = saved;
	return NULL;
}

int
spool_job_run(struct spool_job *job)
{
	struct spool_piece *p;
	size_t		 i;

	job->err = 0;
	if (job->io->failed != 0) {
		job->skipped = 1;
		job->err = job->io->failed;
		errno = job->err;
		return -1;
	}
	if (job->trunc && ftruncate(job->pieces[0].fd,
	    (off_t)job->pieces[0].off) == -1)
		goto fail;
	for (i = 0; i < job->npieces; i++) {
		p = &job->pieces[i];
		if (p->len > 0 && pwrite_full(p->fd, job->data.data + p->from,
		    p->len, p->off) == -1)
			goto fail;
	}
	if (job->dirfd != -1 && fsync(job->dirfd) == -1)
		goto fail;
	for (i = 0; i < job->npieces; i++)
		if (job->pieces[i].len > 0 &&
		    fdatasync(job->pieces[i].fd) == -1)
			goto fail;
	return 0;
fail:
	job->err = job->io->failed = errno != 0 ? errno : EIO;
	/* No torn record may stay behind (see the top). */
	for (i = 0; i < job->npieces; i++)
		if (ftruncate(job->pieces[i].fd,
		    (off_t)job->pieces[i].off) == -1)
			job->trunc_failed = 1;
	errno = job->err;
	return -1;
}

/* Start a job now: 0, or -1 with errno. */
static int
spool_take_submit(struct spool *sp)
{
	struct spool_job *job;

	if (sp->submit == NULL)
		return 0;
	if ((job = job_take(sp)) == NULL)
		return errno == 0 ? 0 : -1;
	job->async = 1;
	sp->submit(sp->submit_arg, job);
	return 0;
}

/* Start a job unless one is in flight (group commit): 0, or -1. */
static int
spool_kick(struct spool *sp)
{
	return sp->njobs > 0 ? 0 : spool_take_submit(sp);
}

/*
 * Call back, in the order they came, the waiters satisfied by job upto,
 * one at a time: a callback may add or cancel others.
 */
static void
waiters_call(struct spool *sp, uint64_t upto, int error)
{
	struct spool_waiter w;
	size_t		 i;

	for (;;) {
		for (i = 0; i < sp->nwaiters; i++)
			if (sp->waiters[i].need <= upto)
				break;
		if (i == sp->nwaiters)
			return;
		w = sp->waiters[i];
		memmove(sp->waiters + i, sp->waiters + i + 1,
		    (sp->nwaiters - i - 1) * sizeof(*sp->waiters));
		sp->nwaiters--;
		w.cb(w.arg, error);
	}
}

/* Apply a job's result to the spool (the oldest job in flight). */
static void
job_apply(struct spool *sp, struct spool_job *job)
{
	struct spool_piece *p;
	size_t		 i, k;

	if ((sp->jobs = job->next) == NULL)
		sp->jobs_tail = &sp->jobs;
	sp->njobs--;
	sp->jobs_bytes -= job->data.len;
	sp->jobs_records -= job->nrecords;
	if (job->err != 0) {
		/* This one and those behind it: buffered again, in order. */
		sp->failing = 1;
		buf_add(&sp->restore, job->data.data, job->data.len);
		sp->nrestore += job->nrecords;
		if (job->trunc_failed)
			sp->trunc = 1;
		if (job->dirfd != -1)
			sp->dirsync = 1;
		if (!job->skipped)
			sp->werrno = job->err;
		return;
	}
	for (i = 0; i < job->npieces; i++) {
		p = &job->pieces[i];
		k = seg_find(sp, p->seg);
		if (k < sp->nsegs && sp->segs[k].num == p->seg)
			sp->segs[k].size = p->off + p->len;
	}
	sp->wfailed = 0;
}

/* The last job after a failure is back: buffer their records again. */
static void
failure_end(struct spool *sp)
{
	pending_unshift(sp, &sp->restore, sp->nrestore);
	sp->nrestore = 0;
	sp->io->failed = 0;
	sp->failing = 0;
	sp->wfailed = 1;
	sp->wend = sp->segs[sp->nsegs - 1].size;
}

void
spool_job_done(struct spool_job *job)
{
	struct spool	*sp = job->sp;
	uint64_t	 seq = job->seq;
	int		 err = job->err, readable, more = 0, kerr = 0;
	size_t		 i;

	if (sp == NULL) {		/* closed meanwhile: see spool_close */
		job_free(NULL, job);
		return;
	}
	job_apply(sp, job);
	/* An inline flush's caller knows: only completions announce. */
	readable = err == 0 && job->nrecords > 0 && job->async;
	job_free(sp, job);
	if (sp->failing && sp->njobs == 0)
		failure_end(sp);
	for (i = 0; i < sp->nwaiters; i++)
		more |= sp->waiters[i].need > seq;
	/* After a failure, only a waiting writer retries (no busy loop). */
	if (sp->submit != NULL && ((more && sp->njobs == 0) ||
	    (!sp->wfailed && sp->pending.len >= SPOOL_CHUNK)) &&
	    spool_take_submit(sp) == -1)
		kerr = errno;
	if (readable && sp->ready_cb != NULL)
		sp->ready_cb(sp->ready_arg);
	waiters_call(sp, seq, err);
	if (kerr != 0)			/* nobody would ever call them */
		waiters_call(sp, UINT64_MAX, kerr);
}

/* Write the buffered records and make them durable, waiting for it. */
static int
spool_flush(struct spool *sp)
{
	struct spool_job *job;
	int		 err;

	if (sp->njobs > 0) {
		errno = EBUSY;
		return -1;
	}
	if ((job = job_take(sp)) == NULL)
		return errno == 0 ? 0 : -1;
	spool_job_run(job);
	err = job->err;
	spool_job_done(job);
	errno = err;
	return err == 0 ? 0 : -1;
}

void
spool_close(struct spool *sp)
{
	struct spool_job *job;

	if (sp == NULL)
		return;
	if (sp->njobs > 0) {
		/* They run on and are freed by spool_job_done (detached). */
		for (job = sp->jobs; job != NULL; job = job->next)
			job->sp = NULL;
		sp->jobs = NULL;
		sp->njobs = 0;
		if (sp->pending.len > 0)
			log_warnx("spool %s: %zu bytes of records not written "
			    "on close (a sync was in flight; they were never "
			    "reported durable)", sp->dir, sp->pending.len);
	} else if (sp->wfd != -1 && spool_flush(sp) == -1)
		log_warn("spool %s: %zu bytes of records not written on close",
		    sp->dir, sp->pending.len);
	waiters_call(sp, UINT64_MAX, ECANCELED);
	if (sp->ackdirty)
		ack_write(sp, 1);
	if (sp->wfd != -1)
		close(sp->wfd);
	if (sp->rfd != -1)
		close(sp->rfd);
	if (sp->dirfd != -1)
		close(sp->dirfd);
	win_clear(&sp->rwin);
	buf_clear(&sp->pending);
	buf_clear(&sp->restore);
	while (sp->nspare > 0)
		buf_clear(&sp->spare[--sp->nspare]);
	io_unref(sp->io);
	free(sp->waiters);
	free(sp->segs);
	free(sp->marks);
	free(sp->ackpath);
	free(sp->dir);
	free(sp);
}

void
spool_set_max(struct spool *sp, uint64_t max)
{
	sp->max = max;
}

void
spool_set_segment_size(struct spool *sp, uint64_t size)
{
	sp->segsize = size;
}

int
spool_append(struct spool *sp, const void *data, size_t len)
{
	unsigned char	 hdr[SPOOL_HDR];
	uint64_t	 r = SPOOL_HDR + (uint64_t)len;

	if (len > SPOOL_MAX_RECORD) {
		errno = EMSGSIZE;
		return -1;
	}
	if ((sp->wfailed || sp->failing) && sp->submit != NULL) {
		/* Retry in the background; refuse records until it worked. */
		spool_kick(sp);
		errno = sp->werrno;
		return -1;
	}
	if (sp->wfailed && spool_flush(sp) == -1)
		return -1;
	/* Inline syncs: flush a full buffer or segment first, as it fills. */
	if (sp->submit == NULL && sp->pending.len > 0 &&
	    (sp->pending.len + r > SPOOL_BUFFER || sp->pending.len + r +
	    sp->segs[sp->nsegs - 1].size > sp->segsize) &&
	    spool_flush(sp) == -1)
		return -1;
	le32enc(hdr, SPOOL_MAGIC);
	le32enc(hdr + 4, (uint32_t)len);
	le32enc(hdr + 8, crc32c(crc32c(0, hdr + 4, 4), data, len));
	buf_add(&sp->pending, hdr, sizeof(hdr));
	buf_add(&sp->pending, data, len);
	sp->bytes += r;
	sp->records++;
	sp->npending++;
	/* Write behind: a failure is the next sync's to report. */
	if (sp->pending.len >= SPOOL_CHUNK)
		spool_take_submit(sp);
	return 0;
}

int
spool_sync(struct spool *sp)
{
	int	 rc, saved;

	rc = spool_flush(sp);
	saved = errno;
	spool_save_ack(sp);
	errno = saved;
	return rc;
}

void
spool_save_ack(struct spool *sp)
{
	if (sp->ackdirty && mono_ms() - sp->acktime >= SPOOL_ACK_MS)
		ack_write(sp, 0);
}

void
spool_set_executor(struct spool *sp, spool_submit_cb submit, void *arg)
{
	sp->submit = submit;
	sp->submit_arg = arg;
}

void
spool_set_closer(struct spool *sp, spool_closer_cb closer, void *arg)
{
	sp->closer = closer;
	sp->closer_arg = arg;
}

void
spool_set_ready_cb(struct spool *sp, void (*cb)(void *), void *arg)
{
	sp->ready_cb = cb;
	sp->ready_arg = arg;
}

int
spool_sync_async(struct spool *sp, spool_synced_cb cb, void *arg,
    uint64_t *ticket)
{
	struct spool_waiter *w;
	uint64_t	 need;

	if (sp->submit == NULL)
		return spool_sync(sp) == -1 ? -1 : 0;
	if (sp->pending.len > 0 || sp->trunc || sp->dirsync || sp->wfailed ||
	    sp->failing)
		need = sp->jobseq + 1;
	else if (sp->njobs > 0)
		need = sp->jobseq;
	else
		return 0;
	if (sp->nwaiters == sp->waiters_cap) {
		sp->waiters_cap = sp->waiters_cap ? 2 * sp->waiters_cap : 8;
		sp->waiters = xreallocarray(sp->waiters, sp->waiters_cap,
		    sizeof(*sp->waiters));
	}
	w = &sp->waiters[sp->nwaiters++];
	w->ticket = *ticket = ++sp->tickets;
	w->need = need;
	w->cb = cb;
	w->arg = arg;
	if (spool_kick(sp) == -1) {
		sp->nwaiters--;
		return -1;
	}
	return 1;
}

void
spool_sync_cancel(struct spool *sp, uint64_t ticket)
{
	size_t	 i;

	for (i = 0; i < sp->nwaiters; i++) {
		if (sp->waiters[i].ticket != ticket)
			continue;
		memmove(sp->waiters + i, sp->waiters + i + 1,
		    (sp->nwaiters - i - 1) * sizeof(*sp->waiters));
		sp->nwaiters--;
		return;
	}
}

uint64_t
spool_unsynced(const struct spool *sp)
{
	return sp->pending.len + sp->jobs_bytes + sp->restore.len;
}

bool
spool_full(const struct spool *sp)
{
	return sp->bytes >= sp->max;
}

uint64_t
spool_bytes(const struct spool *sp)
{
	return sp->bytes;
}

uint64_t
spool_records(const struct spool *sp)
{
	return sp->records;
}

void
spool_head(const struct spool *sp, struct spool_pos *pos)
{
	*pos = sp->ack;
}

/*
 * Read the record at off of segment s: 1, 0 if corrupt (*why), or -1.
 * Through the spool's read window: one pread per SPOOL_WINDOW of records
 * instead of two per record (a sink emptying a backlog made 2 system calls
 * per record, the longest part of its loop turns).  Bytes below a
 * segment's verified size never change, so the window stays good as the
 * last segment grows; it is keyed by segment number, never reused, and
 * emptied when a read does not continue the last one (a reader starting
 * again at the head reads the disk, and sees corruption found since).
 */
static int
rec_read(struct spool *sp, int fd, const struct spool_seg *s, uint64_t off,
    struct buf *out, const char **why)
{
	struct spool_win *w = &sp->rwin;
	const char	*p;
	uint32_t	 len;
	int		 r;

	buf_reset(out);
	if (w->buf == NULL)
		win_init(w, fd, s->size);
	if (sp->rwin_seg != s->num || w->fd != fd) {
		sp->rwin_seg = s->num;
		w->fd = fd;
		w->len = 0;
	}
	w->end = s->size;
	if ((r = rec_valid(w, off, &len, why)) != 1)
		return r;
	buf_reserve(out, len);
	if (len <= w->cap) {
		/* Still in the window rec_valid checked it through. */
		if (win_get(w, off + SPOOL_HDR, len, &p) == -1)
			return -1;
		memcpy(out->data, p, len);
	} else if (pread_full(fd, out->data, len, off + SPOOL_HDR) == -1)
		return -1;
	out->len = len;
	out->data[len] = '\0';
	return 1;
}

/* Skip the corrupt record at pos with a warning; 0 or -1. */
static int
spool_skip(struct spool *sp, int fd, const struct spool_seg *s,
    struct spool_pos *pos, const char *why)
{
	struct spool_win w;
	uint64_t	 next;
	int		 r;

	win_init(&w, fd, s->size);
	r = rec_resync(&w, pos->off, &next);
	win_clear(&w);
	if (r == -1)
		return -1;
	if (r == 0)
		next = s->size;
	log_warnx("spool %s: corrupt record at %016" PRIx64 ".seg offset %"
	    PRIu64 " (%s); skipping %" PRIu64 " bytes", sp->dir, s->num,
	    pos->off, why, next - pos->off);
	pos->off = next;
	return 0;
}

/*
 * Will the job in flight still add records to segment num?  The reader
 * must not move on to the next segment before they are there.
 */
static int
seg_growing(const struct spool *sp, uint64_t num)
{
	const struct spool_job *job;
	size_t		 i;

	for (job = sp->jobs; job != NULL; job = job->next)
		for (i = 0; i < job->npieces; i++)
			if (job->pieces[i].seg == num &&
			    job->pieces[i].len > 0)
				return 1;
	return 0;
}

int
spool_read(struct spool *sp, struct spool_pos *pos, struct buf *out)
{
	const struct spool_seg *s;
	const char	*why;
	size_t		 i;
	int		 fd, r;

	struct spool_pos start = *pos;

	buf_reset(out);
	if (!pos_eq(&start, &sp->rd_end))
		sp->rwin.len = 0;	/* not sequential: read the disk again */
	if (!pos_eq(&start, &sp->rd_end) || !sp->rd_valid) {
		/* A reader (re)starting at the head: count from the ack. */
		sp->nmarks = 0;
		sp->rd_valid = pos_eq(&start, &sp->ack);
		sp->rd_seq = sp->ack_seq;
	}
	for (;;) {
		if ((i = seg_find(sp, pos->seg)) == sp->nsegs)
			return 0;
		s = &sp->segs[i];
		if (s->num != pos->seg) {
			pos->seg = s->num;
			pos->off = 0;
		}
		if (pos->off >= s->size) {
			if (i + 1 == sp->nsegs || seg_growing(sp, s->num))
				return 0;
			pos->seg = sp->segs[i + 1].num;
			pos->off = 0;
			continue;
		}
		if ((fd = seg_fd(sp, s->num)) == -1)
			return -1;
		if ((r = rec_read(sp, fd, s, pos->off, out, &why)) == -1)
			return -1;
		if (r == 1)
			break;
		if (spool_skip(sp, fd, s, pos, why) == -1)
			return -1;
	}
	pos->off += SPOOL_HDR + (uint64_t)out->len;
	if (pos->off == s->size && i + 1 < sp->nsegs &&
	    !seg_growing(sp, s->num)) {
		pos->seg = sp->segs[i + 1].num;
		pos->off = 0;
	}
	mark_push(sp, pos);
	return 1;
}

static int
pos_eq(const struct spool_pos *a, const struct spool_pos *b)
{
	return a->seg == b->seg && a->off == b->off;
}

/* Remember where the record just read ends (see struct spool). */
static void
mark_push(struct spool *sp, const struct spool_pos *pos)
{
	struct spool_mark *m;

	sp->rd_end = *pos;
	sp->rd_seq++;
	if (!sp->rd_valid)
		return;
	if (sp->nmarks == SPOOL_MARKS) {
		sp->rd_valid = 0;	/* too far ahead: walk on ack */
		return;
	}
	if (sp->marks == NULL)
		sp->marks = xcalloc(SPOOL_MARKS, sizeof(*sp->marks));
	m = &sp->marks[(sp->mark_head + sp->nmarks++) % SPOOL_MARKS];
	m->pos = *pos;
	m->seq = sp->rd_seq;
}

/* Records between the ack and pos from the marks; -1 if unknown. */
static int64_t
mark_count(struct spool *sp, const struct spool_pos *pos)
{
	size_t		 k;
	struct spool_mark *m;
	int64_t		 n;

	if (!sp->rd_valid)
		return -1;
	for (k = 0; k < sp->nmarks; k++) {
		m = &sp->marks[(sp->mark_head + k) % SPOOL_MARKS];
		if (!pos_eq(&m->pos, pos))
			continue;
		n = (int64_t)(m->seq - sp->ack_seq);
		sp->ack_seq = m->seq;
		sp->mark_head = (sp->mark_head + k + 1) % SPOOL_MARKS;
		sp->nmarks -= k + 1;
		return n;
	}
	return -1;
}

/* Segment i's part between the ack and pos, [from, to); false past pos. */
static bool
seg_span(const struct spool *sp, size_t i, const struct spool_pos *pos,
    uint64_t *from, uint64_t *to)
{
	if (sp->segs[i].num > pos->seg)
		return false;
	*from = sp->segs[i].num == sp->ack.seg ? sp->ack.off : 0;
	*to = sp->segs[i].num == pos->seg ? pos->off : sp->segs[i].size;
	return true;
}

/* Bytes between the ack and pos, from the segment sizes. */
static uint64_t
spool_distance(struct spool *sp, const struct spool_pos *pos)
{
	size_t		 i;
	uint64_t	 from, to, bytes = 0;

	for (i = seg_find(sp, sp->ack.seg); i < sp->nsegs &&
	    seg_span(sp, i, pos, &from, &to); i++)
		if (to > from)
			bytes += to - from;
	return bytes;
}

/* Count the records between the ack and pos (the bytes are the distance). */
static int
spool_count(struct spool *sp, const struct spool_pos *pos, uint64_t *records,
    uint64_t *bytes)
{
	struct spool_win w;
	size_t		 i;
	uint64_t	 from, to, tail;
	int		 fd, r;

	for (i = seg_find(sp, sp->ack.seg); i < sp->nsegs &&
	    seg_span(sp, i, pos, &from, &to); i++) {
		if (to <= from)
			continue;
		*bytes += to - from;
		if ((fd = seg_fd(sp, sp->segs[i].num)) == -1)
			return -1;
		win_init(&w, fd, to);
		r = seg_walk(sp, &w, sp->segs[i].num, from, from, 0, records,
		    &tail);
		win_clear(&w);
		if (r == -1)
			return -1;
	}
	return 0;
}

int
spool_ack(struct spool *sp, const struct spool_pos *pos)
{
	uint64_t	 records = 0, bytes = 0;
	size_t		 i;
	int64_t		 n;

	if (pos->seg < sp->ack.seg ||
	    (pos->seg == sp->ack.seg && pos->off <= sp->ack.off))
		return 0;
	i = seg_find(sp, pos->seg);
	if (i == sp->nsegs || sp->segs[i].num != pos->seg ||
	    pos->off > sp->segs[i].size) {
		errno = EINVAL;
		return -1;
	}
	if ((n = mark_count(sp, pos)) >= 0) {
		records = (uint64_t)n;
		bytes = spool_distance(sp, pos);
	} else {
		sp->rd_valid = 0;
		if (spool_count(sp, pos, &records, &bytes) == -1)
			return -1;
	}
	sp->records -= records < sp->records ? records : sp->records;
	sp->bytes -= bytes < sp->bytes ? bytes : sp->bytes;
	sp->ack = *pos;
	if (i + 1 == sp->nsegs && pos->off == sp->segs[i].size) {
		/* All durable data delivered: resynchronise the counters. */
		sp->records = sp->npending;
		sp->bytes = sp->pending.len;
		sp->records += sp->jobs_records + sp->nrestore;
		sp->bytes += sp->jobs_bytes + sp->restore.len;
	}
	sp->ackdirty = 1;
	if (sp->segs[0].num < pos->seg) {
		/*
		 * Record the ack before the segments disappear (should it
		 * be lost, reading starts at the oldest segment left).
		 */
		ack_write(sp, 0);
		seg_drop_before(sp, pos->seg);
	} else if (mono_ms() - sp->acktime >= SPOOL_ACK_MS)
		ack_write(sp, 0);
	return 0;
}

void
spool_tail(const struct spool *sp, struct spool_pos *pos)
{
	if (sp->nsegs == 0) {
		*pos = sp->ack;
		return;
	}
	pos->seg = sp->segs[sp->nsegs - 1].num;
	pos->off = sp->segs[sp->nsegs - 1].size;
}

int
spool_pos_cmp(const struct spool_pos *a, const struct spool_pos *b)
{
	if (a->seg != b->seg)
		return a->seg < b->seg ? -1 : 1;
	if (a->off != b->off)
		return a->off < b->off ? -1 : 1;
	return 0;
}
