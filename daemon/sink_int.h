/*
 * sink_int.h: what sink.c shares with the parts below it: sinknet.c
 * (socket system calls), sinkrecs.c (records awaiting acknowledgement),
 * sinktls.c (TLS) and sinkrelp.c (RELP sessions).  None of them calls
 * back into sink.c.
 */
#ifndef SINK_INT_H
#define SINK_INT_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "internal.h"

/* A record sent on this connection and not yet acknowledged in the spool. */
struct sink_rec {
	struct spool_pos	 end;		/* spool position after it */
	uint64_t		 end_off;	/* s->queued after it */
	int64_t			 acked_at;	/* mono_ms of its ack, or 0 */
	uint32_t		 txnr;		/* relp: its transaction */
};

/*
 * The records of a connection: v[first..n) are not yet acknowledged in
 * the spool, those before tcp are known to be in the peer's hands.
 */
struct sink_recs {
	struct sink_rec		*v;
	size_t			 first, tcp, n, cap;
};

/* sinknet.c: the system calls on an output's socket or file. */
struct addrinfo;
struct evbuffer;
int		 sinknet_connect(struct addrinfo **cur, int *error);
int		 sinknet_connect_error(int fd);
void		 sinknet_tcp_opts(int fd);
int		 sinknet_outq(int fd, int *outq);
ssize_t		 sinknet_write(int fd, bool file, struct evbuffer *);
int		 sinknet_send_udp(int fd, const char *msg, size_t len,
		    int *refused);

/* sinkrecs.c: the records of a connection. */
void		 sinkrecs_push(struct sink_recs *, const struct spool_pos *end,
		    uint64_t end_off, uint32_t txnr);
size_t		 sinkrecs_pending(const struct sink_recs *);
void		 sinkrecs_clear(struct sink_recs *);
bool		 sinkrecs_reach(struct sink_recs *, uint64_t done, int64_t now);
uint64_t	 sinkrecs_release(struct sink_recs *, uint64_t done,
		    int64_t now, int64_t hold_ms, uint64_t hold_bytes,
		    struct spool_pos *end);
uint64_t	 sinkrecs_answered(struct sink_recs *, struct spool_pos *end);

/* TLS: after a successful SSL_write, plaintext and socket byte counts. */
struct sink_mark {
	uint64_t		 plain;		/* s->written after it */
	uint64_t		 cipher;	/* BIO_number_written after */
};

/* The marks not yet passed by the peer's acknowledgement: v[first..n). */
struct sinktls_marks {
	struct sink_mark	*v;
	size_t			 first, n, cap;
};

/* sinktls.c: the TLS client side of an output. */
enum sinktls_step {
	SINKTLS_DONE,			/* handshake complete */
	SINKTLS_WANT_READ,		/* wait until readable */
	SINKTLS_WANT_WRITE,		/* wait until writable */
	SINKTLS_FAILED,			/* reason says why */
};

SSL_CTX		*sinktls_ctx(const struct conf_output *, char *err,
		    size_t errlen);
SSL		*sinktls_session(SSL_CTX *, int fd, const char *name,
		    char *err, size_t errlen);
enum sinktls_step sinktls_handshake(SSL *, char *reason, size_t len);
void		 sinktls_explain(SSL *, int ret, bool handshake, char *out,
		    size_t len);
bool		 sinktls_eof(SSL *, int ret);
void		 sinktls_mark(struct sinktls_marks *, SSL *, uint64_t plain);
uint64_t	 sinktls_acked(struct sinktls_marks *, SSL *, int outq,
		    uint64_t peer_acked);

/* sinkrelp.c: the RELP session on an output's connection. */
struct sinkrelp {
	uint32_t		 txnr;		/* last one sent */
	struct buf		 in;		/* unparsed responses */
	int64_t			 rsp_at;	/* mono_ms, last response */
};

enum sinkrelp_input {
	SINKRELP_OK,			/* responses noted in the records */
	SINKRELP_FAILED,		/* why says what went wrong */
	SINKRELP_CLOSED,		/* the server sent serverclose */
};

void		 sinkrelp_open(struct sinkrelp *, struct buf *frame);
void		 sinkrelp_frame(struct sinkrelp *, struct buf *frame,
		    const char *msg, size_t len, bool idle);
enum sinkrelp_input sinkrelp_input(struct sinkrelp *, struct sink_recs *,
		    const char *data, size_t len, char *why, size_t whylen);

#endif
