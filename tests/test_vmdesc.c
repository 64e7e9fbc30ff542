/*
 * test_vmdesc.c: the vmdesc read back: QEMU 7.2's shapes (compressed and
 * indexed arrays, nested structs with subsections, inline "tmp"), payload
 * sizes computed from it, decoding, locating it at the end of a file, and
 * JSON that lies.
 */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "testutil.h"
#include "vmdesc.h"

/* Shaped after a real QEMU 7.2 vmdesc (devices fdc, cpu, globalstate). */
static const char qemu_like[] =
	"{\"page_size\": 4096, \"devices\": ["
	"{\"name\": \"fdc\", \"instance_id\": 0, \"vmsd_name\": \"fdc\", \"version\": 2, "
	"\"fields\": [{\"name\": \"drives\", \"index\": 0, \"type\": \"struct\", "
	"\"struct\": {\"vmsd_name\": \"fdrive\", \"version\": 1, \"fields\": ["
	"{\"name\": \"head\", \"type\": \"uint8\", \"size\": 1}], \"subsections\": "
	"[{\"vmsd_name\": \"fdrive/media_rate\", \"version\": 1, \"fields\": "
	"[{\"name\": \"media_rate\", \"type\": \"uint8\", \"size\": 1}]}]}, \"size\": 25}, "
	"{\"name\": \"drives\", \"index\": 1, \"type\": \"struct\", \"struct\": "
	"{\"vmsd_name\": \"fdrive\", \"version\": 1, \"fields\": [{\"name\": \"head\", "
	"\"type\": \"uint8\", \"size\": 1}]}, \"size\": 1}]}, "
	"{\"name\": \"cpu\", \"instance_id\": 0, \"vmsd_name\": \"cpu\", \"version\": 12, "
	"\"fields\": [{\"name\": \"env.regs\", \"array_len\": 2, \"type\": \"uint64\", "
	"\"size\": 8}, {\"name\": \"env.fpregs\", \"array_len\": 2, \"type\": \"struct\", "
	"\"struct\": {\"vmsd_name\": \"fpreg\", \"version\": 0, \"fields\": [{\"name\": "
	"\"tmp\", \"type\": \"tmp\", \"vmsd_name\": \"fpreg_tmp\", \"version\": 0, "
	"\"fields\": [{\"name\": \"tmp_mant\", \"type\": \"uint64\", \"size\": 8}, "
	"{\"name\": \"tmp_exp\", \"type\": \"uint16\", \"size\": 2}], \"size\": 10}]}, "
	"\"size\": 10}, {\"name\": \"env.a20_mask\", \"type\": \"int32\", \"size\": 4}], "
	"\"subsections\": [{\"vmsd_name\": \"cpu/poll_control_msr\", \"version\": 1, "
	"\"fields\": [{\"name\": \"env.poll_control_msr\", \"type\": \"uint64\", "
	"\"size\": 8}]}]}, "
	"{\"name\": \"globalstate\", \"instance_id\": 0, \"vmsd_name\": \"globalstate\", "
	"\"version\": 1, \"fields\": [{\"name\": \"size\", \"type\": \"uint32\", "
	"\"size\": 4}, {\"name\": \"runstate\", \"type\": \"buffer\", \"size\": 8}, "
	"{\"name\": \"ok\", \"type\": \"bool\", \"size\": 1}, {\"name\": \"f\", \"type\": "
	"\"float64\", \"size\": 8}, {\"name\": \"big\", \"type\": \"uint64\", \"size\": 8}]}"
	"]}";

static struct colo_vmdesc *parse_ok(const char *json)
{
	struct colo_vmdesc *vd;
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_vmdesc_parse(json, strlen(json), &vd, &err) == 0, "%s", err.msg);
	return vd;
}

static const char *parse_err(const char *json)
{
	static struct colo_err err;
	struct colo_vmdesc *vd;

	colo_err_clear(&err);
	ck_assert_int_ne(colo_vmdesc_parse(json, strlen(json), &vd, &err), 0);
	ck_assert_ptr_null(vd);
	return err.msg;
}

