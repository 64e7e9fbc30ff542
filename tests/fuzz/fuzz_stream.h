/*
 * fuzz_stream.h: the input layout of the stream fuzz target, shared by the
 * target (fuzz_stream.c) and the seed generator (gen_seeds.c) so that seeds
 * always start with bytes the target understands.
 *
 *   input := u8 mode, u8 piece_seed, stream bytes
 *
 * mode (taken modulo FUZZ_MODES, so every byte value means something and
 * mutations of it stay useful) picks what reads the stream; piece_seed
 * picks how the stream is cut into pieces for the push parser.  Piece seed
 * 0 feeds one byte at a time, the most demanding split.
 */
#ifndef COLO_FUZZ_STREAM_H
#define COLO_FUZZ_STREAM_H

#include <stddef.h>
#include <stdint.h>

enum fuzz_mode {
	FUZZ_MODE_DUMP,      /* colo_dump_buffer, whole versus in pieces */
	FUZZ_MODE_LOADER,    /* savevm loader into the demo guest */
	FUZZ_MODE_RAW,       /* headerless reader + RAM records, restarts */
	FUZZ_MODES
};

#define FUZZ_HEADER_LEN 2

/* RAM of the demo guest the loader mode loads into (DESIGN.md: 4 KiB pages). */
#define FUZZ_DEMO_RAM (64u * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
