/*
 * test_repl.c: peers that break the replication protocol (DESIGN.md §4).
 *
 * A real colo-primary and colo-secondary talk through a man in the middle
 * run by the test: a proxy thread that relays both ways, follows what the
 * secondary says (its Hello, then be32 COLO messages) and, at a chosen
 * moment, stops relaying and sends one side bytes out of turn.  Each side
 * must refuse them with a protocol error that names the peer and says what
 * was wrong, drop the connection, and keep what it had: the secondary its
 * last committed checkpoint (a failover then serves it, verified page by
 * page), the primary its running guest (degraded, never stopped).
 *
 * The same runs again with a key on both nodes (psk-file): the handshake
 * and the tags change none of these refusals.  And one splice: the proxy,
 * which has no key, alters a byte of a page in a checkpoint and recomputes
 * the checkpoint's XXH3 in its colo/checkpoint section.  Without a key the
 * secondary commits it (its committed RAM then fails `verify` at exactly
 * that page: the attack works); with a key the tag does not check and the
 * checkpoint is refused, the committed state kept.
 *
 * Checkpoints go eagerly (docs/protocol.md): with the secondary's
 * CHECKPOINT_REPLY held back by the proxy, the primary's VMSTATE_SEND
 * still comes, and the checkpoint commits once the answers go through; a
 * VMSTATE_RECEIVED that comes before the REPLY is refused.  Pipelined:
 * with the secondary's acknowledgement of a checkpoint held back, the
 * primary's next checkpoint comes, and both commit in order.
 *
 * Compare mode (docs/compare.md) adds two frames; a kv pair in that mode,
 * with no client, gets an INPUT that is too short or no unit, or an
 * OUTPUT for a unit never sent or of the wrong size, and refuses each.
 *
 * Each test runs in its own process (Check's fork mode) and stops its
 * daemons by pid.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "buf.h"
#include "colomsg.h"
#include "pair.h"
#include "ramfmt.h"
#include "testutil.h"

#define TAG_BYTES 32            /* a proof, or a checkpoint's tag (hello.h) */

enum inject {
	S_SEND_UNASKED,         /* secondary, protected: VMSTATE_SEND with no REQUEST */
	S_GARBAGE_RAM,          /* secondary: REQUEST, then SEND + bytes that are no stream */
	S_HUGE_SIZE,            /* secondary: a RAM part, then VMSTATE_SIZE of 4 GiB */
	P_REPLY_IN_SYNC,        /* primary, syncing: CHECKPOINT_REPLY */
	P_LOADED_UNASKED,       /* primary, protected: VMSTATE_LOADED with none in flight */
	SPLICE,                 /* relay all, but alter a page of the first checkpoint
				   that has one and recompute its checksum */
	HOLD_REPLY,             /* relay all, but hold what the secondary says after
				   READY until the primary's VMSTATE_SEND went by */
	P_RECEIVED_NO_REPLY,    /* primary, a checkpoint sent: VMSTATE_RECEIVED with
				   no CHECKPOINT_REPLY before it */
	PIPELINE,               /* relay all, but hold what the secondary says after
				   its first REPLY until the primary's second
				   REQUEST went by */
	/* output-mode compare, a kv pair */
	S_INPUT_SHORT,          /* secondary, protected: an INPUT of 8 bytes */
	S_INPUT_NO_UNIT,        /* secondary: an INPUT whose unit is not kv's */
	P_OUTPUT_UNSENT,        /* primary: an OUTPUT for a unit never sent */
	P_OUTPUT_LONG,          /* primary: an OUTPUT of 32 bytes */
};

static bool compare_mode(enum inject m)
{
	return m >= S_INPUT_SHORT;
}

struct proxy {
	int lfd;
	uint16_t port;              /* where the primary connects */
	uint16_t to;                /* the secondary's port */
	enum inject mode;
	pthread_t th;
	atomic_bool stop;
	atomic_bool injected;
	bool keyed;                 /* both nodes have a key: proofs and tags */
	/* what the secondary said so far */
	uint8_t sp[64];
	size_t sp_len;
	size_t proof_left;          /* keyed: its proof after its Hello */
	bool hello_seen, ready_seen, reply_seen;
	bool asked;                 /* our CHECKPOINT_REQUEST went */
	/* what the primary said since READY: its first 8 bytes, and when it
	 * last said anything */
	uint8_t pa[8];
	size_t pa_len;
	uint64_t pa_last_ms;
	/* HOLD_REPLY: the secondary's bytes held; its verdict */
	uint8_t *held;
	size_t held_len;
	uint64_t hold_since_ms;
	bool gave_up;               /* ... and passed them on after 3 s */
	atomic_bool sent_unanswered; /* VMSTATE_SEND came with the REPLY held */
	/* PIPELINE: the secondary's bytes since READY, the primary's REQUESTs
	 * counted (its stream parsed from READY on, in pb), and the verdict */
	size_t s_after;
	unsigned requests;
	atomic_bool second_unacked;  /* a second REQUEST with the first unacknowledged */
	/* the RAM section's id, from the sync's START section */
	uint8_t ps_tail[8];
	int64_t ram_id;
	/* SPLICE: what the primary sent since READY, not yet relayed */
	uint8_t *pb;
	size_t pb_len, pb_cap;
	bool passthrough;           /* could not follow it: relay as it comes */
	/* ... and what was done, published by `spliced` */
	atomic_bool spliced;
	uint64_t spliced_seq;       /* the checkpoint altered */
	uint64_t spliced_page;      /* offset in the block of the page altered */
	char spliced_block[64];
	bool sum_was_ours;          /* its checksum was what we computed before */
};

