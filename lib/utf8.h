/* UTF-8 sequence lengths: the lowest rung, used by log.c and the encoders. */
#ifndef AR_UTF8_H
#define AR_UTF8_H

#include <stddef.h>

/*
 * Length of the UTF-8 sequence at s (len > 0): the whole sequence with
 * *ok = 1 when valid, else its maximal invalid prefix with *ok = 0.
 */
size_t	utf8_seq(const unsigned char *s, size_t len, int *ok);

#endif
