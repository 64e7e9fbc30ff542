/*
 * resp.c: see resp.h.
 *
 * The parser keeps its progress as offsets from the command's first byte,
 * never as pointers: the caller's buffer may move between calls (it grows as
 * bytes arrive).  Pointers are made only when the command is complete.
 */
#include "config.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "resp.h"

enum {
	ST_IDLE,                        /* at a command's first byte */
	ST_INLINE,                      /* looking for the line's end */
	ST_COUNT,                       /* reading "*<n>\r\n" */
	ST_BULKS,                       /* reading "$<len>\r\n<bytes>\r\n"s */
};

enum { R_ERROR = -1, R_MORE = 0, R_COMMAND = 1, R_EMPTY = 2 };

/* A command this big leaves its arrays behind for the next one to regrow. */
#define KEEP_ARGS 1024

void colo_resp_parser_init(struct colo_resp_parser *p)
{
	memset(p, 0, sizeof(*p));
	colo_buf_init(&p->words);
	p->bulk = -1;
}

void colo_resp_parser_free(struct colo_resp_parser *p)
{
	free(p->argv);
	free(p->argl);
	free(p->off);
	colo_buf_free(&p->words);
	colo_resp_parser_init(p);
}

static void restart(struct colo_resp_parser *p)
{
	p->state = ST_IDLE;
	p->pos = 0;
	p->scan = 0;
	p->left = 0;
	p->bulk = -1;
	p->argc = 0;
	p->want = 0;
}

void colo_resp_parser_reset(struct colo_resp_parser *p)
{
	restart(p);
	p->error[0] = '\0';
	if (colo_buf_ok(&p->words))
		colo_buf_reset(&p->words);
	else {
		colo_buf_free(&p->words);
		colo_buf_init(&p->words);
	}
}

static int fail(struct colo_resp_parser *p, const char *what)
{
	snprintf(p->error, sizeof(p->error), "%s", what);
	return R_ERROR;
}

/* Room for argument n (0-based); `more` is how many the command still has. */
static bool reserve_args(struct colo_resp_parser *p, size_t n, size_t more)
{
	size_t cap;
	uint8_t **argv;
	size_t *argl, *off;

	if (n < p->cap)
		return true;
	cap = p->cap ? p->cap * 2 : 16;
	if (cap > n + more)
		cap = n + more;
	if (cap <= n)
		cap = n + 1;
	argv = realloc(p->argv, cap * sizeof(*argv));
	if (argv)
		p->argv = argv;
	argl = realloc(p->argl, cap * sizeof(*argl));
	if (argl)
		p->argl = argl;
	off = realloc(p->off, cap * sizeof(*off));
	if (off)
		p->off = off;
	if (!argv || !argl || !off)
		return false;
	p->cap = cap;
	return true;
}

bool colo_resp_str2ll(const void *s, size_t len, long long *v)
{
	const uint8_t *c = s;
	unsigned long long u;
	bool neg = false;
	size_t i = 0;

	/* LONG_STR_SIZE: 20 characters hold every long long. */
	if (len == 0 || len > 20)
		return false;
	if (len == 1 && c[0] == '0') {
		*v = 0;
		return true;
	}
	if (c[0] == '-') {
		neg = true;
		if (++i == len)
			return false;
	}
	if (c[i] < '1' || c[i] > '9')
		return false;
	u = (unsigned long long)(c[i++] - '0');
	for (; i < len; i++) {
		unsigned d;

		if (c[i] < '0' || c[i] > '9')
			return false;
		d = (unsigned)(c[i] - '0');
		if (u > (ULLONG_MAX - d) / 10)
			return false;
		u = u * 10 + d;
	}
	if (neg) {
		if (u > (unsigned long long)LLONG_MAX + 1)
			return false;
		*v = u == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)u;
	} else {
		if (u > (unsigned long long)LLONG_MAX)
			return false;
		*v = (long long)u;
	}
	return true;
}

