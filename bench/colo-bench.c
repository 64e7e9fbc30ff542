/*
 * colo-bench: what a checkpoint costs, measured against baselines taken in
 * the same run (the machines are shared and noisy: only ratios travel).
 *
 *   codecs    page codecs x workloads: encode and decode GB/s of dirty
 *             pages, compression ratio, each as a ratio to memcpy of the
 *             same pages, to XBZRLE and to plain LZ4 of (page XOR base)
 *   tracking  dirty tracking backends: cost of a first write to a page,
 *             harvest time for 1k/10k/100k dirty pages in a 1 GiB block
 *   pause     the guest pause of a checkpoint: harvest + copy of 10k dirty
 *             pages into the staging buffer, as a ratio to memcpy of them
 *   seal      throughput of the sealed replication connection over loopback
 *             as a ratio to the plain one (seal.c)
 *
 * Usage: colo-bench [--quick] [--json] [--only codecs|tracking|pause|guest|seal]
 * Every figure is the best of several repetitions (noise only slows).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "bench.h"
#include "clock.h"
#include "splitmix.h"
#include "pagecodec.h"

#define PAGE COLO_PAGE_SIZE

struct bench_opts bench_opts = { .quick = false, .json = false };

double bench_now(void)
{
	return (double)colo_now_ns() * 1e-9;
}

void *bench_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	if (p == MAP_FAILED) {
		fprintf(stderr, "colo-bench: cannot map %zu bytes: %s\n", len, strerror(errno));
		exit(1);
	}
	return p;
}

uint64_t bench_rand(uint64_t *s)
{
	return colo_splitmix64(s);
}

static void fill_random(uint64_t *s, uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 8 <= n; i += 8) {
		uint64_t v = bench_rand(s);

		memcpy(p + i, &v, 8);
	}
}

static void fill_text(uint64_t *s, uint8_t *p, size_t n)
{
	static const char *words[] = {
		"the ", "guest ", "keeps ", "its ", "state ", "in ", "pages ", "and ",
		"devices, ", "so ", "a ", "checkpoint ", "copies ", "what ", "changed.\n",
		"SET ", "key:", "0000", "user ", "value ",
	};

	for (size_t i = 0; i < n;) {
		const char *w = words[bench_rand(s) % 20];

		for (size_t k = 0; w[k] && i < n; k++)
			p[i++] = (uint8_t)w[k];
	}
}

/* ---- workloads: a base and the page after the guest wrote to it ---- */

enum wl { WL_SPARSE8, WL_SPARSE64, WL_SPARSE512, WL_SCATTERED, WL_REWRITE,
	  WL_TEXT, WL_MOSTLY_ZERO, WL_N };

static const char *const wl_names[WL_N] = {
	"sparse 8 B/page", "sparse 64 B/page", "sparse 512 B/page",
	"scattered 8x8 B/page", "whole-page random", "text-like rewrite",
	"mostly-zero pages",
};

static void make_workload(enum wl w, uint64_t seed, uint8_t *base, uint8_t *page,
			  size_t npages)
{
	uint64_t s = seed;

	for (size_t i = 0; i < npages; i++) {
		uint8_t *b = base + i * PAGE, *p = page + i * PAGE;

		/* The base: what the page held at the last checkpoint. */
		if (w == WL_TEXT || i % 2)
			fill_text(&s, b, PAGE);
		else if (w == WL_MOSTLY_ZERO)
			memset(b, 0, PAGE);
		else
			fill_random(&s, b, PAGE);
		memcpy(p, b, PAGE);
		switch (w) {
		case WL_SPARSE8:
		case WL_SPARSE64:
		case WL_SPARSE512: {
			size_t n = w == WL_SPARSE8 ? 8 : w == WL_SPARSE64 ? 64 : 512;

			fill_random(&s, p + bench_rand(&s) % ((PAGE - n) / 8) * 8, n);
			break;
		}
		case WL_SCATTERED:
			for (int k = 0; k < 8; k++) {
				uint64_t v = bench_rand(&s);

				memcpy(p + bench_rand(&s) % (PAGE - 8), &v, 8);
			}
			break;
		case WL_REWRITE:
			fill_random(&s, p, PAGE);
			break;
		case WL_TEXT:
			fill_text(&s, p, PAGE);
			break;
		case WL_MOSTLY_ZERO:
			memset(p, 0, PAGE);
			for (int k = 0; k < 6; k++) {
				uint64_t v = bench_rand(&s);

				memcpy(p + bench_rand(&s) % (PAGE - 8), &v, 4);
			}
			break;
		case WL_N:
			break;
		}
	}
}

