/* Unit tests for the durable spool (lib/spool.c). */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <malloc.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#if defined(__SANITIZE_ADDRESS__)
/* From <sanitizer/allocator_interface.h>, not always installed. */
size_t	__sanitizer_get_current_allocated_bytes(void);
#endif

#include "log.h"
#include "spool.h"
#include "util.h"

struct fixture {
	char	 top[64];
	char	 dir[96];
	char	 logpath[96];
	int	 saved_stderr;
	struct rlimit fsize;
};

static int
rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int
setup(void **state)
{
	struct fixture	*f = xcalloc(1, sizeof(*f));

	snprintf(f->top, sizeof(f->top), "/tmp/test_spool.XXXXXX");
	assert_non_null(mkdtemp(f->top));
	snprintf(f->dir, sizeof(f->dir), "%s/spool", f->top);
	snprintf(f->logpath, sizeof(f->logpath), "%s/log", f->top);
	f->saved_stderr = -1;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &f->fsize), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;

	/* A failed test must not leave its limits to the next one. */
	setrlimit(RLIMIT_FSIZE, &f->fsize);
	signal(SIGXFSZ, SIG_DFL);
	umask(022);
	if (f->saved_stderr != -1) {
		dup2(f->saved_stderr, STDERR_FILENO);
		close(f->saved_stderr);
	}
	nftw(f->top, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Send stderr (where the log goes) to a file. */
static void
capture_begin(struct fixture *f)
{
	int	 fd;

	fflush(stderr);
	f->saved_stderr = dup(STDERR_FILENO);
	fd = open(f->logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd != -1);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

/* Restore stderr; returns what was logged (caller frees). */
static char *
capture_end(struct fixture *f)
{
	struct buf	 b;

	fflush(stderr);
	dup2(f->saved_stderr, STDERR_FILENO);
	close(f->saved_stderr);
	f->saved_stderr = -1;
	buf_init(&b);
	assert_int_equal(file_read_all(f->logpath, 1 << 20, &b), 0);
	if (b.data == NULL)
		buf_add(&b, "", 0);
	return b.data;
}

/* Record i: deterministic content of varying length. */
static size_t
rec_make(int i, char *out, size_t outlen)
{
	size_t	 n, len = 10 + (size_t)(i * 37) % 290;

	n = (size_t)snprintf(out, outlen, "record %d:", i);
	for (; n < len && n < outlen; n++)
		out[n] = (char)('a' + (i + n) % 26);
	return n;
}

static void
append_range(struct spool *sp, int from, int to)
{
	char	 r[512];
	size_t	 n;
	int	 i;

	for (i = from; i < to; i++) {
		n = rec_make(i, r, sizeof(r));
		assert_int_equal(spool_append(sp, r, n), 0);
	}
}

static uint64_t
range_bytes(int from, int to)
{
	char		 r[512];
	uint64_t	 sum = 0;
	int		 i;

	for (i = from; i < to; i++)
		sum += 12 + rec_make(i, r, sizeof(r));
	return sum;
}

/* Read the next record and check it is record i. */
static void
expect_rec(struct spool *sp, struct spool_pos *pos, struct buf *b, int i)
{
	char	 r[512];
	size_t	 n;

	n = rec_make(i, r, sizeof(r));
	assert_int_equal(spool_read(sp, pos, b), 1);
	assert_int_equal(b->len, n);
	assert_memory_equal(b->data, r, n);
}

static int
count_segments(const char *dir)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	assert_non_null(d = opendir(dir));
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) == 20 &&
		    strcmp(de->d_name + 16, ".seg") == 0)
			n++;
	}
	closedir(d);
	return n;
}

static struct spool *
open_ok(const char *dir, uint64_t segsize)
{
	struct spool	*sp;
	char		 err[256];

	sp = spool_open(dir, 1ULL << 30, err, sizeof(err));
	if (sp == NULL)
		fail_msg("spool_open: %s", err);
	if (segsize != 0)
		spool_set_segment_size(sp, segsize);
	return sp;
}

static void
seg_path(char *out, size_t len, const char *dir, uint64_t num)
{
	snprintf(out, len, "%s/%016llx.seg", dir, (unsigned long long)num);
}

