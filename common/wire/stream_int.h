/* stream_int.h: what the stream modules of common/ share, not public API. */
#ifndef COLO_STREAM_INT_H
#define COLO_STREAM_INT_H

#include "stream.h"

/* QEMU's vmstate "configuration" (savevm.c), version 1, loaded as version 0. */
extern const struct colo_vmstate_desc colo__vmstate_configuration;

#endif