START_TEST(sizes_follow_qemu_rules)
{
	struct colo_vmdesc *vd = parse_ok(qemu_like);
	const struct colo_vmdesc_device *fdc, *cpu, *gs;

	ck_assert_int_eq(vd->page_size, 4096);
	ck_assert_uint_eq(vd->ndevs, 3);
	fdc = colo_vmdesc_find(vd, "fdc", 0);
	cpu = colo_vmdesc_find(vd, "cpu", 0);
	gs = colo_vmdesc_find(vd, "globalstate", 0);
	ck_assert_ptr_nonnull(fdc);
	ck_assert_ptr_null(colo_vmdesc_find(vd, "fdc", 1));
	/* drives[0]: 1 + (1 + 1 + 17 + 4) + 1 = 25 with its subsection; drives[1]: 1 */
	ck_assert_uint_eq(fdc->desc.bytes, 26);
	/* 2*8 + 2*10 + 4, then the cpu/poll_control_msr subsection: 6 + 20 + 8 */
	ck_assert_uint_eq(cpu->desc.bytes, 16 + 20 + 4 + 6 + 20 + 8);
	ck_assert_uint_eq(cpu->desc.fields[1].array_len, 2);
	ck_assert_ptr_nonnull(cpu->desc.fields[1].sub);
	ck_assert_str_eq(cpu->desc.fields[1].sub->fields[0].sub->vmsd_name, "fpreg_tmp");
	ck_assert_uint_eq(gs->desc.bytes, 29);
	ck_assert_int_eq(fdc->desc.fields[1].index, 1);
	colo_vmdesc_free(vd);
}
END_TEST

/* A device QEMU saves the old way (user networking's "slirp") has no
 * vmsd_name or version: one buffer of "size" bytes (seen in QEMU 7.2). */
START_TEST(old_style_device)
{
	struct colo_vmdesc *vd = parse_ok(
		"{\"page_size\": 4096, \"devices\": [{\"name\": \"slirp\", "
		"\"instance_id\": 0, \"size\": 131, \"fields\": [{\"name\": \"data\", "
		"\"size\": 131, \"type\": \"buffer\"}]}]}");
	const struct colo_vmdesc_device *d = colo_vmdesc_find(vd, "slirp", 0);

	ck_assert_ptr_nonnull(d);
	ck_assert_uint_eq(d->desc.bytes, 131);
	ck_assert_str_eq(d->desc.vmsd_name, "slirp");
	ck_assert_int_eq(d->desc.version, 0);
	colo_vmdesc_free(vd);
	/* Without "size" it is not that: vmsd_name is still required. */
	ck_assert_ptr_nonnull(strstr(parse_err(
		"{\"page_size\": 4096, \"devices\": [{\"name\": \"x\", \"instance_id\": 0, "
		"\"fields\": []}]}"), "\"vmsd_name\" is missing"));
}
END_TEST

