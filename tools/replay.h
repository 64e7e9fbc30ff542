/*
 * replay.h: `colo-replay` on recordings (DESIGN.md §7, docs/replay.md):
 * list, show, diff, extract, export and verify, and serve for a VM.
 *
 * Each command reads a recording opened with colo_recording_open() and
 * builds one JSON document, printed as is with --json or as text by its
 * printer, so the two outputs cannot say different things.  The caller
 * owns the document.  On error there is no document (verify: see below)
 * and err holds one line naming what and where, e.g. "checkpoint 7
 * (seg-000001 at offset 8812): ...".
 *
 * A checkpoint is named by its sequence number (the newest index entry
 * with it) and reached from its segment's keyframe through at most
 * keyframe-every - 1 checkpoints.  Nothing here is thread-safe; a
 * recording may be read while a node appends to it (new entries are not
 * seen).
 */
#ifndef COLO_TOOLS_REPLAY_H
#define COLO_TOOLS_REPLAY_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "image.h"
#include "qmp.h"
#include "record.h"

struct json_t;

/* The state at checkpoint seq; img is initialised by the call. */
int colo_replay_state(const struct colo_recording *rec, uint64_t seq,
		      struct colo_image *img, const struct colo_rec_entry **entry,
		      struct colo_err *err);

/* One row per index entry: seq, generation, time, record, pages by kind. */
int colo_replay_list(const struct colo_recording *rec, struct json_t **doc,
		     struct colo_err *err);
void colo_replay_list_text(const struct json_t *doc, FILE *out);

/* Devices decoded through the vmdesc, RAM blocks with their pages changed
 * in seq and their XXH3-64. */
int colo_replay_show(const struct colo_recording *rec, uint64_t seq,
		     struct json_t **doc, struct colo_err *err);
void colo_replay_show_text(const struct json_t *doc, FILE *out);

/* Device fields that differ and RAM pages that differ, as merged ranges. */
int colo_replay_diff(const struct colo_recording *rec, uint64_t from, uint64_t to,
		     struct json_t **doc, struct colo_err *err);
void colo_replay_diff_text(const struct json_t *doc, FILE *out);

/*
 * Write outdir/ram/<block>.bin (sparse where pages are zero) and
 * outdir/devices.json; *doc is what devices.json holds.  outdir is
 * created if missing (its parent must exist); files in it are replaced.
 */
int colo_replay_extract(const struct colo_recording *rec, uint64_t seq,
			const char *outdir, struct json_t **doc, struct colo_err *err);
void colo_replay_extract_text(const struct json_t *doc, const char *outdir, FILE *out);

/*
 * Write the state at checkpoint seq to path as a plain migration stream
 * (replay_export.c): a VM's as QEMU's own, which QEMU's -incoming loads;
 * another guest's without colo's extensions.  *doc: {"seq", "generation",
 * "wall_ns", "time", "recording", "file", "kind" ("vm" or "guest"),
 * "config", "vmdesc" (whose), "bytes"}.  path is replaced whole.
 */
int colo_replay_export(const struct colo_recording *rec, uint64_t seq, const char *path,
		       struct json_t **doc, struct colo_err *err);
void colo_replay_export_text(const struct json_t *doc, FILE *out);

/*
 * Read every record (checksums), rebuild every checkpoint segment by
 * segment and decode every device.  Returns 0 when all is well; else the
 * first failure (or, when every checkpoint is fine, what opening the
 * recording skipped: a torn index tail, unreachable entries).  *doc is set
 * in both cases: what was verified, problems and segment files no entry
 * refers to (not an error).
 */
int colo_replay_verify(const struct colo_recording *rec, struct json_t **doc,
		       struct colo_err *err);
void colo_replay_verify_text(const struct json_t *doc, FILE *out);

/*
 * serve for a VM (the qemu guest): QEMU started paused (-S) on the state at
 * seq, with a gdbstub on 127.0.0.1:port (0: a free port) and a QMP socket
 * in a directory of its own, which colo_replay_vm_stop() removes.  QEMU
 * runs with the VM's arguments from meta.json and -snapshot.
 */
struct colo_replay_vm {
	struct colo_qmp qmp;
	long pid;                        /* QEMU's, also once it is reaped */
	uint16_t port;                   /* of the gdbstub */
	char machine[65];                /* QEMU's machine name */
	char status[32];                 /* QEMU's, once loaded: paused */
	char dir[80];
	char qmp_path[108];
	char log_path[PATH_MAX];
	bool have_dir, keep_log;
};
int colo_replay_serve_vm(const struct colo_recording *rec, uint64_t seq, uint16_t port,
			 struct colo_replay_vm *vm, struct colo_err *err);
void colo_replay_vm_stop(struct colo_replay_vm *vm);

#endif
