/* fs.c: see fs.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"

char *colo_path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static int mkdir_failed(struct colo_err *err, int e, const char *dir)
{
	if (!err)
		return -e;
	return colo_err_set(err, e, "cannot create directory %s: %s", dir, strerror(e));
}

/* mkdir each prefix of buf that ends before a '/', then buf itself. */
static int mkdirs(char *buf, mode_t mode, struct colo_err *err)
{
	for (char *p = buf + 1;; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return mkdir_failed(err, errno, buf);
		if (last)
			return 0;
		*p = '/';
	}
}

int colo_mkdir_p(const char *path, mode_t mode, struct colo_err *err)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return mkdir_failed(err, ENAMETOOLONG, path);
	memcpy(buf, path, len + 1);
	return mkdirs(buf, mode, err);
}

int colo_mkdir_parent(const char *path, mode_t mode, struct colo_err *err)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);
	char *slash;

	if (len >= sizeof(buf))
		return mkdir_failed(err, ENAMETOOLONG, path);
	memcpy(buf, path, len + 1);
	slash = strrchr(buf, '/');
	if (!slash || slash == buf)
		return 0;
	*slash = '\0';
	return mkdirs(buf, mode, err);
}

int colo_write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

size_t colo_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *b = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, b + got, len - got, (off_t)(off + got));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

int colo_read_file(const char *path, uint8_t **data, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	*len = colo_pread_all(fd, buf, (size_t)st.st_size, 0);
	close(fd);
	*data = buf;
	return 0;
}

int colo_replace_file(const char *path, const void *data, size_t len, mode_t mode,
		      void (*progress)(void *ud, size_t done, size_t total), void *ud)
{
	const size_t piece = 16u << 20;
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 5);
	int fd, e = 0;

	if (!tmp)
		return -ENOMEM;
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		e = -errno;
	for (size_t at = 0; e == 0 && at < len; at += piece) {
		size_t n = len - at < piece ? len - at : piece;

		e = colo_write_all(fd, (const uint8_t *)data + at, n);
		if (e == 0 && progress)
			progress(ud, at + n, len);
	}
	if (e == 0 && fdatasync(fd) != 0)
		e = -errno;
	if (fd >= 0 && close(fd) != 0 && e == 0)
		e = -errno;
	if (e == 0 && rename(tmp, path) != 0)
		e = -errno;
	if (e)
		unlink(tmp);
	free(tmp);
	return e;
}
