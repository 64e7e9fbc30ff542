/*
 * test_proto.c: the protobuf messages compiled from proto/colo.proto at
 * build time pack and unpack, and a damaged message is refused.
 */
#include "config.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "colo.pb-c.h"
#include "testutil.h"

START_TEST(heartbeat_round_trip)
{
	Colo__Heartbeat hb = COLO__HEARTBEAT__INIT, *back;
	uint8_t mac[16] = { 1, 2, 3 };
	uint8_t buf[128];
	size_t len;

	hb.node_id = "a";
	hb.role = COLO__ROLE__ROLE_PRIMARY;
	hb.generation = 3;
	hb.seq = 1000;
	hb.committed_checkpoint = 999;
	hb.sent_ns = 123456789;
	hb.mac.data = mac;
	hb.mac.len = sizeof(mac);
	len = colo__heartbeat__get_packed_size(&hb);
	ck_assert_uint_le(len, sizeof(buf));
	ck_assert_uint_eq(colo__heartbeat__pack(&hb, buf), len);
	back = colo__heartbeat__unpack(NULL, len, buf);
	ck_assert_ptr_nonnull(back);
	ck_assert_str_eq(back->node_id, "a");
	ck_assert_int_eq(back->role, COLO__ROLE__ROLE_PRIMARY);
	ck_assert_uint_eq(back->generation, 3);
	ck_assert_uint_eq(back->seq, 1000);
	ck_assert_uint_eq(back->committed_checkpoint, 999);
	ck_assert_uint_eq(back->sent_ns, 123456789);
	ck_assert_uint_eq(back->mac.len, 16);
	ck_assert_mem_eq(back->mac.data, mac, 16);
	colo__heartbeat__free_unpacked(back, NULL);

	/* Cut short, the message does not unpack. */
	ck_assert_ptr_null(colo__heartbeat__unpack(NULL, len - 3, buf));
}
END_TEST

START_TEST(record_index_entry_round_trip)
{
	Colo__RecordIndexEntry e = COLO__RECORD_INDEX_ENTRY__INIT, *back;
	Colo__RecordIndexEntry__PagesEntry p0 = COLO__RECORD_INDEX_ENTRY__PAGES_ENTRY__INIT;
	Colo__RecordIndexEntry__PagesEntry *pages[1] = { &p0 };
	char *devs[2] = { "demo", "demo-config" };
	uint8_t *buf;
	size_t len;

	p0.key = "delta";
	p0.value = 42;
	e.seq = 7;
	e.segment = "seg-000001";
	e.n_pages = 1;
	e.pages = pages;
	e.n_devices = 2;
	e.devices = devs;
	e.keyframe = true;
	len = colo__record_index_entry__get_packed_size(&e);
	buf = malloc(len);
	colo__record_index_entry__pack(&e, buf);
	back = colo__record_index_entry__unpack(NULL, len, buf);
	ck_assert_ptr_nonnull(back);
	ck_assert_uint_eq(back->seq, 7);
	ck_assert_str_eq(back->segment, "seg-000001");
	ck_assert_uint_eq(back->n_pages, 1);
	ck_assert_str_eq(back->pages[0]->key, "delta");
	ck_assert_uint_eq(back->pages[0]->value, 42);
	ck_assert_uint_eq(back->n_devices, 2);
	ck_assert_str_eq(back->devices[1], "demo-config");
	ck_assert(back->keyframe);
	colo__record_index_entry__free_unpacked(back, NULL);
	free(buf);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc = tcase_create("proto");

	tcase_add_test(tc, heartbeat_round_trip);
	tcase_add_test(tc, record_index_entry_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