/*
 * The '\r' ending the line that starts at b + p->pos: 1 and *cr once the byte
 * after it has arrived too (Redis skips that byte unseen), 0 to wait, -1 when
 * no '\r' came within COLO_RESP_MAX_INLINE bytes.
 */
static int find_cr(struct colo_resp_parser *p, const uint8_t *b, size_t n, size_t *cr)
{
	size_t from = p->scan > p->pos ? p->scan : p->pos;
	size_t lim = n - p->pos > COLO_RESP_MAX_INLINE ? p->pos + COLO_RESP_MAX_INLINE + 1 : n;
	const uint8_t *r = from < lim ? memchr(b + from, '\r', lim - from) : NULL;

	if (!r) {
		if (n - p->pos > COLO_RESP_MAX_INLINE)
			return -1;
		p->scan = lim;
		return 0;
	}
	p->scan = (size_t)(r - b);
	if (p->scan + 2 > n)
		return 0;
	*cr = p->scan;
	return 1;
}

/* "*<n>\r\n": the command's argument count. */
static int read_count(struct colo_resp_parser *p, const uint8_t *b, size_t n)
{
	long long ll;
	size_t cr;
	int r = find_cr(p, b, n, &cr);

	if (r < 0)
		return fail(p, "Protocol error: too big mbulk count string");
	if (r == 0)
		return R_MORE;
	if (!colo_resp_str2ll(b + 1, cr - 1, &ll) || ll > COLO_RESP_MAX_ARGS)
		return fail(p, "Protocol error: invalid multibulk length");
	p->pos = cr + 2;
	if (ll <= 0)
		return R_EMPTY;
	p->left = ll;
	p->bulk = -1;
	p->state = ST_BULKS;
	return R_MORE;
}

static int read_bulks(struct colo_resp_parser *p, const uint8_t *b, size_t n)
{
	while (p->left > 0) {
		if (p->bulk < 0) {
			long long ll;
			size_t cr;
			int r = find_cr(p, b, n, &cr);

			if (r < 0)
				return fail(p, "Protocol error: too big bulk count string");
			if (r == 0)
				return R_MORE;
			if (b[p->pos] != '$') {
				uint8_t got = b[p->pos];

				/* Redis's reply keeps the byte, CR and LF become spaces. */
				snprintf(p->error, sizeof(p->error),
					 "Protocol error: expected '$', got '%c'",
					 got == '\r' || got == '\n' ? ' ' : (char)got);
				return R_ERROR;
			}
			if (!colo_resp_str2ll(b + p->pos + 1, cr - p->pos - 1, &ll) || ll < 0 ||
			    ll > (long long)COLO_RESP_MAX_BULK)
				return fail(p, "Protocol error: invalid bulk length");
			p->pos = cr + 2;
			p->bulk = ll;
		}
		if (n - p->pos < (size_t)p->bulk + 2) {
			p->want = p->pos + (size_t)p->bulk + 2;
			return R_MORE;
		}
		if (!reserve_args(p, (size_t)p->argc, (size_t)p->left))
			return fail(p, "out of memory");
		p->off[p->argc] = p->pos;
		p->argl[p->argc] = (size_t)p->bulk;
		p->argc++;
		p->pos += (size_t)p->bulk + 2;
		p->bulk = -1;
		p->left--;
	}
	return R_COMMAND;
}

