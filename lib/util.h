/* Small shared utilities: allocation, growable buffers, time stamps. */
#ifndef AR_UTIL_H
#define AR_UTIL_H

#include <sys/time.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AR_VERSION "0.1.0"

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

void	*xmalloc(size_t);
void	*xcalloc(size_t, size_t);
void	*xrealloc(void *, size_t);
void	*xreallocarray(void *, size_t, size_t);
char	*xstrdup(const char *);
char	*xstrndup(const char *, size_t);
int	 xasprintf(char **, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
/* Overwrite a secret and free it; NULL is a no-op. */
void	 secret_free(char *);
/* printf into an error buffer of errlen bytes (none: err NULL or errlen 0). */
void	 err_set(char *err, size_t errlen, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));

/* A growable byte buffer; always NUL-terminated after data[len]. */
struct buf {
	char	*data;
	size_t	 len;
	size_t	 cap;
};

void	 buf_init(struct buf *);
void	 buf_clear(struct buf *);		/* frees memory */
void	 buf_reset(struct buf *);		/* len = 0, keeps memory */
void	 buf_reserve(struct buf *, size_t);	/* room for n more bytes */
void	 buf_add(struct buf *, const void *, size_t);
void	 buf_addc(struct buf *, char);
void	 buf_adds(struct buf *, const char *);
void	 buf_addf(struct buf *, const char *, ...)
	    __attribute__((format(printf, 2, 3)));
void	 buf_vaddf(struct buf *, const char *, va_list);
void	 buf_truncate(struct buf *, size_t);

/*
 * Time stamps are int64 counts of 100 ns ticks since the Unix epoch, the
 * resolution of the Defender API's 7 fractional digits.
 */
#define TICKS_PER_SEC	10000000LL
#define TICKS_PER_MS	10000LL
#define TICKS_NONE	INT64_MIN

/* Parse ISO 8601 UTC "YYYY-MM-DDTHH:MM:SS[.f{0,7}]Z" (or +00:00); 0 ok. */
int	 ts_parse(const char *, size_t, int64_t *);
/* Format as "YYYY-MM-DDTHH:MM:SS.fffffffZ" into out (at least 32 bytes). */
void	 ts_format(int64_t, char *, size_t);
/* Current wall-clock time in ticks. */
int64_t	 ts_now(void);
/* Monotonic clock in milliseconds. */
int64_t	 mono_ms(void);
/* Milliseconds as a struct timeval for a timer (< 0: 0). */
struct timeval tv_from_ms(int64_t);
struct event;
/* Arm the libevent timer ev to fire in ms milliseconds (< 0: at once). */
void	 timer_in(struct event *ev, int64_t ms);

/*
 * Parse "10s", "15m", "250ms", "1h", "2d" into milliseconds; 0 ok, or -1
 * with errno EINVAL (not a duration) or ERANGE (beyond int64 ms).
 */
int	 parse_duration_ms(const char *, int64_t *);
/* Parse "64K", "1M", "1G", "100" into bytes; 0 ok. */
int	 parse_size(const char *, uint64_t *);

/* 64-bit FNV-1a hash. */
uint64_t hash64(const void *, size_t);
/* CRC-32C (Castagnoli). */
uint32_t crc32c(uint32_t, const void *, size_t);

/* 127.0.0.0/8, ::1 ([::1]) or "localhost", parsed as an address literal. */
bool	 host_is_loopback(const char *);
/* max, but at most the soft RLIMIT_NOFILE / div, and at least 2. */
unsigned nofile_share(unsigned max, unsigned div);

/* Write a whole file atomically: temp file, fsync, rename, fsync dir. */
int	 file_write_atomic(const char *path, const void *, size_t, int mode);
/* Read a whole file (up to max bytes) into a NUL-terminated buffer. */
int	 file_read_all(const char *path, size_t max, struct buf *);

#endif
