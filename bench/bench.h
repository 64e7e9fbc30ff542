/* bench.h: what the parts of colo-bench share. */
#ifndef COLO_BENCH_H
#define COLO_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_t;

struct bench_opts {
	bool quick;
	bool json;
};

extern struct bench_opts bench_opts;

double bench_now(void);                 /* seconds, monotonic */
void *bench_map(size_t len);            /* populated anonymous memory; exits on failure */
uint64_t bench_rand(uint64_t *state);

/* The parts; each adds its figures to out and prints a table unless --json. */
void bench_tracking(struct json_t *out);
void bench_pause(struct json_t *out);
void bench_guest(struct json_t *out);
void bench_seal(struct json_t *out);

#endif
