/* ctlproto: the control socket's request line, parsed without the loop. */
#include <stdio.h>
#include <string.h>

#include "ctlproto.h"
#include "util.h"

static const char *const commands[] = {
	[CTLPROTO_STATUS] = "status",
	[CTLPROTO_RELOAD] = "reload",
	[CTLPROTO_CHECK_TENANT] = "check-tenant",
	[CTLPROTO_CURSOR] = "cursor",
	[CTLPROTO_BACKFILL] = "backfill",
};

static int
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Split buf (NUL-terminated) into words; -1 when there are too many. */
static int
ctlproto_split(struct ctlproto_req *req)
{
	char	*p = req->buf;

	req->argc = 0;
	for (;;) {
		while (is_blank(*p))
			*p++ = '\0';
		if (*p == '\0')
			break;
		if (req->argc == CTLPROTO_MAX_WORDS)
			return -1;
		req->argv[req->argc++] = p;
		while (*p != '\0' && !is_blank(*p))
			p++;
	}
	req->argv[req->argc] = NULL;
	return 0;
}

int
ctlproto_parse(const char *line, size_t len, struct ctlproto_req *req,
    char *err, size_t errlen)
{
	size_t	 i;

	memset(req->argv, 0, sizeof(req->argv));
	req->argc = 0;
	if (len > CTLPROTO_MAX_REQUEST) {
		snprintf(err, errlen, "request longer than %d bytes",
		    CTLPROTO_MAX_REQUEST);
		return -1;
	}
	if (memchr(line, '\0', len) != NULL) {
		snprintf(err, errlen, "request holds a NUL byte");
		return -1;
	}
	memcpy(req->buf, line, len);
	req->buf[len] = '\0';
	if (ctlproto_split(req) == -1) {
		snprintf(err, errlen, "too many words in the request");
		return -1;
	}
	if (req->argc == 0) {
		snprintf(err, errlen, "empty request");
		return -1;
	}
	for (i = 0; i < nitems(commands); i++)
		if (strcmp(req->argv[0], commands[i]) == 0) {
			req->cmd = (enum ctlproto_cmd)i;
			return 0;
		}
	snprintf(err, errlen, "unknown command \"%.64s\"", req->argv[0]);
	return -1;
}

int
ctlproto_time(const char *s, int64_t *out)
{
	char	 tmp[32];
	size_t	 len = strlen(s);

	if (len == 10 && s[4] == '-' && s[7] == '-') {
		snprintf(tmp, sizeof(tmp), "%sT00:00:00Z", s);
		return ts_parse(tmp, strlen(tmp), out);
	}
	return ts_parse(s, len, out);
}
