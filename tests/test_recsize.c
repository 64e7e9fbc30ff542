/*
 * test_recsize.c: recordings of devices whose payload size changes between
 * checkpoints (common/rec: colo_image_measure, the sized loads, format 2).
 *
 * The walker must give exactly the bytes colo_vmstate_save() wrote, for
 * the demo guest (counted struct array, allocated buffer, a subsection
 * present or not, a versioned field, an _equal check) and for the qemu
 * guest's device (its blob, and the subsection a full sync only carries),
 * and refuse payloads that cannot be what they say.  A recorder given the
 * demo guest's registry follows it through checkpoints that resize its
 * device, across keyframes it writes itself, and every checkpoint rebuilt
 * from the recording holds the payload the guest saved.  Without a sizer
 * such a checkpoint is refused as before; format 1 recordings (no sizes in
 * the index) still read; a newer format is refused with its number.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include "ckptgen.h"
#include "colo.pb-c.h"
#include "colomsg.h"
#include "demo.h"
#include "image.h"
#include "in.h"
#include "qemu_int.h"
#include "record.h"
#include "savevm.h"
#include "stream.h"
#include "testutil.h"

#define PAGE COLO_PAGE_SIZE

/* ---- helpers ---- */

static void demo_vary(struct colo_demo *d, unsigned k)
{
	struct colo_demo_state *s = &d->state;
	uint32_t bl = (k * 37u) % 211u;

	s->ncounters = k % 9;
	for (uint32_t i = 0; i < s->ncounters; i++) {
		s->counters[i].id = k * 10 + i;
		s->counters[i].value = -(int64_t)(k * 1000 + i);
	}
	colo_vmstate_free_allocs(&colo_demo_vmstate, s);
	s->blob = colo_vmstate_alloc(bl, 1);
	for (uint32_t i = 0; i < bl; i++)
		s->blob[i] = (uint8_t)(k + i);
	s->blob_len = bl;
	s->stats_enabled = k % 2 == 1;
	s->hits = k;
	s->u64 = k * 7;
}

static void save_payload(const struct colo_vmstate_desc *vmsd, void *opaque,
			 struct colo_buf *out)
{
	struct colo_err err;

	colo_err_clear(&err);
	colo_buf_reset(out);
	ck_assert_msg(colo_vmstate_save(out, vmsd, opaque, NULL, &err) == 0, "%s", err.msg);
}

/* Measure a payload followed by a footer, as it sits in a stream. */
static void measure_is(const struct colo_vmstate_desc *vmsd, int version,
		       const struct colo_buf *b)
{
	struct colo_buf s = COLO_BUF_INIT;
	struct colo_err err;
	uint64_t bytes = 0;
	int r;

	colo_buf_put(&s, b->data, b->len);
	colo_buf_put_u8(&s, COLO_SEC_FOOTER);
	colo_buf_put_be32(&s, 7);
	colo_err_clear(&err);
	r = colo_image_measure(vmsd, version, s.data, s.len, &bytes, &err);
	ck_assert_msg(r == 0, "%s: %d %s", vmsd->name, r, err.msg);
	ck_assert_uint_eq(bytes, b->len);
	colo_buf_free(&s);
}

static void full_stream(struct colo_savevm *sv, struct colo_buf *out)
{
	struct colo_err err;

	colo_err_clear(&err);
	colo_buf_reset(out);
	ck_assert_msg(colo_savevm_save(sv, out, COLO_SAVEVM_ENABLE_COLO, &err) == 0, "%s",
		      err.msg);
}

static void demo_ok(struct colo_demo *d, unsigned ram_pages)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_demo_init(d, (uint64_t)ram_pages * PAGE, 5, &err) == 0, "%s",
		      err.msg);
}

/* ---- the walker ---- */

