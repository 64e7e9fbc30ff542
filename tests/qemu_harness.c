/* qemu_harness.c: the relay run on bytes (see qemu_harness.h). */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "colomsg.h"
#include "qemu_harness.h"
#include "qemu_int.h"
#include "ram.h"
#include "vmstate.h"

/* A bound, never reached by a working run (the input is closed at its end). */
#define BEGIN_MS 60000

/* ---- the guest, as qemu_create() and qemu_attach() make it ---- */

static void on_died(void *ud, const char *why)
{
	struct qh_run *run = ud;

	snprintf(run->ended, sizeof(run->ended), "%s", why);
}

/* The relay's thread (ours), after the mirror changed. */
static void on_notify(void *ud)
{
	struct qh_run *run = ud;

	run->notified++;
	run->notify_hash = qh_state_hash(run->q);
	run->notify_ckpts = run->q->ckpts;
}

static int make_guest(struct qh_run *run, struct colo_err *err)
{
	struct qemu_guest *q = calloc(1, sizeof(*q));
	int r;

	if (!q)
		return colo_err_set(err, ENOMEM, "out of memory");
	run->q = q;
	run->set.qmp_timeout_ms = 3000;
	q->base.ops = &colo_qemu_ops;
	q->set = &run->set;
	q->role = COLO_ROLE_PRIMARY;
	snprintf(q->node, sizeof(q->node), "harness");
	q->listen_fd = q->mig_fd = -1;
	q->wake[0] = q->wake[1] = -1;
	q->dev_at = -1;
	q->interval_ms = 100;
	colo_qmp_init(&q->qmp);
	pthread_mutex_init(&q->lock, NULL);
	pthread_mutex_init(&q->qmp_lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	q->died = on_died;
	q->died_ud = run;
	q->notify = on_notify;
	q->notify_ud = run;
	if (pipe2(q->wake, O_CLOEXEC) != 0)
		return colo_err_set(err, errno, "pipe: %s", strerror(errno));
	if ((r = colo_ram_new(COLO_DIRTY_MANUAL, &run->ram, err)) != 0 ||
	    (r = colo_savevm_init(&run->sv, "harness", err)) != 0)
		return r;
	q->ram = run->ram;
	q->sv = &run->sv;
	return colo_savevm_add_device(&run->sv, COLO_QEMU_DEVICE, 0, &qemu_vm_vmsd, &q->dev,
				      err);
}

static void free_guest(struct qh_run *run)
{
	struct qemu_guest *q = run->q;

	if (q) {
		qemu_relay_free(q);
		colo_qmp_free(&q->qmp);
		free(q->blocks);
		free(q->binfo);
		colo_vmstate_free_allocs(&qemu_vm_vmsd, &q->dev);
		for (int i = 0; i < 2; i++)
			if (q->wake[i] >= 0)
				close(q->wake[i]);
		if (q->mig_fd >= 0)
			close(q->mig_fd);
		pthread_cond_destroy(&q->cond);
		pthread_mutex_destroy(&q->qmp_lock);
		pthread_mutex_destroy(&q->lock);
		free(q);
	}
	colo_savevm_free(&run->sv);
	if (run->ram)
		colo_ram_free(run->ram);
}

/* ---- QEMU's side of the socket ---- */

/* Bytes from `at` on go once the relay sent `answers` answers. */
struct gate {
	size_t at;
	size_t answers;
};

struct io {
	int fd;
	pid_t relay;                    /* the relay's thread */
	const uint8_t *in;
	size_t len;
	struct gate *gates;
	size_t ngates, gi;
	uint64_t seed;                  /* 0: no pieces */
	unsigned pieces;
	uint8_t *ans;
	size_t alen, acap;
	size_t waited, stalls;
	bool hold;
	int err;                        /* errno of a failure of ours */
};

/* The end of the next piece from off (before the next gate). */
static size_t next_piece(struct io *io, size_t off)
{
	static const size_t ceiling[8] = { 1, 2, 3, 7, 16, 100, 1000, 4097 };
	size_t end = io->gi < io->ngates ? io->gates[io->gi].at : io->len;
	uint64_t v;

	if (!io->seed || io->pieces >= QH_PIECES_MAX)
		return end;
	io->pieces++;
	io->seed = io->seed * 6364136223846793005ull + 1442695040888963407ull;
	v = io->seed >> 33;
	v = 1 + v % ceiling[(io->seed >> 20) & 7];
	return v < end - off ? off + (size_t)v : end;
}

/* Answers that came; false at the end of the relay's side. */
static bool io_read(struct io *io)
{
	for (;;) {
		ssize_t n;

		if (io->acap - io->alen < 256) {
			size_t cap = io->acap ? io->acap * 2 : 1024;
			uint8_t *a = realloc(io->ans, cap);

			if (!a) {
				io->err = ENOMEM;
				return false;
			}
			io->ans = a;
			io->acap = cap;
		}
		n = recv(io->fd, io->ans + io->alen, io->acap - io->alen, MSG_DONTWAIT);
		if (n > 0) {
			io->alen += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		return false;           /* EOF, or the relay's side reset */
	}
}

/* Has the relay read everything written?  (Unread bytes stay charged to
 * the writer of a unix stream socket until the reader takes them.) */
static bool io_drained(struct io *io)
{
	int queued = 0;

	return ioctl(io->fd, SIOCOUTQ, &queued) != 0 || queued == 0;
}

/* Is the relay's thread asleep in its poll() (two fds: the socket and the
 * wake pipe)?  Without /proc, say yes: a stall counted, never a hang. */
static bool relay_polls(pid_t tid)
{
	char path[64], line[256];
	unsigned long fds, nfds;
	long nr;
	bool yes;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	f = fopen(path, "r");
	if (!f)
		return true;
	yes = fgets(line, sizeof(line), f) && sscanf(line, "%ld %lx %lx", &nr, &fds, &nfds) == 3 &&
	      (nr == SYS_poll || nr == SYS_ppoll) && nfds == 2;
	fclose(f);
	return yes;
}

/* At a gate: true once the bytes may go.  QEMU waits for its answer; when
 * the relay waits for bytes instead, QEMU would wait forever: go on. */
static bool gate_open(struct io *io)
{
	const struct gate *g = &io->gates[io->gi];

	if (io->alen / 4 >= g->answers)
		return true;
	if (!io_drained(io) || !relay_polls(io->relay))
		return false;
	/* Asleep with every byte read: what it answered is in our queue. */
	if (!io_read(io))
		return true;
	if (io->alen / 4 < g->answers)
		io->stalls++;
	return true;
}

static void *io_main(void *arg)
{
	static const struct timespec nap = { 0, 20000 };
	struct io *io = arg;
	size_t off = 0, end;
	bool writing = true, waiting = false, gated = false;

	end = next_piece(io, 0);
	for (;;) {
		struct pollfd pf = { .fd = io->fd, .events = POLLIN };

		if (writing && off == io->len) {
			if (!io->hold)
				shutdown(io->fd, SHUT_WR);
			writing = false;
		}
		if (writing && !waiting && !gated && off == end && io->gi < io->ngates &&
		    io->gates[io->gi].at == off) {
			gated = true;
			io->waited++;
		}
		if (gated && gate_open(io)) {
			gated = false;
			io->gi++;
			end = next_piece(io, off);
		}
		if (waiting && io_drained(io)) {
			waiting = false;
			end = next_piece(io, off);
		}
		if (writing && !waiting && !gated)
			pf.events |= POLLOUT;
		if (poll(&pf, 1, waiting || gated ? 0 : -1) < 0 && errno != EINTR) {
			io->err = errno;
			break;
		}
		if ((pf.revents & (POLLIN | POLLHUP | POLLERR)) && !io_read(io))
			break;
		if ((pf.revents & POLLOUT) && writing && !waiting && !gated) {
			ssize_t n = send(io->fd, io->in + off, end - off,
					 MSG_DONTWAIT | MSG_NOSIGNAL);

			if (n > 0) {
				off += (size_t)n;
				if (off == end && io->seed && off < io->len &&
				    io->pieces < QH_PIECES_MAX)
					waiting = true;
				else if (off == end && off < io->len && !(io->gi < io->ngates &&
					 io->gates[io->gi].at == off))
					end = next_piece(io, off);
			} else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
				   errno != EINTR) {
				writing = false;       /* the relay is gone */
			}
		}
		if (waiting || gated)
			nanosleep(&nap, NULL);
	}
	return NULL;
}

/* QEMU's turns in `in`, as far as it indexes (none if its initial
 * migration does not): malloc'd, *n of them. */
static struct gate *find_gates(const uint8_t *in, size_t len, size_t *n)
{
	struct qh_stream s;
	struct colo_err err;
	struct gate *g;
	size_t k = 0;

	*n = 0;
	colo_err_clear(&err);
	if (qh_index(in, len, &s, &err) != 0)
		return NULL;
	g = calloc(2 * s.nckpts + 3, sizeof(*g));
	if (g) {
		g[k++] = (struct gate){ s.initial_len, 1 };
		for (size_t i = 0; i <= s.nckpts; i++) {
			const struct qh_ckpt *c = &s.ckpt[i];

			if (i == s.nckpts && !s.partial)
				break;
			/* after a REQUEST, REPLY; after the device bytes, LOADED */
			if (c->send != SIZE_MAX && c->send < len)
				g[k++] = (struct gate){ c->send, 2 + 3 * i };
			if (i < s.nckpts && c->end < len)
				g[k++] = (struct gate){ c->end, 1 + 3 * (i + 1) };
		}
		*n = k;
	}
	qh_stream_free(&s);
	return g;
}

/* ---- running ---- */

int qh_run(const uint8_t *in, size_t len, const struct qh_opts *o, struct qh_run **out,
	   struct colo_err *err)
{
	struct qh_run *run = calloc(1, sizeof(*run));
	struct io io = { .fd = -1, .in = in, .len = len };
	struct colo_err e;
	pthread_t thr;
	int sp[2], r;

	*out = run;
	if (!run)
		return colo_err_set(err, ENOMEM, "out of memory");
	if ((r = make_guest(run, err)) != 0)
		return r;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0)
		return colo_err_set(err, errno, "socketpair: %s", strerror(errno));
	run->q->mig_fd = sp[0];
	io.fd = sp[1];
	io.seed = o && o->split_seed ? o->split_seed : 0;
	io.hold = o && o->hold;
	io.relay = (pid_t)syscall(SYS_gettid);
	io.gates = find_gates(in, len, &io.ngates);
	if (pthread_create(&thr, NULL, io_main, &io) != 0) {
		close(sp[1]);
		free(io.gates);
		return colo_err_set(err, EAGAIN, "cannot start a thread");
	}
	colo_err_clear(&e);
	if (qemu_relay_begin(run->q, BEGIN_MS, &e) != 0) {
		snprintf(run->ended, sizeof(run->ended), "%s", e.msg);
	} else {
		run->begun = true;
		qemu_relay_main(run->q);
	}
	/* The relay is done: its end of the socket closes, so the writer stops
	 * and reads the answers to their end. */
	close(run->q->mig_fd);
	run->q->mig_fd = -1;
	pthread_join(thr, NULL);
	close(sp[1]);
	free(io.gates);
	run->gates = io.waited;
	run->stalls = io.stalls;
	if (io.err) {
		free(io.ans);
		return colo_err_set(err, io.err, "the harness's writer: %s", strerror(io.err));
	}
	run->nanswers = io.alen / 4;
	run->answers = calloc(run->nanswers + 1, sizeof(*run->answers));
	if (!run->answers) {
		free(io.ans);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < run->nanswers; i++) {
		uint32_t be;

		memcpy(&be, io.ans + 4 * i, 4);
		run->answers[i] = be32toh(be);
	}
	r = io.alen % 4 ? colo_err_set(err, EPROTO, "the relay sent %zu bytes: not whole "
				       "messages", io.alen) : 0;
	free(io.ans);
	return r;
}