static void
test_roundtrip_segments(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b;
	int		 i;

	buf_init(&b);
	sp = open_ok(f->dir, 4096);
	append_range(sp, 0, 1000);
	assert_int_equal(spool_sync(sp), 0);
	assert_int_equal(spool_records(sp), 1000);
	assert_int_equal(spool_bytes(sp), range_bytes(0, 1000));
	assert_true(count_segments(f->dir) > 10);

	spool_head(sp, &pos);
	for (i = 0; i < 1000; i++) {
		expect_rec(sp, &pos, &b, i);
		if (i % 100 == 99) {
			assert_int_equal(spool_ack(sp, &pos), 0);
			assert_int_equal(spool_records(sp), 1000 - i - 1);
			assert_int_equal(spool_bytes(sp),
			    range_bytes(i + 1, 1000));
		}
	}
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	assert_int_equal(spool_records(sp), 0);
	assert_int_equal(spool_bytes(sp), 0);
	/* Delivered segments are gone; only the one being written stays. */
	assert_int_equal(count_segments(f->dir), 1);

	/* A record bigger than a segment gets one of its own. */
	buf_reset(&b);
	for (i = 0; i < 10000; i++)
		buf_addc(&b, (char)('A' + i % 26));
	assert_int_equal(spool_append(sp, b.data, b.len), 0);
	append_range(sp, 1000, 1001);
	assert_int_equal(spool_sync(sp), 0);
	assert_int_equal(spool_read(sp, &pos, &b), 1);
	assert_int_equal(b.len, 10000);
	assert_int_equal(b.data[9999], 'A' + 9999 % 26);
	expect_rec(sp, &pos, &b, 1000);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	spool_close(sp);
	buf_clear(&b);
}

static void
test_reopen_resumes_at_ack(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b;
	int		 i;

	buf_init(&b);
	sp = open_ok(f->dir, 2048);
	append_range(sp, 0, 300);
	assert_int_equal(spool_sync(sp), 0);
	spool_head(sp, &pos);
	for (i = 0; i < 120; i++)
		expect_rec(sp, &pos, &b, i);
	assert_int_equal(spool_ack(sp, &pos), 0);
	spool_close(sp);

	sp = open_ok(f->dir, 2048);
	assert_int_equal(spool_records(sp), 180);
	assert_int_equal(spool_bytes(sp), range_bytes(120, 300));
	append_range(sp, 300, 310);
	assert_int_equal(spool_sync(sp), 0);
	spool_head(sp, &pos);
	for (i = 120; i < 310; i++)
		expect_rec(sp, &pos, &b, i);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	spool_close(sp);
	buf_clear(&b);
}

/* A crash right after an ack: records come again, none is lost. */
static void
test_crash_after_ack(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b;
	char		 r[512];
	size_t		 n;
	pid_t		 pid;
	int		 i, status, first;

	buf_init(&b);
	sp = open_ok(f->dir, 0);
	append_range(sp, 0, 100);
	spool_close(sp);
	if ((pid = fork()) == 0) {
		sp = open_ok(f->dir, 0);
		spool_head(sp, &pos);
		for (i = 0; i < 50; i++)
			if (spool_read(sp, &pos, &b) != 1)
				_exit(1);
		_exit(spool_ack(sp, &pos) == 0 ? 0 : 1);	/* no close */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	sp = open_ok(f->dir, 0);
	spool_head(sp, &pos);
	assert_int_equal(spool_read(sp, &pos, &b), 1);
	assert_int_equal(sscanf(b.data, "record %d:", &first), 1);
	assert_true(first >= 0 && first <= 50);
	assert_int_equal(spool_records(sp), 100 - first);
	n = rec_make(first, r, sizeof(r));
	assert_memory_equal(b.data, r, n);
	for (i = first + 1; i < 100; i++)
		expect_rec(sp, &pos, &b, i);
	spool_close(sp);
	buf_clear(&b);
}

static void
test_unsynced_invisible(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b;
	int		 i;

	buf_init(&b);
	sp = open_ok(f->dir, 0);
	append_range(sp, 0, 5);
	spool_head(sp, &pos);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	assert_int_equal(spool_records(sp), 5);	/* pending counts */
	assert_int_equal(spool_sync(sp), 0);
	expect_rec(sp, &pos, &b, 0);
	append_range(sp, 5, 6);
	expect_rec(sp, &pos, &b, 1);
	expect_rec(sp, &pos, &b, 2);
	expect_rec(sp, &pos, &b, 3);
	expect_rec(sp, &pos, &b, 4);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	spool_close(sp);		/* close makes record 5 durable */

	sp = open_ok(f->dir, 0);
	assert_int_equal(spool_records(sp), 6);
	spool_head(sp, &pos);
	for (i = 0; i < 6; i++)
		expect_rec(sp, &pos, &b, i);
	spool_close(sp);
	buf_clear(&b);
}

static void
test_torn_tail(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b;
	struct stat	 sb;
	char		 path[160], *log;
	int		 i;

	buf_init(&b);
	sp = open_ok(f->dir, 0);
	append_range(sp, 0, 10);
	spool_close(sp);
	seg_path(path, sizeof(path), f->dir, 1);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(truncate(path, sb.st_size - 5), 0);

	capture_begin(f);
	sp = open_ok(f->dir, 0);
	log = capture_end(f);
	assert_non_null(strstr(log, "torn record at 0000000000000001.seg"));
	free(log);
	assert_int_equal(spool_records(sp), 9);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, range_bytes(0, 9));

	/* New records follow the intact ones cleanly. */
	append_range(sp, 10, 12);
	spool_close(sp);
	sp = open_ok(f->dir, 0);
	spool_head(sp, &pos);
	for (i = 0; i < 9; i++)
		expect_rec(sp, &pos, &b, i);
	expect_rec(sp, &pos, &b, 10);
	expect_rec(sp, &pos, &b, 11);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	spool_close(sp);

	/* A torn header (a few bytes of garbage) is dropped as well. */
	assert_int_equal(stat(path, &sb), 0);
	i = open(path, O_WRONLY | O_APPEND);
	assert_int_equal(write(i, "ARS1\x40", 5), 5);
	close(i);
	capture_begin(f);
	sp = open_ok(f->dir, 0);
	free(capture_end(f));
	assert_int_equal(spool_records(sp), 11);
	spool_close(sp);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, range_bytes(0, 9) + range_bytes(10, 12));
	buf_clear(&b);
}