START_TEST(measure_gives_what_save_wrote)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_demo d;
	struct qemu_vm_dev vm;

	demo_ok(&d, 4);
	for (unsigned k = 0; k < 40; k++) {
		demo_vary(&d, k);
		save_payload(&colo_demo_vmstate, &d.state, &b);
		measure_is(&colo_demo_vmstate, colo_demo_vmstate.version_id, &b);
	}
	save_payload(&colo_demo_config_vmstate, &d.config, &b);
	measure_is(&colo_demo_config_vmstate, 1, &b);
	/* The qemu guest's device: a blob of any size, the vmdesc subsection
	 * in a full sync only. */
	memset(&vm, 0, sizeof(vm));
	memcpy(vm.machine, "pc-i440fx-7.2", 13);
	vm.ram_section_id = 2;
	for (unsigned len = 0; len < 3000; len += 997) {
		colo_vmstate_free_allocs(&qemu_vm_vmsd, &vm);
		vm.blob = colo_vmstate_alloc(len, 1);
		vm.blob_len = len;
		vm.vmdesc = colo_vmstate_alloc(len / 2 + 1, 1);
		vm.vmdesc_len = len / 2 + 1;
		for (int due = 0; due < 2; due++) {
			vm.vmdesc_due = due;
			save_payload(&qemu_vm_vmsd, &vm, &b);
			measure_is(&qemu_vm_vmsd, 1, &b);
			ck_assert(due == 0 || b.len > 72 + len + vm.vmdesc_len);
		}
	}
	colo_vmstate_free_allocs(&qemu_vm_vmsd, &vm);
	colo_buf_free(&b);
	colo_demo_free(&d);
}
END_TEST

static bool has_blob_len(void *opaque, int version)
{
	(void)opaque;
	return version > 0;
}

static const struct colo_vmstate_desc tested = {
	.name = "tested", .version_id = 1, .minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT32_TEST(blob_len, struct colo_demo_state, has_blob_len),
		COLO_VMSTATE_END,
	},
};

START_TEST(measure_refuses_what_cannot_be)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_err err;
	struct colo_demo d;
	uint64_t bytes;
	uint8_t *bad;

	demo_ok(&d, 4);
	demo_vary(&d, 5);
	save_payload(&colo_demo_vmstate, &d.state, &b);
	/* Every cut: the walk runs out of bytes, and says where; but for the
	 * cuts before the subsection demo/stats's name is whole (0x05, len,
	 * name, version, hits, misses): the payload without it is whole, as
	 * for colo_vmstate_load() (in a stream, the footer that must follow
	 * tells, and the image checks it). */
	ck_assert(d.state.stats_enabled);
	for (size_t cut = 0, main = b.len - (2 + 10 + 4 + 16); cut < b.len; cut++) {
		int r;

		colo_err_clear(&err);
		r = colo_image_measure(&colo_demo_vmstate, 2, b.data, cut, &bytes, &err);
		if (cut >= main && cut < main + 2 + 10) {
			ck_assert_int_eq(r, 0);
			ck_assert_uint_eq(bytes, main);
			continue;
		}
		ck_assert_msg(r == -EINVAL, "cut at %zu: %d", cut, r);
		ck_assert_msg(strstr(err.msg, "offset") && !strchr(err.msg, '\n'), "%s", err.msg);
	}
	/* A count beyond the array: ncounters follows the bitmap and UNUSED(4). */
	bad = malloc(b.len);
	memcpy(bad, b.data, b.len);
	{
		size_t at = 1 + 1 + 2 + 4 + 8 + 1 + 2 + 4 + 8 + 8 + 16 + 16 + 16 + 4;

		colo_store_be32(bad + at, 9);
		colo_err_clear(&err);
		ck_assert_int_eq(colo_image_measure(&colo_demo_vmstate, 2, bad, b.len, &bytes,
						    &err), -EINVAL);
		ck_assert_msg(strstr(err.msg, "counters"), "%s", err.msg);
	}
	free(bad);
	/* A subsection the description does not know. */
	colo_buf_reset(&b);
	d.state.stats_enabled = true;
	save_payload(&colo_demo_vmstate, &d.state, &b);
	{
		uint8_t *p = memmem(b.data, b.len, "demo/stats", 10);

		ck_assert_ptr_nonnull(p);
		p[5] = 'X';
		colo_err_clear(&err);
		ck_assert_int_eq(colo_image_measure(&colo_demo_vmstate, 2, b.data, b.len, &bytes,
						    &err), -EINVAL);
		ck_assert_msg(strstr(err.msg, "unknown subsection 'demo/Xtats'"), "%s", err.msg);
	}
	/* A version the description does not have. */
	colo_err_clear(&err);
	ck_assert_int_eq(colo_image_measure(&colo_demo_vmstate, 3, b.data, b.len, &bytes,
					    &err), -EINVAL);
	/* Random bytes: an error or a size within them, never a read past. */
	{
		struct colo_rng rng = { COLO_TEST_SEED(7) };
		uint8_t junk[512];

		for (int i = 0; i < 20000; i++) {
			size_t len = (size_t)colo_rng_below(&rng, sizeof(junk) + 1);
			int r;

			colo_rng_fill(&rng, junk, len);
			if (i % 2)      /* plausible counts: small ncounters, blob_len */
				memcpy(junk, b.data, len < 100 ? len : 100);
			bytes = UINT64_MAX;
			colo_err_clear(&err);
			r = colo_image_measure(&colo_demo_vmstate, 2, junk, len, &bytes, &err);
			ck_assert_msg(r == -EINVAL || (r == 0 && bytes <= len), "%d %" PRIu64, r,
				      bytes);
		}
	}
	/* A field_exists test needs the device: not walked. */
	ck_assert_int_eq(colo_image_measure(&tested, 1, b.data, b.len, &bytes, &err), 1);
	colo_buf_free(&b);
	colo_demo_free(&d);
}
END_TEST

