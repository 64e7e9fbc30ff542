/* psk.c: see psk.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hex.h"
#include "psk.h"

#define HEX_LEN (2 * COLO_PSK_BYTES)

int colo_sodium_init(struct colo_err *err)
{
	/* 0: done now, 1: done before, -1: no usable randomness or CPU support */
	if (sodium_init() < 0)
		return colo_err_set(err, ENOSYS, "libsodium cannot initialise on this system");
	return 0;
}

/* raw: what the file held (len bytes, already checked to be a key's size). */
static int decode(const char *path, const uint8_t *raw, size_t len,
		  uint8_t key[COLO_PSK_BYTES], struct colo_err *err)
{
	if (len == COLO_PSK_BYTES) {
		memcpy(key, raw, COLO_PSK_BYTES);
		return 0;
	}
	for (size_t i = 0; i < HEX_LEN; i++) {
		if (colo_hex_digit(raw[i]) < 0) {
			sodium_memzero(key, COLO_PSK_BYTES);
			return colo_err_set(err, EINVAL, "psk-file %s: %zu characters but character "
					    "%zu is not a hex digit; wanted 32 random bytes or "
					    "64 hex digits (colo-ctl keygen %s writes one)", path,
					    len, i + 1, path);
		}
		key[i / 2] = (uint8_t)(key[i / 2] << 4 | colo_hex_digit(raw[i]));
	}
	return 0;
}

int colo_psk_load(const char *path, uint8_t key[COLO_PSK_BYTES], struct colo_err *err)
{
	uint8_t raw[HEX_LEN + 2];   /* one more than the longest valid file */
	struct stat st;
	size_t len = 0;
	int fd, r = 0;

	r = colo_sodium_init(err);
	if (r)
		return r;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT)
			return colo_err_set(err, ENOENT, "psk-file %s: no such file (colo-ctl "
					    "keygen %s writes one)", path, path);
		return colo_err_set(err, -r, "psk-file %s: %s", path, strerror(-r));
	}
	/* fstat the open file: what is checked is what is read. */
	if (fstat(fd, &st) != 0) {
		r = colo_err_set(err, errno, "psk-file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = colo_err_set(err, EINVAL, "psk-file %s: not a regular file", path);
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		r = colo_err_set(err, EPERM, "psk-file %s: mode %04o lets others %s it "
				 "(chmod 600 %s)", path, (unsigned)(st.st_mode & 07777),
				 st.st_mode & (S_IRGRP | S_IROTH) ? "read" : "change", path);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, raw + len, sizeof(raw) - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = colo_err_set(err, errno, "psk-file %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0 || (len += (size_t)n) == sizeof(raw))
			break;
	}
	if (len == HEX_LEN + 1 && raw[HEX_LEN] == '\n')
		len = HEX_LEN;
	else if (len == HEX_LEN + 1 || len == sizeof(raw))
		/* the size on disk: a long file was read only in part */
		len = (size_t)(st.st_size > (off_t)len ? st.st_size : (off_t)len);
	if (len != COLO_PSK_BYTES && len != HEX_LEN) {
		r = colo_err_set(err, EINVAL, "psk-file %s: %zu bytes; wanted 32 random bytes "
				 "or 64 hex digits (colo-ctl keygen %s writes one)", path,
				 len, path);
		goto out;
	}
	r = decode(path, raw, len, key, err);
out:
	sodium_memzero(raw, sizeof(raw));
	close(fd);
	return r;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int colo_psk_generate(const char *path, struct colo_err *err)
{
	uint8_t key[COLO_PSK_BYTES];
	char hex[HEX_LEN + 2];
	int fd, r;

	r = colo_sodium_init(err);
	if (r)
		return r;
	/* O_EXCL: a key in use is never replaced by accident. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
	if (fd < 0) {
		r = -errno;
		if (r == -EEXIST)
			return colo_err_set(err, EEXIST, "psk-file %s exists already; not "
					    "overwriting a key (remove it first)", path);
		return colo_err_set(err, -r, "psk-file %s: cannot create: %s", path,
				    strerror(-r));
	}
	randombytes_buf(key, sizeof(key));
	sodium_bin2hex(hex, HEX_LEN + 1, key, sizeof(key));
	hex[HEX_LEN] = '\n';
	hex[HEX_LEN + 1] = '\0';
	r = write_all(fd, hex, HEX_LEN + 1);
	if (r == 0 && fsync(fd) != 0)
		r = -errno;
	if (close(fd) != 0 && r == 0)
		r = -errno;
	sodium_memzero(key, sizeof(key));
	sodium_memzero(hex, sizeof(hex));
	if (r) {
		unlink(path);   /* half a key must not be loaded later */
		return colo_err_set(err, -r, "psk-file %s: cannot write: %s", path,
				    strerror(-r));
	}
	return 0;
}
