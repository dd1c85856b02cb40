/* Logging to the journal (structured fields) or stderr, OpenBSD-style. */
#ifndef AR_LOG_H
#define AR_LOG_H

#include <stdarg.h>
#include <syslog.h>

enum log_target {
	LOG_TARGET_AUTO,
	LOG_TARGET_JOURNAL,
	LOG_TARGET_STDERR,
};

/*
 * Optional structured context attached to an entry.  Every non-NULL
 * string becomes a journal field (TENANT=, OUTPUT=, ...); on stderr the
 * message text already names them.  http_status/aadsts are 0 when unset.
 */
struct log_ctx {
	const char	*tenant;
	const char	*output;
	const char	*alert_id;
	const char	*correlation_id;
	const char	*message_id;	/* a MESSAGE_ID= UUID for operators */
	int		 http_status;
	long		 aadsts;
};

void	log_init(enum log_target, int verbose, const char *ident);
int	log_target_parse(const char *, enum log_target *);
int	log_verbose(void);
void	log_setverbose(int);

void	log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

/* Entry with structured context at syslog priority prio. */
void	log_ctx(int prio, const struct log_ctx *, const char *, ...)
	    __attribute__((format(printf, 3, 4)));
void	log_vctx(int prio, const struct log_ctx *, const char *, va_list);

/*
 * s as one clean line (malloc'd, NULL if out of memory): TAB, LF, VT, FF
 * and CR become spaces; other C0 controls (ESC above all), DEL, C1
 * controls and invalid UTF-8 become U+FFFD.  Every entry goes through
 * it, so text from the network can neither forge a line nor send
 * terminal escapes.
 */
char	*log_oneline(const char *);

/* Tenant-scoped shorthand: "tenant NAME: " before the text, TENANT=NAME. */
void	log_tenant(int prio, const char *tenant, const char *, ...)
	    __attribute__((format(printf, 3, 4)));
void	log_output(int prio, const char *output, const char *, ...)
	    __attribute__((format(printf, 3, 4)));

/* MESSAGE_IDs operators can alert on. */
#define MSGID_TENANT_FAILING	"5e1c7a0e9d3b4c2fa0a1d2e3f4a5b601"
#define MSGID_TENANT_RECOVERED	"5e1c7a0e9d3b4c2fa0a1d2e3f4a5b602"
#define MSGID_OUTPUT_DOWN	"5e1c7a0e9d3b4c2fa0a1d2e3f4a5b603"
#define MSGID_OUTPUT_RECOVERED	"5e1c7a0e9d3b4c2fa0a1d2e3f4a5b604"
#define MSGID_SPOOL_FULL	"5e1c7a0e9d3b4c2fa0a1d2e3f4a5b605"
#define MSGID_RELOAD_APPLIED	"5e1c7a0e9d3b4c2fa0a1d2e3f4a5b606"
#define MSGID_RELOAD_REJECTED	"5e1c7a0e9d3b4c2fa0a1d2e3f4a5b607"
#define MSGID_TENANT_LAGGING	"5e1c7a0e9d3b4c2fa0a1d2e3f4a5b608"
#define MSGID_TENANT_CAUGHT_UP	"5e1c7a0e9d3b4c2fa0a1d2e3f4a5b609"

#endif