/* ---- codecs under test ---- */

enum codec { C_DELTA, C_DELTA_LZ4, C_XBZRLE, C_LZ4XOR, C_LZ4, C_CHOICE, C_N };

static const char *const codec_names[C_N] = {
	"delta", "delta-lz4", "xbzrle", "lz4(xor)", "lz4", "colo choice",
};

/* The baseline DESIGN.md names: plain LZ4 of (page XOR base). */
static size_t lz4xor_encode(const uint8_t *page, const uint8_t *base, uint8_t *out,
			    size_t cap)
{
	uint8_t x[PAGE];
	int c;

	for (size_t i = 0; i < PAGE; i += 8) {
		uint64_t a, b;

		memcpy(&a, page + i, 8);
		memcpy(&b, base + i, 8);
		a ^= b;
		memcpy(x + i, &a, 8);
	}
	c = LZ4_compress_default((const char *)x, (char *)out, PAGE, (int)cap);
	return c > 0 ? (size_t)c : 0;
}

/* page = base ^ x (out of place, so that repeated passes give the same). */
static int lz4xor_decode(const uint8_t *in, size_t len, const uint8_t *base,
			 uint8_t *page)
{
	uint8_t x[PAGE];

	if (LZ4_decompress_safe((const char *)in, (char *)x, (int)len, PAGE) != PAGE)
		return -1;
	for (size_t i = 0; i < PAGE; i += 8) {
		uint64_t a, b;

		memcpy(&a, base + i, 8);
		memcpy(&b, x + i, 8);
		a ^= b;
		memcpy(page + i, &a, 8);
	}
	return 0;
}

#define ALL_KINDS (COLO_PAGE_KIND_BIT(COLO_PAGE_ZERO) | COLO_PAGE_KIND_BIT(COLO_PAGE_RAW) | \
		   COLO_PAGE_KIND_BIT(COLO_PAGE_LZ4) | COLO_PAGE_KIND_BIT(COLO_PAGE_DELTA) | \
		   COLO_PAGE_KIND_BIT(COLO_PAGE_DELTA_LZ4))

/*
 * Encode every page; *lens gets each encoded length (0: sent raw, 4096
 * counted).  For the choice, kinds[] records what was chosen.
 */
static size_t encode_all(enum codec c, const uint8_t *page, uint8_t *base, size_t n,
			 uint8_t *enc, uint32_t *lens, uint8_t *kinds)
{
	size_t total = 0;

	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = page + i * PAGE;
		uint8_t *b = base + i * PAGE, *o = enc + i * COLO_PAGE_ENC_MAX;
		size_t len = 0;

		switch (c) {
		case C_DELTA:
			len = colo_delta_encode(p, b, o, COLO_PAGE_ENC_MAX);
			break;
		case C_DELTA_LZ4:
			len = colo_delta_lz4_encode(p, b, o, COLO_PAGE_ENC_MAX);
			break;
		case C_XBZRLE:
			len = colo_xbzrle_encode(p, b, o, PAGE);
			break;
		case C_LZ4XOR:
			len = lz4xor_encode(p, b, o, COLO_PAGE_ENC_MAX);
			break;
		case C_LZ4:
			len = colo_lz4_encode(p, o, COLO_PAGE_ENC_MAX);
			break;
		case C_CHOICE: {
			struct colo_page_enc e;

			if (colo_page_encode(p, b, ALL_KINDS, 0, o, &e)) {
				e.kind = COLO_PAGE_KINDS;   /* unchanged */
				e.len = 0;
			}
			kinds[i] = (uint8_t)e.kind;
			len = e.kind == COLO_PAGE_RAW ? 0 : e.len;
			if (e.kind == COLO_PAGE_ZERO)
				len = 1;
			break;
		}
		case C_N:
			break;
		}
		lens[i] = (uint32_t)len;
		total += len ? len : PAGE;
	}
	return total;
}

