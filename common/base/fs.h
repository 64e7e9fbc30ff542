/*
 * fs.h: files and paths, the few things several parts of colo do with them:
 * join a directory and a name, create a directory with its parents
 * (mkdir -p), and move whole buffers to and from files through short
 * transfers and EINTR.
 *
 * colo_path_join() and colo_read_file() return malloc'd memory that the
 * caller frees.  No state: every function is thread-safe.
 */
#ifndef COLO_FS_H
#define COLO_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* "dir/name", malloc'd; NULL when out of memory. */
char *colo_path_join(const char *dir, const char *name);

/*
 * mkdir -p: create path and the directories above it that are missing,
 * each with `mode`; what exists already is fine (whatever it is: the
 * caller checks what it needs).  Returns 0 or a negative errno; err, if
 * not NULL, says "cannot create directory D: why" of the one that failed.
 */
int colo_mkdir_p(const char *path, mode_t mode, struct colo_err *err);

/* The same for the directory that holds path ("a/b" for "a/b/c"); no-op
 * for a name with no directory or one right under "/". */
int colo_mkdir_parent(const char *path, mode_t mode, struct colo_err *err);

/* Write all len bytes; 0 or a negative errno. */
int colo_write_all(int fd, const void *data, size_t len);

/* pread until len bytes or the end of the file: how many were read. */
size_t colo_pread_all(int fd, void *buf, size_t len, uint64_t off);

/* A whole file, malloc'd (*len may be 0); 0 or a negative errno. */
int colo_read_file(const char *path, uint8_t **data, size_t *len);

/*
 * path replaced by data, whole or not at all: written to path.tmp (mode),
 * synced, renamed over path; path.tmp is removed on failure.  progress
 * (may be NULL) is told the bytes written after each 16 MiB.  0 or a
 * negative errno.
 */
int colo_replace_file(const char *path, const void *data, size_t len, mode_t mode,
		      void (*progress)(void *ud, size_t done, size_t total), void *ud);

#endif
