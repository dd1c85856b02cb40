/* smtp: one mail submission over SMTP with libcurl, on a worker thread. */
#ifndef SMTP_H
#define SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

struct smtp_result {
	int		 status;	/* the last SMTP reply code, 0 if none */
	bool		 failed;	/* transport error, or cancelled */
	const char	*error;		/* what failed, for logs; NULL if ok */
	int64_t		 elapsed_ms;
};

typedef void (*smtp_done_cb)(const struct smtp_result *, void *);

struct smtp_opts {
	const char	*url;		/* smtp[s]://HOST:PORT[/EHLO-NAME] */
	const char	*mail_from;	/* bare address */
	const char *const *rcpt;	/* bare addresses */
	size_t		 nrcpt;
	const char	*username;	/* NULL: no AUTH */
	const char	*password;
	const char	*ca_file;	/* NULL = system CAs */
	const char	*body;		/* the whole message, CRLF lines */
	size_t		 body_len;
	int64_t		 timeout_ms;
	smtp_done_cb	 done_cb;	/* called once, from the loop */
	void		*arg;
};

/*
 * Queue the transfer on a worker thread (libcurl would block the loop
 * while it waits for the reply to the end of DATA); everything is copied.
 * smtp:// uses STARTTLS, required unless the host is loopback (then only
 * when offered); smtps:// is TLS from the start.  Certificates are always
 * verified.  done_cb is called later from the loop, never from here.
 * smtp_cancel gives the transaction up at once and never calls back;
 * smtp_cancel(NULL) is a no-op.
 */
struct smtp_job;
struct smtp_job	*smtp_submit(struct event_base *, const struct smtp_opts *);
void		 smtp_cancel(struct smtp_job *);

#endif
