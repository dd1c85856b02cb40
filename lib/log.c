/* Logging: native journal entries with structured fields, or stderr lines. */
#include <sys/stat.h>
#include <sys/uio.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "utf8.h"
#include "log.h"

static int		 use_journal;
static int		 verbose;
static const char	*log_ident = "alertrelayd";

/* True when stderr is the journal stream systemd gave us. */
static int
stderr_is_journal(void)
{
	const char		*e = getenv("JOURNAL_STREAM");
	unsigned long long	 dev, ino;
	struct stat		 st;

	if (e == NULL || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(STDERR_FILENO, &st) == -1)
		return 0;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

void
log_init(enum log_target target, int v, const char *ident)
{
	verbose = v;
	if (ident != NULL)
		log_ident = ident;
	if (target == LOG_TARGET_AUTO)
		use_journal = stderr_is_journal();
	else
		use_journal = target == LOG_TARGET_JOURNAL;
}

int
log_target_parse(const char *s, enum log_target *t)
{
	if (strcmp(s, "auto") == 0)
		*t = LOG_TARGET_AUTO;
	else if (strcmp(s, "journal") == 0)
		*t = LOG_TARGET_JOURNAL;
	else if (strcmp(s, "stderr") == 0)
		*t = LOG_TARGET_STDERR;
	else
		return -1;
	return 0;
}

int
log_verbose(void)
{
	return verbose;
}

void
log_setverbose(int v)
{
	verbose = v;
}

static const char *
prio_name(int prio)
{
	switch (prio) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
		return "fatal";
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_DEBUG:
		return "debug";
	default:
		return "info";
	}
}

#define MAXFIELDS 10

static void
add_field(struct iovec *iov, int *n, char **store, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
add_field(struct iovec *iov, int *n, char **store, const char *fmt, ...)
{
	va_list	 ap;
	int	 len;

	va_start(ap, fmt);
	len = vasprintf(&store[*n], fmt, ap);
	va_end(ap);
	if (len == -1) {
		store[*n] = NULL;
		return;
	}
	iov[*n].iov_base = store[*n];
	iov[*n].iov_len = (size_t)len;
	(*n)++;
}

/* A string field, one clean line like the message (ids come from afar). */
static void
add_text(struct iovec *iov, int *n, char **store, const char *key,
    const char *val)
{
	char	*v;

	if (val == NULL || (v = log_oneline(val)) == NULL)
		return;
	add_field(iov, n, store, "%s=%s", key, v);
	free(v);
}

static void
journal_emit(int prio, const struct log_ctx *c, const char *msg)
{
	struct iovec	 iov[MAXFIELDS];
	char		*store[MAXFIELDS];
	int		 n = 0, i;

	add_field(iov, &n, store, "MESSAGE=%s", msg);
	add_field(iov, &n, store, "PRIORITY=%d", prio);
	add_field(iov, &n, store, "SYSLOG_IDENTIFIER=%s", log_ident);
	if (c != NULL) {
		add_text(iov, &n, store, "TENANT", c->tenant);
		add_text(iov, &n, store, "OUTPUT", c->output);
		add_text(iov, &n, store, "ALERT_ID", c->alert_id);
		add_text(iov, &n, store, "CORRELATION_ID", c->correlation_id);
	}
	if (c != NULL && c->message_id != NULL)
		add_field(iov, &n, store, "MESSAGE_ID=%s", c->message_id);
	if (c != NULL && c->http_status != 0)
		add_field(iov, &n, store, "HTTP_STATUS=%d", c->http_status);
	if (c != NULL && c->aadsts != 0)
		add_field(iov, &n, store, "AADSTS=%ld", c->aadsts);
	if (sd_journal_sendv(iov, n) < 0)
		fprintf(stderr, "%s: %s\n", log_ident, msg);
	for (i = 0; i < n; i++)
		free(store[i]);
}

char *
log_oneline(const char *s)
{
	static const char	 fffd[] = "\xef\xbf\xbd";
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 len = strlen(s), n;
	char			*out, *o;
	int			 ok;

	/* At most one U+FFFD (3 bytes) per input byte. */
	if ((out = malloc(len * 3 + 1)) == NULL)
		return NULL;
	for (o = out; *p != '\0'; p += n) {
		n = utf8_seq(p, len - (size_t)(p - (const unsigned char *)s),
		    &ok);
		if (ok && n == 1 && *p >= 0x09 && *p <= 0x0d)
			*o++ = ' ';
		else if (!ok || (n == 1 && (*p < 0x20 || *p == 0x7f)) ||
		    (n == 2 && p[0] == 0xc2 && p[1] < 0xa0)) {
			memcpy(o, fffd, 3);
			o += 3;
		} else {
			memcpy(o, p, n);
			o += n;
		}
	}
	*o = '\0';
	return out;
}

void
log_vctx(int prio, const struct log_ctx *c, const char *fmt, va_list ap)
{
	char	*raw, *msg;
	int	 saved = errno;

	if (prio == LOG_DEBUG && !verbose)
		return;
	if (vasprintf(&raw, fmt, ap) == -1) {
		errno = saved;
		return;
	}
	/* Remote text (API errors, SMTP replies...) stays on one line. */
	msg = log_oneline(raw);
	free(raw);
	if (msg == NULL) {
		errno = saved;
		return;
	}
	if (use_journal)
		journal_emit(prio, c, msg);
	else
		fprintf(stderr, "%s: %s: %s\n", log_ident, prio_name(prio),
		    msg);
	free(msg);
	errno = saved;
}

void
log_ctx(int prio, const struct log_ctx *c, const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vctx(prio, c, fmt, ap);
	va_end(ap);
}

void
log_tenant(int prio, const char *tenant, const char *fmt, ...)
{
	struct log_ctx	 c = { .tenant = tenant };
	va_list		 ap;
	char		*msg;
	int		 saved = errno;

	if (prio == LOG_DEBUG && !verbose)
		return;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) == -1)
		msg = NULL;
	va_end(ap);
	errno = saved;
	if (msg == NULL)
		return;
	log_ctx(prio, &c, "tenant %s: %s", tenant, msg);
	free(msg);
}

void
log_output(int prio, const char *output, const char *fmt, ...)
{
	struct log_ctx	 c = { .output = output };
	va_list		 ap;

	va_start(ap, fmt);
	log_vctx(prio, &c, fmt, ap);
	va_end(ap);
}

/* Message plus ": strerror(errno)". */
static void
vwarn_errno(int prio, const char *fmt, va_list ap)
{
	char	*m;
	int	 saved = errno;

	if (vasprintf(&m, fmt, ap) == -1)
		return;
	log_ctx(prio, NULL, "%s: %s", m, strerror(saved));
	free(m);
	errno = saved;
}

void
log_warn(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vwarn_errno(LOG_WARNING, fmt, ap);
	va_end(ap);
}

void
log_warnx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vctx(LOG_WARNING, NULL, fmt, ap);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vctx(LOG_INFO, NULL, fmt, ap);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vctx(LOG_DEBUG, NULL, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	vwarn_errno(LOG_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list	 ap;

	va_start(ap, fmt);
	log_vctx(LOG_CRIT, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
