/* demo.c: the demo guest (see demo.h). */
#include "config.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "demo.h"
#include "splitmix.h"

static const struct colo_vmstate_desc demo_counter_vmstate = {
	.name = "demo/counter",
	.version_id = 1,
	.minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT32(id, struct colo_demo_counter),
		COLO_VMSTATE_INT64(value, struct colo_demo_counter),
		COLO_VMSTATE_END,
	},
};

static bool stats_needed(void *opaque)
{
	return ((struct colo_demo_state *)opaque)->stats_enabled;
}

static int stats_post_load(void *opaque, int version_id, struct colo_err *err)
{
	(void)version_id; (void)err;
	((struct colo_demo_state *)opaque)->stats_enabled = true;
	return 0;
}

static const struct colo_vmstate_desc demo_stats_vmstate = {
	.name = "demo/stats",
	.version_id = 1,
	.minimum_version_id = 1,
	.needed = stats_needed,
	.post_load = stats_post_load,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT64(hits, struct colo_demo_state),
		COLO_VMSTATE_UINT64(misses, struct colo_demo_state),
		COLO_VMSTATE_END,
	},
};

static int demo_pre_load(void *opaque, struct colo_err *err)
{
	(void)err;
	((struct colo_demo_state *)opaque)->stats_enabled = false;
	return 0;
}

const struct colo_vmstate_desc colo_demo_vmstate = {
	.name = "demo",
	.version_id = 2,
	.minimum_version_id = 1,
	.pre_load = demo_pre_load,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_BOOL(running, struct colo_demo_state),
		COLO_VMSTATE_INT8(i8, struct colo_demo_state),
		COLO_VMSTATE_INT16(i16, struct colo_demo_state),
		COLO_VMSTATE_INT32(i32, struct colo_demo_state),
		COLO_VMSTATE_INT64(i64, struct colo_demo_state),
		COLO_VMSTATE_UINT8(u8, struct colo_demo_state),
		COLO_VMSTATE_UINT16(u16, struct colo_demo_state),
		COLO_VMSTATE_UINT32(u32, struct colo_demo_state),
		COLO_VMSTATE_UINT64(u64, struct colo_demo_state),
		COLO_VMSTATE_FLOAT64(load, struct colo_demo_state),
		COLO_VMSTATE_BUFFER(label, struct colo_demo_state),
		COLO_VMSTATE_UINT32_ARRAY(hist, struct colo_demo_state, 4),
		COLO_VMSTATE_BITMAP(seen, struct colo_demo_state, 100),
		COLO_VMSTATE_UNUSED(4),
		COLO_VMSTATE_UINT32(ncounters, struct colo_demo_state),
		COLO_VMSTATE_STRUCT_VARRAY_UINT32(counters, struct colo_demo_state,
						  ncounters, demo_counter_vmstate,
						  struct colo_demo_counter),
		COLO_VMSTATE_UINT32(blob_len, struct colo_demo_state),
		COLO_VMSTATE_VBUFFER_ALLOC_UINT32(blob, struct colo_demo_state, blob_len),
		COLO_VMSTATE_UINT32_V(generation, struct colo_demo_state, 2),
		COLO_VMSTATE_END,
	},
	.subsections = (const struct colo_vmstate_desc *const[]) {
		&demo_stats_vmstate,
		NULL,
	},
};

const struct colo_vmstate_desc colo_demo_config_vmstate = {
	.name = "demo-config",
	.version_id = 1,
	.minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT32_EQUAL(page_size, struct colo_demo_config,
					  "both sides must use 4 KiB pages"),
		COLO_VMSTATE_UINT32(name_len, struct colo_demo_config),
		COLO_VMSTATE_VBUFFER_UINT32(name, struct colo_demo_config, name_len),
		COLO_VMSTATE_END,
	},
};

/* Page i: every fourth page zero, the rest text-like or random bytes. */
static void fill_page(uint8_t *page, uint64_t seed, uint64_t i)
{
	static const char words[] = "colo keeps a guest alive across a failover ";
	uint64_t s = seed * 1000003u + i;

	if (i % 4 == 3)
		return;
	if (i % 4 == 1) {
		for (size_t k = 0; k < COLO_PAGE_SIZE; k++)
			page[k] = (uint8_t)words[(k + i) % (sizeof(words) - 1)];
		return;
	}
	for (size_t k = 0; k < COLO_PAGE_SIZE; k += 8) {
		uint64_t v = colo_splitmix64(&s);

		memcpy(page + k, &v, 8);
	}
}

static void fill_state(struct colo_demo *d, uint64_t seed)
{
	struct colo_demo_state *st = &d->state;
	uint64_t s = seed;

	st->running = seed & 1;
	st->i8 = (int8_t)-(int)(seed % 100);
	st->i16 = (int16_t)-1234;
	st->i32 = -(int32_t)(seed % 100000);
	st->i64 = -(int64_t)seed * 7;
	st->u8 = (uint8_t)(seed * 3);
	st->u16 = 0xbeef;
	st->u32 = (uint32_t)(seed * 2654435761u);
	st->u64 = colo_splitmix64(&s);
	st->load = (double)seed / 8.0;
	memcpy(st->label, "demo-guest", 10);
	for (int k = 0; k < 4; k++)
		st->hist[k] = (uint32_t)(seed + (uint64_t)k * 10);
	st->seen[0] = colo_splitmix64(&s);
	st->seen[1] = colo_splitmix64(&s) & ((1ull << 36) - 1);
	st->ncounters = (uint32_t)(seed % 8) + 1;
	for (uint32_t k = 0; k < st->ncounters; k++) {
		st->counters[k].id = k;
		st->counters[k].value = (int64_t)(colo_splitmix64(&s) >> 1);
	}
	st->generation = (uint32_t)seed + 1;
	st->stats_enabled = seed % 2 == 1;
	st->hits = seed * 11;
	st->misses = seed * 13;
	d->config.page_size = COLO_PAGE_SIZE;
	d->config.name_len = 9;
	memcpy(d->config.name, "demo-conf", 9);
}

