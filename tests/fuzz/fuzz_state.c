/*
 * libFuzzer: tenant state files read back by tenant_state_load().  The
 * first byte chooses whether the harness appends a correct "crc" line, so
 * the fuzzer reaches the parser behind the checksum; a file that loads
 * must save and load again to the same state.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char	 path[64], path2[64];

static void
write_file(const char *p, const void *data, size_t len)
{
	FILE	*f;

	if ((f = fopen(p, "w")) == NULL)
		abort();
	if (len > 0 && fwrite(data, 1, len, f) != len)
		abort();
	if (fclose(f) != 0)
		abort();
}

/* Does b hold the entry e of a? */
static int
has_entry(const struct dedupe *d, const struct dedupe_entry *e)
{
	size_t	 i;

	for (i = 0; i < d->cap; i++) {
		if (d->tab[i].idhash == e->idhash &&
		    d->tab[i].last_update == e->last_update)
			return 1;
	}
	return 0;
}

static int
same_state(const struct tenant_state *a, const struct tenant_state *b)
{
	size_t	 i;

	if (a->cursor != b->cursor || a->since != b->since ||
	    a->horizon != b->horizon || a->seen.n != b->seen.n)
		return 0;
	for (i = 0; i < a->seen.cap; i++) {
		if (a->seen.tab[i].last_update != 0 &&
		    !has_entry(&b->seen, &a->seen.tab[i]))
			return 0;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tenant_state	 st, st2;
	struct buf		 b;
	char			 err[256];

	if (path[0] == '\0') {
		snprintf(path, sizeof(path), "/dev/shm/fuzz_state.%d",
		    (int)getpid());
		snprintf(path2, sizeof(path2), "/dev/shm/fuzz_state2.%d",
		    (int)getpid());
	}
	if (size == 0)
		return 0;
	buf_init(&b);
	buf_add(&b, data + 1, size - 1);
	if (data[0] & 1)
		buf_addf(&b, "crc %08" PRIx32 "\n", crc32c(0, b.data, b.len));
	write_file(path, b.data, b.len);
	buf_clear(&b);

	tenant_state_init(&st);
	tenant_state_init(&st2);
	err[0] = '\0';
	if (tenant_state_load(path, &st, err, sizeof(err)) == 0) {
		if (tenant_state_save(path2, &st) != 0 ||
		    tenant_state_load(path2, &st2, err, sizeof(err)) != 0 ||
		    !same_state(&st, &st2))
			abort();
	} else if (err[0] == '\0')
		abort();	/* a failure must say why */
	tenant_state_clear(&st);
	tenant_state_clear(&st2);
	unlink(path);
	unlink(path2);
	return 0;
}