START_TEST(decode_values)
{
	struct colo_vmdesc *vd = parse_ok(qemu_like);
	const struct colo_vmdesc_device *cpu = colo_vmdesc_find(vd, "cpu", 0);
	const struct colo_vmdesc_device *gs = colo_vmdesc_find(vd, "globalstate", 0);
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_err err;
	struct colo_in in;
	json_t *out;
	char *s;

	colo_buf_put_be64(&b, 1);
	colo_buf_put_be64(&b, 2);
	for (int i = 0; i < 2; i++) {
		colo_buf_put_be64(&b, 0x8000000000000000ull + (uint64_t)i);
		colo_buf_put_be16(&b, 0x3fff);
	}
	colo_buf_put_be32(&b, 0xffffffff);          /* a20_mask: int32 -1 */
	colo_buf_put_u8(&b, 0x05);
	colo_buf_put_u8(&b, 20);
	colo_buf_put(&b, "cpu/poll_control_msr", 20);
	colo_buf_put_be32(&b, 1);
	colo_buf_put_be64(&b, 7);
	ck_assert_uint_eq(b.len, cpu->desc.bytes);
	colo_err_clear(&err);
	colo_in_init(&in, b.data, b.len, 100, true);
	ck_assert_msg(colo_vmdesc_decode(&cpu->desc, &in, &out, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(in.pos, b.len);
	s = json_dumps(out, JSON_COMPACT);
	ck_assert_str_eq(s,
		"{\"vmsd_name\":\"cpu\",\"version\":12,\"fields\":["
		"{\"name\":\"env.regs\",\"type\":\"uint64\",\"size\":8,\"offset\":100,"
		"\"array_len\":2,\"values\":[1,2]},"
		"{\"name\":\"env.fpregs\",\"type\":\"struct\",\"size\":10,\"offset\":116,"
		"\"array_len\":2,\"values\":["
		"{\"vmsd_name\":\"fpreg\",\"version\":0,\"fields\":[{\"name\":\"tmp\","
		"\"type\":\"tmp\",\"size\":10,\"offset\":116,\"value\":{\"vmsd_name\":"
		"\"fpreg_tmp\",\"version\":0,\"fields\":[{\"name\":\"tmp_mant\",\"type\":"
		"\"uint64\",\"size\":8,\"offset\":116,\"value\":\"9223372036854775808\"},"
		"{\"name\":\"tmp_exp\",\"type\":\"uint16\",\"size\":2,\"offset\":124,"
		"\"value\":16383}]}}]},"
		"{\"vmsd_name\":\"fpreg\",\"version\":0,\"fields\":[{\"name\":\"tmp\","
		"\"type\":\"tmp\",\"size\":10,\"offset\":126,\"value\":{\"vmsd_name\":"
		"\"fpreg_tmp\",\"version\":0,\"fields\":[{\"name\":\"tmp_mant\",\"type\":"
		"\"uint64\",\"size\":8,\"offset\":126,\"value\":\"9223372036854775809\"},"
		"{\"name\":\"tmp_exp\",\"type\":\"uint16\",\"size\":2,\"offset\":134,"
		"\"value\":16383}]}}]}]},"
		"{\"name\":\"env.a20_mask\",\"type\":\"int32\",\"size\":4,\"offset\":136,"
		"\"value\":-1}],"
		"\"subsections\":[{\"vmsd_name\":\"cpu/poll_control_msr\",\"version\":1,"
		"\"fields\":[{\"name\":\"env.poll_control_msr\",\"type\":\"uint64\","
		"\"size\":8,\"offset\":166,\"value\":7}],\"stream_version\":1}]}");
	free(s);
	json_decref(out);

	/* bool, float64 and bytes as hex */
	colo_buf_reset(&b);
	colo_buf_put_be32(&b, 8);
	colo_buf_put(&b, "running\0", 8);
	colo_buf_put_u8(&b, 2);
	colo_buf_put_be64(&b, 0x3ff8000000000000ull);
	colo_buf_put_be64(&b, 42);
	colo_in_init(&in, b.data, b.len, 0, true);
	ck_assert_int_eq(colo_vmdesc_decode(&gs->desc, &in, &out, &err), 0);
	s = json_dumps(json_object_get(out, "fields"), JSON_COMPACT);
	ck_assert_str_eq(s,
		"[{\"name\":\"size\",\"type\":\"uint32\",\"size\":4,\"offset\":0,\"value\":8},"
		"{\"name\":\"runstate\",\"type\":\"buffer\",\"size\":8,\"offset\":4,"
		"\"value\":\"72756e6e696e6700\"},"
		"{\"name\":\"ok\",\"type\":\"bool\",\"size\":1,\"offset\":12,\"value\":true},"
		"{\"name\":\"f\",\"type\":\"float64\",\"size\":8,\"offset\":13,\"value\":1.5},"
		"{\"name\":\"big\",\"type\":\"uint64\",\"size\":8,\"offset\":21,\"value\":42}]");
	free(s);
	json_decref(out);
	colo_buf_free(&b);
	colo_vmdesc_free(vd);
}
END_TEST

START_TEST(decode_refuses_wrong_subsection)
{
	struct colo_vmdesc *vd = parse_ok(qemu_like);
	const struct colo_vmdesc_device *cpu = colo_vmdesc_find(vd, "cpu", 0);
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_err err;
	struct colo_in in;
	json_t *out;

	colo_buf_fill(&b, 0, 40);
	colo_buf_put_u8(&b, 0x05);
	colo_buf_put_u8(&b, 20);
	colo_buf_put(&b, "cpu/poll_control_xxx", 20);
	colo_buf_put_be32(&b, 1);
	colo_buf_put_be64(&b, 7);
	colo_err_clear(&err);
	colo_in_init(&in, b.data, b.len, 0, true);
	ck_assert_int_ne(colo_vmdesc_decode(&cpu->desc, &in, &out, &err), 0);
	ck_assert_ptr_null(out);
	ck_assert_str_eq(err.msg, "expected subsection 'cpu/poll_control_msr' at offset "
			 "40, found 'cpu/poll_control_xxx'");
	b.data[40] = 0x07;
	colo_err_clear(&err);
	colo_in_init(&in, b.data, b.len, 0, true);
	ck_assert_int_ne(colo_vmdesc_decode(&cpu->desc, &in, &out, &err), 0);
	ck_assert_str_eq(err.msg, "expected subsection 'cpu/poll_control_msr' at offset "
			 "40, found byte 0x07");
	colo_in_init(&in, b.data, 30, 0, true);
	colo_err_clear(&err);
	ck_assert_int_ne(colo_vmdesc_decode(&cpu->desc, &in, &out, &err), 0);
	ck_assert_str_eq(err.msg, "device payload ends at offset 30 inside field "
			 "'tmp_mant' (the vmdesc describes more bytes)");
	colo_buf_free(&b);
	colo_vmdesc_free(vd);
}
END_TEST

START_TEST(lying_json_is_refused)
{
	ck_assert_str_eq(parse_err("[]"), "vmdesc: the top level is not an object");
	ck_assert_str_eq(parse_err("{\"devices\": []}"),
			 "vmdesc: top level: \"page_size\" is missing or not an integer");
	ck_assert_str_eq(parse_err("{\"page_size\": 4096}"),
			 "vmdesc: \"devices\" is missing or not an array");
	ck_assert_str_eq(parse_err("{\"page_size\": 4096, \"devices\": [1]}"),
			 "vmdesc: device 0 is not an object");
	ck_assert_str_eq(parse_err("{\"page_size\": 4096, \"devices\": [{\"name\": \"d\", "
				   "\"instance_id\": -1}]}"),
			 "vmdesc: device 0 'd': \"instance_id\" is -1, outside 0..4294967295");
	ck_assert_str_eq(parse_err("{\"page_size\": 4096, \"devices\": [{\"name\": \"d\", "
				   "\"instance_id\": 0, \"vmsd_name\": \"d\", \"version\": 1, "
				   "\"fields\": [{\"name\": \"x\", \"type\": \"uint8\", "
				   "\"size\": -4}]}]}"),
			 "vmdesc: device 0 'd' field 'x': \"size\" is -4, outside 0..268435456");
	ck_assert_str_eq(parse_err("{\"page_size\": 4096, \"devices\": [{\"name\": \"d\", "
				   "\"instance_id\": 0, \"vmsd_name\": \"d\", \"version\": 1, "
				   "\"fields\": [{\"name\": \"x\", \"type\": \"uint8\", "
				   "\"size\": 1, \"array_len\": 0}]}]}"),
			 "vmdesc: device 0 'd' field 'x': \"array_len\" is 0, outside "
			 "1..16777216");
	/* A struct whose fields do not add up to the size it claims. */
	ck_assert_str_eq(parse_err("{\"page_size\": 4096, \"devices\": [{\"name\": \"d\", "
				   "\"instance_id\": 0, \"vmsd_name\": \"d\", \"version\": 1, "
				   "\"fields\": [{\"name\": \"s\", \"type\": \"struct\", "
				   "\"struct\": {\"vmsd_name\": \"s\", \"version\": 1, "
				   "\"fields\": [{\"name\": \"y\", \"type\": \"uint32\", "
				   "\"size\": 4}]}, \"size\": 9}]}]}"),
			 "vmdesc: device 0 'd' field 's': size 9 but its description "
			 "covers 4 bytes");
	ck_assert_msg(strstr(parse_err("{\"page_size\": 4096, \"page_size\": 1, "
				       "\"devices\": []}"), "duplicate object key"),
		      "duplicate keys accepted");
}
END_TEST

START_TEST(deep_nesting_is_refused)
{
	struct colo_buf b = COLO_BUF_INIT;
	const char *msg;

	{
		const char *head = "{\"page_size\": 4096, \"devices\": [{\"name\": \"d\", "
				   "\"instance_id\": 0, ";

		colo_buf_put(&b, head, strlen(head));
	}
	for (int i = 0; i < 20; i++) {
		const char *lvl = "\"vmsd_name\": \"s\", \"version\": 1, \"fields\": "
				  "[{\"name\": \"f\", \"type\": \"struct\", \"size\": 0, "
				  "\"struct\": {";

		colo_buf_put(&b, lvl, strlen(lvl));
	}
	{
		const char *inner = "\"vmsd_name\": \"s\", \"version\": 1, \"fields\": []";

		colo_buf_put(&b, inner, strlen(inner));
	}
	for (int i = 0; i < 20; i++)
		colo_buf_put(&b, "}}]", 3);
	colo_buf_put(&b, "}]}", 4);          /* with the NUL */
	msg = parse_err((const char *)b.data);
	ck_assert_msg(strstr(msg, "structs nested deeper than 16"), "%s", msg);
	colo_buf_free(&b);
}
END_TEST

START_TEST(locate_at_the_end)
{
	struct colo_buf b = COLO_BUF_INIT;
	size_t at;

	colo_buf_put(&b, "QEVM\0\0\0\3\0", 9);
	colo_buf_put_u8(&b, 0x06);
	colo_buf_put_be32(&b, 2);
	colo_buf_put(&b, "{}", 2);
	ck_assert_int_eq(colo_vmdesc_locate(b.data, b.len, &at), 0);
	ck_assert_uint_eq(at, 9);
	/* Bytes after it: still found, the reader then reports them. */
	colo_buf_put(&b, "junk", 4);
	at = 0;
	ck_assert_int_eq(colo_vmdesc_locate(b.data, b.len, &at), 0);
	ck_assert_uint_eq(at, 9);
	/* A length that does not end in '}' inside the file is no vmdesc. */
	colo_store_be32(b.data + 10, 3);
	ck_assert_int_eq(colo_vmdesc_locate(b.data, b.len, &at), -ENOENT);
	ck_assert_int_eq(colo_vmdesc_locate(b.data, 3, &at), -ENOENT);
	ck_assert_int_eq(colo_vmdesc_locate(NULL, 0, &at), -ENOENT);
	colo_buf_free(&b);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("vmdesc");
	TCase *tc = tcase_create("vmdesc");

	tcase_add_test(tc, sizes_follow_qemu_rules);
	tcase_add_test(tc, decode_values);
	tcase_add_test(tc, decode_refuses_wrong_subsection);
	tcase_add_test(tc, lying_json_is_refused);
	tcase_add_test(tc, deep_nesting_is_refused);
	tcase_add_test(tc, locate_at_the_end);
	tcase_add_test(tc, old_style_device);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