/* ---- images ---- */

static const struct colo_image_device *dev_named(const struct colo_image *img,
						 const char *idstr)
{
	const struct colo_image_device *d = colo_image_device(img, idstr, 0);

	ck_assert_msg(d != NULL, "no device '%s'", idstr);
	return d;
}

struct demo_sizer {
	struct colo_demo *d;
	unsigned calls;
};

static int demo_size(void *ud, const char *idstr, uint32_t instance, uint32_t version,
		     const uint8_t *p, size_t avail, uint64_t *bytes, struct colo_err *err)
{
	struct demo_sizer *s = ud;

	(void)instance;
	s->calls++;
	if (strcmp(idstr, "demo") != 0)
		return 1;
	return colo_image_measure(&colo_demo_vmstate, (int)version, p, avail, bytes, err);
}

START_TEST(apply_follows_resizes_only_with_a_sizer)
{
	struct colo_buf full = COLO_BUF_INIT, ram = COLO_BUF_INIT, dev = COLO_BUF_INIT;
	struct colo_buf want = COLO_BUF_INIT;
	struct demo_sizer ds;
	struct colo_image_sizer sz = { demo_size, &ds };
	struct colo_image img, before;
	struct colo_err err;
	struct colo_demo d;

	demo_ok(&d, 8);
	ds.d = &d;
	ds.calls = 0;
	demo_vary(&d, 2);
	full_stream(&d.sv, &full);
	colo_image_init(&img);
	colo_err_clear(&err);
	ck_assert_msg(colo_image_load_full_sized(&img, full.data, full.len, &sz, &err) == 0,
		      "%s", err.msg);
	ck_assert_uint_eq(ds.calls, 2);
	ck_assert_uint_eq(img.nsent, 2);
	for (unsigned k = 3; k < 12; k++) {
		demo_vary(&d, k);
		colo_test_ckpt_streams(&d.sv, k, &ram, &dev);
		save_payload(&colo_demo_vmstate, &d.state, &want);
		/* Without a sizer: refused, nothing changed. */
		colo_err_clear(&err);
		ck_assert_int_eq(colo_image_copy(&before, &img, &err), 0);
		ck_assert_int_eq(colo_image_apply(&img, ram.data, ram.len, dev.data, dev.len,
						  &err), -EINVAL);
		ck_assert_msg(strstr(err.msg, "'demo'"), "%s", err.msg);
		ck_assert_int_eq(colo_image_compare(&img, &before, &err), 0);
		colo_image_free(&before);
		/* With one: the device takes its new size. */
		colo_err_clear(&err);
		ck_assert_msg(colo_image_apply_sized(&img, ram.data, ram.len, dev.data, dev.len,
						     &sz, &err) == 0, "%s", err.msg);
		ck_assert_uint_eq(dev_named(&img, "demo")->len, want.len);
		ck_assert_mem_eq(dev_named(&img, "demo")->payload, want.data, want.len);
		ck_assert_uint_eq(img.nsent, 2);
		ck_assert_str_eq(img.devs[img.sent[0]].idstr, "demo");
	}
	colo_image_free(&img);
	colo_buf_free(&full);
	colo_buf_free(&ram);
	colo_buf_free(&dev);
	colo_buf_free(&want);
	colo_demo_free(&d);
}
END_TEST

/* ---- recordings ---- */

#define NCKPT 10

/* A demo recording: a sync, then NCKPT checkpoints that resize "demo";
 * want[seq] is the payload the guest saved for each. */
