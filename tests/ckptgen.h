/*
 * ckptgen.h: a checkpoint's two streams as the primary frames them, built
 * from a struct colo_savevm for tests that feed recordings or loaders
 * without a running primary (test_recsize, test_vmreplay).
 *
 * colo_test_ckpt_streams(sv, seq, ram, dev): ram gets the RAM stream (END
 * section with no page records, EOS, footer, EOF) and dev the device stream
 * (every needed device of sv, then colo/checkpoint with generation 1, seq,
 * time 1000 + seq and the XXH3 of both streams, then EOF).  Both buffers
 * are reset first and owned by the caller.  Failures end the Check test.
 *
 * colo_test_ckpt_seal(ram, dev, generation, seq, pages): append to dev the
 * colo/checkpoint section (time 1000 + seq, the XXH3 of ram then dev as
 * they are) and EOF, as the primary closes a checkpoint's devices.
 */
#ifndef COLO_TESTS_CKPTGEN_H
#define COLO_TESTS_CKPTGEN_H

#include <stdint.h>

#include "buf.h"
#include "savevm.h"

void colo_test_ckpt_seal(const struct colo_buf *ram, struct colo_buf *dev,
			 uint64_t generation, uint64_t seq, uint64_t pages);
void colo_test_ckpt_streams(struct colo_savevm *sv, uint64_t seq, struct colo_buf *ram,
			    struct colo_buf *dev);

#endif