/* Flip one byte of path at off. */
static void
flip(const char *path, uint64_t off)
{
	unsigned char	 c;
	int		 fd;

	assert_true((fd = open(path, O_RDWR)) != -1);
	assert_int_equal(pread(fd, &c, 1, (off_t)off), 1);
	c ^= 0x10;
	assert_int_equal(pwrite(fd, &c, 1, (off_t)off), 1);
	close(fd);
}

static void
test_bit_flip(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos, at[200];
	struct buf	 b;
	char		 path[160], want[128], *log;
	int		 i, k, nseg;

	buf_init(&b);
	sp = open_ok(f->dir, 4096);
	append_range(sp, 0, 200);
	assert_int_equal(spool_sync(sp), 0);
	spool_head(sp, &pos);
	for (i = 0; i < 200; i++) {
		at[i] = pos;
		expect_rec(sp, &pos, &b, i);
	}
	spool_close(sp);
	nseg = count_segments(f->dir);
	assert_true(nseg > 3);
	/* 7: payload byte; 60: the magic; 150: the length field. */
	assert_true(at[7].seg == 1 && at[60].seg > 1 &&
	    at[150].seg < (uint64_t)nseg && at[150].seg != at[60].seg);
	seg_path(path, sizeof(path), f->dir, at[7].seg);
	flip(path, at[7].off + 20);
	seg_path(path, sizeof(path), f->dir, at[60].seg);
	flip(path, at[60].off);
	seg_path(path, sizeof(path), f->dir, at[150].seg);
	flip(path, at[150].off + 5);
	/* And one in the middle of the last segment. */
	for (i = 199; at[i - 1].seg == at[199].seg; i--)
		;
	i += 2;
	assert_true(i < 199 && at[i].seg == (uint64_t)nseg);
	seg_path(path, sizeof(path), f->dir, at[i].seg);
	flip(path, at[i].off + 14);

	capture_begin(f);
	sp = open_ok(f->dir, 4096);
	log = capture_end(f);
	snprintf(want, sizeof(want), "corrupt record at %016llx.seg offset "
	    "%llu (bad checksum); skipping", (unsigned long long)at[7].seg,
	    (unsigned long long)at[7].off);
	assert_non_null(strstr(log, want));
	snprintf(want, sizeof(want), "corrupt record at %016llx.seg offset "
	    "%llu (bad magic)", (unsigned long long)at[60].seg,
	    (unsigned long long)at[60].off);
	assert_non_null(strstr(log, want));
	free(log);
	assert_int_equal(spool_records(sp), 196);

	capture_begin(f);
	spool_head(sp, &pos);
	for (k = 0; k < 200; k++) {
		if (k == 7 || k == 60 || k == 150 || k == i)
			continue;
		expect_rec(sp, &pos, &b, k);
	}
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	assert_int_equal(spool_ack(sp, &pos), 0);
	assert_int_equal(spool_records(sp), 0);
	assert_int_equal(spool_bytes(sp), 0);
	spool_close(sp);
	log = capture_end(f);
	assert_non_null(strstr(log, "skipping"));	/* read warns too */
	free(log);
	buf_clear(&b);
}

