/* Page splitter: an API page into its alert (or incident) objects. */

#ifndef AR_PAGESPLIT_H
#define AR_PAGESPLIT_H

#include <stddef.h>

/*
 * The page splitter.  Feed it response body bytes as they arrive; for each
 * complete element of the top-level "value" array it calls cb with that
 * element's bytes (valid only during the call).  Only one element is
 * buffered at a time.  "@odata.nextLink" is captured.  A cb returning
 * non-zero stops the split with that error.
 */
typedef int (*pagesplit_cb)(const char *obj, size_t len, void *arg);

struct pagesplit;

struct pagesplit *pagesplit_new(size_t max_element, pagesplit_cb, void *);
void	 pagesplit_free(struct pagesplit *);
/* 0 ok, -1 error (see pagesplit_error). */
int	 pagesplit_feed(struct pagesplit *, const char *, size_t);
/* Body complete: -1 unless a whole envelope with "value" was seen. */
int	 pagesplit_finish(struct pagesplit *);
const char *pagesplit_error(const struct pagesplit *);
/* Decoded "@odata.nextLink", or NULL. */
const char *pagesplit_next_link(const struct pagesplit *);
size_t	 pagesplit_count(const struct pagesplit *);

#endif
