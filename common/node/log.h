/*
 * log.h: one line per event, to stderr (DESIGN.md §6; systemd captures it).
 *
 *   2026-11-22T03:40:01.123Z colo-primary[1234] INFO node=a gen=3 role=primary: message
 *
 * UTC time with milliseconds, the program and its pid, the level, then the
 * node, its generation and its role as the daemon last set them.  A message
 * ends at its first newline (the rest is dropped) and at about 1 KiB, so a
 * line is always one line.
 *
 * Thread-safe: each line is formatted into a buffer on the caller's stack
 * and written with one write(2), so lines from threads never interleave
 * (on a pipe a write of less than PIPE_BUF bytes is atomic).  The role,
 * generation, level and fd may be changed from any thread at any time;
 * colo_log_init() is called once, before other threads log.  Lines below
 * the level cost one atomic load: the macros do not evaluate their
 * arguments then.  errno is preserved.
 */
#ifndef COLO_LOG_H
#define COLO_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "role.h"

/* Also sets the generation to 0 until colo_log_set_generation(). */
void colo_log_init(const char *prog, const char *node, enum colo_role role,
		   enum colo_log_level level);
void colo_log_set_role(enum colo_role role);
void colo_log_set_generation(uint64_t gen);
void colo_log_set_level(enum colo_log_level level);
/* Where lines go (default 2, stderr); tests point it at a pipe. */
void colo_log_set_fd(int fd);

void colo_log(enum colo_log_level level, const char *fmt, ...) COLO_PRINTF(2, 3);

/* "ERROR", "WARN", "INFO", "DEBUG". */
const char *colo_log_level_name(enum colo_log_level level);

extern atomic_int colo__log_level;

static inline bool colo_log_enabled(enum colo_log_level level)
{
	return (int)level <= atomic_load_explicit(&colo__log_level, memory_order_relaxed);
}

#define colo_log_at_(level, ...)                                       \
	do {                                                           \
		if (colo_log_enabled(level))                           \
			colo_log(level, __VA_ARGS__);                  \
	} while (0)

#define colo_log_error(...) colo_log_at_(COLO_LOG_ERROR, __VA_ARGS__)
#define colo_log_warn(...)  colo_log_at_(COLO_LOG_WARN, __VA_ARGS__)
#define colo_log_info(...)  colo_log_at_(COLO_LOG_INFO, __VA_ARGS__)
#define colo_log_debug(...) colo_log_at_(COLO_LOG_DEBUG, __VA_ARGS__)

#endif