static bool write_all(int fd, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		len -= (size_t)w;
	}
	return true;
}

static bool send_msg(int fd, uint32_t m)
{
	uint8_t b[4];

	colo_store_be32(b, m);
	return write_all(fd, b, 4);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Since READY the primary said `1, 3` (REQUEST, VMSTATE_SEND), be32 each. */
static bool primary_sent_checkpoint(const struct proxy *px)
{
	return px->pa_len == 8 && colo_load_be32(px->pa) == COLO_MSG_CHECKPOINT_REQUEST &&
	       colo_load_be32(px->pa + 4) == COLO_MSG_VMSTATE_SEND;
}

/* Follow the primary's side after READY: its first 8 bytes, and when. */
static void follow_primary_ready(struct proxy *px, const uint8_t *p, size_t n)
{
	if (!px->ready_seen || n == 0)
		return;
	for (size_t i = 0; i < n && px->pa_len < sizeof(px->pa); i++) {
		px->pa[px->pa_len++] = p[i];
		/* HOLD_REPLY: its VMSTATE_SEND, and the proxy has passed on
		 * nothing the secondary said since READY (held, or not said
		 * yet). */
		if (px->pa_len == sizeof(px->pa) && !px->gave_up &&
		    primary_sent_checkpoint(px))
			atomic_store(&px->sent_unanswered, true);
	}
	px->pa_last_ms = mono_ms();
}

/* HOLD_REPLY: the secondary's bytes after READY wait until the primary's
 * VMSTATE_SEND came (or 3 s went by: then the test fails, but ends). */
static void hold_relay(struct proxy *px, const uint8_t *p, size_t n, int pfd)
{
	if (n) {
		uint8_t *m = realloc(px->held, px->held_len + n);

		if (!m)
			abort();
		px->held = m;
		memcpy(px->held + px->held_len, p, n);
		px->held_len += n;
		if (!px->hold_since_ms)
			px->hold_since_ms = mono_ms();
	}
	if (!px->held_len)
		return;
	if (!(px->mode == PIPELINE ? px->requests >= 2 : primary_sent_checkpoint(px))) {
		if (mono_ms() - px->hold_since_ms < 3000)
			return;
		px->gave_up = true;
	} else if (px->mode == PIPELINE && !px->gave_up) {
		atomic_store(&px->second_unacked, true);
	}
	write_all(pfd, px->held, px->held_len);
	px->held_len = 0;
	px->hold_since_ms = 0;
}

/* Follow the secondary's side: a framed Hello (keyed: and its proof), then
 * be32 messages. */
static void follow_secondary(struct proxy *px, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (px->proof_left) {
			px->hello_seen = --px->proof_left == 0;
			continue;
		}
		px->sp[px->sp_len++] = p[i];
		if (!px->hello_seen) {
			if (px->sp_len >= 4 && px->sp_len == 4 + colo_load_be32(px->sp)) {
				px->proof_left = px->keyed ? TAG_BYTES : 0;
				px->hello_seen = !px->keyed;
				px->sp_len = 0;
			} else if (px->sp_len == sizeof(px->sp)) {
				px->sp_len = 4;   /* a long Hello: keep its length only */
				colo_store_be32(px->sp, colo_load_be32(px->sp) - (uint32_t)(sizeof(px->sp) - 4));
			}
			continue;
		}
		if (px->sp_len < 4)
			continue;
		if (colo_load_be32(px->sp) == 0)
			px->ready_seen = true;
		else if (colo_load_be32(px->sp) == 2 && px->ready_seen)
			px->reply_seen = true;
		px->sp_len = 0;
	}
}

/* Find the RAM START section in the sync: 0x01 be32 id 0x03 "ram". */
static void follow_primary(struct proxy *px, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n && px->ram_id < 0; i++) {
		memmove(px->ps_tail, px->ps_tail + 1, sizeof(px->ps_tail) - 1);
		px->ps_tail[sizeof(px->ps_tail) - 1] = p[i];
		if (px->ps_tail[0] == 0x01 && px->ps_tail[5] == 3 &&
		    memcmp(px->ps_tail + 6, "ra", 2) == 0 && i + 1 < n && p[i + 1] == 'm')
			px->ram_id = colo_load_be32(px->ps_tail + 1);
	}
}

