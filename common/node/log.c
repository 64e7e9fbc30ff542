/* log.c: see log.h. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* Under PIPE_BUF (4096), so a line on a pipe is one atomic write. */
#define LOG_LINE_MAX 1024

atomic_int colo__log_level = COLO_LOG_INFO;
static atomic_int log_fd = 2;
static atomic_int log_role = COLO_ROLE_PRIMARY;
static atomic_uint_least64_t log_gen;
/* Set by colo_log_init() before any thread logs; read-only afterwards. */
static char log_prog[64] = "colo";
static char log_node[64] = "-";

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

const char *colo_log_level_name(enum colo_log_level level)
{
	return (unsigned)level < 4 ? level_names[level] : "?";
}

void colo_log_init(const char *prog, const char *node, enum colo_role role,
		   enum colo_log_level level)
{
	snprintf(log_prog, sizeof(log_prog), "%s", prog ? prog : "colo");
	snprintf(log_node, sizeof(log_node), "%s", node && *node ? node : "-");
	colo_log_set_role(role);
	colo_log_set_level(level);
	colo_log_set_generation(0);
}

void colo_log_set_role(enum colo_role role)
{
	atomic_store(&log_role, (int)role);
}

void colo_log_set_generation(uint64_t gen)
{
	atomic_store(&log_gen, gen);
}

void colo_log_set_level(enum colo_log_level level)
{
	atomic_store(&colo__log_level, (int)level);
}

void colo_log_set_fd(int fd)
{
	atomic_store(&log_fd, fd);
}

void colo_log(enum colo_log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	int saved = errno;
	size_t n, head;
	va_list ap;
	char *nl;
	int fd;

	if (!colo_log_enabled(level))
		return;
	n = colo_iso8601(colo_wall_ns(), line, sizeof(line));
	n += (size_t)snprintf(line + n, sizeof(line) - n,
			      " %s[%ld] %s node=%s gen=%" PRIu64 " role=%s: ",
			      log_prog, (long)getpid(),
			      colo_log_level_name(level), log_node,
			      (uint64_t)atomic_load(&log_gen),
			      colo_role_name((enum colo_role)atomic_load(&log_role)));
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	head = n;
	va_start(ap, fmt);
	/* Leave a byte for the newline. */
	vsnprintf(line + head, sizeof(line) - 1 - head, fmt, ap);
	va_end(ap);
	n = head + strlen(line + head);
	nl = memchr(line + head, '\n', n - head);
	if (nl)
		n = (size_t)(nl - line);
	line[n++] = '\n';

	fd = atomic_load(&log_fd);
	for (size_t off = 0; off < n;) {
		ssize_t w = write(fd, line + off, n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;          /* nowhere to report a failing log */
		off += (size_t)w;
	}
	errno = saved;
}
