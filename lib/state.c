/* Per-tenant state: the dedupe set, the state file, the state dir lock. */

/*
 * State file format (text, mode 0600, replaced atomically):
 *
 *	alertrelay-state 1
 *	cursor <ticks>|none
 *	since <ticks>|none
 *	horizon <ticks>|none
 *	ranges <n>
 *	<from ticks> <to ticks>				(n lines)
 *	seen <n>
 *	<16 hex digits of the id hash> <ticks>		(n lines)
 *	incidents <ticks>|none				(optional, from here)
 *	iseen <n>
 *	<16 hex digits of the incident id hash> <ticks>	(n lines)
 *	crc <8 hex digits: crc32c of everything before this line>
 *
 * The incidents lines are written only for a tenant that has read
 * incidents, so files of other tenants stay as older versions wrote and
 * read them; a file without them loads with no incident state.
 *
 * Loading is strict: anything else is reported with the path and line and
 * the tenant is refused rather than guessed at.
 */

#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "state.h"
#include "util.h"

#define DEDUPE_MINCAP		64
#define STATE_MAX_FILE		(1024ULL * 1024 * 1024)
#define STATE_VERSION_LINE	"alertrelay-state 1"

/* Spread the FNV hash over the low bits used as the slot index. */
static size_t
dedupe_mix(uint64_t h, size_t cap)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return (size_t)h & (cap - 1);
}

/* Slot holding idhash, or the empty slot where it would go. */
static size_t
dedupe_slot(const struct dedupe_entry *tab, size_t cap, uint64_t idhash)
{
	size_t	 i = dedupe_mix(idhash, cap);

	while (tab[i].last_update != 0 && tab[i].idhash != idhash)
		i = (i + 1) & (cap - 1);
	return i;
}

/* Ticks 0 marks an empty slot; no real alert time is that early. */
static int64_t
dedupe_ticks(int64_t t)
{
	return t <= 0 ? 1 : t;
}

/* Move every entry into a fresh table of cap slots, dropping old ones. */
static void
dedupe_rehash(struct dedupe *d, size_t cap, int64_t horizon)
{
	struct dedupe_entry *tab, *e;
	size_t		 i, j, n = 0;

	tab = xcalloc(cap, sizeof(*tab));
	for (i = 0; i < d->cap; i++) {
		e = &d->tab[i];
		if (e->last_update == 0 || e->last_update < horizon)
			continue;
		j = dedupe_slot(tab, cap, e->idhash);
		tab[j] = *e;
		n++;
	}
	free(d->tab);
	d->tab = tab;
	d->cap = cap;
	d->n = n;
}

void
dedupe_init(struct dedupe *d)
{
	memset(d, 0, sizeof(*d));
}

void
dedupe_clear(struct dedupe *d)
{
	free(d->tab);
	memset(d, 0, sizeof(*d));
}

enum dedupe_result
dedupe_check(const struct dedupe *d, const char *id, size_t idlen,
    int64_t last_update)
{
	const struct dedupe_entry *e;

	if (d->n == 0)
		return DEDUPE_NEW;
	e = &d->tab[dedupe_slot(d->tab, d->cap, hash64(id, idlen))];
	if (e->last_update == 0)
		return DEDUPE_NEW;
	if (dedupe_ticks(last_update) > e->last_update)
		return DEDUPE_NEWER;
	return DEDUPE_DUP;
}

/* Insert or raise the entry for idhash. */
void
dedupe_put_hash(struct dedupe *d, uint64_t idhash, int64_t last_update)
{
	struct dedupe_entry *e;

	last_update = dedupe_ticks(last_update);
	if (d->cap == 0)
		dedupe_rehash(d, DEDUPE_MINCAP, INT64_MIN);
	else if ((d->n + 1) * 10 > d->cap * 7)
		dedupe_rehash(d, d->cap * 2, INT64_MIN);
	e = &d->tab[dedupe_slot(d->tab, d->cap, idhash)];
	if (e->last_update == 0) {
		e->idhash = idhash;
		e->last_update = last_update;
		d->n++;
	} else if (last_update > e->last_update)
		e->last_update = last_update;
}

void
dedupe_put(struct dedupe *d, const char *id, size_t idlen,
    int64_t last_update)
{
	dedupe_put_hash(d, hash64(id, idlen), last_update);
}

