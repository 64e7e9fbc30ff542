/*
 * resp.h: RESP2, the Redis wire protocol: an incremental request parser and
 * the reply writers.
 *
 * Requests come in Redis's two forms, read the way Redis 7.0 reads them
 * (networking.c, processMultibulkBuffer and processInlineBuffer):
 *   multibulk  "*<n>\r\n" then n times "$<len>\r\n<len bytes>\r\n", binary
 *              safe; "*0" and negative counts are empty commands, skipped;
 *   inline     a line ended by "\n" or "\r\n", split into words the way
 *              sdssplitargs does: blanks separate words, "..." takes the
 *              escapes \n \r \t \b \a \xHH and \<any> for that byte, '...'
 *              takes \' only, a closing quote must be followed by a blank or
 *              the line's end; an empty line is skipped.  redis-benchmark's
 *              PING_INLINE and telnet users send this form.
 * Like Redis, the two bytes after a count line's '\r' and after a bulk's
 * payload are skipped without looking at them.
 *
 * Limits, each refused with Redis's error as soon as the bytes show it, so a
 * caller never buffers more than one bulk plus a line of slack: a bulk is at
 * most COLO_RESP_MAX_BULK (proto-max-bulk-len), a count or length line and an
 * inline line at most COLO_RESP_MAX_INLINE bytes before their '\r' / '\n'.
 * Where we differ from Redis 7.0, on purpose:
 *   - more than COLO_RESP_MAX_ARGS arguments is "invalid multibulk length"
 *     (Redis 7.0 allows INT_MAX; 6.x had our limit);
 *   - the line limits hold wherever a read boundary falls (Redis checks them
 *     only while the end of the line has not arrived, so the same bytes pass
 *     or fail depending on how they were split);
 *   - an inline line is split up to its first NUL byte (sdssplitargs sees a
 *     C string there; Redis itself waits forever for a '\n' it cannot find
 *     past a NUL).
 *
 * Memory: the parser owns its argument arrays and the unescaped words of an
 * inline command; colo_resp_parser_free() releases them.  Multibulk
 * arguments point into the caller's buffer (no copy).  Everything p->argv
 * points to is valid until the next colo_resp_parse() call.
 *
 * Reply writers append to a struct colo_buf and never fail on their own (the
 * buffer latches allocation failure, see buf.h).
 *
 * Not thread-safe: one parser per connection.
 */
#ifndef COLO_GUEST_RESP_H
#define COLO_GUEST_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

#define COLO_RESP_MAX_BULK (512u << 20)        /* Redis's proto-max-bulk-len */
#define COLO_RESP_MAX_ARGS (1024 * 1024)
#define COLO_RESP_MAX_INLINE (64u << 10)       /* Redis's PROTO_INLINE_MAX_SIZE */
#define COLO_RESP_ERROR_MAX 64

struct colo_resp_parser {
	/* The command, after colo_resp_parse() returned 1. */
	int argc;
	uint8_t **argv;                 /* not written through: non-const for kvcmd */
	size_t *argl;

	/* After -1: Redis's text, sent as "-ERR <error>\r\n" before closing. */
	char error[COLO_RESP_ERROR_MAX];

	/*
	 * After 0: how long the input (from buf) must be before the next call
	 * can get further, when the parser knows (a bulk whose length line has
	 * been read); 0 when any new byte may help.  For sizing read buffers.
	 */
	size_t want;

	/* Private: how far the command being read has got. */
	int state;
	size_t pos;                     /* bytes of it read */
	size_t scan;                    /* where the search for a line end resumes */
	int64_t left;                   /* bulks still to come */
	int64_t bulk;                   /* length of the one being read, -1: not known */
	size_t cap;                     /* room in argv, argl, off */
	size_t *off;                    /* each argument's offset: from buf or in words */
	struct colo_buf words;          /* an inline command's unescaped words */
};

void colo_resp_parser_init(struct colo_resp_parser *p);
void colo_resp_parser_free(struct colo_resp_parser *p);
/* As new for the next input, keeping what it allocated. */
void colo_resp_parser_reset(struct colo_resp_parser *p);

/*
 * Read the next command from buf[0, len), the connection's unconsumed input.
 * The caller appends what it reads and passes the input from the same first
 * byte again (the memory may move) until the command is complete; progress is
 * remembered, so a bulk arriving in pieces is not scanned again.
 *
 * Every return sets *used: the bytes the caller must now drop from the front
 * of its input.
 *   1  a command: p->argc >= 1, p->argv[i], p->argl[i]; *used is its length
 *      plus any empty commands skipped before it.
 *   0  more bytes are needed.  *used > 0 when empty commands were skipped
 *      first; dropping them is optional (the parser then starts over from
 *      the new first byte) but keeps a partial command's progress.
 *  -1  a protocol violation (p->error), or out of memory ("out of memory");
 *      Redis replies with the error and closes the connection.
 */
int colo_resp_parse(struct colo_resp_parser *p, const uint8_t *buf, size_t len,
		    size_t *used);

/*
 * Redis's string2ll: an optional '-', then digits without leading zeros (or
 * a lone "0"), nothing else, and it must fit a long long.  1 and *v, or 0.
 */
bool colo_resp_str2ll(const void *s, size_t len, long long *v);

/* ---- replies ---- */

void colo_resp_simple(struct colo_buf *out, const char *s);      /* +s */
/* -text: the caller's text starts with the code ("ERR ...", "WRONGTYPE ...");
 * CR and LF in it become spaces, as Redis does, so the reply stays one line. */
void colo_resp_error_text(struct colo_buf *out, const char *text, size_t len);
void colo_resp_error(struct colo_buf *out, const char *fmt, ...) COLO_PRINTF(2, 3);
void colo_resp_int(struct colo_buf *out, long long v);            /* :v */
void colo_resp_bulk(struct colo_buf *out, const void *data, size_t len);
void colo_resp_bulk_str(struct colo_buf *out, const char *s);
void colo_resp_null(struct colo_buf *out);                       /* $-1 */
void colo_resp_array(struct colo_buf *out, size_t n);            /* *n */
void colo_resp_null_array(struct colo_buf *out);                 /* *-1 */

#endif