/*
 * The reader's window (one pread per 64 KiB of records): records on both
 * sides of a window's edge, records bigger than the window, and reads that
 * go on while the last segment grows, each read back exactly.
 */
static void
test_read_window(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b, big;
	int		 i, k;

	buf_init(&b);
	buf_init(&big);
	for (i = 0; i < 100000; i++)
		buf_addc(&big, (char)('a' + i % 23));
	sp = open_ok(f->dir, 0);		/* one 16 MiB segment */
	spool_head(sp, &pos);
	for (k = 0; k < 6; k++) {
		/* About 170 KiB of small records, then one of 100,000 bytes. */
		append_range(sp, k * 1000, k * 1000 + 1000);
		big.data[0] = (char)('0' + k);
		assert_int_equal(spool_append(sp, big.data, big.len), 0);
		assert_int_equal(spool_sync(sp), 0);
		/* Half now: the window ends inside what is durable. */
		for (i = k * 1000; i < k * 1000 + 500; i++)
			expect_rec(sp, &pos, &b, i);
		append_range(sp, 100000 + k, 100000 + k + 1);
		assert_int_equal(spool_sync(sp), 0);
		for (; i < k * 1000 + 1000; i++)
			expect_rec(sp, &pos, &b, i);
		assert_int_equal(spool_read(sp, &pos, &b), 1);
		assert_int_equal(b.len, big.len);
		assert_int_equal(b.data[0], '0' + k);
		assert_memory_equal(b.data + 1, big.data + 1, big.len - 1);
		expect_rec(sp, &pos, &b, 100000 + k);
		assert_int_equal(spool_read(sp, &pos, &b), 0);
	}
	assert_int_equal(count_segments(f->dir), 1);
	assert_int_equal(spool_ack(sp, &pos), 0);
	assert_int_equal(spool_records(sp), 0);
	spool_close(sp);
	buf_clear(&big);
	buf_clear(&b);
}

/* Corruption that appears while the spool is open is skipped by reads. */
static void
test_corrupt_while_open(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos, at[20];
	struct buf	 b;
	char		 path[160], *log;
	int		 i;

	buf_init(&b);
	sp = open_ok(f->dir, 0);
	append_range(sp, 0, 20);
	assert_int_equal(spool_sync(sp), 0);
	spool_head(sp, &pos);
	for (i = 0; i < 20; i++) {
		at[i] = pos;
		expect_rec(sp, &pos, &b, i);
	}
	seg_path(path, sizeof(path), f->dir, 1);
	flip(path, at[12].off + 13);
	capture_begin(f);
	spool_head(sp, &pos);
	for (i = 0; i < 20; i++) {
		if (i != 12)
			expect_rec(sp, &pos, &b, i);
	}
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	log = capture_end(f);
	assert_non_null(strstr(log, "0000000000000001.seg offset"));
	free(log);
	assert_int_equal(spool_ack(sp, &pos), 0);
	assert_int_equal(spool_records(sp), 0);
	spool_close(sp);
	buf_clear(&b);
}

