/*
 * colomsg.h: QEMU's COLO messages (DESIGN.md §4), each a be32 on the
 * replication connection; VMSTATE_SIZE is followed by a be64.
 */
#ifndef COLO_COLOMSG_H
#define COLO_COLOMSG_H

#include <stdint.h>

enum colo_msg {
	COLO_MSG_CHECKPOINT_READY = 0,     /* S->P, once, after the initial sync */
	COLO_MSG_CHECKPOINT_REQUEST = 1,   /* P->S */
	COLO_MSG_CHECKPOINT_REPLY = 2,     /* S->P */
	COLO_MSG_VMSTATE_SEND = 3,         /* P->S, then RAM END section + EOF */
	COLO_MSG_VMSTATE_SIZE = 4,         /* P->S, be64 n, then n device bytes */
	COLO_MSG_VMSTATE_RECEIVED = 5,     /* S->P: will commit before promoting */
	COLO_MSG_VMSTATE_LOADED = 6,       /* S->P: committed */
	COLO_MSG_COUNT
};

/*
 * Output-mode compare (docs/compare.md): frames of their own, numbered
 * outside QEMU's messages: be32 kind, be32 length, length bytes.
 */
enum colo_frame {
	COLO_FRAME_INPUT = 0x100,          /* P->S: be64 pos, be64 epoch, the unit */
	COLO_FRAME_OUTPUT = 0x101,         /* S->P: be64 pos, be64 length, be64 XXH3-64 */
};

#define COLO_FRAME_HEAD 8                  /* kind + length */
#define COLO_FRAME_INPUT_HEAD 16           /* pos + epoch, before the unit */
#define COLO_FRAME_OUTPUT_LEN 24

static inline const char *colo_msg_name(uint32_t m)
{
	if (m == COLO_FRAME_INPUT)
		return "INPUT";
	if (m == COLO_FRAME_OUTPUT)
		return "OUTPUT";
	static const char *const names[COLO_MSG_COUNT] = {
		"CHECKPOINT_READY", "CHECKPOINT_REQUEST", "CHECKPOINT_REPLY",
		"VMSTATE_SEND", "VMSTATE_SIZE", "VMSTATE_RECEIVED", "VMSTATE_LOADED",
	};

	return m < COLO_MSG_COUNT ? names[m] : "unknown";
}

/*
 * The last FULL section of every checkpoint's device stream, "colo/checkpoint"
 * instance 0: who sent it, which one it is, and the XXH3-64 of every byte of
 * the checkpoint before this section: the RAM END section through its EOF,
 * then the device stream up to here (DESIGN.md §4).
 */
#define COLO_CKPT_IDSTR "colo/checkpoint"

struct colo_ckpt_info {
	uint64_t generation;
	uint64_t seq;
	uint64_t time_ns;              /* CLOCK_REALTIME when the guest paused */
	uint64_t pages;                /* dirty pages staged */
	uint64_t checksum;
};

struct colo_vmstate_desc;
extern const struct colo_vmstate_desc colo_ckpt_info_vmstate;

/* Largest device stream a checkpoint may announce. */
#define COLO_DEVSTATE_MAX (64u << 20)
/* The Hello's version and size: common/node/hello.h. */

#endif