static bool is_space(uint8_t c)
{
	/* isspace() in the C locale, which is what sdssplitargs runs in. */
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* End this word; false when the arrays cannot grow. */
static bool end_word(struct colo_resp_parser *p, size_t start)
{
	/* An inline line can hold many words: let the arrays double. */
	if (!reserve_args(p, (size_t)p->argc, SIZE_MAX / 4))
		return false;
	p->off[p->argc] = start;
	p->argl[p->argc] = p->words.len - start;
	p->argc++;
	return true;
}

/*
 * sdssplitargs over line[0, n): words into p->words.  R_COMMAND, R_EMPTY (no
 * words) or R_ERROR (unbalanced quotes, out of memory).
 */
static int split_line(struct colo_resp_parser *p, const uint8_t *line, size_t n)
{
	struct colo_buf *w = &p->words;
	size_t i = 0;

	colo_buf_reset(w);
	/* One byte more than the words can take: data is never NULL. */
	if (!colo_buf_reserve(w, n + 1))
		return fail(p, "out of memory");
	for (;;) {
		bool inq = false, insq = false, done = false;
		size_t start;

		while (i < n && is_space(line[i]))
			i++;
		if (i == n)
			return p->argc ? R_COMMAND : R_EMPTY;
		start = w->len;
		while (!done) {
			uint8_t c = i < n ? line[i] : 0;
			uint8_t next = i + 1 < n ? line[i + 1] : 0;

			if (inq) {
				if (c == '\\' && next == 'x' && i + 3 < n &&
				    colo_hex_digit(line[i + 2]) >= 0 &&
				    colo_hex_digit(line[i + 3]) >= 0) {
					colo_buf_put_u8(w, (uint8_t)(colo_hex_digit(line[i + 2]) * 16 +
								     colo_hex_digit(line[i + 3])));
					i += 3;
				} else if (c == '\\' && i + 1 < n) {
					uint8_t e;

					i++;
					switch (next) {
					case 'n': e = '\n'; break;
					case 'r': e = '\r'; break;
					case 't': e = '\t'; break;
					case 'b': e = '\b'; break;
					case 'a': e = '\a'; break;
					default: e = next; break;
					}
					colo_buf_put_u8(w, e);
				} else if (c == '"') {
					if (i + 1 < n && !is_space(next))
						goto unbalanced;
					done = true;
				} else if (i == n) {
					goto unbalanced;
				} else {
					colo_buf_put_u8(w, c);
				}
			} else if (insq) {
				if (c == '\\' && next == '\'') {
					i++;
					colo_buf_put_u8(w, '\'');
				} else if (c == '\'') {
					if (i + 1 < n && !is_space(next))
						goto unbalanced;
					done = true;
				} else if (i == n) {
					goto unbalanced;
				} else {
					colo_buf_put_u8(w, c);
				}
			} else if (i == n || c == ' ' || c == '\n' || c == '\r' || c == '\t') {
				done = true;
			} else if (c == '"') {
				inq = true;
			} else if (c == '\'') {
				insq = true;
			} else {
				colo_buf_put_u8(w, c);
			}
			if (i < n)
				i++;
		}
		if (!end_word(p, start))
			return fail(p, "out of memory");
	}
unbalanced:
	return fail(p, "Protocol error: unbalanced quotes in request");
}

static int read_inline(struct colo_resp_parser *p, const uint8_t *b, size_t n)
{
	size_t lim = n > COLO_RESP_MAX_INLINE ? COLO_RESP_MAX_INLINE + 1 : n;
	const uint8_t *nl = p->scan < lim ? memchr(b + p->scan, '\n', lim - p->scan) : NULL;
	const uint8_t *nul;
	size_t end, len;

	if (!nl) {
		if (n > COLO_RESP_MAX_INLINE)
			return fail(p, "Protocol error: too big inline request");
		p->scan = lim;
		return R_MORE;
	}
	end = (size_t)(nl - b);
	len = end > 0 && b[end - 1] == '\r' ? end - 1 : end;
	p->pos = end + 1;
	nul = memchr(b, '\0', len);
	if (nul)
		len = (size_t)(nul - b);
	return split_line(p, b, len);
}

static int parse_one(struct colo_resp_parser *p, const uint8_t *b, size_t n)
{
	if (p->state == ST_IDLE) {
		if (n == 0)
			return R_MORE;
		if (p->cap > KEEP_ARGS) {
			free(p->argv);
			free(p->argl);
			free(p->off);
			p->argv = NULL;
			p->argl = NULL;
			p->off = NULL;
			p->cap = 0;
		}
		p->argc = 0;
		p->state = b[0] == '*' ? ST_COUNT : ST_INLINE;
	}
	if (p->state == ST_INLINE)
		return read_inline(p, b, n);
	if (p->state == ST_COUNT) {
		int r = read_count(p, b, n);

		if (r != R_MORE || p->state != ST_BULKS)
			return r;
	}
	return read_bulks(p, b, n);
}

int colo_resp_parse(struct colo_resp_parser *p, const uint8_t *buf, size_t len,
		    size_t *used)
{
	size_t skipped = 0;

	p->want = 0;
	*used = 0;
	if (len == 0)
		return 0;
	for (;;) {
		const uint8_t *b = buf + skipped;
		int r = parse_one(p, b, len - skipped);

		switch (r) {
		case R_EMPTY:
			skipped += p->pos;
			restart(p);
			continue;
		case R_COMMAND: {
			const uint8_t *base = p->state == ST_INLINE ? p->words.data : b;

			for (int i = 0; i < p->argc; i++)
				p->argv[i] = (uint8_t *)(base + p->off[i]);
			*used = skipped + p->pos;
			p->state = ST_IDLE;
			p->pos = 0;
			p->scan = 0;
			p->bulk = -1;
			return 1;
		}
		case R_MORE:
			*used = skipped;
			/* Offsets are from the command's start, which moved. */
			if (skipped)
				restart(p);
			return 0;
		default:
			*used = skipped;
			restart(p);
			return -1;
		}
	}
}

/* ---- replies ---- */

/* prefix, text with CR/LF made spaces, CRLF. */
static void put_line(struct colo_buf *out, char prefix, const char *s, size_t len)
{
	uint8_t *d = colo_buf_append(out, len + 3);

	if (!d)
		return;
	d[0] = (uint8_t)prefix;
	for (size_t i = 0; i < len; i++)
		d[i + 1] = s[i] == '\r' || s[i] == '\n' ? ' ' : (uint8_t)s[i];
	d[len + 1] = '\r';
	d[len + 2] = '\n';
}

/* prefix, decimal, CRLF. */
static void put_number(struct colo_buf *out, char prefix, long long v)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof(tmp), "%c%lld\r\n", prefix, v);

	colo_buf_put(out, tmp, (size_t)n);
}

