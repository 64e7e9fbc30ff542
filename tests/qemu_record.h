/*
 * qemu_record.h: QEMU's COLO stream (DESIGN.md §9) recorded from a real
 * QEMU and indexed, for the relay's tests and fuzz seeds
 * (tests/qemu_harness.h runs the relay on such bytes).
 *
 * Recording (qh_record): QEMU started with the VM's arguments, x-colo on,
 * migrating to a unix socket this process listens on; the recorder plays
 * the secondary (READY, then REPLY, RECEIVED, LOADED per checkpoint) and
 * keeps every byte QEMU sent.  The end of the initial migration is known
 * from QEMU (query-migrate says "colo" once it has flushed it), the end of
 * a checkpoint from its own framing (qh_index).  At the last checkpoint,
 * while QEMU keeps the VM stopped waiting for RECEIVED, the recorder takes
 * pmemsave dumps of the VM's low RAM and of the BIOS below 4 GiB.
 *
 * Indexing (qh_index): where the items of a recorded stream are (the
 * initial migration's configuration, MEM_SIZE, a page record, devices,
 * vmdesc; each checkpoint's messages, RAM section and device bytes), read
 * with colo's stream and RAM readers and the stream's own vmdesc, never
 * with the relay: tests corrupt bytes at these places, and the harness
 * paces its writes by them.
 *
 * Memory: a struct qh_stream owns its bytes and tables until
 * qh_stream_free(); a struct qh_recording owns its stream and dumps until
 * qh_recording_free().  One thread.
 */
#ifndef COLO_TEST_QEMU_RECORD_H
#define COLO_TEST_QEMU_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "ramfmt.h"
#include "stream.h"

/* ---- recorded streams ---- */

#define QH_CKPTS_MAX 64

/* Offsets into the stream, SIZE_MAX where the item is absent. */
struct qh_ckpt {
	size_t start;                  /* be32 CHECKPOINT_REQUEST */
	size_t send;                   /* be32 VMSTATE_SEND */
	size_t ram;                    /* the RAM END section */
	size_t eof;                    /* the EOF after it */
	size_t size;                   /* be32 VMSTATE_SIZE, be64 n */
	size_t dev;                    /* the n device bytes */
	size_t end;                    /* after them */
	size_t first_page;             /* the first page record */
	size_t npages;
};

struct qh_stream {
	uint8_t *data;
	size_t len;
	size_t initial_len;            /* header .. VMDESCRIPTION */
	char machine[COLO_CONFIG_NAME_MAX + 1];
	size_t config;                 /* the CONFIGURATION section */
	size_t command;                /* COMMAND ENABLE_COLO */
	size_t mem_size;               /* the MEM_SIZE record */
	size_t block_len;              /* be64 length of the first block in it */
	size_t first_page;             /* the first page record */
	size_t initial_pages;
	size_t devices;                /* the first device section */
	size_t vmdesc;                 /* the VMDESCRIPTION record */
	size_t ndevices;               /* device sections in the initial migration */
	struct colo_ram_block_info *blocks;
	size_t nblocks;
	struct qh_ckpt ckpt[QH_CKPTS_MAX + 1];
	size_t nckpts;                 /* whole checkpoints */
	/* Bytes follow that are not a whole checkpoint (cut short, damaged, or
	 * past QH_CKPTS_MAX): ckpt[nckpts] has what was found of it. */
	bool partial;
};

/*
 * Index `data` (copied): the initial migration must be whole; checkpoints
 * follow until the bytes end or stop being checkpoints (partial).
 */
int qh_index(const uint8_t *data, size_t len, struct qh_stream *s, struct colo_err *err);
void qh_stream_free(struct qh_stream *s);

/* ---- recording from QEMU ---- */

struct qh_block_used {
	char name[COLO_IDSTR_MAX + 1];
	uint64_t used;
};

struct qh_recording {
	struct qh_stream s;
	struct qh_block_used *ramblocks;   /* `info ramblock` before migrating */
	size_t nramblocks;
	/* With dumps: pmemsave at the last checkpoint, the VM stopped. */
	uint8_t *low;                      /* guest-physical [0, low_len) */
	size_t low_len;
	uint8_t *bios;                     /* [4 GiB - bios_len, 4 GiB) */
	size_t bios_len;
	char status[32];                   /* query-status then */
};

/*
 * Start `qemu` with vm_args (NULL-terminated; -qmp is added) in `dir`,
 * record its initial migration and `ckpts` checkpoints (1 to QH_CKPTS_MAX)
 * x-checkpoint-delay `delay_ms` apart, then stop it by pid.  dumps: take
 * the pmemsave dumps (a pc machine).  QEMU's stderr is left in
 * dir/qemu.log; err says where it failed.
 */
int qh_record(const char *qemu, const char *dir, const char *const *vm_args,
	      unsigned ckpts, unsigned delay_ms, bool dumps, struct qh_recording *rec,
	      struct colo_err *err);
void qh_recording_free(struct qh_recording *rec);

#endif
