/*
 * Encoders: sanitising and escaping untrusted text, CEF/LEEF/JSON event
 * bodies, syslog headers and stream framing.
 */
#ifndef AR_ENCODE_H
#define AR_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "conf.h"
#include "incident.h"
#include "utf8.h"
#include "util.h"

/*
 * Append s to out with invalid UTF-8 replaced by U+FFFD (one per maximal
 * invalid subsequence, as CPython's errors="replace") and every Cc control
 * other than TAB, LF and CR replaced by U+FFFD.
 */
void	sanitize_utf8(struct buf *out, const char *s, size_t len);
/* CEF header field: CR/LF/TAB -> space, "\" -> "\\", "|" -> "\|". */
void	cef_escape_header(struct buf *out, const char *s, size_t len);
/* CEF extension value: "\" "=" LF CR escaped. */
void	cef_escape_ext(struct buf *out, const char *s, size_t len);
/* Longest prefix of valid UTF-8 s of at most max bytes on a code point. */
size_t	utf8_prefix(const char *s, size_t len, size_t max);

/* Per-event facts that are not in the alert (or incident) itself. */
struct event_meta {
	const char	*tenant_name;
	const char	*tenant_label;
	const char	*tenant_id;	/* configured tenant_id */
	int		 updated;	/* 0 created, 1 updated */
	int64_t		 forwarded_at;	/* ticks */
};

/*
 * Encode one alert as the syslog MSG part in the output's format, with the
 * syslog header the output asks for, shortened to max_message_bytes
 * (description first, then other values, never mid-escape or mid-UTF-8).
 * Appends to out.  hostname/pid fill the header.
 */
int	event_encode(struct buf *out, const struct conf_output *,
	    const struct alert *, const struct event_meta *,
	    const char *hostname, int pid);

/* The body alone (no syslog header), at most max bytes. */
void	cef_encode(struct buf *out, const struct alert *,
	    const struct event_meta *, size_t max);
void	leef_encode(struct buf *out, const struct alert *,
	    const struct event_meta *, size_t max);
void	json_encode(struct buf *out, const struct alert *,
	    const struct event_meta *, size_t max);

/*
 * The same for one Graph incident (SPEC §4 "Incidents"): CEF/LEEF product
 * "Microsoft Defender XDR", class "incident"; JSON schema
 * "alertrelay.incident.v1" with the object under "incident".  A merged
 * incident (redirectIncidentId set) is always "updated", whatever
 * m->updated says.
 */
int	incident_encode(struct buf *out, const struct conf_output *,
	    const struct incident *, const struct event_meta *,
	    const char *hostname, int pid);
void	cef_encode_incident(struct buf *out, const struct incident *,
	    const struct event_meta *, size_t max);
void	leef_encode_incident(struct buf *out, const struct incident *,
	    const struct event_meta *, size_t max);
void	json_encode_incident(struct buf *out, const struct incident *,
	    const struct event_meta *, size_t max);

/* Free the encoders' scratch memory (at exit; they work again after). */
void	encode_cleanup(void);

/* CEF severity number for an alert severity. */
int	cef_severity(enum severity);
/* Syslog severity (0..7) for an alert severity. */
int	syslog_severity(enum severity);
/* Append the syslog header for facility/severity at time ts (ticks). */
void	syslog_header(struct buf *out, enum out_header, int facility,
	    int severity, int64_t ts, const char *hostname, int pid);
/* Append msg framed for the stream: "LEN SP MSG" or "MSG LF". */
void	frame_message(struct buf *out, enum out_framing, const char *msg,
	    size_t len);

#endif
