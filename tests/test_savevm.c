/*
 * test_savevm.c: a guest saved as a whole stream and loaded back, in any
 * pieces; the dump of the same stream decodes the same values through the
 * vmdesc.
 */
#include "config.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "dump.h"
#include "savevm.h"
#include "testutil.h"

#define RAM (64 * 1024)

static void save_demo(uint64_t seed, unsigned flags, struct colo_buf *out)
{
	struct colo_demo d;
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_demo_init(&d, RAM, seed, &err) == 0, "%s", err.msg);
	ck_assert_msg(colo_savevm_save(&d.sv, out, flags, &err) == 0, "%s", err.msg);
	colo_demo_free(&d);
}

/* Load buf into a blank demo guest in the given pieces; 0 or -errno. */
static int load_demo(struct colo_demo *d, const struct colo_buf *buf,
		     struct colo_pieces *pieces, char *msg, size_t msglen,
		     struct colo_savevm_load_info *info)
{
	struct colo_savevm_loader *l;
	struct colo_err err;
	size_t off = 0;
	int rc = 0;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_demo_init(d, RAM, 0, &err), 0);
	l = colo_savevm_loader_new(&d->sv, NULL, COLO_PAGE_KINDS_QEMU);
	ck_assert_ptr_nonnull(l);
	while (off < buf->len && rc == 0) {
		size_t n = pieces ? colo_pieces_next(pieces) : buf->len;
		ssize_t got;

		if (n > buf->len - off)
			n = buf->len - off;
		got = colo_savevm_loader_feed(l, buf->data + off, n);
		if (got < 0)
			rc = (int)got;
		off += n;
	}
	if (rc == 0)
		rc = colo_savevm_loader_finish(l);
	if (msg)
		snprintf(msg, msglen, "%s", rc ? colo_savevm_loader_error(l) : "");
	if (info)
		*info = colo_savevm_loader_info(l);
	colo_savevm_loader_free(l);
	return rc;
}

START_TEST(round_trip_in_pieces)
{
	const uint64_t base = COLO_TEST_SEED(0);

	for (uint64_t seed = base + 1; seed <= base + 24; seed++) {
		struct colo_buf out = COLO_BUF_INIT;
		struct colo_pieces pieces = { .fixed = seed % 3 == 0 ? 1 : 0,
					      .max = 1 + seed * 97, .rng = { seed } };
		struct colo_savevm_load_info info;
		struct colo_demo d;
		struct colo_err err;
		char msg[COLO_ERR_MAX];

		save_demo(seed, 0, &out);
		ck_assert_msg(load_demo(&d, &out, &pieces, msg, sizeof(msg), &info) == 0,
			      "seed %" PRIu64 ": %s", seed, msg);
		colo_err_clear(&err);
		ck_assert_msg(colo_demo_check(&d, seed, &err) == 0, "seed %" PRIu64 ": %s",
			      seed, err.msg);
		/* Every fourth page of the demo guest is zero. */
		ck_assert_uint_eq(info.pages[COLO_PAGE_ZERO], RAM / COLO_PAGE_SIZE / 4);
		ck_assert_uint_eq(info.pages[COLO_PAGE_RAW], RAM / COLO_PAGE_SIZE * 3 / 4);
		ck_assert_uint_eq(info.devices, 2);
		ck_assert(info.vmdesc);
		ck_assert(!info.enable_colo);
		colo_demo_free(&d);
		colo_buf_free(&out);
	}
}
END_TEST

/* A check that can fail: a loaded guest is not the guest of another seed. */
START_TEST(check_notices_a_different_guest)
{
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_demo d;
	struct colo_err err;

	save_demo(5, 0, &out);
	ck_assert_int_eq(load_demo(&d, &out, NULL, NULL, 0, NULL), 0);
	colo_err_clear(&err);
	ck_assert_int_ne(colo_demo_check(&d, 6, &err), 0);
	ck_assert_str_eq(err.msg, "RAM page at 0x0 differs");
	/* One flipped byte of RAM is found too. */
	d.ram[RAM - 1] ^= 1;
	colo_err_clear(&err);
	ck_assert_int_ne(colo_demo_check(&d, 5, &err), 0);
	ck_assert_str_eq(err.msg, "RAM page at 0xf000 differs");
	colo_demo_free(&d);
	colo_buf_free(&out);
}
END_TEST