/* Once the moment came, what goes where; true when done injecting. */
static bool inject(struct proxy *px, int pfd, int sfd)
{
	uint8_t b[64];

	switch (px->mode) {
	case S_SEND_UNASKED:
		if (!px->ready_seen)
			return false;
		send_msg(sfd, 3);
		return true;
	case S_GARBAGE_RAM:
		if (!px->ready_seen)
			return false;
		if (!px->reply_seen) {
			if (!px->asked)
				px->asked = send_msg(sfd, 1);
			return false;
		}
		send_msg(sfd, 3);
		memset(b, 0x99, sizeof(b));
		write_all(sfd, b, sizeof(b));
		return true;
	case S_HUGE_SIZE:
		if (!px->ready_seen || px->ram_id < 0)
			return false;
		if (!px->reply_seen) {
			if (!px->asked)
				px->asked = send_msg(sfd, 1);
			return false;
		}
		/* VMSTATE_SEND, RAM END section with just EOS, footer, EOF. */
		colo_store_be32(b, 3);
		b[4] = 0x03;
		colo_store_be32(b + 5, (uint32_t)px->ram_id);
		memset(b + 9, 0, 8);
		b[16] = 0x10;                        /* be64 EOS */
		b[17] = 0x7e;
		colo_store_be32(b + 18, (uint32_t)px->ram_id);
		b[22] = 0x00;                        /* EOF */
		colo_store_be32(b + 23, 4);                 /* VMSTATE_SIZE */
		colo_store_be32(b + 27, 1);
		colo_store_be32(b + 31, 0);                 /* be64 4 GiB */
		write_all(sfd, b, 35);
		return true;
	case P_REPLY_IN_SYNC:
		if (!px->hello_seen)
			return false;
		send_msg(pfd, 2);
		return true;
	case P_LOADED_UNASKED:
		if (!px->ready_seen)
			return false;
		send_msg(pfd, 6);
		return true;
	case S_INPUT_SHORT:
	case S_INPUT_NO_UNIT:
		if (!px->ready_seen)
			return false;
		colo_store_be32(b, 0x100);
		if (px->mode == S_INPUT_SHORT) {
			colo_store_be32(b + 4, 8);
			memset(b + 8, 0, 8);
			write_all(sfd, b, 16);
			return true;
		}
		/* unit 1 of epoch 1 (the sync was 0): it runs at once */
		colo_store_be32(b + 4, 16 + 12);
		colo_store_be32(b + 8, 0);
		colo_store_be32(b + 12, 1);
		colo_store_be32(b + 16, 0);
		colo_store_be32(b + 20, 1);
		memset(b + 24, 0xee, 12);
		write_all(sfd, b, 36);
		return true;
	case P_OUTPUT_UNSENT:
	case P_OUTPUT_LONG:
		if (!px->ready_seen)
			return false;
		colo_store_be32(b, 0x101);
		colo_store_be32(b + 4, px->mode == P_OUTPUT_LONG ? 32 : 24);
		memset(b + 8, 0, 32);
		colo_store_be32(b + 12, 7);          /* unit 7 */
		write_all(pfd, b, px->mode == P_OUTPUT_LONG ? 40 : 32);
		return true;
	case P_RECEIVED_NO_REPLY:
		/* Once the checkpoint is out whole (its bytes stopped coming). */
		if (!primary_sent_checkpoint(px) || mono_ms() - px->pa_last_ms < 300)
			return false;
		send_msg(pfd, COLO_MSG_VMSTATE_RECEIVED);
		return true;
	case SPLICE:
	case HOLD_REPLY:
	case PIPELINE:
		break;
	}
	return false;
}

/* ---- SPLICE: one checkpoint altered on the way ---- */

/* Where the parts of one checkpoint are, from its VMSTATE_SEND on. */
struct ckpt_layout {
	size_t page;                /* first PAGE record's data (0: none) */
	uint64_t page_off;          /* ... its offset in its block */
	char block[64];             /* ... and the block's name */
	size_t ram_end;             /* just past the RAM part's EOF */
	size_t dev;                 /* the device stream */
	uint64_t dev_len;
	size_t total;               /* through the tag, when keyed */
};

/*
 * Lay out the checkpoint at the front of b (DESIGN.md §4): VMSTATE_SEND,
 * RAM END section (records of `--encodings raw`: PAGE or ZERO, EOS),
 * footer, EOF, VMSTATE_SIZE n, n device bytes, a tag when keyed.  1 when
 * it is all there, 0 when more is needed, -1 when it is not that.
 */
static int ckpt_parse(const uint8_t *b, size_t len, bool keyed, struct ckpt_layout *l)
{
	char block[64] = "";
	size_t pos = 4;

	memset(l, 0, sizeof(*l));
	if (len < pos + 5)
		return 0;
	if (b[pos] != 0x03)
		return -1;
	pos += 5;
	for (;;) {
		uint64_t v;
		uint32_t flags;

		if (len < pos + 8)
			return 0;
		v = colo_load_be64(b + pos);
		flags = (uint32_t)(v & COLO_RAM_FLAGS_MASK);
		pos += 8;
		if (flags & COLO_RAM_EOS)
			break;
		if (!(flags & COLO_RAM_CONTINUE)) {
			if (len < pos + 1 + b[pos])
				return 0;
			snprintf(block, sizeof(block), "%.*s", b[pos], (const char *)b + pos + 1);
			pos += 1 + (size_t)b[pos];
		}
		if (flags & COLO_RAM_PAGE) {
			if (len < pos + COLO_PAGE_SIZE)
				return 0;
			if (!l->page) {
				l->page = pos;
				l->page_off = v & ~(uint64_t)COLO_RAM_FLAGS_MASK;
				snprintf(l->block, sizeof(l->block), "%s", block);
			}
			pos += COLO_PAGE_SIZE;
		} else if (flags & COLO_RAM_ZERO) {
			pos += 1;
		} else {
			return -1;
		}
	}
	/* footer, EOF, VMSTATE_SIZE n */
	if (len < pos + 6 + 12)
		return 0;
	if (b[pos] != 0x7e || b[pos + 5] != 0x00 ||
	    colo_load_be32(b + pos + 6) != COLO_MSG_VMSTATE_SIZE)
		return -1;
	l->ram_end = pos + 6;
	l->dev_len = colo_load_be64(b + pos + 10);
	l->dev = pos + 18;
	if (l->dev_len > COLO_DEVSTATE_MAX)
		return -1;
	l->total = l->dev + (size_t)l->dev_len + (keyed ? TAG_BYTES : 0);
	return len < l->total ? 0 : 1;
}

/* The checksum colo/checkpoint carries (primary/ckpt.c seal_devices): the
 * RAM END section through its EOF, then the devices before that section. */
static uint64_t ckpt_sum(const uint8_t *b, const struct ckpt_layout *l, size_t info)
{
	XXH3_state_t *h = XXH3_createState();
	uint64_t sum;

	XXH3_64bits_reset(h);
	XXH3_64bits_update(h, b + 4, l->ram_end - 4);
	XXH3_64bits_update(h, b + l->dev, info);
	sum = XXH3_64bits_digest(h);
	XXH3_freeState(h);
	return sum;
}

