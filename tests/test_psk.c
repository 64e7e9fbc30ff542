/*
 * test_psk.c: the pre-shared key file (common/node/psk.h).
 *
 * What must hold: a generated key is 64 hex digits and a newline, mode
 * 0600, loads back, and is never written over an existing file; raw and
 * hex keys load to the same bytes; every refused file is refused with the
 * exact line an operator reads (mode, size, not hex, missing), naming the
 * file and how to make a good one.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "psk.h"
#include "testutil.h"

static char *dir;
static char path[4096];

static void setup(void)
{
	dir = colo_test_tmpdir();
	ck_assert_ptr_nonnull(dir);
	snprintf(path, sizeof(path), "%s/key", dir);
}

static void teardown(void)
{
	colo_test_rmdir(dir);
}

static void write_key(const void *data, size_t len, mode_t mode)
{
	ck_assert_int_eq(colo_test_write_file(path, data, len), 0);
	ck_assert_int_eq(chmod(path, mode), 0);
}

/* Load path, expecting the refusal `want` (printf format with path twice at most). */
static void expect_refused(int code, const char *want)
{
	uint8_t key[COLO_PSK_BYTES];
	struct colo_err err;
	char line[COLO_ERR_MAX + 4096];

	colo_err_clear(&err);
	ck_assert_int_eq(colo_psk_load(path, key, &err), -code);
	snprintf(line, sizeof(line), want, path, path);
	ck_assert_str_eq(err.msg, line);
}

START_TEST(keygen_writes_a_key_that_loads)
{
	uint8_t key[COLO_PSK_BYTES], again[COLO_PSK_BYTES], zero[COLO_PSK_BYTES] = { 0 };
	struct colo_err err;
	struct stat st;
	uint8_t *text;
	size_t len;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_psk_generate(path, &err), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	text = colo_test_read_file(path, &len);
	ck_assert_ptr_nonnull(text);
	ck_assert_uint_eq(len, 65);
	ck_assert_int_eq(text[64], '\n');
	for (size_t i = 0; i < 64; i++)
		ck_assert_msg(strchr("0123456789abcdef", text[i]) && text[i],
			      "byte %zu is not a hex digit", i);
	ck_assert_int_eq(colo_psk_load(path, key, &err), 0);
	ck_assert_mem_ne(key, zero, sizeof(key));
	/* The same key as raw bytes loads the same. */
	ck_assert_int_eq(unlink(path), 0);
	write_key(key, sizeof(key), 0600);
	ck_assert_int_eq(colo_psk_load(path, again, &err), 0);
	ck_assert_mem_eq(key, again, sizeof(key));
	/* ... and as hex without the newline, upper case. */
	for (size_t i = 0; i < 64; i++)
		text[i] = (uint8_t)(text[i] >= 'a' ? text[i] - 'a' + 'A' : text[i]);
	write_key(text, 64, 0400);
	memset(again, 0, sizeof(again));
	ck_assert_int_eq(colo_psk_load(path, again, &err), 0);
	ck_assert_mem_eq(key, again, sizeof(key));
	free(text);
}
END_TEST

START_TEST(keygen_refuses_to_overwrite)
{
	struct colo_err err;
	char want[COLO_ERR_MAX + 4096];
	uint8_t *text;
	size_t len;

	write_key("mine\n", 5, 0600);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_psk_generate(path, &err), -EEXIST);
	snprintf(want, sizeof(want), "psk-file %s exists already; not overwriting a key "
		 "(remove it first)", path);
	ck_assert_str_eq(err.msg, want);
	text = colo_test_read_file(path, &len);
	ck_assert_ptr_nonnull(text);
	ck_assert_uint_eq(len, 5);
	ck_assert_mem_eq(text, "mine\n", 5);
	free(text);
}
END_TEST

START_TEST(refuses_a_file_others_can_read)
{
	uint8_t raw[32] = { 1 };

	write_key(raw, sizeof(raw), 0644);
	expect_refused(EPERM, "psk-file %s: mode 0644 lets others read it (chmod 600 %s)");
	ck_assert_int_eq(chmod(path, 0640), 0);
	expect_refused(EPERM, "psk-file %s: mode 0640 lets others read it (chmod 600 %s)");
	ck_assert_int_eq(chmod(path, 0620), 0);
	expect_refused(EPERM, "psk-file %s: mode 0620 lets others change it (chmod 600 %s)");
}
END_TEST

START_TEST(refuses_a_wrong_size)
{
	static const char hex[] =
		"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	char buf[200];

	write_key("", 0, 0600);
	expect_refused(EINVAL, "psk-file %s: 0 bytes; wanted 32 random bytes or 64 hex "
		       "digits (colo-ctl keygen %s writes one)");
	write_key(hex, 31, 0600);
	expect_refused(EINVAL, "psk-file %s: 31 bytes; wanted 32 random bytes or 64 hex "
		       "digits (colo-ctl keygen %s writes one)");
	write_key(hex, 63, 0600);
	expect_refused(EINVAL, "psk-file %s: 63 bytes; wanted 32 random bytes or 64 hex "
		       "digits (colo-ctl keygen %s writes one)");
	/* 65 bytes that do not end in a newline, and two newlines */
	snprintf(buf, sizeof(buf), "%s0", hex);
	write_key(buf, 65, 0600);
	expect_refused(EINVAL, "psk-file %s: 65 bytes; wanted 32 random bytes or 64 hex "
		       "digits (colo-ctl keygen %s writes one)");
	snprintf(buf, sizeof(buf), "%s\n\n", hex);
	write_key(buf, 66, 0600);
	expect_refused(EINVAL, "psk-file %s: 66 bytes; wanted 32 random bytes or 64 hex "
		       "digits (colo-ctl keygen %s writes one)");
	/* longer than what is read: the size on disk */
	memset(buf, 'a', sizeof(buf));
	write_key(buf, sizeof(buf), 0600);
	expect_refused(EINVAL, "psk-file %s: 200 bytes; wanted 32 random bytes or 64 hex "
		       "digits (colo-ctl keygen %s writes one)");
}
END_TEST

START_TEST(refuses_bad_hex)
{
	char buf[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg\n";

	write_key(buf, 65, 0600);
	expect_refused(EINVAL, "psk-file %s: 64 characters but character 64 is not a hex "
		       "digit; wanted 32 random bytes or 64 hex digits (colo-ctl keygen %s "
		       "writes one)");
	buf[63] = 'f';
	buf[2] = ' ';
	write_key(buf, 64, 0600);
	expect_refused(EINVAL, "psk-file %s: 64 characters but character 3 is not a hex "
		       "digit; wanted 32 random bytes or 64 hex digits (colo-ctl keygen %s "
		       "writes one)");
}
END_TEST

START_TEST(refuses_a_missing_file_or_a_directory)
{
	expect_refused(ENOENT, "psk-file %s: no such file (colo-ctl keygen %s writes one)");
	ck_assert_int_eq(mkdir(path, 0700), 0);
	expect_refused(EINVAL, "psk-file %s: not a regular file");
	ck_assert_int_eq(rmdir(path), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("psk");
	TCase *tc = tcase_create("psk");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, keygen_writes_a_key_that_loads);
	tcase_add_test(tc, keygen_refuses_to_overwrite);
	tcase_add_test(tc, refuses_a_file_others_can_read);
	tcase_add_test(tc, refuses_a_wrong_size);
	tcase_add_test(tc, refuses_bad_hex);
	tcase_add_test(tc, refuses_a_missing_file_or_a_directory);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
