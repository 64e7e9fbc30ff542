/*
 * progress.h: a progress line for colo-replay's long commands (a rebuild
 * of a big guest's checkpoint, verify, the files extract and export
 * write), on stderr, only when stderr is a terminal and --quiet was not
 * given: "what: 45%  460.0 MiB of 1.0 GiB  310 MB/s  ETA 2 s", redrawn in
 * place at most ten times a second and erased at the end, so that what
 * the command prints after it stands alone.
 *
 * colo_progress_cb() is a struct colo_recording progress callback (ud:
 * the struct colo_progress).  A phase is what the callback names; with
 * `pinned` set, only that phase is shown (verify rebuilds states inside
 * its own pass).  One thread.
 */
#ifndef COLO_TOOLS_PROGRESS_H
#define COLO_TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct colo_progress {
	bool on;
	FILE *out;
	const char *pinned;
	char what[64];
	uint64_t t0_ns, last_ns;
	int drawn;                       /* characters on the line now */
};

/* on: draw at all (the caller decides: a terminal, not --quiet). */
void colo_progress_init(struct colo_progress *p, bool on, FILE *out);
void colo_progress_cb(void *ud, const char *what, uint64_t done, uint64_t total);
/* Erase the line, if one was drawn. */
void colo_progress_end(struct colo_progress *p);

#endif
