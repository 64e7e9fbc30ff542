/*
 * splitmix.h: splitmix64, the seeded generator behind colo's reproducible
 * data: the test and bench generators, the fuzzers' seeds, and guests
 * that derive their state from a seed (and recompute it to verify
 * themselves).  Recorded corpora and guest contents depend on its exact
 * output, so it must never change.
 *
 * colo_mix64() is its output function (a 64-bit finalizer, also good for
 * hashing a key); colo_splitmix64() steps a state held by the caller;
 * colo_splitmix64_at() is element k of the sequence a state starts,
 * without stepping through the ones before.  Header only, no state of its
 * own: thread-safe with one state per thread.
 */
#ifndef COLO_SPLITMIX_H
#define COLO_SPLITMIX_H

#include <stdint.h>

#define COLO_SPLITMIX_GAMMA 0x9e3779b97f4a7c15ull

static inline uint64_t colo_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The next value of the sequence of *state. */
static inline uint64_t colo_splitmix64(uint64_t *state)
{
	return colo_mix64(*state += COLO_SPLITMIX_GAMMA);
}

/* What the (k+1)th colo_splitmix64() call from `state` returns. */
static inline uint64_t colo_splitmix64_at(uint64_t state, uint64_t k)
{
	return colo_mix64(state + COLO_SPLITMIX_GAMMA * (k + 1));
}

#endif
