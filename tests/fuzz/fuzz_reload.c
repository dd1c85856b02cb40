/*
 * libFuzzer: reload decisions on a pair of configurations.  The input is
 * configuration A, a NUL byte, configuration B (without a NUL byte, B is
 * A again).  For every output of B the reload action against A's output
 * of the same name, for every tenant its routes and shard, must be
 * consistent: conf_output_equal is reflexive and symmetric, the action
 * follows it, and the same text parsed twice changes nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "emptydir.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);
int LLVMFuzzerInitialize(int *, char ***);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	emptydir_make();
	return 0;
}

#define CHECK(x)	do { if (!(x)) { \
	fprintf(stderr, "fuzz_reload: %s failed\n", #x); abort(); } } while (0)

static void
check_outputs(const struct config *a, const struct config *b, bool same)
{
	const struct conf_output *o, *old;
	enum conf_reload_action act;
	size_t		 i;

	for (i = 0; i < b->noutputs; i++) {
		o = b->outputs[i];
		CHECK(conf_output_equal(o, o));
		CHECK(conf_output_action(NULL, o) == RELOAD_ADD);
		CHECK(conf_output_find(b, o->name) == o);
		old = conf_output_find(a, o->name);
		act = conf_output_action(old, o);
		if (old == NULL) {
			CHECK(!same);
			continue;
		}
		CHECK(strcmp(old->name, o->name) == 0);
		CHECK(conf_output_equal(old, o) == conf_output_equal(o, old));
		CHECK((act == RELOAD_REBUILD) == !conf_output_equal(old, o));
		if (act == RELOAD_REFRESH)
			CHECK(o->transport == OUT_TLS ||
			    o->transport == OUT_FILE);
		if (act == RELOAD_KEEP)
			CHECK(o->transport != OUT_TLS &&
			    o->transport != OUT_FILE);
		if (same)
			CHECK(act == RELOAD_KEEP || act == RELOAD_REFRESH);
	}
}

static void
check_tenants(const struct config *a, const struct config *b, bool same)
{
	const struct conf_tenant *t, *old;
	size_t		 i, j;

	for (i = 0; i < b->ntenants; i++) {
		t = b->tenants[i];
		CHECK(conf_tenant_find(b, t->name) == t);
		CHECK(conf_in_shard(b, t->name) == conf_in_shard(b, t->name));
		old = conf_tenant_find(a, t->name);
		CHECK(old == NULL || strcmp(old->name, t->name) == 0);
		if (same) {
			CHECK(old != NULL);
			CHECK(conf_in_shard(a, t->name) ==
			    conf_in_shard(b, t->name));
		}
		for (j = 0; j < b->noutputs; j++) {
			const struct conf_output *o = b->outputs[j];
			const struct conf_output *ao;

			if (!same || old == NULL)
				continue;
			ao = conf_output_find(a, o->name);
			CHECK(ao != NULL);
			CHECK(conf_tenant_routes(old, ao) ==
			    conf_tenant_routes(t, o));
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_errors ea = { NULL, 0 }, eb = { NULL, 0 };
	struct config	*a, *b;
	const uint8_t	*nul = memchr(data, '\0', size);
	size_t		 alen = nul != NULL ? (size_t)(nul - data) : size;
	bool		 same = nul == NULL;
	char		 pa[64], pb[64];

	emptydir_file(pa, sizeof(pa), "a.conf");
	emptydir_file(pb, sizeof(pb), "b.conf");
	a = conf_parse(pa, (const char *)data, alen, &ea);
	if (same)
		b = conf_parse(pb, (const char *)data, alen, &eb);
	else
		b = conf_parse(pb, (const char *)nul + 1,
		    size - alen - 1, &eb);
	if (a != NULL && b != NULL) {
		check_outputs(a, b, same);
		check_tenants(a, b, same);
		check_outputs(b, a, same);
	}
	conf_free(a);
	conf_free(b);
	conf_errors_clear(&ea);
	conf_errors_clear(&eb);
	return 0;
}
