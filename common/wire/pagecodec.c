/*
 * pagecodec.c: page codecs and the per-page choice (see pagecodec.h and
 * docs/delta.md for the DELTA format).
 *
 * Speed comes from scanning a page against its base a word at a time, 32
 * bytes per step over unchanged stretches, and from not trying what cannot
 * win: a sparse change is sent as DELTA straight away; LZ4 is tried only on
 * large changes.  Decoders validate everything before they write, so a
 * malformed encoding leaves the page as it was.
 */
#include "config.h"

#include <lz4.h>
#include <string.h>

#include "pagecodec.h"

#define PAGE COLO_PAGE_SIZE
#define WORDS (PAGE / 8)
#define BIT(k) COLO_PAGE_KIND_BIT(k)

/* A DELTA up to this size is sent without trying anything else. */
#define SPARSE_MAX 1024

static inline uint64_t ld64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

/* Index of the first / last differing byte in a word of XORed bytes. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FIRST_BYTE(x) ((unsigned)__builtin_ctzll(x) >> 3)
#define LAST_BYTE(x) (7u - ((unsigned)__builtin_clzll(x) >> 3))
#else
#define FIRST_BYTE(x) ((unsigned)__builtin_clzll(x) >> 3)
#define LAST_BYTE(x) (7u - ((unsigned)__builtin_ctzll(x) >> 3))
#endif

static inline uint64_t xw(const uint8_t *p, const uint8_t *b, unsigned w)
{
	return ld64(p + 8 * w) ^ ld64(b + 8 * w);
}

/*
 * skip_equal(p, b, i): the first word at or after i that differs (WORDS if
 * none).  Most of a sparsely written page is unchanged, so this is where
 * the time goes: the portable version compares 32 bytes per step, the x86
 * ones 32 (AVX2) or 64 (AVX-512BW) bytes per instruction.  All return the
 * same index, so the encoding does not depend on the CPU.
 */
static unsigned skip_equal_scalar(const uint8_t *p, const uint8_t *b, unsigned i)
{
	while (i + 4 <= WORDS && (xw(p, b, i) | xw(p, b, i + 1) |
				  xw(p, b, i + 2) | xw(p, b, i + 3)) == 0)
		i += 4;
	while (i < WORDS && xw(p, b, i) == 0)
		i++;
	return i;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

__attribute__((target("avx2")))
static unsigned skip_equal_avx2(const uint8_t *p, const uint8_t *b, unsigned i)
{
	while (i + 4 <= WORDS) {
		__m256i x = _mm256_loadu_si256((const __m256i *)(const void *)(p + 8 * i));
		__m256i y = _mm256_loadu_si256((const __m256i *)(const void *)(b + 8 * i));
		unsigned eq = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(x, y));

		if (eq != 0xffffffffu)
			return i + ((unsigned)__builtin_ctz(~eq) >> 3);
		i += 4;
	}
	while (i < WORDS && xw(p, b, i) == 0)
		i++;
	return i;
}

__attribute__((target("avx512f,avx512bw")))
static unsigned skip_equal_avx512(const uint8_t *p, const uint8_t *b, unsigned i)
{
	while (i + 8 <= WORDS) {
		__m512i x = _mm512_loadu_si512((const void *)(p + 8 * i));
		__m512i y = _mm512_loadu_si512((const void *)(b + 8 * i));
		uint64_t ne = _mm512_cmpneq_epi8_mask(x, y);

		if (ne)
			return i + ((unsigned)__builtin_ctzll(ne) >> 3);
		i += 8;
	}
	while (i < WORDS && xw(p, b, i) == 0)
		i++;
	return i;
}

static unsigned (*skip_equal)(const uint8_t *, const uint8_t *, unsigned) =
	skip_equal_scalar;
static int simd_level;

static int simd_best(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512f"))
		return 2;
	return __builtin_cpu_supports("avx2") ? 1 : 0;
}

int colo_page_codec_simd(int level)
{
	int best = simd_best();

	if (level < 0 || level > best)
		level = best;
	simd_level = level;
	skip_equal = level == 2 ? skip_equal_avx512 :
		     level == 1 ? skip_equal_avx2 : skip_equal_scalar;
	return level;
}

__attribute__((constructor))
static void pick_skip_equal(void)
{
	colo_page_codec_simd(-1);
}
#else
#define skip_equal skip_equal_scalar
static const int simd_level = 0;

int colo_page_codec_simd(int level)
{
	(void)level;
	return 0;
}
#endif

const char *colo_page_codec_simd_name(void)
{
	return simd_level == 2 ? "avx512bw" : simd_level == 1 ? "avx2" : "scalar";
}

