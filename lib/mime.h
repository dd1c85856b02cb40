/* MIME for notification mails: RFC 2045 quoted-printable, RFC 2047 headers. */
#ifndef MIME_H
#define MIME_H

#include <stddef.h>
#include <time.h>

#include "util.h"

/* Longest line of a header holding encoded words (RFC 2047 §2). */
#define MIME_HEADER_LINE	76
/* Longest encoded word (RFC 2047 §2). */
#define MIME_WORD_MAX		75
/* Longest quoted-printable line, soft break included (RFC 2045 §6.7). */
#define MIME_QP_LINE		76

/*
 * Append s as one line: invalid UTF-8 replaced, every control character
 * (CR, LF, TAB ...) a space; cut on a character boundary at max bytes with
 * "…" appended.
 */
void	 mime_one_line(struct buf *out, const char *s, size_t max);
/*
 * Append "Name: value" CRLF.  Control characters in value become spaces,
 * so no CR or LF from it reaches the header; an ASCII value is folded at
 * spaces where a line would exceed MIME_HEADER_LINE; a value that is not
 * ASCII becomes RFC 2047 "=?UTF-8?B?...?=" words of whole characters,
 * folded so that no line exceeds MIME_HEADER_LINE.  value must be valid UTF-8
 * (mime_one_line's output is).
 */
void	 mime_header(struct buf *out, const char *name, const char *value);
/*
 * Append the quoted-printable encoding (RFC 2045 §6.7) of len bytes of
 * text with LF line ends; lines end in CRLF (the last one too), long ones
 * get soft breaks, "=" and whitespace before a line end are escaped.
 */
void	 mime_qp(struct buf *out, const char *s, size_t len);
/* The bare address of "Name <addr>" or "addr" (allocated). */
char	*mime_bare_address(const char *);
/* Append t as an RFC 5322 date in UTC: "Fri, 04 Dec 2026 02:22:21 +0000". */
void	 mime_date(struct buf *out, time_t t);

#endif
