/*
 * libFuzzer: spool segment files (and the ack file) as a crash or a bad
 * disk may leave them, opened by spool_open().  Whatever the bytes, the
 * spool must open, every record it counts must be readable, and once all
 * is acknowledged a reopened spool is empty and still takes new records.
 *
 * Input: [0] flags, [1..4] ack offset (with flag ACK), then the segment
 * bytes: raw, or with flag BUILD a list of "L payload[L]" turned into
 * valid records (L 0xff: 8 raw bytes instead, to exercise resync).
 */
#include <sys/stat.h>

#include <dirent.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define F_BUILD	0x01
#define F_ACK	0x02
#define F_TWO	0x04
#define F_HIGH	0x08

static char	 dir[64];

static void
write_file(const char *name, const void *data, size_t len)
{
	char	 p[128];
	FILE	*f;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	if ((f = fopen(p, "w")) == NULL)
		abort();
	if (len > 0 && fwrite(data, 1, len, f) != len)
		abort();
	if (fclose(f) != 0)
		abort();
}

static void
empty_dir(void)
{
	DIR		*d;
	struct dirent	*de;
	char		 p[512];

	if ((d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
}

static void
le32(struct buf *b, uint32_t v)
{
	unsigned char	 p[4] = { v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff,
	    (v >> 24) & 0xff };

	buf_add(b, p, 4);
}

static void
build(struct buf *b, const uint8_t *p, size_t n)
{
	unsigned char	 lenb[4];
	size_t		 l;

	while (n > 0) {
		l = p[0];
		p++, n--;
		if (l == 0xff) {
			l = n < 8 ? n : 8;
			buf_add(b, p, l);
		} else {
			if (l > n)
				l = n;
			lenb[0] = l & 0xff;
			lenb[1] = lenb[2] = lenb[3] = 0;
			le32(b, 0x31535241U);
			le32(b, (uint32_t)l);
			le32(b, crc32c(crc32c(0, lenb, 4), p, l));
			buf_add(b, p, l);
		}
		p += l, n -= l;
	}
}

/* Read every record from the head; returns how many, and the end. */
static uint64_t
drain(struct spool *sp, struct spool_pos *pos)
{
	struct buf	 r;
	uint64_t	 n = 0;
	int		 rc;

	buf_init(&r);
	spool_head(sp, pos);
	while ((rc = spool_read(sp, pos, &r)) == 1) {
		if (r.data[r.len] != '\0')
			abort();
		n++;
	}
	if (rc != 0)
		abort();
	buf_clear(&r);
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char rec[] = "fuzz record";
	struct spool	*sp;
	struct spool_pos pos;
	struct buf	 seg, ack, r;
	char		 err[256], name[32];
	uint64_t	 num, counted, got;
	uint32_t	 ackoff = 0;
	uint8_t		 fl;
	size_t		 half;

	if (dir[0] == '\0') {
		snprintf(dir, sizeof(dir), "/dev/shm/fuzz_spool.%d",
		    (int)getpid());
	}
	if (size < 5)
		return 0;
	fl = data[0];
	if (fl & F_ACK)
		ackoff = (uint32_t)data[1] | (uint32_t)data[2] << 8 |
		    (uint32_t)data[3] << 16 | (uint32_t)data[4] << 24;
	data += 5, size -= 5;
	num = fl & F_HIGH ? 0x10 : 1;

	empty_dir();
	buf_init(&seg);
	buf_init(&ack);
	buf_init(&r);
	buf_reserve(&seg, 1);		/* data is never NULL */
	if (fl & F_BUILD)
		build(&seg, data, size);
	else
		buf_add(&seg, data, size);
	if (mkdir(dir, 0700) == -1 && access(dir, W_OK) == -1)
		abort();
	half = fl & F_TWO ? seg.len / 2 : seg.len;
	snprintf(name, sizeof(name), "%016" PRIx64 ".seg", num);
	write_file(name, seg.data, half);
	if (fl & F_TWO) {
		snprintf(name, sizeof(name), "%016" PRIx64 ".seg", num + 1);
		write_file(name, seg.data + half, seg.len - half);
	}
	if (fl & F_ACK) {
		buf_addf(&ack, "%016" PRIx64 " %" PRIu32, num, ackoff);
		buf_addf(&ack, " %08" PRIx32 "\n", crc32c(0, ack.data,
		    ack.len));
		write_file("ack", ack.data, ack.len);
	}

	if ((sp = spool_open(dir, 1 << 20, err, sizeof(err))) == NULL)
		abort();
	counted = spool_records(sp);
	got = drain(sp, &pos);
	/* From the start, reading finds exactly what opening counted. */
	if (!(fl & F_ACK) && got != counted)
		abort();
	if (spool_ack(sp, &pos) != 0 || spool_records(sp) != 0)
		abort();
	/* The repaired spool takes and returns a new record. */
	if (spool_append(sp, rec, sizeof(rec) - 1) != 0 ||
	    spool_sync(sp) != 0 || spool_records(sp) != 1)
		abort();
	spool_head(sp, &pos);
	if (spool_read(sp, &pos, &r) != 1 || r.len != sizeof(rec) - 1 ||
	    memcmp(r.data, rec, r.len) != 0)
		abort();
	if (spool_ack(sp, &pos) != 0)
		abort();
	spool_close(sp);

	/* Everything was acknowledged: nothing comes back. */
	if ((sp = spool_open(dir, 1 << 20, err, sizeof(err))) == NULL)
		abort();
	if (spool_records(sp) != 0 || drain(sp, &pos) != 0)
		abort();
	spool_close(sp);

	buf_clear(&seg);
	buf_clear(&ack);
	buf_clear(&r);
	return 0;
}