/*
 * The next run of changed bytes at or after word *w: [*start, *end).  A
 * run is a maximal sequence of changed words, trimmed to its first and last
 * changed byte; runs are therefore at least one unchanged word apart, and
 * sending the gap as a header (2-3 bytes) always beats sending it as bytes.
 */
static inline int next_run(const uint8_t *p, const uint8_t *b, unsigned *w,
			   unsigned *start, unsigned *end)
{
	unsigned i = skip_equal(p, b, *w), last;
	uint64_t x, xl;

	if (i >= WORDS) {
		*w = WORDS;
		return 0;
	}
	x = xw(p, b, i);
	*start = i * 8 + FIRST_BYTE(x);
	do {
		last = i;
		xl = x;
		i++;
	} while (i < WORDS && (x = xw(p, b, i)) != 0);
	*end = last * 8 + LAST_BYTE(xl) + 1;
	*w = i;
	return 1;
}

/* QEMU's "small" ULEB128: 1 or 2 bytes, values below 2^14. */
static inline size_t put_uleb(uint8_t *o, unsigned v)
{
	if (v < 0x80) {
		o[0] = (uint8_t)v;
		return 1;
	}
	o[0] = (uint8_t)((v & 0x7f) | 0x80);
	o[1] = (uint8_t)(v >> 7);
	return 2;
}

static inline int get_uleb(const uint8_t *in, size_t len, size_t *i, unsigned *v)
{
	if (*i >= len)
		return -1;
	if (!(in[*i] & 0x80)) {
		*v = in[(*i)++];
		return 0;
	}
	if (*i + 1 >= len || (in[*i + 1] & 0x80))
		return -1;
	*v = (in[*i] & 0x7fu) | (unsigned)in[*i + 1] << 7;
	*i += 2;
	return 0;
}

int colo_page_is_zero(const uint8_t *page)
{
	for (unsigned w = 0; w < WORDS; w += 4)
		if ((ld64(page + 8 * w) | ld64(page + 8 * w + 8) |
		     ld64(page + 8 * w + 16) | ld64(page + 8 * w + 24)) != 0)
			return 0;
	return 1;
}

/* ---- DELTA ---- */

/* Bytes written; 0: page equals base; -1: more than cap. */
static ssize_t delta_encode(const uint8_t *page, const uint8_t *base, uint8_t *out,
			    size_t cap)
{
	unsigned w = 0, s, e, prev = 0;
	size_t o = 0;

	while (next_run(page, base, &w, &s, &e)) {
		unsigned len = e - s;

		if (o + 4 + len > cap)
			return -1;
		o += put_uleb(out + o, s - prev);
		o += put_uleb(out + o, len);
		memcpy(out + o, page + s, len);
		o += len;
		prev = e;
	}
	return (ssize_t)o;
}

size_t colo_delta_encode(const uint8_t *page, const uint8_t *base, uint8_t *out,
			 size_t cap)
{
	ssize_t n = delta_encode(page, base, out, cap);

	return n < 0 ? 0 : (size_t)n;
}

int colo_delta_decode(const uint8_t *in, size_t len, uint8_t *page, struct colo_err *err)
{
	size_t i = 0, pos = 0;

	if (len == 0)
		return colo_err_set(err, EPROTO, "empty delta");
	/* Check every run before touching the page. */
	while (i < len) {
		unsigned gap, n;

		if (get_uleb(in, len, &i, &gap) || get_uleb(in, len, &i, &n))
			return colo_err_set(err, EPROTO, "delta: bad run header at byte %zu", i);
		if (n == 0 || pos + gap + n > PAGE)
			return colo_err_set(err, EPROTO, "delta: run of %u bytes at page "
					    "offset %zu leaves the page", n, pos + gap);
		if (n > len - i)
			return colo_err_set(err, EPROTO, "delta: run of %u bytes at byte "
					    "%zu is longer than the encoding", n, i);
		i += n;
		pos += gap + n;
	}
	for (i = 0, pos = 0; i < len;) {
		unsigned gap = 0, n = 0;

		get_uleb(in, len, &i, &gap);
		get_uleb(in, len, &i, &n);
		pos += gap;
		memcpy(page + pos, in + i, n);
		i += n;
		pos += n;
	}
	return 0;
}

/* ---- DELTA_LZ4: uleb nruns, nruns x (uleb gap, uleb len), LZ4(bytes) ---- */

struct run {
	uint16_t start, end;
};

/* Longest possible list: runs are >= 1 byte and >= 8 bytes apart. */
#define RUNS_MAX (PAGE / 9 + 1)