static void
set_fsize(rlim_t lim)
{
	struct rlimit	 rl;

	assert_int_equal(getrlimit(RLIMIT_FSIZE, &rl), 0);
	rl.rlim_cur = lim;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

static void
test_write_failure_retry(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct rlimit	 old;
	struct buf	 b;
	struct stat	 sb;
	char		 path[160], r[512];
	size_t		 n;
	int		 i, k;

	buf_init(&b);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	sp = open_ok(f->dir, 4096);
	append_range(sp, 0, 5);
	assert_int_equal(spool_sync(sp), 0);
	seg_path(path, sizeof(path), f->dir, 1);
	assert_int_equal(stat(path, &sb), 0);

	/* spool_sync fails: nothing torn on disk, records kept for retry. */
	set_fsize((rlim_t)sb.st_size + 100);
	append_range(sp, 5, 15);
	errno = 0;
	assert_int_equal(spool_sync(sp), -1);
	assert_int_equal(errno, EFBIG);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, range_bytes(0, 5));
	assert_int_equal(spool_records(sp), 15);
	spool_head(sp, &pos);
	for (i = 0; i < 5; i++)
		expect_rec(sp, &pos, &b, i);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	assert_int_equal(spool_sync(sp), -1);	/* still failing */

	set_fsize(old.rlim_cur);
	assert_int_equal(spool_sync(sp), 0);
	for (i = 5; i < 15; i++)
		expect_rec(sp, &pos, &b, i);
	assert_int_equal(spool_read(sp, &pos, &b), 0);

	/* An append that has to close a full segment fails the same way. */
	assert_int_equal(stat(path, &sb), 0);
	set_fsize((rlim_t)sb.st_size + 10);
	for (i = 15; i < 1000; i++) {
		n = rec_make(i, r, sizeof(r));
		if (spool_append(sp, r, n) == -1)
			break;
	}
	assert_true(i < 1000);
	assert_int_equal(errno, EFBIG);
	assert_int_equal(spool_records(sp), i);
	set_fsize(old.rlim_cur);
	n = rec_make(i, r, sizeof(r));
	assert_int_equal(spool_append(sp, r, n), 0);	/* the caller retries */
	append_range(sp, i + 1, i + 50);
	assert_int_equal(spool_sync(sp), 0);
	spool_close(sp);

	sp = open_ok(f->dir, 4096);
	assert_int_equal(spool_records(sp), i + 50);
	spool_head(sp, &pos);
	for (k = 0; k < i + 50; k++)
		expect_rec(sp, &pos, &b, k);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	spool_close(sp);
	signal(SIGXFSZ, SIG_DFL);
	buf_clear(&b);
}

static void
check_modes(const char *dir)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 sb;
	char		 path[300];
	int		 files = 0;

	assert_int_equal(stat(dir, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0700);
	assert_non_null(d = opendir(dir));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		assert_int_equal(stat(path, &sb), 0);
		if ((sb.st_mode & 07777) != 0600)
			fail_msg("%s has mode %o", path, sb.st_mode & 07777);
		files++;
	}
	closedir(d);
	assert_true(files >= 3);	/* segments and ack */
}

static void
test_modes(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b;
	char		 dir2[160];
	mode_t		 old;
	int		 i;

	buf_init(&b);
	old = umask(0);
	sp = open_ok(f->dir, 1024);
	append_range(sp, 0, 20);
	assert_int_equal(spool_sync(sp), 0);
	spool_head(sp, &pos);
	assert_int_equal(spool_read(sp, &pos, &b), 1);
	assert_int_equal(spool_ack(sp, &pos), 0);
	spool_close(sp);
	check_modes(f->dir);

	/* A umask that would leave the owner without access, too. */
	umask(0277);
	snprintf(dir2, sizeof(dir2), "%s/spool2", f->top);
	sp = open_ok(dir2, 1024);
	append_range(sp, 0, 20);
	assert_int_equal(spool_sync(sp), 0);
	spool_head(sp, &pos);
	for (i = 0; i < 2; i++)
		assert_int_equal(spool_read(sp, &pos, &b), 1);
	assert_int_equal(spool_ack(sp, &pos), 0);
	spool_close(sp);
	umask(old);
	check_modes(dir2);

	/* An existing directory open to others is tightened. */
	assert_int_equal(chmod(f->dir, 0755), 0);
	sp = open_ok(f->dir, 0);
	spool_close(sp);
	check_modes(f->dir);
	buf_clear(&b);
}

static void
test_full(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b;

	buf_init(&b);
	sp = open_ok(f->dir, 0);
	spool_set_max(sp, range_bytes(0, 10));
	append_range(sp, 0, 9);
	assert_false(spool_full(sp));
	append_range(sp, 9, 11);
	assert_true(spool_full(sp));
	assert_int_equal(spool_sync(sp), 0);
	spool_head(sp, &pos);
	expect_rec(sp, &pos, &b, 0);
	expect_rec(sp, &pos, &b, 1);
	expect_rec(sp, &pos, &b, 2);
	assert_int_equal(spool_ack(sp, &pos), 0);
	assert_int_equal(spool_bytes(sp), range_bytes(3, 11));
	assert_false(spool_full(sp));
	spool_close(sp);
	buf_clear(&b);
}

static void
test_corrupt_ack_file(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b;
	char		 path[160], *log;
	int		 i;

	buf_init(&b);
	sp = open_ok(f->dir, 0);
	append_range(sp, 0, 30);
	assert_int_equal(spool_sync(sp), 0);
	spool_head(sp, &pos);
	for (i = 0; i < 10; i++)
		expect_rec(sp, &pos, &b, i);
	assert_int_equal(spool_ack(sp, &pos), 0);
	spool_close(sp);

	snprintf(path, sizeof(path), "%s/ack", f->dir);
	flip(path, 3);
	capture_begin(f);
	sp = open_ok(f->dir, 0);
	log = capture_end(f);
	assert_non_null(strstr(log, "corrupt"));
	free(log);
	/* Nothing is skipped: delivery restarts at the oldest record. */
	assert_int_equal(spool_records(sp), 30);
	spool_head(sp, &pos);
	expect_rec(sp, &pos, &b, 0);
	spool_close(sp);
	buf_clear(&b);
}

