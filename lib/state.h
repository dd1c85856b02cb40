/*
 * Per-tenant durable state: the cursor, the start of coverage and the
 * dedupe set of forwarded alert versions; and the locked state directory.
 */
#ifndef AR_STATE_H
#define AR_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The dedupe set maps hash64(alert id) to the newest lastUpdateTime
 * forwarded for it.  Entries older than the prune horizon are dropped.
 */
struct dedupe_entry {
	uint64_t	idhash;
	int64_t		last_update;	/* ticks; 0 marks an empty slot */
};

struct dedupe {
	struct dedupe_entry *tab;
	size_t		 cap;		/* power of two */
	size_t		 n;
};

enum dedupe_result {
	DEDUPE_NEW,		/* id never forwarded (within the horizon) */
	DEDUPE_NEWER,		/* id forwarded before, this version newer */
	DEDUPE_DUP,		/* this version (or a newer one) forwarded */
};

void	dedupe_init(struct dedupe *);
void	dedupe_clear(struct dedupe *);
enum dedupe_result dedupe_check(const struct dedupe *, const char *id,
	    size_t idlen, int64_t last_update);
void	dedupe_put(struct dedupe *, const char *id, size_t idlen,
	    int64_t last_update);
/* The same by hash64(id) (a set copied from elsewhere). */
void	dedupe_put_hash(struct dedupe *, uint64_t idhash, int64_t last_update);
/* Drop entries whose last_update < horizon. */
void	dedupe_prune(struct dedupe *, int64_t horizon);

#define STATE_MAX_RANGES	16

struct tenant_state {
	int64_t		cursor;		/* max lastUpdateTime forwarded; TICKS_NONE */
	int64_t		since;		/* start of coverage; TICKS_NONE */
	int64_t		horizon;	/* dedupe entries older are pruned */
	struct dedupe	seen;
	/* Ranges [from, to) read by backfills outside [since, cursor]. */
	int64_t		ranges[STATE_MAX_RANGES][2];
	unsigned	nranges;
	/*
	 * Graph incidents (incidents = yes): their own cursor (newest
	 * lastUpdateDateTime read) and dedupe set of forwarded versions.
	 */
	int64_t		icursor;	/* TICKS_NONE */
	struct dedupe	iseen;
};

void	tenant_state_init(struct tenant_state *);
void	tenant_state_clear(struct tenant_state *);
/* Record [from, to) as read by a backfill (merging, extending since). */
void	tenant_state_cover(struct tenant_state *, int64_t from, int64_t to);
/* Has every version with this lastUpdateTime been read already? */
bool	tenant_state_covered(const struct tenant_state *, int64_t);
/* Missing file: empty state, returns 0.  Corrupt: -1 with message. */
int	tenant_state_load(const char *path, struct tenant_state *, char *err,
	    size_t errlen);
/* Atomic write (temp, fsync, rename, fsync dir), mode 0600. */
int	tenant_state_save(const char *path, const struct tenant_state *);
/*
 * The bytes tenant_state_save writes, into out (replaced): to save off
 * the loop, hand them to a thread that calls file_write_atomic (0600).
 */
struct buf;
void	tenant_state_format(const struct tenant_state *, struct buf *out);

/*
 * Create (0700, whatever the umask) and lock state_dir with an exclusive
 * flock on state_dir/lock.  Returns the lock fd or -1 with a message
 * naming the other process when it is already locked.
 */
int	state_dir_lock(const char *dir, char *err, size_t errlen);

#endif
