/*
 * For targets that parse configurations: their file names are in an
 * empty directory of their own, so that an include of a relative glob
 * such as STAR/STAR/STAR (each STAR a '*') that the fuzzer writes matches
 * nothing of the checkout (relative patterns start from the including
 * file's directory).  Before, it matched the fuzzer's own corpus, whose
 * inputs include each other: a timeout, not a finding.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char	 emptydir[] = "/tmp/alertrelay-fuzz.XXXXXX";

static void
emptydir_remove(void)
{
	rmdir(emptydir);
}

static void
emptydir_make(void)
{
	if (mkdtemp(emptydir) == NULL) {
		perror("fuzz: an empty directory");
		exit(1);
	}
	atexit(emptydir_remove);
}

/* DIR/name in buf. */
static const char *
emptydir_file(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", emptydir, name);
	return buf;
}