/*
 * Alter one byte of the first page and put the checksum right again, as
 * anyone on the path can who has no key.  colo/checkpoint is a FULL
 * section: 0x04, be32 id, u8 15 "colo/checkpoint", be32 instance, be32
 * version, then be64 generation, seq, time, pages, checksum.
 */
static void splice(struct proxy *px, uint8_t *b, const struct ckpt_layout *l)
{
	static const char name[] = "\x0f" COLO_CKPT_IDSTR;
	uint8_t *dev = b + l->dev, *hit;
	size_t info, sum_at;

	if (!l->page)
		return;            /* nothing to alter in this one: the next */
	hit = memmem(dev, (size_t)l->dev_len, name, sizeof(name) - 1);
	if (!hit || hit - dev < 5 || hit[-5] != 0x04) {
		px->passthrough = true;
		return;
	}
	info = (size_t)(hit - dev) - 5;
	sum_at = info + 1 + 4 + sizeof(name) - 1 + 4 + 4 + 4 * 8;
	if (sum_at + 8 > l->dev_len) {
		px->passthrough = true;
		return;
	}
	px->sum_was_ours = ckpt_sum(b, l, info) == colo_load_be64(dev + sum_at);
	b[l->page + 100] ^= 0x5a;
	colo_store_be64(dev + sum_at, ckpt_sum(b, l, info));
	px->spliced_seq = colo_load_be64(dev + info + 1 + 4 + sizeof(name) - 1 + 8 + 8);
	px->spliced_page = l->page_off;
	snprintf(px->spliced_block, sizeof(px->spliced_block), "%s", l->block);
	atomic_store(&px->spliced, true);
}

/* The primary's bytes kept to be parsed (SPLICE, PIPELINE). */
static void pb_append(struct proxy *px, const uint8_t *p, size_t n)
{
	if (px->pb_len + n > px->pb_cap) {
		px->pb_cap = (px->pb_len + n) * 2;
		px->pb = realloc(px->pb, px->pb_cap);
		if (!px->pb)
			abort();
	}
	memcpy(px->pb + px->pb_len, p, n);
	px->pb_len += n;
}

/* The primary's bytes since READY: relayed one message or checkpoint at a
 * time, the first checkpoint with a page altered. */
static void splice_relay(struct proxy *px, const uint8_t *p, size_t n, int sfd)
{
	if (px->passthrough) {
		write_all(sfd, p, n);
		return;
	}
	pb_append(px, p, n);
	while (px->pb_len >= 4 && !px->passthrough) {
		struct ckpt_layout l;
		size_t len = 4;

		if (colo_load_be32(px->pb) == COLO_MSG_VMSTATE_SEND) {
			int r = ckpt_parse(px->pb, px->pb_len, px->keyed, &l);

			if (r == 0)
				return;
			if (r < 0)
				px->passthrough = true;
			else if (!atomic_load(&px->spliced))
				splice(px, px->pb, &l);
			len = r < 0 ? px->pb_len : l.total;
		}
		write_all(sfd, px->pb, len);
		memmove(px->pb, px->pb + len, px->pb_len - len);
		px->pb_len -= len;
	}
	if (px->passthrough && px->pb_len) {
		write_all(sfd, px->pb, px->pb_len);
		px->pb_len = 0;
	}
}

/* PIPELINE: the primary's bytes since READY go on at once; a copy is
 * parsed (be32 messages, checkpoints whole) to count its REQUESTs. */
static void count_relay(struct proxy *px, const uint8_t *p, size_t n, int sfd)
{
	write_all(sfd, p, n);
	if (px->passthrough)
		return;
	pb_append(px, p, n);
	while (px->pb_len >= 4 && !px->passthrough) {
		uint32_t m = colo_load_be32(px->pb);
		struct ckpt_layout l;
		size_t len = 4;

		if (m == COLO_MSG_VMSTATE_SEND) {
			int r = ckpt_parse(px->pb, px->pb_len, px->keyed, &l);

			if (r == 0)
				return;
			if (r < 0) {
				px->passthrough = true;
				return;
			}
			len = l.total;
		} else if (m == COLO_MSG_CHECKPOINT_REQUEST) {
			px->requests++;
		} else {
			px->passthrough = true;
			return;
		}
		memmove(px->pb, px->pb + len, px->pb_len - len);
		px->pb_len -= len;
	}
}

/* PIPELINE: of the secondary's bytes since READY, its first REPLY goes on;
 * the rest waits for the primary's second REQUEST (or 3 s). */
static void pipeline_relay(struct proxy *px, const uint8_t *p, size_t n, int pfd)
{
	size_t first = px->s_after < 4 ? 4 - px->s_after : 0;

	if (first > n)
		first = n;
	write_all(pfd, p, first);
	px->s_after += n;
	hold_relay(px, p + first, n - first, pfd);
}

/* One primary only: a reconnect is closed at once. */
static void turn_away(int lfd)
{
	int fd = accept(lfd, NULL, NULL);

	if (fd >= 0)
		close(fd);
}

