/*
 * Alerts: the normaliser that reads the fields alertrelay forwards out of
 * one alert object without building a JSON tree (pagesplit.h cuts a page
 * into those objects).
 */
#ifndef AR_ALERT_H
#define AR_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "util.h"

/*
 * A decoded string value.  p points into the alert's arena; the bytes are
 * the JSON string unescaped, NOT yet sanitised: they may hold NUL, control
 * characters or invalid UTF-8 (encoders sanitise).  A JSON lone surrogate
 * escape decodes to U+FFFD.  p == NULL means absent or null.
 */
struct astr {
	const char	*p;
	size_t		 len;
};

struct alert {
	struct astr	 id;
	struct astr	 title;
	struct astr	 description;
	struct astr	 category;
	struct astr	 detector_id;
	struct astr	 detection_source;
	struct astr	 service_source;	/* Graph serviceSource */
	struct astr	 computer_dns_name;
	struct astr	 machine_id;
	struct astr	 aad_tenant_id;
	struct astr	 threat_name;
	struct astr	 status;
	struct astr	 classification;
	struct astr	 determination;
	struct astr	 severity_text;		/* as received */
	enum severity	 severity;		/* SEV_UNSPECIFIED if unknown */
	struct astr	 user_name;		/* relatedUser.userName */
	struct astr	 domain_name;		/* relatedUser.domainName */
	struct astr	 mitre;			/* mitreTechniques joined "," */
	struct astr	 incident_id;		/* number or string, as text */
	struct astr	 investigation_id;
	int64_t		 last_update;		/* ticks; TICKS_NONE if absent */
	int64_t		 creation;
	int64_t		 first_event;
	int64_t		 last_event;
	unsigned	 evidence_count;
	/* From the first File or Process evidence. */
	struct astr	 file_name;
	struct astr	 file_path;
	struct astr	 sha1;
	/* From the first evidence that has one. */
	struct astr	 sha256;
	struct astr	 ip_address;
	struct astr	 url;

	const char	*raw;			/* the object's bytes as received */
	size_t		 raw_len;
	struct buf	 arena;			/* owns decoded strings */
};

void	alert_init(struct alert *);
void	alert_clear(struct alert *);

/*
 * Parse one alert object (the bytes of one element of "value") from the
 * Defender for Endpoint API (SRC_MDE) or Graph alerts_v2 (SRC_GRAPH).
 * Resets a first; a->raw points at json, which must outlive a.
 * Returns 0, or -1 with a message in err when the bytes are not a JSON
 * object or "id"/"lastUpdateTime" are missing or malformed.  Wrong types
 * in other fields are treated as absent.
 */
int	alert_parse(struct alert *a, enum tenant_source, const char *json,
	    size_t len, char *err, size_t errlen);

/*
 * The reader's parts, shared with the readers of other Graph objects
 * (lib/incident.c).  A keytab maps member names, compared after
 * decoding, to indexes (fewer than KT_SLOTS names per table).
 */
#define KT_SLOTS	64

struct jscan;
struct jstr;

struct keytab {
	const char	*name[KT_SLOTS];
	uint8_t		 len[KT_SLOTS];
	uint8_t		 idx[KT_SLOTS];
};

void	 keytab_add(struct keytab *, const char *name, unsigned idx);
/*
 * Add the n names of a table: each element (stride bytes apart) starts
 * with its name (a const char *), its index is its place in the table.
 */
void	 keytab_fill(struct keytab *, const void *table, size_t n,
	    size_t stride);
/* Index of the (raw, maybe escaped) member name key, or -1. */
int	 keytab_key(const struct keytab *, const struct jstr *key);
/*
 * Read the string members of the object at the cursor named in kt into
 * out[] (by index) as raw strings; a later duplicate wins, null or another
 * type is absent (p NULL).
 */
int	 keytab_strings(struct jscan *, const struct keytab *kt,
	    struct jstr *out, size_t nout);
/*
 * Walk the array at the cursor (any other value is skipped): each(arg,
 * cursor) reads an object element, each(arg, NULL) counts another one
 * (already skipped).
 */
int	 alert_array_walk(struct jscan *,
	    int (*each)(void *, struct jscan *), void *arg);
/*
 * Decode string s into arena, NUL-terminated.  The arena must already
 * have room (s->len + 2 bytes): it never moves while astrs point into it.
 */
struct astr astr_put(struct buf *arena, const struct jstr *s);
/*
 * The value at the cursor, if a string (or a number when numbers is set),
 * into *out via astr_put; any other value is skipped and absent.
 */
int	 astr_read(struct buf *arena, struct jscan *, struct astr *out,
	    int numbers);
/* A time string into ticks; any other value or a bad time: TICKS_NONE. */
int	 ticks_read(struct jscan *, int64_t *);
/* "informational", "low", ... (any case); anything else SEV_UNSPECIFIED. */
enum severity severity_of(const struct astr *);
/*
 * Walk the JSON object json in one pass (what names it in errors): each
 * member named in kt is read by read(arg, cursor, its index), any other
 * skipped (its syntax still checked).  -1 with err set when it is not a
 * JSON object or not valid JSON.
 */
int	 alert_object_walk(const struct keytab *kt, const char *json,
	    size_t len, const char *what,
	    int (*read)(void *, struct jscan *, int), void *arg, char *err,
	    size_t errlen);
/* What every object needs: a non-empty "id" and a valid time in lu. */
int	 alert_object_check(const struct astr *id, int64_t last_update,
	    const char *lu, char *err, size_t errlen);

#endif

