/* ckptgen.c: see ckptgen.h. */
#include "config.h"

#include <check.h>
#include <string.h>
#include <xxhash.h>

#include "ckptgen.h"
#include "colomsg.h"
#include "ramfmt.h"
#include "stream.h"
#include "vmstate.h"

void colo_test_ckpt_seal(const struct colo_buf *ram, struct colo_buf *dev,
			 uint64_t generation, uint64_t seq, uint64_t pages)
{
	struct colo_stream_writer w;
	struct colo_ckpt_info info;
	XXH3_state_t *h = XXH3_createState();
	struct colo_err err;

	ck_assert_ptr_nonnull(h);
	colo_err_clear(&err);
	XXH3_64bits_reset(h);
	XXH3_64bits_update(h, ram->data, ram->len);
	XXH3_64bits_update(h, dev->data, dev->len);
	memset(&info, 0, sizeof(info));
	info.generation = generation;
	info.seq = seq;
	info.time_ns = 1000 + seq;
	info.pages = pages;
	info.checksum = XXH3_64bits_digest(h);
	XXH3_freeState(h);
	colo_sw_init(&w, dev, false);
	ck_assert_int_eq(colo_sw_device(&w, 0, COLO_CKPT_IDSTR, 0, &colo_ckpt_info_vmstate,
					&info, &err), 0);
	colo_sw_eof(&w);
	colo_sw_free(&w);
}

void colo_test_ckpt_streams(struct colo_savevm *sv, uint64_t seq, struct colo_buf *ram,
			    struct colo_buf *dev)
{
	struct colo_stream_writer w;
	struct colo_err err;

	colo_err_clear(&err);
	colo_buf_reset(ram);
	colo_buf_reset(dev);
	colo_sw_init(&w, ram, false);
	ck_assert_int_eq(colo_sw_section_begin(&w, COLO_SEC_END, sv->ram_section_id, NULL, 0,
					       0, &err), 0);
	colo_buf_put_be64(ram, COLO_RAM_EOS);
	colo_sw_section_end(&w);
	colo_sw_eof(&w);
	colo_sw_free(&w);
	colo_sw_init(&w, dev, false);
	for (size_t i = 0; i < sv->ndevs; i++) {
		const struct colo_savevm_device *d = &sv->devs[i];

		if (colo_vmstate_needed(d->vmsd, d->opaque))
			ck_assert_msg(colo_sw_device(&w, d->section_id, d->idstr, d->instance_id,
						     d->vmsd, d->opaque, &err) == 0, "%s", err.msg);
	}
	colo_sw_free(&w);
	colo_test_ckpt_seal(ram, dev, 1, seq, 0);
}