static size_t
heap_used(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return __sanitizer_get_current_allocated_bytes();
#else
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
#endif
}

static void
test_memory_bounded(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b;
	size_t		 base, peak = 0, h;
	int		 i, n = 200000;

	buf_init(&b);
	buf_reserve(&b, 4096);
	sp = open_ok(f->dir, 0);
	append_range(sp, 0, 5000);
	assert_int_equal(spool_sync(sp), 0);
	base = heap_used();
	for (i = 5000; i < n; i += 5000) {
		append_range(sp, i, i + 5000);
		if ((h = heap_used()) > peak)
			peak = h;
	}
	assert_int_equal(spool_sync(sp), 0);
	assert_int_equal(spool_records(sp), n);
	if (peak > base + (1 << 20))
		fail_msg("heap grew by %zu bytes appending", peak - base);
	spool_close(sp);

	/* Opening verifies all 200,000 records without indexing them. */
	base = heap_used();
	sp = open_ok(f->dir, 0);
	assert_int_equal(spool_records(sp), n);
	spool_head(sp, &pos);
	for (i = 0; i < n; i++) {
		if (spool_read(sp, &pos, &b) != 1)
			fail_msg("record %d missing", i);
		if (i % 10000 == 9999) {
			assert_int_equal(spool_ack(sp, &pos), 0);
			if ((h = heap_used()) > peak)
				peak = h;
		}
	}
	if ((h = heap_used()) > peak)
		peak = h;
	if (peak > base + (1 << 20))
		fail_msg("heap grew by %zu bytes reading", peak - base);
	assert_int_equal(spool_records(sp), 0);
	spool_close(sp);
	buf_clear(&b);
}

/*
 * Asynchronous syncs with a fake executor: jobs are queued and run only
 * when the test says so, as the disk thread would, later.
 */
struct fake_exec {
	struct spool_job *q[64];
	int		 n;
	int		 calls, errors[16], nerr;
};

static void
fake_submit(void *arg, struct spool_job *job)
{
	struct fake_exec *x = arg;

	assert_true(x->n < 64);
	x->q[x->n++] = job;
}

/* Run and complete the oldest queued job; its run's return value. */
static int
fake_step(struct fake_exec *x)
{
	struct spool_job *job;
	int		 rc;

	assert_true(x->n > 0);
	job = x->q[0];
	memmove(x->q, x->q + 1, (size_t)--x->n * sizeof(*x->q));
	rc = spool_job_run(job);
	spool_job_done(job);
	return rc;
}

static void
waiter_cb(void *arg, int error)
{
	struct fake_exec *x = arg;

	x->calls++;
	if (x->nerr < 16)
		x->errors[x->nerr++] = error;
}

static void
test_async_visible_after_sync(void **state)
{
	struct fixture	*f = *state;
	struct fake_exec x = { .n = 0 };
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b;
	uint64_t	 t1, t2;
	int		 i;

	buf_init(&b);
	sp = open_ok(f->dir, 4096);	/* a few records per segment */
	spool_set_executor(sp, fake_submit, &x);
	assert_int_equal(spool_sync_async(sp, waiter_cb, &x, &t1), 0);
	append_range(sp, 0, 40);
	/* Two writers in the same turn: one job, both called back. */
	assert_int_equal(spool_sync_async(sp, waiter_cb, &x, &t1), 1);
	assert_int_equal(spool_sync_async(sp, waiter_cb, &x, &t2), 1);
	assert_true(t1 != t2);
	assert_int_equal(x.n, 1);
	/* Appended while the job is in flight: the next job, not this. */
	append_range(sp, 40, 60);
	assert_int_equal(spool_sync_async(sp, waiter_cb, &x, &t1), 1);
	assert_int_equal(x.n, 1);
	spool_head(sp, &pos);
	assert_int_equal(spool_read(sp, &pos, &b), 0);	/* nothing durable */
	assert_int_equal(spool_unsynced(sp), range_bytes(0, 60));
	assert_int_equal(fake_step(&x), 0);
	assert_int_equal(x.calls, 2);
	assert_int_equal(x.errors[0], 0);
	/* The first job crossed segments; the reader never skips ahead. */
	for (i = 0; i < 40; i++)
		expect_rec(sp, &pos, &b, i);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	assert_int_equal(x.n, 1);		/* the group behind it */
	assert_int_equal(fake_step(&x), 0);
	assert_int_equal(x.calls, 3);
	for (i = 40; i < 60; i++)
		expect_rec(sp, &pos, &b, i);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	assert_true(count_segments(f->dir) > 2);
	spool_close(sp);
	/* Everything reported durable is there after a reopen. */
	sp = open_ok(f->dir, 4096);
	spool_head(sp, &pos);
	for (i = 0; i < 60; i++)
		expect_rec(sp, &pos, &b, i);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	spool_close(sp);
	buf_clear(&b);
}

