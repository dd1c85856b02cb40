/* Small shared utilities: allocation, growable buffers, time, files. */
#include <sys/resource.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "util.h"

void *
xmalloc(size_t n)
{
	void	*p;

	if ((p = malloc(n == 0 ? 1 : n)) == NULL)
		fatal("malloc %zu", n);
	return p;
}

void *
xcalloc(size_t n, size_t sz)
{
	void	*p;

	if ((p = calloc(n == 0 ? 1 : n, sz == 0 ? 1 : sz)) == NULL)
		fatal("calloc %zu", n * sz);
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	if ((p = realloc(p, n == 0 ? 1 : n)) == NULL)
		fatal("realloc %zu", n);
	return p;
}

void *
xreallocarray(void *p, size_t n, size_t sz)
{
	if (sz != 0 && n > SIZE_MAX / sz)
		fatalx("reallocarray overflow");
	return xrealloc(p, n * sz);
}

char *
xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		fatal("strdup");
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char	*p;

	if ((p = strndup(s, n)) == NULL)
		fatal("strndup");
	return p;
}

int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vasprintf(ret, fmt, ap);
	va_end(ap);
	if (n == -1)
		fatal("vasprintf");
	return n;
}

void
secret_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

void
err_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list	 ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void
buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = b->cap = 0;
}

