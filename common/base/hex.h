/*
 * hex.h: the value of one hex digit, for the parsers that read hex from
 * outside (a key file, a RESP "\xHH" escape).  Header only; no state.
 */
#ifndef COLO_HEX_H
#define COLO_HEX_H

#include <stdint.h>

/* 0..15, or -1 when c is not a hex digit (either case). */
static inline int colo_hex_digit(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif
