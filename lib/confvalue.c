/* Configuration values: names, numbers, URLs, paths, secret files. */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf.h"
#include "conf_int.h"
#include "util.h"

/* ---- small helpers ---- */

/* A decimal number of 1 to 9 digits in s[0..n), or -1. */
long
number_parse(const char *s, size_t n)
{
	long	 v = 0;
	size_t	 i;

	if (n == 0 || n > 9)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Parse a port number 1..65535. */
static int
port_ok(const char *s)
{
	long	 v = number_parse(s, strlen(s));

	return v >= 1 && v <= 65535;
}

/* Split HOST:PORT or [V6]:PORT; host and port may be NULL. */
const char *
hostport_parse(const char *s, char **host, char **port)
{
	const char	*colon, *h = s, *he;

	if (*s == '[') {
		h = s + 1;
		if ((he = strchr(h, ']')) == NULL || he[1] != ':')
			return "is not [ADDRESS]:PORT";
		colon = he + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return "is not HOST:PORT";
		he = colon;
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return "has an IPv6 address without brackets; "
			    "write [ADDRESS]:PORT";
	}
	if (he == h || strcspn(h, " \t/[]") < (size_t)(he - h))
		return "has no valid host before the port";
	if (!port_ok(colon + 1))
		return "has no port number 1..65535 after the host";
	if (host != NULL)
		*host = xstrndup(h, (size_t)(he - h));
	if (port != NULL)
		*port = xstrdup(colon + 1);
	return NULL;
}

/* Take a URL apart far enough to check it; returns why it is wrong. */
static const char *
url_parse(const char *s, struct url *u)
{
	const char	*p, *auth, *end, *he;
	size_t		 n;

	if ((p = strstr(s, "://")) == NULL || p == s ||
	    (size_t)(p - s) >= sizeof(u->scheme))
		return "is not an absolute URL (scheme://host...)";
	memcpy(u->scheme, s, (size_t)(p - s));
	u->scheme[p - s] = '\0';
	auth = p + 3;
	end = auth + strcspn(auth, "/?#");
	if (*auth == '[') {
		if ((he = memchr(auth, ']', (size_t)(end - auth))) == NULL)
			return "has an unterminated [IPv6] host";
		auth++;
	} else if ((he = memchr(auth, ':', (size_t)(end - auth))) == NULL)
		he = end;
	n = (size_t)(he - auth);
	if (n == 0 || n >= sizeof(u->host) || strcspn(auth, " \t") < n)
		return "has no valid host";
	memcpy(u->host, auth, n);
	u->host[n] = '\0';
	return NULL;
}

/* Parse a URL for key, reporting errors; never prints credentials. */
int
url_check(struct parser *p, const char *key, const char *val,
    struct url *u)
{
	const char	*why, *auth = strstr(val, "://");

	if (auth != NULL && memchr(auth, '@', strcspn(auth + 3, "/?#") + 3)) {
		perr(p, "%s: credentials in the URL are not accepted%s", key,
		    strcmp(key, "smtp_url") == 0 ?
		    "; use username and password_file" : "");
		return -1;
	}
	if ((why = url_parse(val, u)) != NULL) {
		perr(p, "%s: \"%s\" %s", key, val, why);
		return -1;
	}
	return 0;
}

/* A path relative to the directory of the current file (or absolute). */
char *
path_resolve(struct parser *p, const char *path)
{
	const char	*slash;
	char		*out;

	if (*path == '/' || (slash = strrchr(p->file, '/')) == NULL)
		return xstrdup(path);
	xasprintf(&out, "%.*s/%s", (int)(slash - p->file), p->file, path);
	return out;
}

/*
 * Format milliseconds in the largest exact unit, stepping down one unit
 * from a count of 1 so defaults read as in SPEC: 60s, 15m, 24h, 500ms.
 */
const char *
dur_fmt(int64_t ms, char *out, size_t len)
{
	static const struct { const char *u; int64_t ms; } units[] = {
		{ "d", 86400000 }, { "h", 3600000 }, { "m", 60000 },
		{ "s", 1000 }, { "ms", 1 }
	};
	size_t	 i;

	for (i = 0; i < nitems(units) - 1; i++) {
		if (ms % units[i].ms == 0 &&
		    (ms / units[i].ms > 1 || units[i].ms == 1000))
			break;
	}
	snprintf(out, len, "%lld%s", (long long)(ms / units[i].ms),
	    units[i].u);
	return out;
}

/* Format a byte count with the largest exact suffix: 1073741824 -> "1G". */
const char *
size_fmt(uint64_t n, char *out, size_t len)
{
	if (n != 0 && n % (1ULL << 30) == 0)
		snprintf(out, len, "%lluG", (unsigned long long)(n >> 30));
	else if (n != 0 && n % (1ULL << 20) == 0)
		snprintf(out, len, "%lluM", (unsigned long long)(n >> 20));
	else if (n != 0 && n % (1ULL << 10) == 0)
		snprintf(out, len, "%lluK", (unsigned long long)(n >> 10));
	else
		snprintf(out, len, "%llu", (unsigned long long)n);
	return out;
}

/* ---- files the configuration refers to ---- */

/*
 * Open a file named by key.  A private file (secret or key) must not be
 * accessible by group or others.  Returns the descriptor or -1 (reported).
 */
int
file_open_checked(struct parser *p, const char *key, const char *path,
    bool private)
{
	struct stat	 st;
	int		 fd, mode;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		perr(p, "%s: cannot open %s: %s", key, path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		perr(p, "%s: %s is not a regular file", key, path);
		close(fd);
		return -1;
	}
	mode = (int)(st.st_mode & 07777);
	if (private && (mode & 077) != 0) {
		perr(p, "%s %s is %s by group or others (mode %04o); "
		    "run chmod 600 %s", key, path, (mode & 044) ?
		    "readable" : "accessible", mode, path);
		close(fd);
		return -1;
	}
	return fd;
}

/* Read a whole small file into out (at most CONF_MAX_SECRET bytes). */
static ssize_t
secret_read_fd(int fd, char *out, size_t max)
{
	size_t	 len = 0;
	ssize_t	 n;

	while (len <= max) {
		n = read(fd, out + len, max + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	return (ssize_t)len;
}

/* Load a secret file: one line, one trailing newline ignored. */
char *
secret_load(struct parser *p, const char *key, const char *path)
{
	char	 tmp[CONF_MAX_SECRET + 1];
	char	*s = NULL;
	ssize_t	 n;
	int	 fd;

	if ((fd = file_open_checked(p, key, path, true)) == -1)
		return NULL;
	n = secret_read_fd(fd, tmp, CONF_MAX_SECRET);
	close(fd);
	if (n > 0 && tmp[n - 1] == '\n')
		n -= n > 1 && tmp[n - 2] == '\r' ? 2 : 1;
	if (n >= 0 && n <= CONF_MAX_SECRET)
		tmp[n] = '\0';
	if (n == -1)
		perr(p, "%s: cannot read %s: %s", key, path, strerror(errno));
	else if (n > CONF_MAX_SECRET)
		perr(p, "%s %s is too large (more than %d bytes)", key, path,
		    CONF_MAX_SECRET);
	else if (n == 0)
		perr(p, "%s %s is empty", key, path);
	else if (memchr(tmp, '\0', (size_t)n) != NULL ||
	    strcspn(tmp, "\r\n") < (size_t)n)
		perr(p, "%s %s must hold the secret on one line", key, path);
	else
		s = xstrndup(tmp, (size_t)n);
	explicit_bzero(tmp, sizeof(tmp));
	return s;
}