size_t colo_delta_lz4_encode(const uint8_t *page, const uint8_t *base, uint8_t *out,
			     size_t cap)
{
	struct run runs[RUNS_MAX];
	uint8_t lit[PAGE];
	unsigned w = 0, s, e, prev = 0, nruns = 0;
	size_t total = 0, o;
	int c;

	while (next_run(page, base, &w, &s, &e)) {
		runs[nruns].start = (uint16_t)s;
		runs[nruns].end = (uint16_t)e;
		memcpy(lit + total, page + s, e - s);
		total += e - s;
		nruns++;
	}
	if (nruns == 0 || cap < 4)
		return 0;
	o = put_uleb(out, nruns);
	for (unsigned r = 0; r < nruns; r++) {
		if (o + 4 > cap)
			return 0;
		o += put_uleb(out + o, runs[r].start - prev);
		o += put_uleb(out + o, (unsigned)(runs[r].end - runs[r].start));
		prev = runs[r].end;
	}
	if (o >= cap)
		return 0;
	c = LZ4_compress_default((const char *)lit, (char *)out + o, (int)total,
				 (int)(cap - o));
	return c > 0 ? o + (size_t)c : 0;
}

int colo_delta_lz4_decode(const uint8_t *in, size_t len, uint8_t *page,
			  struct colo_err *err)
{
	struct run runs[RUNS_MAX];
	uint8_t lit[PAGE];
	unsigned nruns;
	size_t i = 0, pos = 0, total = 0, k = 0;
	int got;

	if (get_uleb(in, len, &i, &nruns) || nruns == 0 || nruns > RUNS_MAX)
		return colo_err_set(err, EPROTO, "delta-lz4: bad run count");
	for (unsigned r = 0; r < nruns; r++) {
		unsigned gap, n;

		if (get_uleb(in, len, &i, &gap) || get_uleb(in, len, &i, &n))
			return colo_err_set(err, EPROTO, "delta-lz4: bad run header at "
					    "byte %zu", i);
		if (n == 0 || pos + gap + n > PAGE)
			return colo_err_set(err, EPROTO, "delta-lz4: run of %u bytes at "
					    "page offset %zu leaves the page", n, pos + gap);
		runs[r].start = (uint16_t)(pos + gap);
		runs[r].end = (uint16_t)(pos + gap + n);
		pos += gap + n;
		total += n;
	}
	got = LZ4_decompress_safe((const char *)in + i, (char *)lit, (int)(len - i),
				  (int)total);
	if (got != (int)total)
		return colo_err_set(err, EPROTO, "delta-lz4: the LZ4 block does not "
				    "decompress to the %zu bytes its runs need", total);
	for (unsigned r = 0; r < nruns; r++) {
		size_t n = runs[r].end - runs[r].start;

		memcpy(page + runs[r].start, lit + k, n);
		k += n;
	}
	return 0;
}

/* ---- LZ4 of the whole page ---- */

size_t colo_lz4_encode(const uint8_t *page, uint8_t *out, size_t cap)
{
	int c = LZ4_compress_default((const char *)page, (char *)out, PAGE, (int)cap);

	return c > 0 ? (size_t)c : 0;
}

int colo_lz4_decode(const uint8_t *in, size_t len, uint8_t *page, struct colo_err *err)
{
	uint8_t tmp[PAGE];
	int got = LZ4_decompress_safe((const char *)in, (char *)tmp, (int)len, PAGE);

	if (got != PAGE)
		return colo_err_set(err, EPROTO, "lz4: the block does not decompress "
				    "to one page");
	memcpy(page, tmp, PAGE);
	return 0;
}

/* ---- XBZRLE, QEMU's format: (uleb zero-run, uleb data-run, data)* ---- */