void
buf_clear(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
buf_reserve(struct buf *b, size_t n)
{
	size_t	 need, cap;

	if (n > SIZE_MAX - b->len - 1)
		fatalx("buffer overflow");
	need = b->len + n + 1;
	if (need <= b->cap)
		return;
	cap = b->cap < 64 ? 64 : b->cap;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void
buf_add(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_addc(struct buf *b, char c)
{
	buf_reserve(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = '\0';
}

void
buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_vaddf(struct buf *b, const char *fmt, va_list ap)
{
	va_list	 ap2;
	int	 n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		fatalx("vsnprintf");
	buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void
buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	buf_vaddf(b, fmt, ap);
	va_end(ap);
}

void
buf_truncate(struct buf *b, size_t n)
{
	if (n < b->len) {
		b->len = n;
		b->data[n] = '\0';
	}
}

/* Days since 1970-01-01 for a proleptic Gregorian date. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t	 era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int
digits(const char *s, size_t n, int *out)
{
	size_t	 i;
	int	 v = 0;

	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int
ts_parse(const char *s, size_t len, int64_t *out)
{
	int	 y, mo, d, h, mi, sec, frac = 0;
	size_t	 i = 19, nf = 0;
	int64_t	 t;

	if (len < 20 || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    s[13] != ':' || s[16] != ':')
		return -1;
	if (digits(s, 4, &y) || digits(s + 5, 2, &mo) ||
	    digits(s + 8, 2, &d) || digits(s + 11, 2, &h) ||
	    digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60)
		return -1;
	if (s[i] == '.') {
		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
			if (nf++ < 7)
				frac = frac * 10 + (s[i] - '0');
		}
		if (nf == 0)
			return -1;
		for (; nf < 7; nf++)
			frac *= 10;
	}
	if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z'))
		;
	else if (i + 6 == len && memcmp(s + i, "+00:00", 6) == 0)
		;
	else
		return -1;
	t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 +
	    h * 3600 + mi * 60 + sec;
	*out = t * TICKS_PER_SEC + frac;
	return 0;
}

void
ts_format(int64_t ticks, char *out, size_t len)
{
	time_t	 secs;
	int64_t	 frac;
	struct tm tm;

	secs = (time_t)(ticks / TICKS_PER_SEC);
	frac = ticks % TICKS_PER_SEC;
	if (frac < 0) {
		frac += TICKS_PER_SEC;
		secs--;
	}
	gmtime_r(&secs, &tm);
	snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%07lldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (long long)frac);
}

int64_t
ts_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * TICKS_PER_SEC + ts.tv_nsec / 100;
}

int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timeval
tv_from_ms(int64_t ms)
{
	struct timeval	 tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)(ms % 1000 * 1000);
	return tv;
}

void
timer_in(struct event *ev, int64_t ms)
{
	struct timeval	 tv = tv_from_ms(ms);

	evtimer_add(ev, &tv);
}

int
parse_duration_ms(const char *s, int64_t *out)
{
	char		*end;
	long long	 v;
	int64_t		 mul;

	if (*s < '0' || *s > '9') {
		errno = EINVAL;
		return -1;
	}
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0)
		return -1;		/* ERANGE */
	if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else if (strcmp(end, "d") == 0)
		mul = 86400000;
	else {
		errno = EINVAL;
		return -1;
	}
	if (v > INT64_MAX / mul) {
		errno = ERANGE;
		return -1;
	}
	*out = v * mul;
	return 0;
}

int
parse_size(const char *s, uint64_t *out)
{
	char			*end;
	unsigned long long	 v;
	uint64_t		 mul = 1;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -1;
	if (*end == 'K' || *end == 'k')
		mul = 1024;
	else if (*end == 'M' || *end == 'm')
		mul = 1024 * 1024;
	else if (*end == 'G' || *end == 'g')
		mul = 1024ULL * 1024 * 1024;
	else if (*end != '\0')
		return -1;
	if (*end != '\0' && end[1] != '\0' &&
	    !((end[1] == 'B' || end[1] == 'b') && end[2] == '\0'))
		return -1;
	if (v > UINT64_MAX / mul)
		return -1;
	*out = v * mul;
	return 0;
}

uint64_t
hash64(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t	 h = 0xcbf29ce484222325ULL;
	size_t		 i;

	for (i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

static uint32_t crc32c_table[256];

static void
crc32c_init(void)
{
	uint32_t	 c;
	unsigned	 i, k;

	for (i = 0; i < 256; i++) {
		c = i;
		for (k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78 : c >> 1;
		crc32c_table[i] = c;
	}
}

static uint32_t
crc32c_sw(uint32_t crc, const unsigned char *s, size_t n)
{
	if (crc32c_table[1] == 0)
		crc32c_init();
	while (n--)
		crc = crc32c_table[(crc ^ *s++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
#include <nmmintrin.h>

/* The same polynomial in hardware (SSE 4.2), eight bytes at a time. */
__attribute__((target("sse4.2")))
static uint32_t
crc32c_hw(uint32_t crc, const unsigned char *s, size_t n)
{
	uint64_t	 c = crc, w;

	for (; n >= 8; n -= 8, s += 8) {
		memcpy(&w, s, 8);
		c = _mm_crc32_u64(c, w);
	}
	crc = (uint32_t)c;
	for (; n > 0; n--)
		crc = _mm_crc32_u8(crc, *s++);
	return crc;
}
#endif

uint32_t
crc32c(uint32_t crc, const void *p, size_t n)
{
#if defined(__x86_64__)
	static int	 hw = -1;

	if (hw == -1)
		hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
	if (hw)
		return ~crc32c_hw(~crc, p, n);
#endif
	return ~crc32c_sw(~crc, p, n);
}

static int
fsync_dir_of(const char *path)
{
	char	*copy, *dir;
	int	 fd, rc;

	copy = xstrdup(path);
	dir = dirname(copy);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

int
file_write_atomic(const char *path, const void *data, size_t len, int mode)
{
	char		*tmp;
	const char	*p = data;
	ssize_t		 n;
	int		 fd, saved;

	xasprintf(&tmp, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd == -1)
		goto fail;
	if (fchmod(fd, mode) == -1)
		goto fail_fd;
	while (len > 0) {
		if ((n = write(fd, p, len)) == -1) {
			if (errno == EINTR)
				continue;
			goto fail_fd;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) == -1)
		goto fail_fd;
	if (close(fd) == -1) {
		fd = -1;
		goto fail_unlink;
	}
	if (rename(tmp, path) == -1)
		goto fail_unlink;
	free(tmp);
	return fsync_dir_of(path);
fail_fd:
	saved = errno;
	close(fd);
	errno = saved;
fail_unlink:
	saved = errno;
	unlink(tmp);
	errno = saved;
fail:
	saved = errno;
	free(tmp);
	errno = saved;
	return -1;
}

int
file_read_all(const char *path, size_t max, struct buf *b)
{
	char	 chunk[8192];
	ssize_t	 n;
	int	 fd;

	buf_reset(b);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (b->len + (size_t)n > max) {
			close(fd);
			errno = EFBIG;
			return -1;
		}
		buf_add(b, chunk, (size_t)n);
	}
	close(fd);
	if (n == -1)
		return -1;
	buf_reserve(b, 0);
	b->data[b->len] = '\0';
	return 0;
}

/*
 * Is host a loopback host: an IPv4 literal in 127.0.0.0/8, the IPv6
 * literal ::1 (bracketed or not), or exactly "localhost"?  Parsed, never
 * compared by prefix: 127.mail.example.com is a name like any other.
 */
unsigned
nofile_share(unsigned max, unsigned div)
{
	struct rlimit	 rl;
	rlim_t		 n = max;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur / div < n)
		n = rl.rlim_cur / div;
	return n < 2 ? 2 : (unsigned)n;
}

bool
host_is_loopback(const char *host)
{
	struct in_addr	 a4;
	struct in6_addr	 a6;
	char		 buf[INET6_ADDRSTRLEN + 2];
	size_t		 len;

	if (host == NULL)
		return false;
	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	len = strlen(host);
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
		if (len - 2 >= sizeof(buf))
			return false;
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		host = buf;
	}
	return inet_pton(AF_INET6, host, &a6) == 1 &&
	    IN6_IS_ADDR_LOOPBACK(&a6);
}
