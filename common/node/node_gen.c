/*
 * node_gen.c: the node's generation in state-dir (DESIGN.md §1): read at
 * start (1 for a new node), written when a promotion adopts a newer one.
 * The file is replaced whole (write, fsync, rename, fsync the directory),
 * so a crash leaves the old value or the new one, never a torn one.  Loop
 * thread only.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fs.h"
#include "log.h"
#include "node.h"
#include "node_int.h"

static int write_generation(const char *file, uint64_t gen, struct colo_err *err)
{
	char tmp[4200], text[32];
	int fd, len;

	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	len = snprintf(text, sizeof(text), "%" PRIu64 "\n", gen);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return colo_err_set(err, errno, "cannot write %s: %s", tmp, strerror(errno));
	/* Write, sync, rename: a crash leaves the old or the new value. */
	if (write(fd, text, (size_t)len) != len || fsync(fd) != 0) {
		int e = errno;

		close(fd);
		unlink(tmp);
		return colo_err_set(err, e, "cannot write %s: %s", tmp, strerror(e));
	}
	close(fd);
	if (rename(tmp, file) != 0)
		return colo_err_set(err, errno, "cannot rename %s to %s: %s", tmp, file,
				    strerror(errno));
	/* ... and the rename itself survives a crash once the directory is synced. */
	{
		char dir[4200], *slash;

		snprintf(dir, sizeof(dir), "%s", file);
		slash = strrchr(dir, '/');
		if (slash == dir)
			slash[1] = '\0';
		else if (slash)
			*slash = '\0';
		else
			snprintf(dir, sizeof(dir), ".");
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) != 0) {
			int e = errno;

			if (fd >= 0)
				close(fd);
			return colo_err_set(err, e, "cannot sync directory %s: %s", dir,
					    strerror(e));
		}
		close(fd);
	}
	return 0;
}

int colo__node_read_generation(struct colo_node *n, struct colo_err *err)
{
	char text[64];
	FILE *f;
	int r;

	r = colo_mkdir_p(n->cfg.state_dir, 0700, NULL);
	if (r)
		return colo_err_set(err, -r, "state-dir %s: %s", n->cfg.state_dir,
				    strerror(-r));
	snprintf(n->generation_file, sizeof(n->generation_file), "%s/%s.generation",
		 n->cfg.state_dir, n->cfg.name);
	f = fopen(n->generation_file, "r");
	if (!f) {
		if (errno != ENOENT)
			return colo_err_set(err, errno, "cannot read %s: %s",
					    n->generation_file, strerror(errno));
		n->generation = 1;
		return write_generation(n->generation_file, 1, err);
	}
	if (!fgets(text, sizeof(text), f) ||
	    sscanf(text, "%" SCNu64, &n->generation) != 1 || n->generation == 0) {
		fclose(f);
		return colo_err_set(err, EINVAL, "%s does not hold a generation number",
				    n->generation_file);
	}
	fclose(f);
	return 0;
}

int colo_node_set_generation(struct colo_node *n, uint64_t gen, struct colo_err *err)
{
	int r = write_generation(n->generation_file, gen, err);

	if (r)
		return r;
	colo_log_info("generation %" PRIu64 " -> %" PRIu64, n->generation, gen);
	n->generation = gen;
	colo_log_set_generation(gen);
	return 0;
}