static void record_demo(const char *dir, struct colo_buf *want)
{
	static const char *const meta[] = { "name", "t", "guest", "demo", NULL };
	struct colo_buf full = COLO_BUF_INIT, ram = COLO_BUF_INIT, dev = COLO_BUF_INIT;
	struct colo_record_cfg cfg;
	struct colo_recorder *r;
	struct colo_err err;
	struct colo_demo d;
	struct iovec v[2];

	demo_ok(&d, 8);
	memset(&cfg, 0, sizeof(cfg));
	cfg.dir = dir;
	cfg.keyframe_every = 3;
	cfg.queue_max = 1u << 30;
	cfg.sv = &d.sv;
	cfg.meta = meta;
	colo_err_clear(&err);
	ck_assert_msg(colo_recorder_start(&cfg, &r, &err) == 0, "%s", err.msg);
	demo_vary(&d, 0);
	save_payload(&colo_demo_vmstate, &d.state, &want[0]);
	full_stream(&d.sv, &full);
	v[0] = (struct iovec){ full.data, full.len };
	colo_recorder_full(r, 0, 1, 0, v, 1);
	for (unsigned k = 1; k <= NCKPT; k++) {
		demo_vary(&d, k);
		save_payload(&colo_demo_vmstate, &d.state, &want[k]);
		colo_test_ckpt_streams(&d.sv, k, &ram, &dev);
		v[0] = (struct iovec){ ram.data, ram.len };
		v[1] = (struct iovec){ dev.data, dev.len };
		colo_recorder_checkpoint(r, k, 1, 1000 + k, &v[0], 1, &v[1], 1);
	}
	colo_recorder_stop(r);          /* writes what is queued */
	colo_buf_free(&full);
	colo_buf_free(&ram);
	colo_buf_free(&dev);
	colo_demo_free(&d);
}

