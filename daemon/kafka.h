/*
 * kafka.c: the producer of one kafka output, driven from the relay's loop
 * (sink.c owns the spool and decides what to send; this file talks to
 * librdkafka).  Nothing here blocks the loop.
 */
#ifndef KAFKA_H
#define KAFKA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "conf.h"
#include "spool.h"
#include "util.h"

struct kafka;

struct kafka_cbs {
	/* Every record before pos is acknowledged (n more of them). */
	void	(*acked)(void *, const struct spool_pos *, uint64_t n);
	/*
	 * A record failed and every record sent after it has its report:
	 * the sink starts again from its first unacknowledged record.
	 */
	void	(*failed)(void *, const char *reason);
	void	*arg;
};

/* Create the producer (TLS files, SASL password); NULL with err. */
struct kafka	*kafka_new(struct event_base *, const struct conf_output *,
		    const struct kafka_cbs *, char *err, size_t errlen);
/* Purge what is queued and destroy the producer without a flush. */
void		 kafka_free(struct kafka *);
/* Room for one more record in the window (and no failure pending)? */
bool		 kafka_room(const struct kafka *);
/*
 * Produce one spool record that ends at end (the position after it).
 * 0, or -1 with reason (the record stays unsent).
 */
int		 kafka_send(struct kafka *, const char *rec, size_t len,
		    const struct spool_pos *end, char *reason, size_t rlen);
/*
 * Forget the window after a failure; returns how many records were in
 * it (they are sent again).  A producer that hit a fatal error is made
 * anew (if that fails, it is logged and tried again on the next reset).
 */
uint64_t	 kafka_reset(struct kafka *);
bool		 kafka_connected(const struct kafka *);
uint64_t	 kafka_inflight(const struct kafka *);

/*
 * Spool records of kafka outputs carry the message key in front of the
 * event: "\0K", key length (2 bytes, big endian), key, event.  No event
 * starts with a NUL byte, so records without it (written while the output
 * was another transport) are told apart.
 */
void		 kafka_record_build(struct buf *, const char *tenant,
		    const char *id, size_t idlen, const char *msg, size_t len);
/* Split a record into key (NULL if none) and event. */
void		 kafka_record_split(const char *rec, size_t len,
		    const char **key, size_t *keylen, const char **msg,
		    size_t *msglen);

#endif