/* Writes behind (a full chunk) are read in order across segments. */
static void
test_async_write_behind(void **state)
{
	struct fixture	*f = *state;
	struct fake_exec x = { .n = 0 };
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 b;
	uint64_t	 t;
	int		 i, n = 12000;

	buf_init(&b);
	sp = open_ok(f->dir, 256 * 1024);
	spool_set_executor(sp, fake_submit, &x);
	append_range(sp, 0, n);		/* ~1.9 MB: a chunk job is taken */
	assert_true(x.n >= 1);
	assert_int_equal(spool_sync_async(sp, waiter_cb, &x, &t), 1);
	spool_head(sp, &pos);
	while (x.n > 0)
		assert_int_equal(fake_step(&x), 0);
	assert_int_equal(x.calls, 1);
	assert_int_equal(x.errors[0], 0);
	for (i = 0; i < n; i++)
		expect_rec(sp, &pos, &b, i);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	assert_int_equal(spool_unsynced(sp), 0);
	spool_close(sp);
	buf_clear(&b);
}

/* A failed job: the waiter hears the error, nothing is lost or torn. */
static void
test_async_failure_retry(void **state)
{
	struct fixture	*f = *state;
	struct fake_exec x = { .n = 0 };
	struct spool	*sp;
	struct spool_pos pos;
	struct rlimit	 old;
	struct stat	 sb;
	struct buf	 b;
	char		 path[160];
	uint64_t	 t;
	int		 i;

	buf_init(&b);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	sp = open_ok(f->dir, 0);
	spool_set_executor(sp, fake_submit, &x);
	append_range(sp, 0, 5);
	assert_int_equal(spool_sync_async(sp, waiter_cb, &x, &t), 1);
	assert_int_equal(fake_step(&x), 0);
	seg_path(path, sizeof(path), f->dir, 1);
	assert_int_equal(stat(path, &sb), 0);
	set_fsize((rlim_t)sb.st_size + 100);
	append_range(sp, 5, 15);
	assert_int_equal(spool_sync_async(sp, waiter_cb, &x, &t), 1);
	assert_int_equal(fake_step(&x), -1);
	assert_int_equal(x.calls, 2);
	assert_int_equal(x.errors[1], EFBIG);
	assert_int_equal(x.n, 0);		/* no retry without a writer */
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, range_bytes(0, 5));
	/* New records are refused until a retry worked. */
	assert_int_equal(spool_append(sp, "x", 1), -1);
	assert_int_equal(errno, EFBIG);
	assert_int_equal(x.n, 1);		/* ... which that started */
	set_fsize(old.rlim_cur);
	assert_int_equal(fake_step(&x), 0);
	append_range(sp, 15, 20);
	assert_int_equal(spool_sync_async(sp, waiter_cb, &x, &t), 1);
	assert_int_equal(fake_step(&x), 0);
	spool_head(sp, &pos);
	for (i = 0; i < 20; i++)
		expect_rec(sp, &pos, &b, i);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	spool_close(sp);
	buf_clear(&b);
}