static void *proxy_main(void *arg)
{
	struct proxy *px = arg;
	struct sockaddr_in sa;
	uint8_t buf[65536];
	int pfd = -1, sfd = -1;
	bool blocked = false;

	for (;;) {
		struct pollfd pl = { px->lfd, POLLIN, 0 };

		if (atomic_load(&px->stop))
			goto out;
		if (poll(&pl, 1, 50) > 0)
			break;
	}
	pfd = accept(px->lfd, NULL, NULL);
	sfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(px->to);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (pfd < 0 || sfd < 0 || connect(sfd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		goto out;
	while (!atomic_load(&px->stop)) {
		struct pollfd pl[3] = { { pfd, POLLIN, 0 }, { sfd, POLLIN, 0 },
					{ px->lfd, POLLIN, 0 } };
		ssize_t n;

		if (poll(pl, 3, 50) < 0 && errno != EINTR)
			break;
		if (pl[2].revents)
			turn_away(px->lfd);
		if (pl[0].revents) {
			n = read(pfd, buf, sizeof(buf));
			if (n <= 0)
				break;
			follow_primary_ready(px, buf, (size_t)n);
			if (px->mode == SPLICE && px->ready_seen) {
				/* The sync went whole before READY could come. */
				splice_relay(px, buf, (size_t)n, sfd);
			} else if (px->mode == PIPELINE && px->ready_seen) {
				count_relay(px, buf, (size_t)n, sfd);
			} else if (!blocked) {
				follow_primary(px, buf, (size_t)n);
				write_all(sfd, buf, (size_t)n);
			}
		}
		if (pl[1].revents) {
			bool held = px->mode == HOLD_REPLY && px->ready_seen;
			bool piped = px->mode == PIPELINE && px->ready_seen;

			n = read(sfd, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (held)
				hold_relay(px, buf, (size_t)n, pfd);
			else if (piped)
				pipeline_relay(px, buf, (size_t)n, pfd);
			else if (!blocked)
				write_all(pfd, buf, (size_t)n);
			follow_secondary(px, buf, (size_t)n);
		} else if (px->mode == HOLD_REPLY || px->mode == PIPELINE) {
			hold_relay(px, NULL, 0, pfd);
		}
		/* From the moment on, nothing more is relayed either way. */
		if (px->mode != SPLICE && px->mode != HOLD_REPLY && px->mode != PIPELINE &&
		    !atomic_load(&px->injected)) {
			bool moment = px->mode == P_REPLY_IN_SYNC ? px->hello_seen :
				      px->ready_seen;

			blocked = blocked || moment;
			if (moment && inject(px, pfd, sfd))
				atomic_store(&px->injected, true);
		}
	}
out:
	if (pfd >= 0)
		close(pfd);
	if (sfd >= 0)
		close(sfd);
	/* Until the test ends the port stays ours, so that a reconnect finds
	 * nobody there rather than whoever took the port next. */
	while (!atomic_load(&px->stop)) {
		struct pollfd pl = { px->lfd, POLLIN, 0 };

		if (poll(&pl, 1, 50) > 0)
			turn_away(px->lfd);
	}
	return NULL;
}

static void proxy_start(struct proxy *px, enum inject mode, uint16_t to, bool keyed)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int one = 1;

	memset(px, 0, sizeof(*px));
	px->mode = mode;
	px->keyed = keyed;
	px->to = to;
	px->ram_id = -1;
	px->lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(px->lfd, 0);
	setsockopt(px->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(px->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(px->lfd, 4), 0);
	ck_assert_int_eq(getsockname(px->lfd, (struct sockaddr *)&sa, &len), 0);
	px->port = ntohs(sa.sin_port);
	ck_assert_int_eq(pthread_create(&px->th, NULL, proxy_main, px), 0);
}

static void proxy_stop(struct proxy *px)
{
	atomic_store(&px->stop, true);
	pthread_join(px->th, NULL);
	if (px->lfd >= 0)
		close(px->lfd);
	free(px->pb);
	free(px->held);
}

/*
 * A pair through the proxy: b listens on its own port, a connects to px.
 * key: both nodes' psk-file (NULL: none).  SPLICE sends pages raw, and
 * writes slowly so that a checkpoint stays small.
 */
static void start_through(struct proc *a, struct proc *b, struct proxy *px,
			  enum inject mode, const char *key)
{
	char listen[32], peer[32];
	uint16_t port = pair_free_port();
	const char *args[PROC_ARGS_MAX];
	size_t n = 0, common;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
	proxy_start(px, mode, port, key != NULL);
	snprintf(peer, sizeof(peer), "127.0.0.1:%u", px->port);
	args[n++] = "--guest";
	args[n++] = compare_mode(mode) ? "kv" : "memtouch";
	if (compare_mode(mode)) {
		args[n++] = "--output-mode";
		args[n++] = "compare";
	}
	args[n++] = "--ram-mb";
	args[n++] = "16";
	args[n++] = "--heartbeat-timeout-ms";
	args[n++] = "300";
	if (key) {
		args[n++] = "--psk-file";
		args[n++] = key;
	}
	if (mode == SPLICE || mode == PIPELINE) {
		args[n++] = "--encodings";
		args[n++] = "raw";
		args[n++] = "--memtouch-rate";
		args[n++] = "1000";
	}
	common = n;
	args[n++] = "--listen";
	args[n++] = listen;
	args[n] = NULL;
	proc_startv(b, pair_bin("colo-secondary"), "b", args);
	{
		struct wait_arg w = { b, 0, "listening on" };

		ck_assert(wait_for(cond_log, &w, 10000));
	}
	/* A long interval: after the sync nothing but what the proxy sends
	 * (or, for SPLICE, what the test asks for). */
	n = common;
	args[n++] = "--peer";
	args[n++] = peer;
	args[n++] = "--checkpoint-interval-ms";
	args[n++] = mode == PIPELINE ? "20" : "60000";
	args[n] = NULL;
	proc_startv(a, pair_bin("colo-primary"), "a", args);
}

static void expect_log(struct proc *p, const char *text)
{
	struct wait_arg w = { p, 0, text };

	if (!wait_for(cond_log, &w, 20000)) {
		proc_dump_log(p);
		ck_abort_msg("%s never logged \"%s\"", p->name, text);
	}
}

struct state_arg {
	struct proc *p;
	const char *state;
};

static bool cond_state(void *ud)
{
	struct state_arg *a = ud;
	char state[64];

	return ctl_status(a->p, NULL, state, sizeof(state), NULL, NULL) &&
	       strcmp(state, a->state) == 0;
}

static void expect_state(struct proc *p, const char *state)
{
	struct state_arg a = { p, state };

	if (!wait_for(cond_state, &a, 20000)) {
		char now[64] = "(no answer)";

		ctl_status(p, NULL, now, sizeof(now), NULL, NULL);
		proc_dump_log(p);
		ck_abort_msg("%s never got to state %s (it is %s)", p->name, state, now);
	}
}

/*
 * The secondary refused what it was sent and kept its committed sync:
 * waiting, checkpoint 0 committed; a failover serves it, verified.
 */
static void secondary_kept_its_state(struct proc *a, struct proc *b)
{
	Colo__ControlResponse *r;
	uint64_t last = 99, checked = 0;
	char why[512];

	expect_state(b, "waiting");
	ck_assert(ctl_status(b, NULL, NULL, 0, &last, NULL));
	ck_assert_uint_eq(last, 0);
	ck_assert_msg(!proc_wait(a, 0), "the primary died");
	r = ctl(b, COLO__CONTROL_REQUEST__CMD_FAILOVER, 0, NULL, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(r->ok, "%s", r->error);
	colo__control_response__free_unpacked(r, NULL);
	ck_assert(wait_for(cond_primary, b, 5000));
	ck_assert_msg(ctl_verify_clean(b, &checked, why, sizeof(why)), "%s", why);
	ck_assert_uint_eq(checked, 16u << 20 >> 12);
}

/* The key both nodes share in the keyed runs (NULL: none). */
static const char *test_key(bool keyed)
{
	return keyed ? pair_keyfile("psk") : NULL;
}

static void send_without_request(bool keyed)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, S_SEND_UNASKED, test_key(keyed));
	expect_log(&b, "protocol error from a (127.0.0.1:");
	expect_log(&b, "unexpected message 3 (VMSTATE_SEND) while protected: expected "
		   "CHECKPOINT_REQUEST");
	secondary_kept_its_state(&a, &b);
	proc_stop(&a);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}

START_TEST(secondary_refuses_send_without_request)
{
	send_without_request(false);
}
END_TEST

START_TEST(keyed_secondary_refuses_send_without_request)
{
	send_without_request(true);
}
END_TEST

static void checkpoint_that_is_no_stream(bool keyed)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, S_GARBAGE_RAM, test_key(keyed));
	expect_log(&b, "protocol error from a (127.0.0.1:");
	expect_log(&b, ": bad checkpoint: ");
	expect_log(&b, "keeping the last committed checkpoint");
	secondary_kept_its_state(&a, &b);
	proc_stop(&a);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}