void
dedupe_prune(struct dedupe *d, int64_t horizon)
{
	size_t	 i, keep = 0, cap = DEDUPE_MINCAP;

	if (d->tab == NULL)
		return;
	for (i = 0; i < d->cap; i++) {
		if (d->tab[i].last_update != 0 &&
		    d->tab[i].last_update >= horizon)
			keep++;
	}
	while (keep * 2 > cap)
		cap *= 2;
	dedupe_rehash(d, cap, horizon);
}

void
tenant_state_init(struct tenant_state *st)
{
	st->cursor = TICKS_NONE;
	st->since = TICKS_NONE;
	st->horizon = TICKS_NONE;
	st->nranges = 0;
	dedupe_init(&st->seen);
	st->icursor = TICKS_NONE;
	dedupe_init(&st->iseen);
}

bool
tenant_state_covered(const struct tenant_state *st, int64_t t)
{
	unsigned	 i;

	if (st->since != TICKS_NONE && st->cursor != TICKS_NONE &&
	    t >= st->since && t <= st->cursor)
		return true;
	for (i = 0; i < st->nranges; i++)
		if (t >= st->ranges[i][0] && t < st->ranges[i][1])
			return true;
	return false;
}

/* Sort and merge the ranges; those reaching the live coverage join it. */
static void
ranges_merge(struct tenant_state *st)
{
	int64_t		 out[STATE_MAX_RANGES][2], tmp[2];
	unsigned	 i, j, n = 0, k = 0;

	for (i = 1; i < st->nranges; i++)
		for (j = i; j > 0 && st->ranges[j - 1][0] > st->ranges[j][0];
		    j--) {
			memcpy(tmp, st->ranges[j], sizeof(tmp));
			memcpy(st->ranges[j], st->ranges[j - 1], sizeof(tmp));
			memcpy(st->ranges[j - 1], tmp, sizeof(tmp));
		}
	for (i = 0; i < st->nranges; i++) {
		if (n > 0 && st->ranges[i][0] <= out[n - 1][1]) {
			if (st->ranges[i][1] > out[n - 1][1])
				out[n - 1][1] = st->ranges[i][1];
			continue;
		}
		memcpy(out[n++], st->ranges[i], sizeof(out[0]));
	}
	/* From the newest down, so since can move past several ranges. */
	for (i = n; i-- > 0;) {
		if (st->since != TICKS_NONE && out[i][1] >= st->since) {
			if (out[i][0] < st->since)
				st->since = out[i][0];
			if (st->cursor != TICKS_NONE && out[i][1] <= st->cursor)
				out[i][0] = out[i][1] = 0;	/* absorbed */
		}
	}
	for (i = 0; i < n; i++)
		if (out[i][0] < out[i][1])
			memcpy(st->ranges[k++], out[i], sizeof(out[0]));
	st->nranges = k;
}

void
tenant_state_cover(struct tenant_state *st, int64_t from, int64_t to)
{
	if (from >= to)
		return;
	if (st->nranges == STATE_MAX_RANGES) {
		/* Forget the oldest range: at worst it is read again. */
		memmove(st->ranges[0], st->ranges[1],
		    (STATE_MAX_RANGES - 1) * sizeof(st->ranges[0]));
		st->nranges--;
	}
	st->ranges[st->nranges][0] = from;
	st->ranges[st->nranges][1] = to;
	st->nranges++;
	ranges_merge(st);
}

void
tenant_state_clear(struct tenant_state *st)
{
	dedupe_clear(&st->seen);
	dedupe_clear(&st->iseen);
	tenant_state_init(st);
}

static void
ticks_add(struct buf *b, const char *key, int64_t t)
{
	if (t == TICKS_NONE)
		buf_addf(b, "%s none\n", key);
	else
		buf_addf(b, "%s %" PRId64 "\n", key, t);
}

/*
 * "%016" PRIx64 " %" PRId64 "\n" without printf: one per seen version on
 * every page commit, formatted in the loop (with 10,000 of them, vsnprintf
 * made the end of a page one of the longest loop turns left).  Stored
 * ticks are at least 1 (dedupe_ticks), so never negative.
 */
