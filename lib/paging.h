/* paging: where the next alerts request of a catch-up starts. */
#ifndef AR_PAGING_H
#define AR_PAGING_H

#include <stdbool.h>
#include <stdint.h>

/*
 * A catch-up reads lastUpdateTime >= from in ascending order, $top at a
 * time.  One request's answer may come as a chain of pages linked by
 * @odata.nextLink, each shorter than $top (Graph does this; so may any
 * OData server).  Only the whole chain tells whether the server cut the
 * answer at $top: a chain that brought $top or more alerts may have more
 * behind it, so the next request starts at the newest time seen (the
 * boundary), skipping the alerts already read at exactly that time.  A
 * chain shorter than $top means the API has nothing newer: caught up.
 *
 * Ties larger than a page (many versions with one lastUpdateTime) keep
 * the boundary and add to the skip; a wide overlap is only more pages.
 */
struct paging {
	int64_t		 from;		/* lastUpdateTime ge this */
	unsigned	 skip;		/* alerts at exactly from already read */
	unsigned	 top;		/* $top of every boundary request */
	/* The answer to the current boundary request, over its chain. */
	unsigned	 chain_n;	/* alerts in the chain so far */
	int64_t		 chain_max;	/* newest lastUpdateTime in it */
	unsigned	 chain_at_max;	/* alerts carrying chain_max */
	uint64_t	 requests;	/* boundary requests made */
};

enum paging_next {
	PAGING_LINK,		/* follow the page's @odata.nextLink */
	PAGING_BOUNDARY,	/* a new request from (from, skip) */
	PAGING_DONE,		/* caught up */
};

void	paging_start(struct paging *, int64_t from, unsigned top);
/* Every alert of a page, by its lastUpdateTime (ticks). */
void	paging_seen(struct paging *, int64_t last_update);
/* A page ended; has_link: it carried an @odata.nextLink. */
enum paging_next paging_page_end(struct paging *, bool has_link);

#endif