static int decode_all(enum codec c, const uint8_t *base, uint8_t *dst, size_t n,
		      const uint8_t *enc, const uint32_t *lens, const uint8_t *kinds,
		      const uint8_t *page)
{
	struct colo_err err;
	int bad = 0;

	colo_err_clear(&err);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *o = enc + i * COLO_PAGE_ENC_MAX;
		uint8_t *d = dst + i * PAGE;
		size_t len = lens[i];

		/* dst holds the base already (the receiver's committed page). */
		if (len == 0 && !(c == C_CHOICE && kinds[i] == COLO_PAGE_KINDS)) {
			memcpy(d, page + i * PAGE, PAGE);   /* sent as a raw page */
			continue;
		}
		switch (c) {
		case C_DELTA:
			bad |= colo_delta_decode(o, len, d, &err);
			break;
		case C_DELTA_LZ4:
			bad |= colo_delta_lz4_decode(o, len, d, &err);
			break;
		case C_XBZRLE:
			bad |= colo_xbzrle_decode(o, len, d, &err);
			break;
		case C_LZ4XOR:
			bad |= lz4xor_decode(o, len, base + i * PAGE, d);
			break;
		case C_LZ4:
			bad |= colo_lz4_decode(o, len, d, &err);
			break;
		case C_CHOICE: {
			struct colo_ram_page p = { .kind = kinds[i], .data = o, .len = len };

			if (kinds[i] == COLO_PAGE_KINDS)
				break;
			if (kinds[i] == COLO_PAGE_ZERO)
				memset(d, 0, PAGE);
			else
				bad |= colo_ram_page_apply(&p, d - 0, colo_page_codecs, &err);
			break;
		}
		case C_N:
			break;
		}
	}
	return bad;
}

struct cell {
	double enc_gbs, dec_gbs, ratio;
};

/* Best throughput of `iters` passes over n pages, in GB/s of pages. */
#define TIMED(best, n, iters, body) do {                                    \
	double t_ = bench_now();                                              \
	for (int it_ = 0; it_ < (iters); it_++) { body; }                     \
	t_ = bench_now() - t_;                                                \
	if ((double)(n) * PAGE * (iters) / t_ / 1e9 > (best))                 \
		(best) = (double)(n) * PAGE * (iters) / t_ / 1e9;             \
} while (0)

/*
 * One table: every codec on every workload, n pages per pass.  Small n
 * keeps the pages in cache (the codec's own speed); large n streams them
 * from memory (what a big checkpoint sees).
 */
static json_t *codec_table(size_t n, int iters, int reps, const char *label)
{
	uint8_t *page = bench_map(n * PAGE), *base = bench_map(n * PAGE);
	uint8_t *dst = bench_map(n * PAGE), *enc = bench_map(n * COLO_PAGE_ENC_MAX);
	uint32_t *lens = calloc(n, sizeof(*lens));
	uint8_t *kinds = calloc(n, 1);
	json_t *jw = json_array();

	if (!bench_opts.json)
		printf("\n== codecs, %s: %zu dirty pages x %d passes, best of %d, one core, "
		       "delta scan: %s\n", label, n, iters, reps, colo_page_codec_simd_name());
	for (int w = 0; w < WL_N; w++) {
		struct cell cells[C_N];
		double mcpy = 0;
		json_t *jc = json_array(), *o;

		make_workload((enum wl)w, 1234 + (uint64_t)w, base, page, n);
		for (int r = 0; r < reps; r++)
			TIMED(mcpy, n, iters, memcpy(dst, page, n * PAGE));
		for (int c = 0; c < C_N; c++) {
			struct cell *ce = &cells[c];
			size_t total = 0;
			int bad = 0;

			ce->enc_gbs = ce->dec_gbs = 0;
			for (int r = 0; r < reps; r++)
				TIMED(ce->enc_gbs, n, iters,
				      total = encode_all((enum codec)c, page, base, n, enc,
							 lens, kinds));
			ce->ratio = (double)(n * PAGE) / (double)total;
			/* Decoding starts from the base, as the receiver holds it;
			 * a pass writes the same bytes again, so passes may repeat. */
			memcpy(dst, base, n * PAGE);
			for (int r = 0; r < reps; r++)
				TIMED(ce->dec_gbs, n, iters,
				      bad |= decode_all((enum codec)c, base, dst, n, enc, lens,
							kinds, page));
			if (bad || memcmp(dst, page, n * PAGE) != 0) {
				fprintf(stderr, "colo-bench: %s on %s does not round-trip\n",
					codec_names[c], wl_names[w]);
				exit(1);
			}
		}
		if (!bench_opts.json) {
			printf("\n%s  (memcpy %.2f GB/s)\n", wl_names[w], mcpy);
			printf("  %-12s %9s %9s %9s %9s | %8s %9s | %8s %8s\n", "codec",
			       "enc GB/s", "dec GB/s", "ratio", "enc/mcpy", "enc/xbz",
			       "ratio/xbz", "enc/lz4x", "rat/lz4x");
		}
		for (int c = 0; c < C_N; c++) {
			const struct cell *ce = &cells[c], *x = &cells[C_XBZRLE];
			const struct cell *l = &cells[C_LZ4XOR];

			o = json_object();
			json_object_set_new(o, "codec", json_string(codec_names[c]));
			json_object_set_new(o, "encode_gbs", json_real(ce->enc_gbs));
			json_object_set_new(o, "decode_gbs", json_real(ce->dec_gbs));
			json_object_set_new(o, "ratio", json_real(ce->ratio));
			json_object_set_new(o, "encode_vs_memcpy", json_real(ce->enc_gbs / mcpy));
			json_object_set_new(o, "decode_vs_memcpy", json_real(ce->dec_gbs / mcpy));
			json_object_set_new(o, "encode_vs_xbzrle", json_real(ce->enc_gbs / x->enc_gbs));
			json_object_set_new(o, "ratio_vs_xbzrle", json_real(ce->ratio / x->ratio));
			json_object_set_new(o, "encode_vs_lz4xor", json_real(ce->enc_gbs / l->enc_gbs));
			json_object_set_new(o, "ratio_vs_lz4xor", json_real(ce->ratio / l->ratio));
			json_array_append_new(jc, o);
			if (!bench_opts.json)
				printf("  %-12s %9.2f %9.2f %7.1f:1 %9.2f | %7.2fx %8.2fx | %7.2fx %7.2fx\n",
				       codec_names[c], ce->enc_gbs, ce->dec_gbs, ce->ratio,
				       ce->enc_gbs / mcpy, ce->enc_gbs / x->enc_gbs,
				       ce->ratio / x->ratio, ce->enc_gbs / l->enc_gbs,
				       ce->ratio / l->ratio);
		}
		o = json_object();
		json_object_set_new(o, "workload", json_string(wl_names[w]));
		json_object_set_new(o, "memcpy_gbs", json_real(mcpy));
		json_object_set_new(o, "codecs", jc);
		json_array_append_new(jw, o);
	}
	munmap(page, n * PAGE);
	munmap(base, n * PAGE);
	munmap(dst, n * PAGE);
	munmap(enc, n * COLO_PAGE_ENC_MAX);
	free(lens);
	free(kinds);
	return jw;
}

