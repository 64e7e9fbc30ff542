/*
 * memtouch.h: the built-in synthetic guest: threads that write RAM at a
 * set rate and pattern, and can prove after a failover that the RAM they
 * left is exactly what their device state says.
 *
 * One RAM block, "memtouch.ram", of ram-mb MiB.  Thread t of N owns the
 * partition [t*P, (t+1)*P) of it (P = block size / N, rounded down to
 * pages; the pages past N*P stay zero).  Its k-th write (k = 0, 1, ...)
 * puts memtouch-bytes bytes at an offset chosen by the pattern:
 *   sequential  k * bytes, wrapping inside the partition;
 *   random      uniform in the partition, from a hash of (seed, t, k);
 *   hotset      90% uniform in the first tenth of the partition, 10%
 *               uniform in all of it.
 * The bytes are a 64-bit word hashed from (seed, t, k), repeated, so every
 * write is distinguishable.  No write straddles its partition's end.
 *
 * The device "memtouch" (struct colo_memtouch_state) holds the shape
 * (seed, pattern, bytes, threads, partition and block size) and each
 * thread's count of completed writes.  The RAM is a pure function of it:
 * zero-filled memory with writes 0..writes[t]-1 of every thread t applied
 * in order.  verify() checks exactly that.  A write and its count are one
 * step: pause() parks every thread between two steps.
 *
 * Its settings are its own [guest] keys memtouch-rate, -pattern, -bytes,
 * -threads and -seed (struct colo_memtouch_settings, filled by the config
 * from the table in memtouch.c), with ram-mb from the node's keys.
 *
 * Memory: the guest owns its threads and device state; the colo_ram owns
 * the block; the config owns the settings.  Ops are called from one (the
 * engine's) thread.
 */
#ifndef COLO_GUEST_MEMTOUCH_H
#define COLO_GUEST_MEMTOUCH_H

#include <stdint.h>

#include "guest.h"

struct colo_vmstate_desc;

#define COLO_MEMTOUCH_RAM "memtouch.ram"
#define COLO_MEMTOUCH_DEVICE "memtouch"
#define COLO_MEMTOUCH_THREADS_MAX 64
#define COLO_MEMTOUCH_BYTES_MAX 4096

/* Where writes land (see above); memtouch-pattern. */
enum colo_memtouch_pattern {
	COLO_MEMTOUCH_SEQUENTIAL,
	COLO_MEMTOUCH_RANDOM,
	COLO_MEMTOUCH_HOTSET,
};

/* The memtouch-* keys (defaults in brackets). */
struct colo_memtouch_settings {
	uint32_t rate;                        /* writes/s per thread, 0 = no
						 limit [20000] */
	enum colo_memtouch_pattern pattern;   /* [random] */
	uint32_t bytes;                       /* per write, 1..4096 [64] */
	uint32_t threads;                     /* 1..64 [1] */
	uint64_t seed;                        /* of the write pattern [1] */
};

/* The device, as it goes on the wire (vmstate "memtouch", version 1). */
struct colo_memtouch_state {
	uint64_t seed;
	uint32_t pattern;                     /* enum colo_memtouch_pattern */
	uint32_t bytes;                       /* per write, 1..4096 */
	uint32_t threads;                     /* 1..64: also the count of writes[] */
	uint64_t part_size;                   /* bytes per thread, whole pages */
	uint64_t block_size;                  /* of memtouch.ram */
	uint64_t writes[COLO_MEMTOUCH_THREADS_MAX];  /* completed, per thread */
};

extern const struct colo_guest_ops colo_memtouch_ops;
extern const struct colo_vmstate_desc colo_memtouch_vmstate;

/* memtouch's settings in a config loaded with it in the guest list, else
 * NULL.  Owned by cfg; tests may change them before create(). */
struct colo_memtouch_settings *colo_memtouch_settings(const struct colo_config *cfg);

/* The device state of a memtouch guest (tests; read it only while paused). */
struct colo_memtouch_state *colo_memtouch_state(struct colo_guest *g);

/* Where write k of thread t starts in the block (it is st->bytes long);
 * UINT64_MAX when st is not a state memtouch can run. */
uint64_t colo_memtouch_write_offset(const struct colo_memtouch_state *st,
				    uint32_t t, uint64_t k);

/* Human name of a pattern: "sequential", "random", "hotset". */
const char *colo_memtouch_pattern_name(uint32_t pattern);

#endif