START_TEST(secondary_refuses_a_checkpoint_that_is_no_stream)
{
	checkpoint_that_is_no_stream(false);
}
END_TEST

START_TEST(keyed_secondary_refuses_a_checkpoint_that_is_no_stream)
{
	checkpoint_that_is_no_stream(true);
}
END_TEST

static void lying_device_size(bool keyed)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, S_HUGE_SIZE, test_key(keyed));
	expect_log(&b, "VMSTATE_SIZE of 4294967296 bytes (at most 67108864)");
	secondary_kept_its_state(&a, &b);
	proc_stop(&a);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}

START_TEST(secondary_refuses_a_lying_device_size)
{
	lying_device_size(false);
}
END_TEST

START_TEST(keyed_secondary_refuses_a_lying_device_size)
{
	lying_device_size(true);
}
END_TEST

static void reply_during_sync(bool keyed)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, P_REPLY_IN_SYNC, test_key(keyed));
	expect_log(&a, "protocol error from b (127.0.0.1:");
	expect_log(&a, "unexpected CHECKPOINT_REPLY (2) while syncing");
	expect_log(&a, "lost secondary b (protocol error): running unprotected");
	/* It serves on, unprotected, and looks for a secondary again. */
	expect_state(&a, "degraded");
	ck_assert_msg(!proc_wait(&a, 0), "the primary died");
	ck_assert_int_eq(proc_stop(&a), 0);
	proc_stop(&b);
	proxy_stop(&px);
}

START_TEST(primary_refuses_reply_during_sync)
{
	reply_during_sync(false);
}
END_TEST

START_TEST(keyed_primary_refuses_reply_during_sync)
{
	reply_during_sync(true);
}
END_TEST

static void loaded_with_nothing_in_flight(bool keyed)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, P_LOADED_UNASKED, test_key(keyed));
	expect_log(&a, "unexpected VMSTATE_LOADED (6) while protected, checkpoint idle");
	expect_log(&a, "lost secondary b (protocol error): running unprotected");
	expect_state(&a, "degraded");
	ck_assert_msg(!proc_wait(&a, 0), "the primary died");
	/* The secondary loses its connection but keeps the committed sync. */
	expect_state(&b, "waiting");
	ck_assert_int_eq(proc_stop(&a), 0);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}

START_TEST(primary_refuses_loaded_with_nothing_in_flight)
{
	loaded_with_nothing_in_flight(false);
}
END_TEST

START_TEST(keyed_primary_refuses_loaded_with_nothing_in_flight)
{
	loaded_with_nothing_in_flight(true);
}
END_TEST

/* ---- compare mode's frames ---- */

