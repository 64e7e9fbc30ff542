/* colomsg.c: the colo/checkpoint section (see colomsg.h). */
#include "config.h"

#include "colomsg.h"
#include "vmstate.h"

const struct colo_vmstate_desc colo_ckpt_info_vmstate = {
	.name = COLO_CKPT_IDSTR,
	.version_id = 1,
	.minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT64(generation, struct colo_ckpt_info),
		COLO_VMSTATE_UINT64(seq, struct colo_ckpt_info),
		COLO_VMSTATE_UINT64(time_ns, struct colo_ckpt_info),
		COLO_VMSTATE_UINT64(pages, struct colo_ckpt_info),
		COLO_VMSTATE_UINT64(checksum, struct colo_ckpt_info),
		COLO_VMSTATE_END,
	},
};