static int fill_blob(struct colo_demo_state *st, uint64_t seed, struct colo_err *err)
{
	st->blob_len = (uint32_t)(seed % 200) + 1;
	st->blob = colo_vmstate_alloc(st->blob_len, 1);
	if (!st->blob)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (uint32_t k = 0; k < st->blob_len; k++)
		st->blob[k] = (uint8_t)(seed + k);
	return 0;
}

int colo_demo_init(struct colo_demo *d, uint64_t ram_size, uint64_t seed,
		   struct colo_err *err)
{
	int r;

	memset(d, 0, sizeof(d[0]));
	d->seed = seed;
	d->ram_size = (ram_size + COLO_PAGE_SIZE - 1) / COLO_PAGE_SIZE * COLO_PAGE_SIZE;
	if (d->ram_size == 0)
		return colo_err_set(err, EINVAL, "demo guest needs some RAM");
	d->ram = mmap(NULL, d->ram_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->ram == MAP_FAILED) {
		d->ram = NULL;
		return colo_err_set(err, ENOMEM, "cannot map %" PRIu64 " bytes of RAM",
				    d->ram_size);
	}
	d->config.page_size = COLO_PAGE_SIZE;
	if (seed) {
		for (uint64_t i = 0; i < d->ram_size / COLO_PAGE_SIZE; i++)
			fill_page(d->ram + i * COLO_PAGE_SIZE, seed, i);
		fill_state(d, seed);
		if ((r = fill_blob(&d->state, seed, err)))
			goto fail;
	}
	if ((r = colo_savevm_init(&d->sv, COLO_DEMO_MACHINE, err)) ||
	    (r = colo_savevm_add_ram(&d->sv, COLO_DEMO_RAM, d->ram, d->ram_size, err)) ||
	    (r = colo_savevm_add_device(&d->sv, "demo", 0, &colo_demo_vmstate,
					&d->state, err)) ||
	    (r = colo_savevm_add_device(&d->sv, "demo-config", 0,
					&colo_demo_config_vmstate, &d->config, err)))
		goto fail;
	return 0;
fail:
	colo_demo_free(d);
	return r;
}

void colo_demo_free(struct colo_demo *d)
{
	if (d->ram)
		munmap(d->ram, d->ram_size);
	d->ram = NULL;
	colo_vmstate_free_allocs(&colo_demo_vmstate, &d->state);
	colo_savevm_free(&d->sv);
}

#define SAME(f) (a->f == b->f)

int colo_demo_check(const struct colo_demo *d, uint64_t seed, struct colo_err *err)
{
	struct colo_demo want;
	const struct colo_demo_state *a = &d->state, *b;
	int r;

	if ((r = colo_demo_init(&want, d->ram_size, seed, err)))
		return r;
	b = &want.state;
	for (uint64_t off = 0; off < d->ram_size; off += COLO_PAGE_SIZE)
		if (memcmp(d->ram + off, want.ram + off, COLO_PAGE_SIZE) != 0) {
			r = colo_err_set(err, EIO, "RAM page at 0x%" PRIx64 " differs", off);
			goto out;
		}
	if (!(SAME(running) && SAME(i8) && SAME(i16) && SAME(i32) && SAME(i64) &&
	      SAME(u8) && SAME(u16) && SAME(u32) && SAME(u64) && SAME(load) &&
	      SAME(seen[0]) && SAME(seen[1]) && SAME(ncounters) && SAME(blob_len) &&
	      SAME(generation) && SAME(stats_enabled) &&
	      memcmp(a->label, b->label, sizeof(a->label)) == 0 &&
	      memcmp(a->hist, b->hist, sizeof(a->hist)) == 0)) {
		r = colo_err_set(err, EIO, "device 'demo' differs");
		goto out;
	}
	if (a->stats_enabled && !(SAME(hits) && SAME(misses))) {
		r = colo_err_set(err, EIO, "device 'demo' subsection differs");
		goto out;
	}
	for (uint32_t k = 0; k < a->ncounters; k++)
		if (!SAME(counters[k].id) || !SAME(counters[k].value)) {
			r = colo_err_set(err, EIO, "device 'demo' counter %" PRIu32
					 " differs", k);
			goto out;
		}
	if (a->blob_len && memcmp(a->blob, b->blob, a->blob_len) != 0) {
		r = colo_err_set(err, EIO, "device 'demo' blob differs");
		goto out;
	}
	if (d->config.name_len != want.config.name_len ||
	    memcmp(d->config.name, want.config.name, d->config.name_len) != 0) {
		r = colo_err_set(err, EIO, "device 'demo-config' differs");
		goto out;
	}
out:
	colo_demo_free(&want);
	return r;
}