START_TEST(enable_colo_and_no_vmdesc)
{
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_savevm_load_info info;
	struct colo_demo d;
	char msg[COLO_ERR_MAX];

	save_demo(3, COLO_SAVEVM_ENABLE_COLO | COLO_SAVEVM_NO_VMDESC, &out);
	ck_assert_msg(load_demo(&d, &out, NULL, msg, sizeof(msg), &info) == 0, "%s", msg);
	ck_assert(info.enable_colo);
	ck_assert(!info.vmdesc);
	colo_demo_free(&d);
	colo_buf_free(&out);
}
END_TEST

/* Loading a second stream into the same guest replaces what ALLOC'd. */
START_TEST(reload_replaces_state)
{
	struct colo_buf a = COLO_BUF_INIT, b = COLO_BUF_INIT;
	struct colo_savevm_loader *l;
	struct colo_demo d;
	struct colo_err err;

	save_demo(7, 0, &a);
	save_demo(8, 0, &b);
	ck_assert_int_eq(load_demo(&d, &a, NULL, NULL, 0, NULL), 0);
	l = colo_savevm_loader_new(&d.sv, NULL, COLO_PAGE_KINDS_QEMU);
	ck_assert_int_eq(colo_savevm_loader_feed(l, b.data, b.len), (ssize_t)b.len);
	ck_assert_int_eq(colo_savevm_loader_finish(l), 0);
	colo_savevm_loader_free(l);
	colo_err_clear(&err);
	ck_assert_msg(colo_demo_check(&d, 8, &err) == 0, "%s", err.msg);
	colo_demo_free(&d);
	colo_buf_free(&a);
	colo_buf_free(&b);
}
END_TEST

static json_t *dump_of(const struct colo_buf *b, struct colo_pieces *p)
{
	struct colo_err err;
	json_t *doc;

	colo_err_clear(&err);
	ck_assert_msg(colo_dump_buffer(b->data, b->len, p ? colo_pieces_next : NULL, p,
				       &doc, &err) == 0, "%s", err.msg);
	return doc;
}

static const json_t *device_field(const json_t *doc, const char *dev, const char *field)
{
	const json_t *items = json_object_get(doc, "items");

	for (size_t i = 0; i < json_array_size(items); i++) {
		const json_t *it = json_array_get(items, i);
		const json_t *fields;

		const char *idstr = json_string_value(json_object_get(it, "idstr"));

		if (!idstr || strcmp(idstr, dev) != 0 || !json_object_get(it, "device"))
			continue;
		fields = json_object_get(json_object_get(it, "device"), "fields");
		for (size_t k = 0; k < json_array_size(fields); k++) {
			const json_t *f = json_array_get(fields, k);

			if (strcmp(json_string_value(json_object_get(f, "name")), field) == 0)
				return f;
		}
	}
	return NULL;
}

START_TEST(dump_decodes_what_vmstate_wrote)
{
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_pieces one = { .fixed = 1 };
	struct colo_pieces rnd = { .max = 333, .rng = { COLO_TEST_SEED(3) } };
	json_t *whole, *bytes, *random;
	const json_t *f, *sum;

	save_demo(1, 0, &out);
	whole = dump_of(&out, NULL);
	bytes = dump_of(&out, &one);
	random = dump_of(&out, &rnd);
	ck_assert(json_equal(whole, bytes));
	ck_assert(json_equal(whole, random));

	f = device_field(whole, "demo", "u16");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(json_integer_value(json_object_get(f, "value")), 0xbeef);
	f = device_field(whole, "demo", "i16");
	ck_assert_int_eq(json_integer_value(json_object_get(f, "value")), -1234);
	f = device_field(whole, "demo", "load");
	ck_assert(json_real_value(json_object_get(f, "value")) == 0.125);
	f = device_field(whole, "demo", "label");
	ck_assert_str_eq(json_string_value(json_object_get(f, "value")),
			 "64656d6f2d6775657374000000000000");
	f = device_field(whole, "demo", "hist");
	ck_assert_int_eq(json_integer_value(json_object_get(f, "array_len")), 4);
	ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(f, "values"), 3)), 31);
	f = device_field(whole, "demo-config", "page_size");
	ck_assert_str_eq(json_string_value(json_object_get(f, "type")), "uint32 equal");
	ck_assert_int_eq(json_integer_value(json_object_get(f, "value")), 4096);
	/* No section id 0: QEMU would take a RAM PART with id 0 for a device. */
	for (size_t i = 0; i < json_array_size(json_object_get(whole, "items")); i++) {
		const json_t *it = json_array_get(json_object_get(whole, "items"), i);

		if (json_object_get(it, "section_id"))
			ck_assert_int_gt(json_integer_value(json_object_get(it, "section_id")), 0);
	}
	sum = json_object_get(whole, "summary");
	ck_assert_int_eq(json_integer_value(json_object_get(sum, "devices")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(sum, "bytes_read")),
			 (json_int_t)out.len);
	json_decref(whole);
	json_decref(bytes);
	json_decref(random);
	colo_buf_free(&out);
}
END_TEST