/* Bytes written; 0: unchanged; -1: more than cap (QEMU sends a PAGE then). */
static ssize_t xbzrle_encode(const uint8_t *page, const uint8_t *base, uint8_t *out,
			     size_t cap)
{
	size_t i = 0, d = 0;

	while (i < PAGE) {
		size_t z = 0, nz = 0, nz_start;

		/* Equal bytes: a word at a time, then the rest one by one. */
		while (i + 8 <= PAGE && ld64(page + i) == ld64(base + i)) {
			i += 8;
			z += 8;
		}
		while (i < PAGE && page[i] == base[i]) {
			i++;
			z++;
		}
		if (z == PAGE)
			return 0;
		if (i == PAGE)
			break;             /* a trailing zero run is not sent */
		if (d + 2 > cap)
			return -1;
		d += put_uleb(out + d, (unsigned)z);
		/* Changed bytes: whole words while no byte of the word is
		 * equal (the classic has-zero-byte test on the XOR). */
		nz_start = i;
		while (i + 8 <= PAGE) {
			uint64_t x = ld64(page + i) ^ ld64(base + i);

			if ((x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull)
				break;
			i += 8;
			nz += 8;
		}
		while (i < PAGE && page[i] != base[i]) {
			i++;
			nz++;
		}
		if (d + 2 + nz > cap)
			return -1;
		d += put_uleb(out + d, (unsigned)nz);
		memcpy(out + d, page + nz_start, nz);
		d += nz;
	}
	return (ssize_t)d;
}

size_t colo_xbzrle_encode(const uint8_t *page, const uint8_t *base, uint8_t *out,
			  size_t cap)
{
	ssize_t n = xbzrle_encode(page, base, out, cap);

	return n < 0 ? 0 : (size_t)n;
}

int colo_xbzrle_decode(const uint8_t *in, size_t len, uint8_t *page, struct colo_err *err)
{
	size_t i = 0, pos = 0;

	/* QEMU's rules: only the first zero run may be empty, data runs never. */
	while (i < len) {
		unsigned z, nz;

		if (get_uleb(in, len, &i, &z) || (pos && z == 0) ||
		    get_uleb(in, len, &i, &nz) || nz == 0)
			return colo_err_set(err, EPROTO, "xbzrle: bad run at byte %zu", i);
		if (pos + z + nz > PAGE || nz > len - i)
			return colo_err_set(err, EPROTO, "xbzrle: run of %u bytes at page "
					    "offset %zu overflows", nz, pos + z);
		i += nz;
		pos += z + nz;
	}
	for (i = 0, pos = 0; i < len;) {
		unsigned z = 0, nz = 0;

		get_uleb(in, len, &i, &z);
		get_uleb(in, len, &i, &nz);
		pos += z;
		memcpy(page + pos, in + i, nz);
		i += nz;
		pos += nz;
	}
	return 0;
}

/* ---- codec table ---- */

static ssize_t lz4_codec_encode(const uint8_t *page, const uint8_t *base,
				uint8_t *out, size_t cap)
{
	(void)base;
	return (ssize_t)colo_lz4_encode(page, out, cap);
}

static ssize_t delta_codec_encode(const uint8_t *page, const uint8_t *base,
				  uint8_t *out, size_t cap)
{
	return base ? (ssize_t)colo_delta_encode(page, base, out, cap) : 0;
}

static ssize_t delta_lz4_codec_encode(const uint8_t *page, const uint8_t *base,
				      uint8_t *out, size_t cap)
{
	return base ? (ssize_t)colo_delta_lz4_encode(page, base, out, cap) : 0;
}

static ssize_t xbzrle_codec_encode(const uint8_t *page, const uint8_t *base,
				   uint8_t *out, size_t cap)
{
	return base ? (ssize_t)colo_xbzrle_encode(page, base, out, cap) : 0;
}

const struct colo_page_codec colo_codec_lz4 = {
	COLO_PAGE_LZ4, "lz4", lz4_codec_encode, colo_lz4_decode,
};
const struct colo_page_codec colo_codec_delta = {
	COLO_PAGE_DELTA, "delta", delta_codec_encode, colo_delta_decode,
};
const struct colo_page_codec colo_codec_delta_lz4 = {
	COLO_PAGE_DELTA_LZ4, "delta-lz4", delta_lz4_codec_encode, colo_delta_lz4_decode,
};
const struct colo_page_codec colo_codec_xbzrle = {
	COLO_PAGE_XBZRLE, "xbzrle", xbzrle_codec_encode, colo_xbzrle_decode,
};

const struct colo_page_codec *const colo_page_codecs[] = {
	&colo_codec_lz4, &colo_codec_delta, &colo_codec_delta_lz4, &colo_codec_xbzrle,
	NULL,
};

/* ---- the choice ---- */

/*
 * Would LZ4 find anything in these bytes?  32 samples spread over them:
 * random data shows 30 distinct values on average (very rarely under 26),
 * text around 15.  Cheap enough to run before every LZ4 attempt, which
 * costs ten times a delta scan.
 */
static int looks_compressible(const uint8_t *buf, size_t len)
{
	uint64_t seen[4] = { 0, 0, 0, 0 };
	size_t step = len / 32 ? len / 32 : 1;
	unsigned distinct = 0, samples = 0;

	for (size_t i = 0; i < len && samples < 32; i += step, samples++) {
		uint8_t v = buf[i];
		uint64_t bit = 1ull << (v & 63);

		distinct += !(seen[v >> 6] & bit);
		seen[v >> 6] |= bit;
	}
	return distinct * 4 < samples * 3;
}

/* Payload bytes of a record of this kind carrying n encoded bytes. */
static size_t cost(enum colo_page_kind k, size_t n)
{
	switch (k) {
	case COLO_PAGE_ZERO:
		return 1;
	case COLO_PAGE_RAW:
		return PAGE;
	case COLO_PAGE_XBZRLE:
		return 3 + n;
	default:
		return 2 + n;
	}
}

static void update_base(uint8_t *base, const uint8_t *page, const uint8_t *out,
			const struct colo_page_enc *e)
{
	struct colo_err err;

	if (e->kind == COLO_PAGE_DELTA) {
		/* Only the changed runs: cheaper than copying the page. */
		colo_err_clear(&err);
		if (colo_delta_decode(out, e->len, base, &err) == 0)
			return;
	}
	memcpy(base, page, PAGE);
}

int colo_page_encode(const uint8_t *page, uint8_t *base, uint32_t allowed,
		     unsigned flags, uint8_t *out, struct colo_page_enc *e)
{
	uint8_t tmp[COLO_PAGE_ENC_MAX];
	size_t best = cost(COLO_PAGE_RAW, 0), n;
	bool lz4 = allowed & BIT(COLO_PAGE_LZ4);
	bool dlz4 = base && (allowed & BIT(COLO_PAGE_DELTA_LZ4));
	ssize_t d;

	e->kind = COLO_PAGE_RAW;
	e->len = 0;
	e->fill = 0;
	if (base && (allowed & BIT(COLO_PAGE_DELTA))) {
		/* One scan: unchanged, a sparse change, or a large one. */
		d = delta_encode(page, base, out, PAGE - 3);
		if (d == 0)
			return 1;
		if (d > 0) {
			e->kind = COLO_PAGE_DELTA;
			e->len = (size_t)d;
			best = cost(COLO_PAGE_DELTA, e->len);
			if (e->len < COLO_DELTA_LZ4_MIN || (!lz4 && !dlz4))
				goto done;
		}
	} else if (base && (allowed & BIT(COLO_PAGE_XBZRLE))) {
		d = xbzrle_encode(page, base, out, PAGE - 3);
		if (d == 0)
			return 1;
		if (d > 0) {
			e->kind = COLO_PAGE_XBZRLE;
			e->len = (size_t)d;
			best = cost(COLO_PAGE_XBZRLE, e->len);
		}
	} else if (base && memcmp(page, base, PAGE) == 0) {
		return 1;
	}
	/* A large change, or no base.  A zero page beats any of them. */
	if (best > SPARSE_MAX && (allowed & BIT(COLO_PAGE_ZERO)) && colo_page_is_zero(page)) {
		e->kind = COLO_PAGE_ZERO;
		e->len = 0;
		goto done;
	}
	/*
	 * One LZ4 attempt at most, and only on bytes that look compressible
	 * (LZ4 costs ~10x a delta scan): DELTA|LZ4 when part of the page
	 * changed, LZ4 of the page when most of it did or there is no base.
	 */
	if (e->kind == COLO_PAGE_DELTA || e->kind == COLO_PAGE_XBZRLE ?
	    !looks_compressible(out, e->len) : !looks_compressible(page, PAGE))
		goto done;
	if (dlz4 && e->kind == COLO_PAGE_DELTA && (best < PAGE * 3 / 4 || !lz4)) {
		n = colo_delta_lz4_encode(page, base, tmp, best - 2);
		if (n && cost(COLO_PAGE_DELTA_LZ4, n) < best) {
			e->kind = COLO_PAGE_DELTA_LZ4;
			e->len = n;
			memcpy(out, tmp, n);
		}
		goto done;
	}
	if (lz4 && (e->kind == COLO_PAGE_RAW || best >= PAGE * 3 / 4)) {
		n = colo_lz4_encode(page, tmp, best - 2 < sizeof(tmp) ? best - 2 : sizeof(tmp));
		if (n && cost(COLO_PAGE_LZ4, n) < best) {
			e->kind = COLO_PAGE_LZ4;
			e->len = n;
			memcpy(out, tmp, n);
		}
	}
done:
	if ((flags & COLO_ENC_UPDATE_BASE) && base) {
		if (e->kind == COLO_PAGE_ZERO)
			memset(base, 0, PAGE);
		else
			update_base(base, page, out, e);
	}
	return 0;
}