static void bench_codecs(json_t *out)
{
	json_t *o = json_object();
	int reps = bench_opts.quick ? 3 : 5;

	json_object_set_new(o, "delta_scan", json_string(colo_page_codec_simd_name()));
	/* 64 pages (256 KiB + base) stay in a core's cache. */
	json_object_set_new(o, "in_cache", codec_table(64, bench_opts.quick ? 40 : 200,
						       reps, "in cache"));
	/* 8192 pages (32 MiB + base) do not. */
	json_object_set_new(o, "from_memory", codec_table(bench_opts.quick ? 4096 : 8192,
							  1, reps, "from memory"));
	json_object_set_new(out, "codecs", o);
}

static void usage(FILE *f)
{
	fputs("Usage: colo-bench [--quick] [--json] [--only codecs|tracking|pause|guest|seal]\n"
	      "  --quick     fewer pages and repetitions (under 30 s)\n"
	      "  --json      print the figures as one JSON document\n"
	      "  --only X    run one part: codecs, tracking, pause, guest (memtouch's\n"
	      "              pacing and stop) or seal (the sealed replication\n"
	      "              connection against the plain one)\n"
	      "Figures are ratios to baselines measured in the same run.\n", f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "only", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *only = NULL;
	json_t *out = json_object();
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			bench_opts.quick = true;
			break;
		case 'j':
			bench_opts.json = true;
			break;
		case 'o':
			only = optarg;
			if (strcmp(only, "codecs") && strcmp(only, "tracking") &&
			    strcmp(only, "pause") && strcmp(only, "guest") &&
			    strcmp(only, "seal")) {
				fprintf(stderr, "colo-bench: --only takes codecs, tracking, "
					"pause, guest or seal, not '%s'\n", only);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	json_object_set_new(out, "quick", json_boolean(bench_opts.quick));
	if (!only || strcmp(only, "codecs") == 0)
		bench_codecs(out);
	if (!only || strcmp(only, "tracking") == 0)
		bench_tracking(out);
	if (!only || strcmp(only, "pause") == 0)
		bench_pause(out);
	if (!only || strcmp(only, "guest") == 0)
		bench_guest(out);
	if (!only || strcmp(only, "seal") == 0)
		bench_seal(out);
	if (bench_opts.json) {
		json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(4));
		fputc('\n', stdout);
	}
	json_decref(out);
	return 0;
}