static void secondary_refuses_input(enum inject mode, const char *text)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, mode, NULL);
	expect_log(&b, "protocol error from a (127.0.0.1:");
	expect_log(&b, text);
	secondary_kept_its_state(&a, &b);
	proc_stop(&a);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}

START_TEST(secondary_refuses_a_short_input)
{
	secondary_refuses_input(S_INPUT_SHORT, "INPUT of 8 bytes (from 16 to 16777232)");
}
END_TEST

START_TEST(secondary_refuses_an_input_that_is_no_unit)
{
	secondary_refuses_input(S_INPUT_NO_UNIT, "INPUT unit 1: kv unit: 12 bytes, shorter "
				"than its ");
}
END_TEST

static void primary_refuses_output(enum inject mode, const char *text)
{
	struct proc a, b;
	struct proxy px;

	start_through(&a, &b, &px, mode, NULL);
	expect_log(&a, "protocol error from b (127.0.0.1:");
	expect_log(&a, text);
	expect_log(&a, "lost secondary b (protocol error): running unprotected");
	expect_state(&a, "degraded");
	ck_assert_msg(!proc_wait(&a, 0), "the primary died");
	ck_assert_int_eq(proc_stop(&a), 0);
	proc_stop(&b);
	proxy_stop(&px);
}

START_TEST(primary_refuses_an_output_never_asked_for)
{
	primary_refuses_output(P_OUTPUT_UNSENT, "OUTPUT for unit 7, which was never sent "
			       "(the last is 0)");
}
END_TEST

START_TEST(primary_refuses_an_output_of_the_wrong_size)
{
	primary_refuses_output(P_OUTPUT_LONG, "OUTPUT of 32 bytes (it has 24)");
}
END_TEST

/* ---- eager checkpoints ---- */

/* The REPLY held back: the checkpoint comes anyway, and commits once the
 * answers go through. */