/* Cancelled waiters are never called; closing calls the rest. */
static void
test_async_cancel_and_close(void **state)
{
	struct fixture	*f = *state;
	struct fake_exec x = { .n = 0 }, y = { .n = 0 };
	struct spool	*sp;
	struct spool_job *job;
	struct spool_pos pos;
	struct buf	 b;
	uint64_t	 t1, t2;
	int		 i;

	buf_init(&b);
	sp = open_ok(f->dir, 0);
	spool_set_executor(sp, fake_submit, &x);
	append_range(sp, 0, 10);
	assert_int_equal(spool_sync_async(sp, waiter_cb, &y, &t1), 1);
	assert_int_equal(spool_sync_async(sp, waiter_cb, &x, &t2), 1);
	spool_sync_cancel(sp, t1);
	spool_sync_cancel(sp, 12345);		/* unknown: nothing */
	assert_int_equal(fake_step(&x), 0);
	assert_int_equal(y.calls, 0);
	assert_int_equal(x.calls, 1);
	/* Closed with a job in flight: the waiter hears ECANCELED. */
	append_range(sp, 10, 20);
	assert_int_equal(spool_sync_async(sp, waiter_cb, &y, &t1), 1);
	job = x.q[0];
	x.n = 0;
	spool_close(sp);
	assert_int_equal(y.calls, 1);
	assert_int_equal(y.errors[0], ECANCELED);
	/* The detached job still runs (as the thread would) and is freed. */
	assert_int_equal(spool_job_run(job), 0);
	spool_job_done(job);
	sp = open_ok(f->dir, 0);
	spool_head(sp, &pos);
	for (i = 0; i < 20; i++)
		expect_rec(sp, &pos, &b, i);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	spool_close(sp);
	buf_clear(&b);
}

/* A closer that keeps the descriptors it is handed, to look at them. */
struct held {
	int	 fds[64];
	size_t	 n;
};

static void
hold_fd(void *arg, int fd)
{
	struct held	*h = arg;

	assert_true(h->n < 64);
	h->fds[h->n++] = fd;
}

/*
 * With a closer, a delivered segment and the replaced ack file leave the
 * directory at once, but their last close (where the file system frees
 * their blocks, which can wait for the disk) is the closer's; nothing
 * delivered is lost or resent after a reopen.
 */
static void
test_closer_frees_later(void **state)
{
	struct fixture	*f = *state;
	struct spool	*sp;
	struct spool_pos pos;
	struct held	 h = { .n = 0 };
	struct buf	 b;
	struct stat	 st;
	char		 ack[160];
	size_t		 i, unlinked = 0, data = 0;
	int		 r, before;

	buf_init(&b);
	sp = open_ok(f->dir, 2048);
	spool_set_closer(sp, hold_fd, &h);
	append_range(sp, 0, 300);
	assert_int_equal(spool_sync(sp), 0);
	before = count_segments(f->dir);
	assert_true(before > 3);
	spool_head(sp, &pos);
	for (r = 0; r < 120; r++)
		expect_rec(sp, &pos, &b, r);
	assert_int_equal(spool_ack(sp, &pos), 0);
	/* The delivered segments are gone from the directory... */
	assert_true(count_segments(f->dir) < before);
	snprintf(ack, sizeof(ack), "%s/ack", f->dir);
	assert_int_equal(stat(ack, &st), 0);
	/* ...and the closer holds them (and the old ack, if there was one). */
	assert_true(h.n >= (size_t)(before - count_segments(f->dir)));
	for (i = 0; i < h.n; i++) {
		assert_int_equal(fstat(h.fds[i], &st), 0);
		assert_true(S_ISREG(st.st_mode));
		if (st.st_nlink == 0)
			unlinked++;
		if (st.st_size > 1024)	/* a segment's records */
			data++;
	}
	assert_int_equal(unlinked, h.n);
	assert_true(data >= (size_t)(before - count_segments(f->dir)));
	/* A second ack replaces "ack": the old one goes to the closer too. */
	i = h.n;
	for (r = 120; r < 130; r++)
		expect_rec(sp, &pos, &b, r);
	assert_int_equal(spool_ack(sp, &pos), 0);
	spool_close(sp);	/* writes the ack: replaces the file */
	assert_true(h.n > i);
	assert_int_equal(fstat(h.fds[h.n - 1], &st), 0);
	assert_int_equal(st.st_nlink, 0);
	for (i = 0; i < h.n; i++)
		close(h.fds[i]);

	sp = open_ok(f->dir, 2048);
	assert_int_equal(spool_records(sp), 170);
	spool_head(sp, &pos);
	for (r = 130; r < 300; r++)
		expect_rec(sp, &pos, &b, r);
	assert_int_equal(spool_read(sp, &pos, &b), 0);
	spool_close(sp);
	buf_clear(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip_segments,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_resumes_at_ack,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_after_ack,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsynced_invisible,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_bit_flip,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_window, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_while_open,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_failure_retry,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_modes,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_full,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_ack_file,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_bounded,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_visible_after_sync,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_write_behind,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_failure_retry,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_cancel_and_close,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_closer_frees_later,
		    setup, teardown),
	};

	log_init(LOG_TARGET_STDERR, 0, "test_spool");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