static void
seen_line(struct buf *b, uint64_t h, uint64_t v)
{
	static const char hex[] = "0123456789abcdef";
	char		 line[16 + 1 + 20 + 1], dec[20], *p;
	int		 i, n = 0;

	for (i = 15; i >= 0; i--, h >>= 4)
		line[i] = hex[h & 0xf];
	p = line + 16;
	*p++ = ' ';
	do {
		dec[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		*p++ = dec[--n];
	*p++ = '\n';
	buf_add(b, line, (size_t)(p - line));
}

/* A dedupe set: a count line, then one "hash ticks" line each. */
static void
seen_add(struct buf *b, const char *key, const struct dedupe *d)
{
	const struct dedupe_entry *e;
	size_t		 i;

	buf_addf(b, "%s %zu\n", key, d->n);
	for (i = 0; i < d->cap; i++) {
		e = &d->tab[i];
		if (e->last_update != 0)
			seen_line(b, e->idhash, (uint64_t)e->last_update);
	}
}

void
tenant_state_format(const struct tenant_state *st, struct buf *out)
{
	struct buf	 b;
	size_t		 i;

	buf_init(&b);
	buf_adds(&b, STATE_VERSION_LINE "\n");
	ticks_add(&b, "cursor", st->cursor);
	ticks_add(&b, "since", st->since);
	ticks_add(&b, "horizon", st->horizon);
	buf_addf(&b, "ranges %u\n", st->nranges);
	for (i = 0; i < st->nranges; i++)
		buf_addf(&b, "%" PRId64 " %" PRId64 "\n", st->ranges[i][0],
		    st->ranges[i][1]);
	seen_add(&b, "seen", &st->seen);
	if (st->icursor != TICKS_NONE || st->iseen.n > 0) {
		ticks_add(&b, "incidents", st->icursor);
		seen_add(&b, "iseen", &st->iseen);
	}
	buf_addf(&b, "crc %08" PRIx32 "\n", crc32c(0, b.data, b.len));
	buf_clear(out);
	*out = b;
}

int
tenant_state_save(const char *path, const struct tenant_state *st)
{
	struct buf	 b;
	int		 rc;

	buf_init(&b);
	tenant_state_format(st, &b);
	rc = file_write_atomic(path, b.data, b.len, 0600);
	buf_clear(&b);
	return rc;
}

/* A cursor over the lines of a state file. */
struct state_parse {
	const char	*path;
	const char	*data;
	size_t		 len;
	size_t		 off;		/* start of the next line */
	size_t		 lineno;
	const char	*line;		/* the current line, without '\n' */
	size_t		 linelen;
	char		*err;
	size_t		 errlen;
};

static int
parse_fail(struct state_parse *p, const char *what)
{
	snprintf(p->err, p->errlen, "%s line %zu: %s", p->path, p->lineno,
	    what);
	return -1;
}

/* Advance to the next complete line. */
static int
parse_line(struct state_parse *p)
{
	const char	*nl;

	p->lineno++;
	if (p->off == p->len)
		return parse_fail(p, "unexpected end of file (truncated)");
	nl = memchr(p->data + p->off, '\n', p->len - p->off);
	if (nl == NULL)
		return parse_fail(p, "no end of line (truncated)");
	p->line = p->data + p->off;
	p->linelen = (size_t)(nl - p->line);
	p->off += p->linelen + 1;
	return 0;
}

/* Strict unsigned decimal: digits only, no sign, no overflow. */
static int
parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t	 v = 0;
	size_t		 i;

	if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Strict signed decimal ticks, or "none" when none_ok. */
static int
parse_ticks(const char *s, size_t len, int none_ok, int64_t *out)
{
	uint64_t	 v;

	if (none_ok && len == 4 && memcmp(s, "none", 4) == 0) {
		*out = TICKS_NONE;
		return 0;
	}
	if (len > 0 && s[0] == '-') {
		if (parse_u64(s + 1, len - 1, &v) == -1 || v == 0 ||
		    v > (uint64_t)INT64_MAX)
			return -1;
		*out = -(int64_t)v;
		return 0;
	}
	if (parse_u64(s, len, &v) == -1 || v > (uint64_t)INT64_MAX)
		return -1;
	*out = (int64_t)v;
	return 0;
}

/* Exactly n lower-case hex digits. */
static int
parse_hex(const char *s, size_t n, uint64_t *out)
{
	uint64_t	 v = 0;
	size_t		 i;

	for (i = 0; i < n; i++) {
		if (s[i] >= '0' && s[i] <= '9')
			v = v << 4 | (uint64_t)(s[i] - '0');
		else if (s[i] >= 'a' && s[i] <= 'f')
			v = v << 4 | (uint64_t)(s[i] - 'a' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* A "key value" line; value returned through v/vlen. */
static int
parse_keyed(struct state_parse *p, const char *key, const char **v,
    size_t *vlen)
{
	size_t	 klen = strlen(key);
	char	 what[64];

	if (parse_line(p) == -1)
		return -1;
	if (p->linelen <= klen || memcmp(p->line, key, klen) != 0 ||
	    p->line[klen] != ' ') {
		snprintf(what, sizeof(what), "expected \"%s\"", key);
		return parse_fail(p, what);
	}
	*v = p->line + klen + 1;
	*vlen = p->linelen - klen - 1;
	return 0;
}

static int
parse_ticks_line(struct state_parse *p, const char *key, int64_t *out)
{
	const char	*v;
	size_t		 vlen;

	if (parse_keyed(p, key, &v, &vlen) == -1)
		return -1;
	if (parse_ticks(v, vlen, 1, out) == -1)
		return parse_fail(p, "bad time stamp");
	return 0;
}

/* Backfilled ranges: a count line, then one "from to" line each. */
static int
parse_ranges(struct state_parse *p, struct tenant_state *st)
{
	const char	*v, *sp;
	size_t		 vlen;
	uint64_t	 n, i;
	int64_t		 a, b;

	if (parse_keyed(p, "ranges", &v, &vlen) == -1)
		return -1;
	if (parse_u64(v, vlen, &n) == -1 || n > STATE_MAX_RANGES)
		return parse_fail(p, "bad range count");
	for (i = 0; i < n; i++) {
		if (parse_line(p) == -1)
			return -1;
		sp = memchr(p->line, ' ', p->linelen);
		if (sp == NULL || parse_ticks(p->line, (size_t)(sp - p->line),
		    0, &a) == -1 || parse_ticks(sp + 1, p->linelen -
		    (size_t)(sp + 1 - p->line), 0, &b) == -1 || a >= b)
			return parse_fail(p, "bad range");
		st->ranges[i][0] = a;
		st->ranges[i][1] = b;
	}
	st->nranges = (unsigned)n;
	return 0;
}

/* The seen entries: a count line, then one "hash ticks" line each. */
static int
parse_seen(struct state_parse *p, const char *key, struct dedupe *d)
{
	const char	*v;
	size_t		 vlen;
	uint64_t	 n, i, h;
	int64_t		 t;

	if (parse_keyed(p, key, &v, &vlen) == -1)
		return -1;
	if (parse_u64(v, vlen, &n) == -1 || n > (p->len - p->off) / 19)
		return parse_fail(p, "bad entry count");
	for (i = 0; i < n; i++) {
		if (parse_line(p) == -1)
			return -1;
		if (p->linelen < 18 || p->line[16] != ' ' ||
		    parse_hex(p->line, 16, &h) == -1 ||
		    parse_ticks(p->line + 17, p->linelen - 17, 0, &t) == -1 ||
		    t <= 0)
			return parse_fail(p, "bad seen entry");
		dedupe_put_hash(d, h, t);
	}
	return 0;
}

/* The final crc line over everything before it, then end of file. */
static int
parse_crc(struct state_parse *p)
{
	size_t		 start = p->off;
	uint64_t	 crc;

	if (parse_line(p) == -1)
		return -1;
	if (p->linelen != 12 || memcmp(p->line, "crc ", 4) != 0 ||
	    parse_hex(p->line + 4, 8, &crc) == -1)
		return parse_fail(p, "expected \"crc\"");
	if (crc32c(0, p->data, start) != (uint32_t)crc)
		return parse_fail(p, "checksum mismatch (file is corrupt)");
	if (p->off != p->len) {
		p->lineno++;
		return parse_fail(p, "data after the checksum");
	}
	return 0;
}

/* Parse a whole state file into st (initialised by the caller). */
static int
state_parse(struct state_parse *p, struct tenant_state *st)
{
	if (parse_line(p) == -1)
		return -1;
	if (p->linelen != strlen(STATE_VERSION_LINE) ||
	    memcmp(p->line, STATE_VERSION_LINE, p->linelen) != 0)
		return parse_fail(p, "not an alertrelay state file, version 1");
	if (parse_ticks_line(p, "cursor", &st->cursor) == -1 ||
	    parse_ticks_line(p, "since", &st->since) == -1 ||
	    parse_ticks_line(p, "horizon", &st->horizon) == -1 ||
	    parse_ranges(p, st) == -1 ||
	    parse_seen(p, "seen", &st->seen) == -1)
		return -1;
	/* Optional: the incidents lines (older files end here). */
	if (p->len - p->off > 10 && memcmp(p->data + p->off, "incidents ",
	    10) == 0 && (parse_ticks_line(p, "incidents", &st->icursor) ==
	    -1 || parse_seen(p, "iseen", &st->iseen) == -1))
		return -1;
	return parse_crc(p);
}

/*
 * Load path into st, which must be initialised; on failure st is left as
 * it was.  A missing file gives the empty state.
 */
int
tenant_state_load(const char *path, struct tenant_state *st, char *err,
    size_t errlen)
{
	struct tenant_state	 tmp;
	struct state_parse	 p;
	struct buf		 b;

	buf_init(&b);
	tenant_state_init(&tmp);
	if (file_read_all(path, STATE_MAX_FILE, &b) == -1) {
		if (errno != ENOENT) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			buf_clear(&b);
			return -1;
		}
	} else {
		memset(&p, 0, sizeof(p));
		p.path = path;
		p.data = b.data;
		p.len = b.len;
		p.err = err;
		p.errlen = errlen;
		if (state_parse(&p, &tmp) == -1) {
			tenant_state_clear(&tmp);
			buf_clear(&b);
			return -1;
		}
	}
	buf_clear(&b);
	tenant_state_clear(st);
	*st = tmp;
	return 0;
}

/* mkdir -p, creating missing directories with mode 0700. */
static int
mkdir_p(const char *dir)
{
	char	*copy, *p;
	int	 rc = 0, saved;

	copy = xstrdup(dir);
	for (p = copy + 1; *p != '\0' && rc == 0; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0700) == -1 && errno != EEXIST)
			rc = -1;
		*p = '/';
	}
	if (rc == 0 && mkdir(copy, 0700) == -1 && errno != EEXIST)
		rc = -1;
	saved = errno;
	free(copy);
	errno = saved;
	return rc;
}

/* Make dir exactly 0700, if it is ours. */
static int
state_dir_mode(const char *dir, char *err, size_t errlen)
{
	struct stat	 sb;

	if (stat(dir, &sb) == -1) {
		snprintf(err, errlen, "state directory %s: %s", dir,
		    strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		snprintf(err, errlen, "state directory %s: not a directory",
		    dir);
		return -1;
	}
	if ((sb.st_mode & 07777) == 0700)
		return 0;
	if (sb.st_uid != geteuid()) {
		snprintf(err, errlen, "state directory %s: mode %04o and "
		    "owned by uid %lu, not us", dir,
		    (unsigned)(sb.st_mode & 07777), (unsigned long)sb.st_uid);
		return -1;
	}
	if (chmod(dir, 0700) == -1) {
		snprintf(err, errlen, "state directory %s: chmod: %s", dir,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/* The pid another daemon wrote into the lock file, or -1. */
static long
state_lock_pid(int fd)
{
	char	 s[32], *end;
	ssize_t	 n;
	long	 pid;

	if ((n = pread(fd, s, sizeof(s) - 1, 0)) <= 0)
		return -1;
	s[n] = '\0';
	errno = 0;
	pid = strtol(s, &end, 10);
	if (errno != 0 || end == s || pid <= 0 || (*end != '\n' && *end))
		return -1;
	return pid;
}

int
state_dir_lock(const char *dir, char *err, size_t errlen)
{
	char	*path, line[32];
	long	 pid;
	int	 fd;

	if (mkdir_p(dir) == -1) {
		snprintf(err, errlen, "cannot create state directory %s: %s",
		    dir, strerror(errno));
		return -1;
	}
	if (state_dir_mode(dir, err, errlen) == -1)
		return -1;
	xasprintf(&path, "%s/lock", dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1 || fchmod(fd, 0600) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno != EWOULDBLOCK) {
			snprintf(err, errlen, "%s: flock: %s", path,
			    strerror(errno));
			goto fail;
		}
		if ((pid = state_lock_pid(fd)) == -1)
			snprintf(err, errlen, "state directory %s is in use by "
			    "another alertrelayd (pid unknown)", dir);
		else
			snprintf(err, errlen, "state directory %s is in use by "
			    "another alertrelayd (pid %ld)", dir, pid);
		goto fail;
	}
	snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 ||
	    pwrite(fd, line, strlen(line), 0) != (ssize_t)strlen(line)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	free(path);
	return fd;
fail:
	if (fd != -1)
		close(fd);
	free(path);
	return -1;
}