START_TEST(primary_sends_without_waiting_for_the_reply)
{
	struct proc a, b;
	struct proxy px;
	Colo__ControlResponse *r;
	uint64_t last = 0;

	start_through(&a, &b, &px, HOLD_REPLY, NULL);
	expect_state(&b, "protected");
	expect_state(&a, "protected");
	r = ctl(&a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 0, NULL, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(r->ok, "%s", r->error);
	colo__control_response__free_unpacked(r, NULL);
	ck_assert_msg(atomic_load(&px.sent_unanswered), "no VMSTATE_SEND while the REPLY "
		      "was held (the primary's first bytes: %zu)", px.pa_len);
	ck_assert(ctl_status(&b, NULL, NULL, 0, &last, NULL));
	ck_assert_uint_ge(last, 1);
	ck_assert_msg(!proc_log_has(&a, "protocol error"), "the primary refused something");
	ck_assert_int_eq(proc_stop(&a), 0);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}
END_TEST

/* VMSTATE_RECEIVED before the REPLY: refused, the guest runs on. */
START_TEST(primary_refuses_received_before_reply)
{
	struct proc a, b;
	struct proxy px;
	Colo__ControlResponse *r;

	start_through(&a, &b, &px, P_RECEIVED_NO_REPLY, NULL);
	expect_state(&a, "protected");
	r = ctl(&a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 0, NULL, 0);
	ck_assert_ptr_nonnull(r);
	ck_assert_msg(!r->ok, "a checkpoint committed with no answer from the secondary");
	colo__control_response__free_unpacked(r, NULL);
	expect_log(&a, "protocol error from b (127.0.0.1:");
	expect_log(&a, "VMSTATE_RECEIVED for checkpoint 1 before its CHECKPOINT_REPLY");
	expect_log(&a, "lost secondary b (protocol error): running unprotected");
	expect_state(&a, "degraded");
	ck_assert_msg(!proc_wait(&a, 0), "the primary died");
	ck_assert_int_eq(proc_stop(&a), 0);
	proc_stop(&b);
	proxy_stop(&px);
}
END_TEST

/* The acknowledgement of a checkpoint held back: the next checkpoint
 * comes meanwhile (pipelined), and both commit, in order. */
START_TEST(primary_pipelines_checkpoints)
{
	struct proc a, b;
	struct proxy px;
	struct wait_arg w;
	uint64_t pipelined = 0;

	start_through(&a, &b, &px, PIPELINE, NULL);
	expect_state(&b, "protected");
	expect_state(&a, "protected");
	w = (struct wait_arg){ &b, 5, NULL };
	ck_assert_msg(wait_for(cond_committed, &w, 20000), "checkpoint 5 not committed");
	ck_assert_msg(atomic_load(&px.second_unacked), "no second REQUEST while the first "
		      "checkpoint waited for its acknowledgement (%u seen)", px.requests);
	ck_assert_msg(!proc_log_has(&a, "protocol error") && !proc_log_has(&b, "protocol error"),
		      "a protocol error");
	ck_assert(ctl_stat(&a, "pipelined", &pipelined));
	ck_assert_uint_ge(pipelined, 1);
	ck_assert_int_eq(proc_stop(&a), 0);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}
END_TEST

/* ---- the splice ---- */

/*
 * Checkpoints on demand until the proxy has altered one (the first that
 * carries a page: memtouch writes all the time, so the next one does).
 * Returns the sequence of the checkpoint altered.
 */
static uint64_t splice_one(struct proc *a, struct proxy *px)
{
	for (int tries = 0; tries < 50 && !atomic_load(&px->spliced); tries++) {
		Colo__ControlResponse *r = ctl(a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 0,
					       NULL, 0);

		/* Refused (the keyed run) or committed: either way it went by. */
		if (r)
			colo__control_response__free_unpacked(r, NULL);
	}
	ck_assert_msg(atomic_load(&px->spliced), "no checkpoint with a page went by");
	/* The proxy's checksum is the primary's: what it recomputed counts. */
	ck_assert_msg(px->sum_was_ours, "the proxy's checksum differs from the primary's");
	return px->spliced_seq;
}

/* Without a key, the altered checkpoint is committed: the attack works. */
START_TEST(unkeyed_secondary_commits_a_spliced_checkpoint)
{
	struct proc a, b;
	struct proxy px;
	Colo__ControlResponse *r;
	struct wait_arg w;
	uint64_t seq, checked = 0;
	char want[128], why[512];

	start_through(&a, &b, &px, SPLICE, NULL);
	expect_state(&b, "protected");
	expect_state(&a, "protected");
	ck_assert_msg(ctl_verify_clean(&b, &checked, why, sizeof(why)), "%s", why);
	seq = splice_one(&a, &px);
	w = (struct wait_arg){ &b, seq, NULL };
	ck_assert_msg(wait_for(cond_committed, &w, 20000), "checkpoint %" PRIu64
		      " not committed", seq);
	ck_assert_msg(!proc_log_has(&b, "refused"), "the secondary refused something");
	/* Its committed RAM is no longer what its devices say: that page. */
	r = ctl(&b, COLO__CONTROL_REQUEST__CMD_VERIFY, 0, NULL, 0);
	ck_assert(r && r->ok && r->verify);
	ck_assert_uint_ge(r->verify->last_committed, seq);
	ck_assert_uint_eq(r->verify->pages_bad, 1);
	ck_assert_uint_eq(r->verify->n_bad_pages, 1);
	snprintf(want, sizeof(want), "%s+0x%" PRIx64, px.spliced_block, px.spliced_page);
	ck_assert_str_eq(r->verify->bad_pages[0], want);
	colo__control_response__free_unpacked(r, NULL);
	/* The primary's own RAM is fine: only what went on the wire changed. */
	ck_assert_msg(ctl_verify_clean(&a, &checked, why, sizeof(why)), "%s", why);
	ck_assert_int_eq(proc_stop(&a), 0);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}
END_TEST

/* With a key on both, the same splice is refused by its tag; the
 * secondary keeps its committed state, unchanged. */
START_TEST(keyed_secondary_refuses_a_spliced_checkpoint)
{
	struct proc a, b;
	struct proxy px;
	uint64_t seq, before_seq, after_seq, checked = 0;
	char want[160], why[512], before[128], after[128];

	start_through(&a, &b, &px, SPLICE, test_key(true));
	expect_state(&b, "protected");
	expect_state(&a, "protected");
	ck_assert(ctl_block_hash(&b, before, sizeof(before), &before_seq));
	seq = splice_one(&a, &px);
	snprintf(want, sizeof(want), "checkpoint %" PRIu64 " refused: its tag does not check "
		 "(altered on the way?)", seq);
	expect_log(&b, want);
	/* The checksum the proxy wrote checked: only the tag caught it. */
	ck_assert_msg(!proc_log_has(&b, "the primary's checksum"), "refused on its checksum");
	expect_log(&b, "keeping the last committed checkpoint");
	expect_state(&b, "waiting");
	/* The one before it is what it holds (a checkpoint with no page that
	 * went by before it changed no RAM: memtouch writes make pages). */
	ck_assert(ctl_block_hash(&b, after, sizeof(after), &after_seq));
	ck_assert_uint_eq(after_seq, seq - 1);
	ck_assert_str_eq(after, before);
	ck_assert_msg(ctl_verify_clean(&b, &checked, why, sizeof(why)), "%s", why);
	ck_assert_msg(!proc_wait(&a, 0), "the primary died");
	ck_assert_int_eq(proc_stop(&a), 0);
	ck_assert_int_eq(proc_stop(&b), 0);
	proxy_stop(&px);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("repl");
	TCase *tc = tcase_create("out of turn");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, secondary_refuses_send_without_request);
	tcase_add_test(tc, secondary_refuses_a_checkpoint_that_is_no_stream);
	tcase_add_test(tc, secondary_refuses_a_lying_device_size);
	tcase_add_test(tc, primary_refuses_reply_during_sync);
	tcase_add_test(tc, primary_refuses_loaded_with_nothing_in_flight);
	tcase_add_test(tc, secondary_refuses_a_short_input);
	tcase_add_test(tc, secondary_refuses_an_input_that_is_no_unit);
	tcase_add_test(tc, primary_refuses_an_output_never_asked_for);
	tcase_add_test(tc, primary_refuses_an_output_of_the_wrong_size);
	suite_add_tcase(s, tc);
	tc = tcase_create("out of turn, keyed");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, keyed_secondary_refuses_send_without_request);
	tcase_add_test(tc, keyed_secondary_refuses_a_checkpoint_that_is_no_stream);
	tcase_add_test(tc, keyed_secondary_refuses_a_lying_device_size);
	tcase_add_test(tc, keyed_primary_refuses_reply_during_sync);
	tcase_add_test(tc, keyed_primary_refuses_loaded_with_nothing_in_flight);
	suite_add_tcase(s, tc);
	tc = tcase_create("eager checkpoints");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, primary_sends_without_waiting_for_the_reply);
	tcase_add_test(tc, primary_refuses_received_before_reply);
	tcase_add_test(tc, primary_pipelines_checkpoints);
	suite_add_tcase(s, tc);
	tc = tcase_create("splice");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, unkeyed_secondary_commits_a_spliced_checkpoint);
	tcase_add_test(tc, keyed_secondary_refuses_a_spliced_checkpoint);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
