/* paging: where the next alerts request of a catch-up starts. */
#include "paging.h"
#include "util.h"

static void
paging_chain_reset(struct paging *p)
{
	p->chain_n = 0;
	p->chain_max = TICKS_NONE;
	p->chain_at_max = 0;
}

void
paging_start(struct paging *p, int64_t from, unsigned top)
{
	p->from = from;
	p->skip = 0;
	p->top = top == 0 ? 1 : top;
	p->requests = 1;
	paging_chain_reset(p);
}

void
paging_seen(struct paging *p, int64_t ts)
{
	p->chain_n++;
	if (ts == TICKS_NONE)
		return;
	if (p->chain_max == TICKS_NONE || ts > p->chain_max) {
		p->chain_max = ts;
		p->chain_at_max = 1;
	} else if (ts == p->chain_max)
		p->chain_at_max++;
}

enum paging_next
paging_page_end(struct paging *p, bool has_link)
{
	if (has_link)
		return PAGING_LINK;
	if (p->chain_n < p->top || p->chain_max == TICKS_NONE)
		return PAGING_DONE;
	if (p->chain_max <= p->from) {
		/* Every alert of the chain sat on the boundary. */
		p->skip += p->chain_at_max;
	} else {
		p->from = p->chain_max;
		p->skip = p->chain_at_max;
	}
	p->requests++;
	paging_chain_reset(p);
	return PAGING_BOUNDARY;
}
