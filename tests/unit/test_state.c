/* Unit tests for dedupe sets, tenant state files and the state dir lock. */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "state.h"
#include "util.h"

struct fixture {
	char	 top[64];
	char	 path[128];
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

	snprintf(f->top, sizeof(f->top), "/tmp/test_state.XXXXXX");
	assert_non_null(mkdtemp(f->top));
	snprintf(f->path, sizeof(f->path), "%s/tenant.state", f->top);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;

	umask(022);
	nftw(f->top, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static size_t
id_make(int i, char *out, size_t len)
{
	return (size_t)snprintf(out, len, "da%08x-%04d-4abc-8def-%012d", i,
	    i % 9973, i);
}

static void
test_dedupe_semantics(void **state)
{
	struct dedupe	 d;
	const char	*a = "da638412345678901234_-1234567890";
	const char	*b = "da638412345678901234_-1234567891";

	dedupe_init(&d);
	assert_int_equal(dedupe_check(&d, a, strlen(a), 100), DEDUPE_NEW);
	dedupe_put(&d, a, strlen(a), 100);
	assert_int_equal(d.n, 1);
	assert_int_equal(dedupe_check(&d, a, strlen(a), 100), DEDUPE_DUP);
	assert_int_equal(dedupe_check(&d, a, strlen(a), 50), DEDUPE_DUP);
	assert_int_equal(dedupe_check(&d, a, strlen(a), 101), DEDUPE_NEWER);
	assert_int_equal(dedupe_check(&d, b, strlen(b), 100), DEDUPE_NEW);
	/* The id is compared whole, not as a prefix. */
	assert_int_equal(dedupe_check(&d, a, strlen(a) - 1, 100), DEDUPE_NEW);
	dedupe_put(&d, a, strlen(a), 101);
	assert_int_equal(d.n, 1);
	assert_int_equal(dedupe_check(&d, a, strlen(a), 101), DEDUPE_DUP);
	/* An older version put later does not lower the entry. */
	dedupe_put(&d, a, strlen(a), 10);
	assert_int_equal(dedupe_check(&d, a, strlen(a), 101), DEDUPE_DUP);
	assert_int_equal(dedupe_check(&d, a, strlen(a), 102), DEDUPE_NEWER);
	dedupe_clear(&d);
	assert_int_equal(dedupe_check(&d, a, strlen(a), 100), DEDUPE_NEW);
}

static void
test_dedupe_growth_and_prune(void **state)
{
	struct dedupe	 d;
	char		 id[64];
	size_t		 n;
	int		 i, total = 100000;

	dedupe_init(&d);
	for (i = 0; i < total; i++) {
		n = id_make(i, id, sizeof(id));
		dedupe_put(&d, id, n, (int64_t)i + 1);
	}
	assert_int_equal(d.n, total);
	assert_int_equal(d.cap & (d.cap - 1), 0);
	assert_true(d.n * 10 <= d.cap * 7);
	for (i = 0; i < total; i++) {
		n = id_make(i, id, sizeof(id));
		if (dedupe_check(&d, id, n, (int64_t)i + 1) != DEDUPE_DUP)
			fail_msg("id %d not found after growth", i);
		if (dedupe_check(&d, id, n, (int64_t)i + 2) != DEDUPE_NEWER)
			fail_msg("id %d: newer version not seen as newer", i);
	}
	for (i = total; i < total + 1000; i++) {
		n = id_make(i, id, sizeof(id));
		assert_int_equal(dedupe_check(&d, id, n, 1), DEDUPE_NEW);
	}

	/* Entries older than the horizon go; the rest stay findable. */
	dedupe_prune(&d, total / 2 + 1);
	assert_int_equal(d.n, total / 2);
	assert_true(d.cap <= 131072);
	for (i = 0; i < total; i++) {
		n = id_make(i, id, sizeof(id));
		if (dedupe_check(&d, id, n, (int64_t)i + 1) !=
		    (i < total / 2 ? DEDUPE_NEW : DEDUPE_DUP))
			fail_msg("id %d wrong after prune", i);
	}
	dedupe_put(&d, "x", 1, 5);
	assert_int_equal(dedupe_check(&d, "x", 1, 5), DEDUPE_DUP);
	dedupe_prune(&d, INT64_MAX);
	assert_int_equal(d.n, 0);
	assert_int_equal(dedupe_check(&d, "x", 1, 5), DEDUPE_NEW);
	dedupe_clear(&d);
}

static void
fill_state(struct tenant_state *st, int nseen)
{
	char	 id[64];
	size_t	 n;
	int	 i;

	tenant_state_init(st);
	st->cursor = 17000000000000000LL + 1234567;
	st->since = 16990000000000000LL;
	st->horizon = TICKS_NONE;
	for (i = 0; i < nseen; i++) {
		n = id_make(i, id, sizeof(id));
		dedupe_put(&st->seen, id, n, st->since + i);
	}
}

static void
test_state_roundtrip(void **state)
{
	struct fixture		*f = *state;
	struct tenant_state	 a, b;
	struct stat		 sb;
	char			 err[256], id[64];
	size_t			 n;
	mode_t			 old;
	int			 i;

	/* A missing file is the empty state. */
	tenant_state_init(&b);
	assert_int_equal(tenant_state_load(f->path, &b, err, sizeof(err)), 0);
	assert_true(b.cursor == TICKS_NONE && b.since == TICKS_NONE);
	assert_int_equal(b.seen.n, 0);

	fill_state(&a, 1000);
	old = umask(0);
	assert_int_equal(tenant_state_save(f->path, &a), 0);
	umask(old);
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);

	assert_int_equal(tenant_state_load(f->path, &b, err, sizeof(err)), 0);
	assert_true(b.cursor == a.cursor);
	assert_true(b.since == a.since);
	assert_true(b.horizon == TICKS_NONE);
	assert_int_equal(b.seen.n, 1000);
	for (i = 0; i < 1000; i++) {
		n = id_make(i, id, sizeof(id));
		assert_int_equal(dedupe_check(&b.seen, id, n, a.since + i),
		    DEDUPE_DUP);
		assert_int_equal(dedupe_check(&b.seen, id, n, a.since + i + 1),
		    DEDUPE_NEWER);
	}

	/* Saving over an existing file; negative and none values. */
	a.horizon = 5;
	a.cursor = -42;
	assert_int_equal(tenant_state_save(f->path, &a), 0);
	assert_int_equal(tenant_state_load(f->path, &b, err, sizeof(err)), 0);
	assert_true(b.horizon == 5 && b.cursor == -42);
	tenant_state_clear(&a);
	tenant_state_clear(&b);
}

/*
 * The "seen" lines are formatted without printf: each must be exactly what
 * "%016" PRIx64 " %" PRId64 would give, extreme values included.
 */
static void
test_state_seen_lines(void **state)
{
	static const int64_t ticks[] = { 1, 9, 10, 1234567890123456789LL,
	    INT64_MAX, -1, -10, INT64_MIN };
	struct tenant_state	 a;
	struct buf		 b;
	char			 id[64], want[64], *line, *nl;
	unsigned long long	 h;
	long long		 v;
	size_t			 i, n, lines = 0;

	tenant_state_init(&a);
	for (i = 0; i < sizeof(ticks) / sizeof(ticks[0]); i++) {
		n = (size_t)snprintf(id, sizeof(id), "da5%zu_extreme", i);
		dedupe_put(&a.seen, id, n, ticks[i]);
	}
	buf_init(&b);
	tenant_state_format(&a, &b);
	line = strstr(b.data, "\nseen ");
	assert_non_null(line);
	line = strchr(line + 1, '\n') + 1;
	for (; (nl = strchr(line, '\n')) != NULL && strncmp(line, "crc ", 4);
	    line = nl + 1) {
		assert_int_equal(sscanf(line, "%16llx %lld", &h, &v), 2);
		snprintf(want, sizeof(want), "%016" PRIx64 " %" PRId64 "\n",
		    (uint64_t)h, (int64_t)v);
		assert_int_equal((size_t)(nl + 1 - line), strlen(want));
		assert_memory_equal(line, want, strlen(want));
		for (i = 0; i < sizeof(ticks) / sizeof(ticks[0]); i++)
			if (ticks[i] == (int64_t)v)
				break;
		assert_true(i < sizeof(ticks) / sizeof(ticks[0]));
		lines++;
	}
	assert_int_equal(lines, a.seen.n);
	buf_clear(&b);
	tenant_state_clear(&a);
}

static void
test_state_corrupt(void **state)
{
	struct fixture		*f = *state;
	struct tenant_state	 a, b;
	struct buf		 good;
	char			 err[256];
	size_t			 i;
	int			 fd;

	fill_state(&a, 5);
	assert_int_equal(tenant_state_save(f->path, &a), 0);
	buf_init(&good);
	assert_int_equal(file_read_all(f->path, 1 << 20, &good), 0);

	/* Every single flipped byte is caught; st is left alone. */
	tenant_state_init(&b);
	b.cursor = 99;
	for (i = 0; i < good.len; i++) {
		good.data[i] ^= 0x01;
		assert_int_equal(file_write_atomic(f->path, good.data,
		    good.len, 0600), 0);
		good.data[i] ^= 0x01;
		err[0] = '\0';
		if (tenant_state_load(f->path, &b, err, sizeof(err)) != -1)
			fail_msg("flipped byte %zu not detected", i);
		assert_non_null(strstr(err, f->path));
		assert_non_null(strstr(err, " line "));
		assert_true(b.cursor == 99 && b.seen.n == 0);
	}
	/* Every truncation is caught. */
	for (i = 0; i < good.len; i++) {
		assert_int_equal(file_write_atomic(f->path, good.data, i,
		    0600), 0);
		if (tenant_state_load(f->path, &b, err, sizeof(err)) != -1)
			fail_msg("truncation to %zu bytes not detected", i);
		assert_non_null(strstr(err, f->path));
	}
	/* Trailing data too. */
	buf_adds(&good, "seen 0\n");
	assert_int_equal(file_write_atomic(f->path, good.data, good.len, 0600),
	    0);
	assert_int_equal(tenant_state_load(f->path, &b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "line 13"));

	/* An unreadable path is an error, not an empty state. */
	unlink(f->path);
	assert_int_equal(mkdir(f->path, 0700), 0);
	assert_int_equal(tenant_state_load(f->path, &b, err, sizeof(err)), -1);
	rmdir(f->path);
	fd = open(f->path, O_WRONLY | O_CREAT, 0600);
	close(fd);
	assert_int_equal(tenant_state_load(f->path, &b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "line 1"));

	buf_clear(&good);
	tenant_state_clear(&a);
	tenant_state_clear(&b);
}

/*
 * Incident state (issue 14): its own cursor and dedupe set, written only
 * when used; a file written before incidents existed still loads.
 */
static void
test_state_incidents(void **state)
{
	struct fixture		*f = *state;
	struct tenant_state	 a, b;
	struct buf		 file;
	char			 err[256], id[16];
	size_t			 i, n;

	/* A version-1 file as older daemons wrote it. */
	buf_init(&file);
	buf_adds(&file, "alertrelay-state 1\ncursor 170\nsince 100\n"
	    "horizon none\nranges 0\nseen 1\n00000000000000aa 150\n");
	buf_addf(&file, "crc %08x\n", crc32c(0, file.data, file.len));
	assert_int_equal(file_write_atomic(f->path, file.data, file.len,
	    0600), 0);
	tenant_state_init(&b);
	assert_int_equal(tenant_state_load(f->path, &b, err, sizeof(err)), 0);
	assert_true(b.cursor == 170 && b.seen.n == 1);
	assert_true(b.icursor == TICKS_NONE && b.iseen.n == 0);
	/* Saved again without incident state: no incidents lines. */
	assert_int_equal(tenant_state_save(f->path, &b), 0);
	buf_reset(&file);
	assert_int_equal(file_read_all(f->path, 1 << 20, &file), 0);
	assert_null(strstr(file.data, "incidents"));

	/* With incidents: both sets survive, kept apart. */
	fill_state(&a, 10);
	a.icursor = a.cursor - 5;
	for (i = 0; i < 60; i++) {
		n = (size_t)snprintf(id, sizeof(id), "%zu", i + 1);
		dedupe_put(&a.iseen, id, n, a.since + (int64_t)i);
	}
	assert_int_equal(tenant_state_save(f->path, &a), 0);
	assert_int_equal(tenant_state_load(f->path, &b, err, sizeof(err)), 0);
	assert_true(b.icursor == a.icursor && b.cursor == a.cursor);
	assert_int_equal(b.seen.n, 10);
	assert_int_equal(b.iseen.n, 60);
	assert_int_equal(dedupe_check(&b.iseen, "7", 1, a.since + 6),
	    DEDUPE_DUP);
	assert_int_equal(dedupe_check(&b.iseen, "7", 1, a.since + 7),
	    DEDUPE_NEWER);
	assert_int_equal(dedupe_check(&b.seen, "7", 1, a.since),
	    DEDUPE_NEW);

	/* A damaged incidents part fails the load like any other. */
	buf_reset(&file);
	assert_int_equal(file_read_all(f->path, 1 << 20, &file), 0);
	for (i = 0; i < file.len; i++) {
		file.data[i] ^= 0x01;
		assert_int_equal(file_write_atomic(f->path, file.data,
		    file.len, 0600), 0);
		file.data[i] ^= 0x01;
		if (tenant_state_load(f->path, &b, err, sizeof(err)) != -1)
			fail_msg("flipped byte %zu not detected", i);
	}
	buf_clear(&file);
	tenant_state_clear(&a);
	tenant_state_clear(&b);
}

/* In a child: try to lock dir, report the result through a pipe. */
static int
lock_in_child(const char *dir, char *err, size_t errlen)
{
	pid_t	 pid;
	int	 p[2], status;
	ssize_t	 n;

	assert_int_equal(pipe(p), 0);
	if ((pid = fork()) == 0) {
		close(p[0]);
		if (state_dir_lock(dir, err, errlen) != -1)
			snprintf(err, errlen, "locked");
		_exit(write(p[1], err, strlen(err)) == -1);
	}
	close(p[1]);
	n = read(p[0], err, errlen - 1);
	err[n < 0 ? 0 : n] = '\0';
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return strcmp(err, "locked") == 0 ? 0 : -1;
}

static void
test_state_dir_lock(void **state)
{
	struct fixture	*f = *state;
	struct stat	 sb;
	char		 dir[160], err[256], want[256], pidtext[32];
	mode_t		 old;
	ssize_t		 n;
	int		 fd;

	snprintf(dir, sizeof(dir), "%s/a/b/state", f->top);
	old = umask(0);
	fd = state_dir_lock(dir, err, sizeof(err));
	umask(old);
	if (fd == -1)
		fail_msg("%s", err);
	assert_int_equal(stat(dir, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0700);
	n = pread(fd, pidtext, sizeof(pidtext) - 1, 0);
	assert_true(n > 0);
	pidtext[n] = '\0';
	assert_int_equal(atol(pidtext), (long)getpid());

	assert_int_equal(lock_in_child(dir, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "state directory %s is in use by "
	    "another alertrelayd (pid %ld)", dir, (long)getpid());
	assert_string_equal(err, want);

	/* Once released, the next daemon gets it. */
	close(fd);
	assert_int_equal(lock_in_child(dir, err, sizeof(err)), 0);

	/* A directory open to others is tightened back to 0700. */
	assert_int_equal(chmod(dir, 0755), 0);
	fd = state_dir_lock(dir, err, sizeof(err));
	assert_true(fd != -1);
	assert_int_equal(stat(dir, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0700);
	snprintf(want, sizeof(want), "%s/lock", dir);
	assert_int_equal(stat(want, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	close(fd);

	/* A file where the directory should be. */
	snprintf(dir, sizeof(dir), "%s/plainfile", f->top);
	fd = open(dir, O_WRONLY | O_CREAT, 0600);
	close(fd);
	assert_int_equal(state_dir_lock(dir, err, sizeof(err)), -1);
	assert_non_null(strstr(err, dir));
}

/* Backfilled ranges: covered, merged, joined to since, persisted. */
static void
test_state_ranges(void **state)
{
	struct fixture		*f = *state;
	struct tenant_state	 a, b;
	char			 err[256];

	tenant_state_init(&a);
	a.since = 1000;
	a.cursor = 2000;
	assert_true(tenant_state_covered(&a, 1500));
	assert_false(tenant_state_covered(&a, 500));
	tenant_state_cover(&a, 100, 200);
	tenant_state_cover(&a, 150, 300);	/* merges with the first */
	tenant_state_cover(&a, 1500, 1800);	/* inside: absorbed */
	assert_int_equal(a.nranges, 1);
	assert_true(tenant_state_covered(&a, 250));
	assert_false(tenant_state_covered(&a, 300));
	assert_false(tenant_state_covered(&a, 600));
	assert_int_equal(tenant_state_save(f->path, &a), 0);
	tenant_state_init(&b);
	assert_int_equal(tenant_state_load(f->path, &b, err, sizeof(err)), 0);
	assert_int_equal(b.nranges, 1);
	assert_true(b.ranges[0][0] == 100 && b.ranges[0][1] == 300);
	/* A range reaching since extends the coverage over the old one. */
	tenant_state_cover(&b, 300, 1000);
	assert_int_equal(b.nranges, 0);
	assert_true(b.since == 100);
	assert_true(tenant_state_covered(&b, 600));
	tenant_state_clear(&a);
	tenant_state_clear(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dedupe_semantics),
		cmocka_unit_test(test_dedupe_growth_and_prune),
		cmocka_unit_test_setup_teardown(test_state_roundtrip,
		    setup, teardown),
		cmocka_unit_test(test_state_seen_lines),
		cmocka_unit_test_setup_teardown(test_state_corrupt,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_dir_lock,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_ranges,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_incidents,
		    setup, teardown),
	};

	log_init(LOG_TARGET_STDERR, 0, "test_state");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
