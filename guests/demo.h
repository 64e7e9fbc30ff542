/*
 * demo.h: the demo guest: one RAM block with a recognisable pattern and two
 * devices whose descriptions use every vmstate field kind (integers of each
 * width, bool, float64, buffers, a bitmap, arrays, a counted struct array,
 * an allocated buffer, a versioned field, an _equal check and a
 * subsection).  It does no work; it exists to produce and check streams:
 * `colo-replay sample` writes it, tests round-trip it.
 *
 * The state is a pure function of (seed, ram size), so a loaded copy can be
 * compared with a freshly built one.  struct colo_demo owns its RAM (mmap)
 * and its allocated blob; colo_demo_free() releases both.
 */
#ifndef COLO_GUEST_DEMO_H
#define COLO_GUEST_DEMO_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "savevm.h"

#define COLO_DEMO_MACHINE "colo-demo-1"
#define COLO_DEMO_RAM "demo.ram"

struct colo_demo_counter {
	uint32_t id;
	int64_t value;
};

struct colo_demo_state {
	bool running;
	int8_t i8;
	int16_t i16;
	int32_t i32;
	int64_t i64;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	double load;
	uint8_t label[16];
	uint32_t hist[4];
	uint64_t seen[2];                      /* bitmap of 100 bits */
	uint32_t ncounters;
	struct colo_demo_counter counters[8];
	uint32_t blob_len;
	uint8_t *blob;                         /* allocated */
	uint32_t generation;                   /* since version 2 */
	bool stats_enabled;
	uint64_t hits, misses;                 /* subsection demo/stats */
};

struct colo_demo_config {
	uint32_t page_size;                    /* must match: 4096 */
	uint32_t name_len;
	uint8_t name[32];
};

struct colo_demo {
	uint64_t seed;
	uint8_t *ram;
	uint64_t ram_size;
	struct colo_demo_state state;
	struct colo_demo_config config;
	struct colo_savevm sv;
};

extern const struct colo_vmstate_desc colo_demo_vmstate;
extern const struct colo_vmstate_desc colo_demo_config_vmstate;

/* Build the guest; fill RAM and devices from seed (seed 0: all zero). */
int colo_demo_init(struct colo_demo *d, uint64_t ram_size, uint64_t seed,
		   struct colo_err *err);
void colo_demo_free(struct colo_demo *d);

/* Does d hold what a guest built with this seed holds?  Says where not. */
int colo_demo_check(const struct colo_demo *d, uint64_t seed, struct colo_err *err);

#endif