void colo_resp_simple(struct colo_buf *out, const char *s)
{
	put_line(out, '+', s, strlen(s));
}

void colo_resp_error_text(struct colo_buf *out, const char *text, size_t len)
{
	put_line(out, '-', text, len);
}

void colo_resp_error(struct colo_buf *out, const char *fmt, ...)
{
	char small[256];
	char *s = small;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(small)) {
		s = malloc((size_t)n + 1);
		if (!s) {
			out->failed = true;
			return;
		}
		va_start(ap, fmt);
		vsnprintf(s, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	put_line(out, '-', s, (size_t)n);
	if (s != small)
		free(s);
}

void colo_resp_int(struct colo_buf *out, long long v)
{
	put_number(out, ':', v);
}

void colo_resp_bulk(struct colo_buf *out, const void *data, size_t len)
{
	put_number(out, '$', (long long)len);
	colo_buf_put(out, data, len);
	colo_buf_put(out, "\r\n", 2);
}

void colo_resp_bulk_str(struct colo_buf *out, const char *s)
{
	colo_resp_bulk(out, s, strlen(s));
}

void colo_resp_null(struct colo_buf *out)
{
	colo_buf_put(out, "$-1\r\n", 5);
}

void colo_resp_array(struct colo_buf *out, size_t n)
{
	put_number(out, '*', (long long)n);
}

void colo_resp_null_array(struct colo_buf *out)
{
	colo_buf_put(out, "*-1\r\n", 5);
}