START_TEST(a_recording_follows_a_resizing_device)
{
	struct colo_buf want[NCKPT + 1];
	char *dir = colo_test_tmpdir();
	struct colo_recording *rec;
	struct colo_image img;
	struct colo_err err;
	size_t keys = 0;

	for (int i = 0; i <= NCKPT; i++)
		colo_buf_init(&want[i]);
	record_demo(dir, want);
	colo_err_clear(&err);
	ck_assert_msg(colo_recording_open(dir, &rec, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(rec->n, NCKPT + 1);
	ck_assert_str_eq(colo_recording_meta(rec, "guest"), "demo");
	ck_assert_str_eq(colo_recording_meta(rec, "name"), "t");
	for (size_t i = 0; i < rec->n; i++) {
		const struct colo_rec_entry *e = &rec->e[i];
		const struct colo_image_device *d;

		keys += e->keyframe;
		ck_assert_uint_eq(e->format, COLO_REC_FORMAT);
		ck_assert_uint_eq(e->ndevice_bytes, e->ndevices);
		ck_assert_str_eq(e->devices[0], "demo/0");
		ck_assert_uint_eq(e->device_bytes[0], want[e->seq].len);
		colo_err_clear(&err);
		ck_assert_msg(colo_recording_state(rec, e, &img, &err) == 0, "seq %" PRIu64
			      ": %s", e->seq, err.msg);
		d = dev_named(&img, "demo");
		ck_assert_uint_eq(d->len, want[e->seq].len);
		ck_assert_mem_eq(d->payload, want[e->seq].data, d->len);
		colo_image_free(&img);
	}
	/* The recorder's own keyframes (every 3) took the resized payloads. */
	ck_assert_uint_ge(keys, 3);
	/* sync-devices: the sync's devices, whatever came after. */
	colo_err_clear(&err);
	ck_assert_msg(colo_recording_sync_devices(rec, &img, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(img.nblocks, 0);
	ck_assert_mem_eq(dev_named(&img, "demo")->payload, want[0].data, want[0].len);
	colo_image_free(&img);
	colo_recording_close(rec);
	for (int i = 0; i <= NCKPT; i++)
		colo_buf_free(&want[i]);
	colo_test_rmdir(dir);
}
END_TEST

START_TEST(a_newer_format_is_refused)
{
	static const char newer[] = "{\"format\": 3, \"node\": {}}";
	struct colo_buf want[NCKPT + 1];
	char *dir = colo_test_tmpdir(), *meta;
	struct colo_recording *rec;
	struct colo_err err;

	for (int i = 0; i <= NCKPT; i++)
		colo_buf_init(&want[i]);
	record_demo(dir, want);
	ck_assert_int_ge(asprintf(&meta, "%s/" COLO_REC_META, dir), 0);
	ck_assert_int_eq(colo_test_write_file(meta, newer, sizeof(newer) - 1), 0);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_recording_open(dir, &rec, &err), -EPROTONOSUPPORT);
	ck_assert_msg(strstr(err.msg, "format 3 is newer than this build reads (2)"), "%s",
		      err.msg);
	free(meta);
	for (int i = 0; i <= NCKPT; i++)
		colo_buf_free(&want[i]);
	colo_test_rmdir(dir);
}
END_TEST

/* One index entry as a format 1 recorder wrote it (no format, no sizes). */
static void put_v1_entry(struct colo_buf *idx, uint64_t seq, uint64_t off, size_t len,
			 size_t ram_len, const uint8_t *bytes, bool key)
{
	Colo__RecordIndexEntry pb = COLO__RECORD_INDEX_ENTRY__INIT;
	uint8_t buf[512];
	size_t n;

	pb.seq = seq;
	pb.generation = 1;
	pb.segment = "seg-000001";
	pb.offset = off;
	pb.length = len;
	pb.ram_length = ram_len;
	pb.checksum = XXH3_64bits(bytes, len);
	pb.keyframe = key;
	n = colo__record_index_entry__get_packed_size(&pb);
	ck_assert_uint_lt(n, sizeof(buf));
	colo__record_index_entry__pack(&pb, buf);
	colo_buf_put_be32(idx, (uint32_t)n);
	colo_buf_put(idx, buf, n);
}

START_TEST(format_1_recordings_still_read)
{
	struct colo_buf seg = COLO_BUF_INIT, idx = COLO_BUF_INIT, ram = COLO_BUF_INIT;
	struct colo_buf dev = COLO_BUF_INIT, full = COLO_BUF_INIT, want = COLO_BUF_INIT;
	char *dir = colo_test_tmpdir(), *p;
	struct colo_recording *rec;
	struct colo_image img;
	struct colo_err err;
	struct colo_demo d;

	/* Fixed-size devices, as format 1 could record them. */
	demo_ok(&d, 8);
	demo_vary(&d, 4);
	full_stream(&d.sv, &full);
	colo_buf_put(&seg, full.data, full.len);
	put_v1_entry(&idx, 0, 0, full.len, 0, full.data, true);
	d.state.u64 = 99;
	d.state.hits = 1234;
	save_payload(&colo_demo_vmstate, &d.state, &want);
	colo_test_ckpt_streams(&d.sv, 1, &ram, &dev);
	colo_buf_put(&seg, ram.data, ram.len);
	colo_buf_put(&seg, dev.data, dev.len);
	put_v1_entry(&idx, 1, full.len, ram.len + dev.len, ram.len, seg.data + full.len,
		     false);
	ck_assert_int_ge(asprintf(&p, "%s/seg-000001", dir), 0);
	ck_assert_int_eq(colo_test_write_file(p, seg.data, seg.len), 0);
	free(p);
	ck_assert_int_ge(asprintf(&p, "%s/" COLO_REC_INDEX, dir), 0);
	ck_assert_int_eq(colo_test_write_file(p, idx.data, idx.len), 0);
	free(p);
	colo_err_clear(&err);
	ck_assert_msg(colo_recording_open(dir, &rec, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(rec->n, 2);
	ck_assert_uint_eq(rec->e[1].format, 1);
	ck_assert_uint_eq(rec->e[1].ndevice_bytes, 0);
	ck_assert_ptr_null(colo_recording_meta(rec, "guest"));
	ck_assert_msg(colo_recording_state(rec, &rec->e[1], &img, &err) == 0, "%s", err.msg);
	ck_assert_mem_eq(dev_named(&img, "demo")->payload, want.data, want.len);
	colo_image_free(&img);
	colo_recording_close(rec);
	colo_buf_free(&seg);
	colo_buf_free(&idx);
	colo_buf_free(&ram);
	colo_buf_free(&dev);
	colo_buf_free(&full);
	colo_buf_free(&want);
	colo_demo_free(&d);
	colo_test_rmdir(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("recsize");
	TCase *tc = tcase_create("recsize");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, measure_gives_what_save_wrote);
	tcase_add_test(tc, measure_refuses_what_cannot_be);
	tcase_add_test(tc, apply_follows_resizes_only_with_a_sizer);
	tcase_add_test(tc, a_recording_follows_a_resizing_device);
	tcase_add_test(tc, a_newer_format_is_refused);
	tcase_add_test(tc, format_1_recordings_still_read);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