START_TEST(guest_mismatch_is_refused)
{
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_savevm_loader *l;
	struct colo_demo d;
	struct colo_err err;
	uint8_t *big;

	save_demo(2, 0, &out);
	/* Another machine type. */
	colo_err_clear(&err);
	ck_assert_int_eq(colo_demo_init(&d, RAM, 0, &err), 0);
	colo_stream_config_init(&d.sv.config, "pc-q35-7.2", &err);
	l = colo_savevm_loader_new(&d.sv, NULL, COLO_PAGE_KINDS_QEMU);
	ck_assert_int_lt(colo_savevm_loader_feed(l, out.data, out.len), 0);
	ck_assert_str_eq(colo_savevm_loader_error(l), "configuration at offset 8: machine "
			 "type received is 'colo-demo-1' and local is 'pc-q35-7.2'");
	colo_savevm_loader_free(l);
	colo_demo_free(&d);

	/* A RAM block of another size. */
	ck_assert_int_eq(colo_demo_init(&d, RAM * 2, 0, &err), 0);
	l = colo_savevm_loader_new(&d.sv, NULL, COLO_PAGE_KINDS_QEMU);
	ck_assert_int_lt(colo_savevm_loader_feed(l, out.data, out.len), 0);
	ck_assert_str_eq(colo_savevm_loader_error(l), "RAM block 'demo.ram' has 65536 bytes "
			 "in the stream and 131072 here");
	colo_savevm_loader_free(l);
	colo_demo_free(&d);

	/* A guest without the second device. */
	ck_assert_int_eq(colo_savevm_init(&d.sv, COLO_DEMO_MACHINE, &err), 0);
	big = calloc(1, RAM);
	memset(&d.state, 0, sizeof(d.state));
	ck_assert_int_eq(colo_savevm_add_ram(&d.sv, COLO_DEMO_RAM, big, RAM, &err), 0);
	ck_assert_int_eq(colo_savevm_add_device(&d.sv, "demo", 0, &colo_demo_vmstate,
						&d.state, &err), 0);
	l = colo_savevm_loader_new(&d.sv, NULL, COLO_PAGE_KINDS_QEMU);
	ck_assert_int_lt(colo_savevm_loader_feed(l, out.data, out.len), 0);
	ck_assert_msg(strstr(colo_savevm_loader_error(l), "unknown device 'demo-config' "
			     "instance 0 (section 3 at offset "), "%s",
		      colo_savevm_loader_error(l));
	colo_savevm_loader_free(l);
	colo_vmstate_free_allocs(&colo_demo_vmstate, &d.state);
	colo_savevm_free(&d.sv);
	free(big);
	colo_buf_free(&out);
}
END_TEST

START_TEST(registry_refuses_bad_entries)
{
	struct colo_savevm sv;
	struct colo_err err;
	static uint8_t mem[8192];

	colo_err_clear(&err);
	ck_assert_int_eq(colo_savevm_init(&sv, "m", &err), 0);
	ck_assert_int_eq(colo_savevm_add_ram(&sv, "r", mem, 100, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "RAM block 'r': length 100 is not a positive multiple "
			 "of 4096");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_savevm_add_ram(&sv, "r", mem, 8192, &err), 0);
	ck_assert_int_eq(colo_savevm_add_ram(&sv, "r", mem, 8192, &err), -EEXIST);
	ck_assert_str_eq(err.msg, "RAM block 'r' is registered twice");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_savevm_add_device(&sv, "d", 0, &colo_demo_vmstate, mem, &err), 0);
	ck_assert_int_eq(colo_savevm_add_device(&sv, "d", 0, &colo_demo_vmstate, mem, &err),
			 -EEXIST);
	ck_assert_str_eq(err.msg, "device 'd' instance 0 is registered twice");
	colo_savevm_free(&sv);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("savevm");
	TCase *tc = tcase_create("savevm");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, round_trip_in_pieces);
	tcase_add_test(tc, check_notices_a_different_guest);
	tcase_add_test(tc, enable_colo_and_no_vmdesc);
	tcase_add_test(tc, reload_replaces_state);
	tcase_add_test(tc, dump_decodes_what_vmstate_wrote);
	tcase_add_test(tc, guest_mismatch_is_refused);
	tcase_add_test(tc, registry_refuses_bad_entries);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