void qh_run_free(struct qh_run *run)
{
	if (!run)
		return;
	free_guest(run);
	free(run->answers);
	free(run);
}

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	return XXH3_64bits_withSeed(p, n, h);
}

uint64_t qh_state_hash(const struct qemu_guest *q)
{
	uint64_t h = 0x9e3779b97f4a7c15ull;

	h = mix(h, &q->nblocks, sizeof(q->nblocks));
	for (size_t i = 0; i < q->nblocks; i++) {
		const struct colo_ram_block *b = q->blocks[i];

		h = mix(h, b->name, strlen(b->name));
		h = mix(h, &b->length, sizeof(b->length));
		/* Pages never written are zero: the written ones say it all. */
		for (uint64_t w = 0; w < (b->npages + 63) / 64; w++) {
			for (uint64_t bits = b->dirty[w]; bits; bits &= bits - 1) {
				uint64_t pg = w * 64 + (uint64_t)__builtin_ctzll(bits);

				h = mix(h, &pg, sizeof(pg));
				h = mix(h, b->host + pg * COLO_PAGE_SIZE, COLO_PAGE_SIZE);
			}
		}
	}
	h = mix(h, q->dev.machine, sizeof(q->dev.machine));
	h = mix(h, &q->dev.ram_section_id, sizeof(q->dev.ram_section_id));
	h = mix(h, &q->dev.blob_len, sizeof(q->dev.blob_len));
	if (q->dev.blob_len)
		h = mix(h, q->dev.blob, q->dev.blob_len);
	h = mix(h, &q->dev.vmdesc_len, sizeof(q->dev.vmdesc_len));
	if (q->dev.vmdesc_len)
		h = mix(h, q->dev.vmdesc, q->dev.vmdesc_len);
	return h;
}

bool qh_answers_ok(const struct qh_run *run, size_t *ckpts)
{
	const uint32_t *a = run->answers;
	size_t n = run->nanswers, i;

	*ckpts = 0;
	if (n == 0)
		return true;
	if (a[0] != COLO_MSG_CHECKPOINT_READY)
		return false;
	for (i = 1; i < n; i += 3) {
		if (a[i] != COLO_MSG_CHECKPOINT_REPLY)
			return false;
		if (i + 1 == n)
			return true;    /* QEMU's checkpoint broke off */
		if (i + 2 >= n || a[i + 1] != COLO_MSG_VMSTATE_RECEIVED ||
		    a[i + 2] != COLO_MSG_VMSTATE_LOADED)
			return false;
		(*ckpts)++;
	}
	return true;
}
