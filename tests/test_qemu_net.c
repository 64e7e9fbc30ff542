/*
 * test_qemu_net.c: guests/qemu_net.c, the VM's network relay with output
 * commit (DESIGN.md §9, qemu_net.h), on a real tap in a network namespace.
 *
 * The test plays both ends: QEMU (a client of the relay's unix socket,
 * be32 length + Ethernet frame both ways) and the outside (a packet socket
 * bound to the tap: what colo writes to the tap arrives there, what it
 * sends there comes out of the tap into colo).  Every frame the test sends
 * has an EtherType of its own (local experimental); IPv6 is disabled in
 * the namespace before the tap exists, so the kernel sends nothing on it
 * and the counters are exact.
 *
 *   - frames from the VM wait for the checkpoint that holds their epoch and
 *     go out in order, byte for byte, once it is acknowledged;
 *   - the epoch ends exactly at close_epoch: what QEMU wrote before is the
 *     closing epoch's (close_epoch reads it itself), the rest the next's;
 *   - epoch 0 sends at once; "everything" releases open and closed frames;
 *   - frames to the VM wait while QEMU has it stopped, then follow in order;
 *   - the kick: once per open epoch, again after the VM runs with frames
 *     of the new epoch held, never at epoch 0;
 *   - a standby node drops both ways until it serves;
 *   - a lying frame length ends QEMU's connection, and QEMU can come back;
 *     so does a QEMU that stops reading, without a SIGPIPE;
 *   - configuration errors name the tap or bridge; a bridge gets the tap;
 *   - qemu_net_check: the tap brought up again when down, named when gone;
 *     the relay's thread sleeps once the tap is gone.
 *
 * Each test unshares a network namespace (and a mount namespace where it
 * mounts a sysfs of its own) in Check's forked child, so the tap, bridge
 * and mounts vanish with it.  Without the privilege the tests SKIP.
 * "Nothing arrived" is checked once what would carry it had its chance: a
 * counter shows the frames reached the relay, and a barrier frame to the
 * VM shows the relay's thread went round its loop after the last call.
 */
#include "config.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "qemu_net.h"
#include "testutil.h"

#define TAP "colotap0"
#define BRIDGE "colobr0"
#define ETYPE 0x88b5                   /* local experimental */
#define ETYPE_BARRIER 0x88b6           /* barrier frames to the VM */
#define WAIT_MS 10000
#define TEST_TIMEOUT_S 120
#define FRAME_CAP 2048

static struct {
	char *dir;                     /* the relay's socket: made by the runner */
} T;

static void make_dir(void)
{
	T.dir = colo_test_tmpdir();
	ck_assert_msg(T.dir != NULL, "no temp dir");
}

static void remove_dir(void)
{
	colo_test_rmdir(T.dir);
	T.dir = NULL;
}

/* ---- the namespace ---- */

static void write_proc(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT)
		return;                /* no IPv6 here: nothing to silence */
	if (fd < 0 || write(fd, val, strlen(val)) != (ssize_t)strlen(val)) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		colo_test_skip("cannot write %s (%s): the kernel's IPv6 frames would mix with "
			       "the test's", path, strerror(e));
	}
	close(fd);
}

/* A network namespace of this test's own (and a mount namespace, for a
 * sysfs of this namespace, when `mounts`): called first, while the forked
 * test process has one thread (a mount namespace needs that). */
static void netns(bool mounts)
{
	const char *ck_fork = getenv("CK_FORK");

	if (ck_fork && strcmp(ck_fork, "no") == 0)
		colo_test_skip("needs Check's forked tests (CK_FORK=no moves the runner into "
			       "the test's namespaces)");
	if (unshare(CLONE_NEWNET | (mounts ? CLONE_NEWNS : 0)) != 0)
		colo_test_skip("needs root (CAP_SYS_ADMIN) for a network namespace: unshare: %s",
			       strerror(errno));
	if (mounts && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		colo_test_skip("cannot make mounts private: %s", strerror(errno));
	if (access("/dev/net/tun", R_OK | W_OK) != 0)
		colo_test_skip("/dev/net/tun: %s", strerror(errno));
	/* Before the tap exists: no router solicitations, MLD, DAD on it. */
	write_proc("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
	write_proc("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
}

/* This namespace's sysfs on /sys (the one inherited shows another's). */
static void own_sysfs(void)
{
	ck_assert_msg(mount("sysfs", "/sys", "sysfs", 0, NULL) == 0, "mount sysfs: %s",
		      strerror(errno));
}

static void need_ip(void)
{
	if (system("ip -V >/dev/null 2>&1") != 0)
		colo_test_skip("the ip command (iproute2) is not installed");
}

static void run(const char *cmd)
{
	int st = system(cmd);

	ck_assert_msg(st == 0, "'%s' exited with %d", cmd, st);
}

static void add_bridge(const char *name)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	char buf[IFNAMSIZ];

	ck_assert_int_ge(s, 0);
	snprintf(buf, sizeof(buf), "%s", name);
	if (ioctl(s, SIOCBRADDBR, buf) != 0) {
		int e = errno;

		close(s);
		colo_test_skip("no bridge support here: SIOCBRADDBR: %s", strerror(e));
	}
	close(s);
}

static bool if_up(const char *name)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool up;

	ck_assert_int_ge(s, 0);
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ck_assert_msg(ioctl(s, SIOCGIFFLAGS, &ifr) == 0, "SIOCGIFFLAGS %s: %s", name,
		      strerror(errno));
	up = (ifr.ifr_flags & IFF_UP) != 0;
	close(s);
	return up;
}

/* ---- frames ---- */

/* Frame `id` of `etype`: its length and bytes follow from the id alone. */
static size_t frame_of(uint8_t *f, unsigned id, uint16_t etype)
{
	static const uint8_t dst[6] = { 2, 0, 0, 0xc0, 0x10, 2 };
	static const uint8_t src[6] = { 2, 0, 0, 0xc0, 0x10, 1 };
	size_t len = 60 + (id * 397u) % 1400u;
	uint16_t et = htons(etype);
	uint32_t be = htonl(id);

	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	memcpy(f + 12, &et, 2);
	memcpy(f + 14, &be, 4);
	for (size_t i = 18; i < len; i++)
		f[i] = (uint8_t)(id * 31u + i);
	return len;
}

static size_t frame_len(unsigned id)
{
	uint8_t f[FRAME_CAP];

	return frame_of(f, id, ETYPE);
}

static uint64_t bytes_of(unsigned from, unsigned to)
{
	uint64_t sum = 0;

	for (unsigned id = from; id <= to; id++)
		sum += frame_len(id);
	return sum;
}

/* ---- the relay, QEMU and the outside ---- */

struct env {
	struct qemu_net *n;
	char sock[256];
	int q;                         /* QEMU's end of the socket */
	int pk;                        /* the outside: a packet socket on the tap */
	int ifindex;
	unsigned barriers;
};

static void free_env(struct env *e)
{
	if (e->q >= 0)
		close(e->q);
	if (e->pk >= 0)
		close(e->pk);
	qemu_net_free(e->n);
	e->n = NULL;
	e->q = e->pk = -1;
}

static struct qemu_net_stats stats(struct env *e)
{
	struct qemu_net_stats st;

	qemu_net_stats(e->n, &st);
	return st;
}

struct stat_wait {
	struct env *e;
	size_t off;
	uint64_t want, got;
};

static bool stat_reached(void *ud)
{
	struct stat_wait *w = ud;
	struct qemu_net_stats st = stats(w->e);

	memcpy(&w->got, (const char *)&st + w->off, sizeof(w->got));
	return w->got == w->want;
}

/* Wait until a counter of stats is `want` (exactly). */
#define WAIT_STAT(e, field, v) wait_stat((e), offsetof(struct qemu_net_stats, field), \
					 #field, (v))

static void wait_stat(struct env *e, size_t off, const char *name, uint64_t want)
{
	struct stat_wait w = { .e = e, .off = off, .want = want };

	ck_assert_msg(colo_test_wait(stat_reached, &w, WAIT_MS), "stats.%s is %" PRIu64
		      ", wants %" PRIu64 " (waited %d ms)", name, w.got, want, WAIT_MS);
}

static bool is_connected(void *ud)
{
	return stats(ud).connected;
}

static bool is_disconnected(void *ud)
{
	return !stats(ud).connected;
}

static int q_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s",
		      path, strerror(errno));
	return fd;
}

/* The relay with QEMU connected and the packet socket on its tap. */
static void open_env(struct env *e, const char *bridge, bool serving)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	struct colo_err err;
	int r;

	memset(e, 0, sizeof(*e));
	e->q = e->pk = -1;
	colo_err_clear(&err);
	snprintf(e->sock, sizeof(e->sock), "%s/net.sock", T.dir);
	r = qemu_net_open(e->sock, TAP, bridge, serving, &e->n, &err);
	ck_assert_msg(r == 0, "qemu_net_open: %d %s", r, err.msg);
	e->q = q_connect(e->sock);
	ck_assert_msg(colo_test_wait(is_connected, e, WAIT_MS), "QEMU's connection not seen");
	e->ifindex = (int)if_nametoindex(TAP);
	ck_assert_msg(e->ifindex > 0, "no interface %s after qemu_net_open", TAP);
	ck_assert_msg(if_up(TAP), "%s is not up", TAP);
	e->pk = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETYPE));
	ck_assert_msg(e->pk >= 0, "packet socket: %s", strerror(errno));
	sll.sll_protocol = htons(ETYPE);
	sll.sll_ifindex = e->ifindex;
	ck_assert_msg(bind(e->pk, (struct sockaddr *)&sll, sizeof(sll)) == 0,
		      "bind packet socket: %s", strerror(errno));
}

static void write_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t w = send(fd, b, len, MSG_NOSIGNAL);

		ck_assert_msg(w > 0, "write to the relay: %s", strerror(errno));
		b += w;
		len -= (size_t)w;
	}
}

/* Bytes from fd within ms; false on timeout or end of stream. */
static bool read_full(int fd, void *p, size_t len, int ms)
{
	uint8_t *b = p;
	uint64_t end = colo_now_ms() + (uint64_t)ms;

	while (len) {
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		int64_t left = (int64_t)(end - colo_now_ms());
		ssize_t k;

		if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
			return false;
		k = read(fd, b, len);
		if (k <= 0)
			return false;
		b += k;
		len -= (size_t)k;
	}
	return true;
}

/* QEMU sends frames from..to (one write each). */
static void vm_sends(struct env *e, unsigned from, unsigned to)
{
	for (unsigned id = from; id <= to; id++) {
		uint8_t buf[4 + FRAME_CAP];
		size_t len = frame_of(buf + 4, id, ETYPE);
		uint32_t be = htobe32((uint32_t)len);

		memcpy(buf, &be, 4);
		write_all(e->q, buf, 4 + len);
	}
}

/* The next frame QEMU receives of the test's EtherType (barriers skipped). */
static size_t vm_receives(struct env *e, uint8_t *f, const char *what)
{
	for (;;) {
		uint32_t be, len;

		ck_assert_msg(read_full(e->q, &be, 4, WAIT_MS), "%s: no frame reached QEMU",
			      what);
		len = be32toh(be);
		ck_assert_msg(len >= 14 && len <= FRAME_CAP, "%s: QEMU got a length of %" PRIu32,
			      what, len);
		ck_assert_msg(read_full(e->q, f, len, WAIT_MS), "%s: frame of %" PRIu32
			      " bytes cut short", what, len);
		if (f[12] == (ETYPE_BARRIER >> 8) && f[13] == (ETYPE_BARRIER & 0xff))
			continue;
		return len;
	}
}

static void send_outside(struct env *e, const uint8_t *f, size_t len)
{
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_ifindex = e->ifindex,
				   .sll_halen = 6 };

	sll.sll_protocol = htons(ETYPE);
	memcpy(sll.sll_addr, f, 6);
	ck_assert_msg(sendto(e->pk, f, len, 0, (struct sockaddr *)&sll, sizeof(sll)) ==
		      (ssize_t)len, "send on %s: %s", TAP, strerror(errno));
}

/* The outside sends frames from..to towards the VM. */
static void outside_sends(struct env *e, unsigned from, unsigned to)
{
	for (unsigned id = from; id <= to; id++) {
		uint8_t f[FRAME_CAP];
		size_t len = frame_of(f, id, ETYPE);

		send_outside(e, f, len);
	}
}

/* The next frame the outside receives from the tap within ms; 0: none. */
static size_t outside_receives(struct env *e, uint8_t *f, int ms)
{
	uint64_t end = colo_now_ms() + (uint64_t)ms;

	for (;;) {
		struct pollfd pf = { .fd = e->pk, .events = POLLIN };
		struct sockaddr_ll from;
		socklen_t fl = sizeof(from);
		int64_t left = (int64_t)(end - colo_now_ms());
		ssize_t k;

		if (poll(&pf, 1, left > 0 ? (int)left : 0) <= 0)
			return 0;
		k = recvfrom(e->pk, f, FRAME_CAP, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		ck_assert_msg(k >= 0 || errno == EAGAIN, "recv on %s: %s", TAP, strerror(errno));
		if (k > 0 && from.sll_pkttype != PACKET_OUTGOING)
			return (size_t)k;
	}
}

static void same_frame(const uint8_t *got, size_t len, unsigned id, const char *what)
{
	uint8_t want[FRAME_CAP];
	size_t wl = frame_of(want, id, ETYPE);
	uint32_t got_id = 0;

	if (len >= 18) {
		memcpy(&got_id, got + 14, 4);
		got_id = ntohl(got_id);
	}
	ck_assert_msg(len == wl && memcmp(got, want, wl) == 0, "%s: got frame %" PRIu32
		      " (%zu bytes), wants frame %u (%zu bytes) byte for byte", what, got_id,
		      len, id, wl);
}

/* The outside receives exactly frames from..to, in order. */
static void outside_gets(struct env *e, unsigned from, unsigned to)
{
	for (unsigned id = from; id <= to; id++) {
		uint8_t f[FRAME_CAP];
		size_t len = outside_receives(e, f, WAIT_MS);

		ck_assert_msg(len > 0, "frame %u did not reach %s", id, TAP);
		same_frame(f, len, id, "on the tap");
	}
}

/* QEMU receives exactly frames from..to, in order. */
static void vm_gets(struct env *e, unsigned from, unsigned to)
{
	for (unsigned id = from; id <= to; id++) {
		uint8_t f[FRAME_CAP];
		size_t len = vm_receives(e, f, "to the VM");

		same_frame(f, len, id, "to the VM");
	}
}

static void outside_gets_nothing(struct env *e, const char *when)
{
	uint8_t f[FRAME_CAP];
	size_t len = outside_receives(e, f, 0);
	uint32_t id = 0;

	if (len >= 18) {
		memcpy(&id, f + 14, 4);
		id = ntohl(id);
	}
	ck_assert_msg(len == 0, "%s: frame %" PRIu32 " (%zu bytes) reached %s", when, id, len,
		      TAP);
}

static void vm_gets_nothing(struct env *e, const char *when)
{
	uint8_t b[64];
	ssize_t k = recv(e->q, b, sizeof(b), MSG_DONTWAIT);

	ck_assert_msg(k < 0 && errno == EAGAIN, "%s: QEMU received %zd bytes (%s)", when, k,
		      k < 0 ? strerror(errno) : "data");
}

/*
 * A barrier: a frame to the VM (an EtherType QEMU's reader skips), waited
 * for in the counters.  The relay's thread handles it in a turn of its loop
 * that began after this call, and every turn ends by sending what is
 * released: once it is counted, the calls made before it had their effect.
 */
static void barrier(struct env *e)
{
	struct qemu_net_stats st = stats(e);
	uint64_t seen = st.in_frames + st.dropped;
	uint8_t f[FRAME_CAP];
	size_t len = frame_of(f, 0xb000u + e->barriers++, ETYPE_BARRIER);

	send_outside(e, f, len);
	for (uint64_t end = colo_now_ms() + WAIT_MS;;) {
		st = stats(e);
		if (st.in_frames + st.dropped == seen + 1)
			return;
		ck_assert_msg(st.in_frames + st.dropped == seen && colo_now_ms() < end,
			      "barrier frame: in_frames + dropped is %" PRIu64 ", wants %"
			      PRIu64, st.in_frames + st.dropped, seen + 1);
		usleep(2000);
	}
}

/* One of QEMU's checkpoints as the relay drives it, tagged `seq`. */
static void qemu_checkpoint(struct env *e, uint64_t seq)
{
	qemu_net_vm_stopping(e->n);
	qemu_net_close_epoch(e->n);
	qemu_net_tag(e->n, seq);
}

/* QEMU's checkpoint tags the held frames from..to (the last `to` counted
 * out) with seq: seq - 1 acknowledged lets none go, seq all of them. */
static void go_with(struct env *e, uint64_t seq, unsigned from, unsigned to, const char *what)
{
	qemu_checkpoint(e, seq);
	qemu_net_release(e->n, seq - 1);
	barrier(e);
	outside_gets_nothing(e, what);
	qemu_net_release(e->n, seq);
	outside_gets(e, from, to);
	WAIT_STAT(e, out_frames, to);
}

/* Unprotected (epoch 0, everything released, as the engine says it):
 * frames from..to, the last `to` counted out, pass at once. */
static void unprotected_sends(struct env *e, unsigned from, unsigned to)
{
	qemu_net_epoch(e->n, 0);
	qemu_net_release(e->n, UINT64_MAX);
	vm_sends(e, from, to);
	outside_gets(e, from, to);
	WAIT_STAT(e, out_frames, to);
}

/* ---- frames from the VM ---- */

START_TEST(frames_from_the_vm_wait_for_their_checkpoint)
{
	struct env e;
	struct qemu_net_stats st;

	netns(false);
	open_env(&e, NULL, true);
	qemu_net_epoch(e.n, 7);
	vm_sends(&e, 1, 5);
	WAIT_STAT(&e, held_frames, 5);
	barrier(&e);
	st = stats(&e);
	ck_assert_uint_eq(st.held_bytes, bytes_of(1, 5));
	ck_assert_uint_eq(st.held_max_bytes, bytes_of(1, 5));
	ck_assert_uint_eq(st.out_frames, 0);
	outside_gets_nothing(&e, "open epoch");

	/* The checkpoint holding them is 7: 6 acknowledged is not enough. */
	qemu_checkpoint(&e, 7);
	qemu_net_release(e.n, 6);
	barrier(&e);
	st = stats(&e);
	ck_assert_uint_eq(st.held_frames, 5);
	ck_assert_uint_eq(st.out_frames, 0);
	ck_assert_uint_eq(st.epochs, 1);
	outside_gets_nothing(&e, "tagged 7, 6 released");

	qemu_net_release(e.n, 7);
	outside_gets(&e, 1, 5);
	WAIT_STAT(&e, out_frames, 5);
	st = stats(&e);
	ck_assert_uint_eq(st.out_bytes, bytes_of(1, 5));
	ck_assert_uint_eq(st.held_frames, 0);
	ck_assert_uint_eq(st.held_bytes, 0);
	ck_assert_uint_eq(st.held_max_bytes, bytes_of(1, 5));
	ck_assert_uint_eq(st.dropped, 0);
	qemu_net_vm_running(e.n);
	barrier(&e);
	outside_gets_nothing(&e, "after the release");
	free_env(&e);
}
END_TEST

START_TEST(the_epoch_ends_at_close_epoch)
{
	struct env e;
	struct qemu_net_stats st;

	netns(false);
	open_env(&e, NULL, true);
	qemu_net_epoch(e.n, 7);
	/* Written before the stop: close_epoch reads them itself, whether or
	 * not the relay's thread got to them. */
	vm_sends(&e, 1, 3);
	qemu_net_vm_stopping(e.n);
	qemu_net_close_epoch(e.n);
	st = stats(&e);
	ck_assert_uint_eq(st.held_frames, 3);
	ck_assert_uint_eq(st.epochs, 1);
	/* Written after: the next epoch's. */
	vm_sends(&e, 4, 6);
	WAIT_STAT(&e, held_frames, 6);
	qemu_net_tag(e.n, 7);
	qemu_net_release(e.n, 7);
	outside_gets(&e, 1, 3);
	WAIT_STAT(&e, out_frames, 3);
	qemu_net_vm_running(e.n);
	barrier(&e);
	st = stats(&e);
	ck_assert_uint_eq(st.held_frames, 3);
	ck_assert_uint_eq(st.held_bytes, bytes_of(4, 6));
	outside_gets_nothing(&e, "checkpoint 7 released, the next epoch's frames");

	/* Released only with the checkpoint of their own epoch. */
	qemu_checkpoint(&e, 8);
	barrier(&e);
	outside_gets_nothing(&e, "tagged 8, 7 released");
	qemu_net_release(e.n, 8);
	outside_gets(&e, 4, 6);
	WAIT_STAT(&e, out_frames, 6);
	st = stats(&e);
	ck_assert_uint_eq(st.held_frames, 0);
	ck_assert_uint_eq(st.out_bytes, bytes_of(1, 6));
	ck_assert_uint_eq(st.epochs, 2);
	qemu_net_vm_running(e.n);
	free_env(&e);
}
END_TEST

START_TEST(epoch_zero_sends_at_once_and_everything_releases_all)
{
	struct env e;
	struct qemu_net_stats st;

	netns(false);
	open_env(&e, NULL, true);
	/* The initial epoch is 0. */
	vm_sends(&e, 1, 3);
	outside_gets(&e, 1, 3);
	WAIT_STAT(&e, out_frames, 3);
	qemu_net_epoch(e.n, 0);
	vm_sends(&e, 4, 4);
	outside_gets(&e, 4, 4);
	WAIT_STAT(&e, out_frames, 4);
	ck_assert_uint_eq(stats(&e).held_frames, 0);

	/* Protected: held; then "everything" (a degraded primary) releases
	 * the closed frames and the open ones. */
	qemu_net_epoch(e.n, 9);
	vm_sends(&e, 5, 6);
	WAIT_STAT(&e, held_frames, 2);
	qemu_net_vm_stopping(e.n);
	qemu_net_close_epoch(e.n);
	vm_sends(&e, 7, 7);
	WAIT_STAT(&e, held_frames, 3);
	barrier(&e);
	outside_gets_nothing(&e, "epoch 9");
	qemu_net_release(e.n, UINT64_MAX);
	outside_gets(&e, 5, 7);
	WAIT_STAT(&e, out_frames, 7);
	ck_assert_uint_eq(stats(&e).held_frames, 0);
	qemu_net_vm_running(e.n);

	/* Unprotected again, then protected from 12 on: held again, and not
	 * by "everything" released before. */
	unprotected_sends(&e, 8, 8);
	qemu_net_epoch(e.n, 12);
	vm_sends(&e, 9, 10);
	WAIT_STAT(&e, held_frames, 2);
	barrier(&e);
	outside_gets_nothing(&e, "epoch 12 after everything was released");
	go_with(&e, 12, 9, 10, "tagged 12, 11 released");
	st = stats(&e);
	ck_assert_uint_eq(st.held_frames, 0);
	ck_assert_uint_eq(st.out_bytes, bytes_of(1, 10));
	ck_assert_uint_eq(st.dropped, 0);
	qemu_net_vm_running(e.n);
	free_env(&e);
}
END_TEST

/* ---- frames to the VM ---- */

START_TEST(frames_to_the_vm_wait_while_it_is_stopped)
{
	struct env e;
	struct qemu_net_stats st;

	netns(false);
	open_env(&e, NULL, true);
	outside_sends(&e, 1, 3);
	vm_gets(&e, 1, 3);
	WAIT_STAT(&e, in_frames, 3);
	st = stats(&e);
	ck_assert_uint_eq(st.in_bytes, bytes_of(1, 3));
	ck_assert_uint_eq(st.in_waited, 0);

	qemu_net_vm_stopping(e.n);
	outside_sends(&e, 4, 6);
	WAIT_STAT(&e, in_waited, 3);
	ck_assert_uint_eq(stats(&e).in_frames, 6);
	vm_gets_nothing(&e, "while QEMU has the VM stopped");
	/* The epoch closing does not let them through either. */
	qemu_net_close_epoch(e.n);
	qemu_net_tag(e.n, 1);
	vm_gets_nothing(&e, "epoch closed, VM still stopped");

	qemu_net_vm_running(e.n);
	outside_sends(&e, 7, 7);
	vm_gets(&e, 4, 7);
	WAIT_STAT(&e, in_frames, 7);
	st = stats(&e);
	ck_assert_uint_eq(st.in_waited, 3);
	ck_assert_uint_eq(st.in_bytes, bytes_of(1, 7));
	ck_assert_uint_eq(st.dropped, 0);
	vm_gets_nothing(&e, "after all were delivered");
	free_env(&e);
}
END_TEST

/* ---- the kick ---- */

static atomic_uint kicks_seen;

static void on_kick(void *ud)
{
	ck_assert_ptr_eq(ud, &kicks_seen);
	atomic_fetch_add(&kicks_seen, 1);
}

static bool kick_calls_caught_up(void *ud)
{
	return atomic_load(&kicks_seen) == stats(ud).kicks;
}

/* The kicks counted and the calls made are both `want`. */
static void kicks_are(struct env *e, uint64_t want, const char *when)
{
	WAIT_STAT(e, kicks, want);
	ck_assert_msg(colo_test_wait(kick_calls_caught_up, e, WAIT_MS),
		      "%s: %u kick calls, stats.kicks %" PRIu64, when, atomic_load(&kicks_seen),
		      stats(e).kicks);
	ck_assert_msg(atomic_load(&kicks_seen) == want, "%s: %u kick calls, wants %" PRIu64,
		      when, atomic_load(&kicks_seen), want);
}

START_TEST(held_frames_kick_once_per_open_epoch)
{
	struct env e;

	netns(false);
	open_env(&e, NULL, true);
	atomic_store(&kicks_seen, 0);
	qemu_net_set_kick(e.n, on_kick, &kicks_seen);

	/* Epoch 0: nothing waits, nobody is asked. */
	vm_sends(&e, 1, 1);
	outside_gets(&e, 1, 1);
	WAIT_STAT(&e, out_frames, 1);
	barrier(&e);
	kicks_are(&e, 0, "epoch 0");

	qemu_net_epoch(e.n, 7);
	vm_sends(&e, 2, 2);
	kicks_are(&e, 1, "first held frame");
	vm_sends(&e, 3, 4);
	WAIT_STAT(&e, held_frames, 3);
	barrier(&e);
	kicks_are(&e, 1, "more frames in the same epoch");

	/* From the stop to the run: no kick, whatever arrives. */
	qemu_net_vm_stopping(e.n);
	vm_sends(&e, 5, 5);
	WAIT_STAT(&e, held_frames, 4);
	qemu_net_close_epoch(e.n);
	vm_sends(&e, 6, 6);
	WAIT_STAT(&e, held_frames, 5);
	qemu_net_tag(e.n, 7);
	qemu_net_release(e.n, 7);
	outside_gets(&e, 2, 5);
	barrier(&e);
	kicks_are(&e, 1, "during the checkpoint");

	/* Running with frame 6 (the new epoch) held: asked again. */
	qemu_net_vm_running(e.n);
	kicks_are(&e, 2, "VM running with the next epoch's frame held");
	vm_sends(&e, 7, 7);
	WAIT_STAT(&e, held_frames, 2);
	barrier(&e);
	kicks_are(&e, 2, "more frames after the kick");

	/* A checkpoint that leaves nothing held: no kick until a frame. */
	qemu_checkpoint(&e, 8);
	qemu_net_release(e.n, 8);
	outside_gets(&e, 6, 7);
	qemu_net_vm_running(e.n);
	barrier(&e);
	kicks_are(&e, 2, "VM running with nothing held");
	vm_sends(&e, 8, 8);
	kicks_are(&e, 3, "a frame of the new epoch");

	/* Back to epoch 0: never. */
	qemu_net_release(e.n, UINT64_MAX);
	outside_gets(&e, 8, 8);
	qemu_net_epoch(e.n, 0);
	qemu_checkpoint(&e, 9);
	qemu_net_vm_running(e.n);
	vm_sends(&e, 9, 10);
	outside_gets(&e, 9, 10);
	WAIT_STAT(&e, out_frames, 10);
	barrier(&e);
	kicks_are(&e, 3, "epoch 0 again");
	free_env(&e);
}
END_TEST

/* ---- a standby node ---- */

/*
 * A full sync may not be staged while frames sent at once come from a QEMU
 * epoch the mirror does not hold yet: the sync waits for QEMU's next
 * checkpoint (asked for at once).  The calls are the engine's, in its
 * order: epoch 0 comes with "everything released"; before it asks, the
 * engine sets the sync's epoch (4 is the sync, 5 the checkpoint after it),
 * and what the VM sends from then on waits for checkpoint 5, even when the
 * answer is yes at once.
 */
START_TEST(a_sync_waits_for_the_epoch_of_what_was_sent)
{
	struct env e;

	netns(false);
	open_env(&e, NULL, true);
	atomic_store(&kicks_seen, 0);
	qemu_net_set_kick(e.n, on_kick, &kicks_seen);
	qemu_net_epoch(e.n, 0);
	qemu_net_release(e.n, UINT64_MAX);

	/* nothing said yet: a sync may start at once, and what is said from
	 * its epoch on waits for the checkpoint after it */
	qemu_net_epoch(e.n, 5);
	ck_assert(qemu_net_sync_ready(e.n));
	kicks_are(&e, 0, "nothing sent");
	vm_sends(&e, 1, 1);
	WAIT_STAT(&e, held_frames, 1);
	barrier(&e);
	outside_gets_nothing(&e, "said after a yes, before the sync was staged");
	kicks_are(&e, 1, "a frame held for the checkpoint after the sync");
	go_with(&e, 5, 1, 1, "the sync (4) committed, its next checkpoint not");
	qemu_net_vm_running(e.n);

	/* unprotected (the secondary lost): sent at once in QEMU's open epoch */
	unprotected_sends(&e, 2, 3);
	/* a new secondary: not yet, QEMU is asked for its checkpoint once */
	qemu_net_epoch(e.n, 9);
	ck_assert(!qemu_net_sync_ready(e.n));
	kicks_are(&e, 2, "a sync waits");
	ck_assert(!qemu_net_sync_ready(e.n));
	kicks_are(&e, 2, "asked again: no second checkpoint asked for");
	vm_sends(&e, 4, 4);
	WAIT_STAT(&e, held_frames, 1);
	barrier(&e);
	outside_gets_nothing(&e, "held while the sync waits");

	/* QEMU stopped: the epoch of 2-4 closes, and is not in the mirror yet */
	qemu_net_vm_stopping(e.n);
	qemu_net_close_epoch(e.n);
	ck_assert(!qemu_net_sync_ready(e.n));
	/* in the mirror (with the sync's next epoch, 9): the sync may start */
	qemu_net_tag(e.n, 9);
	ck_assert(qemu_net_sync_ready(e.n));
	qemu_net_vm_running(e.n);
	vm_sends(&e, 5, 5);
	WAIT_STAT(&e, held_frames, 2);
	qemu_net_release(e.n, 8);
	barrier(&e);
	outside_gets_nothing(&e, "the sync (8) committed");
	qemu_checkpoint(&e, 9);
	qemu_net_release(e.n, 9);
	outside_gets(&e, 4, 5);
	WAIT_STAT(&e, out_frames, 5);
	ck_assert_uint_eq(stats(&e).dropped, 0);
	qemu_net_vm_running(e.n);

	/* unprotected again: frames at once */
	unprotected_sends(&e, 6, 6);
	free_env(&e);
}
END_TEST

START_TEST(a_standby_node_drops_both_ways_until_it_serves)
{
	struct env e;
	struct qemu_net_stats st;

	netns(false);
	open_env(&e, NULL, false);
	ck_assert(!stats(&e).serving);
	vm_sends(&e, 1, 2);
	WAIT_STAT(&e, dropped, 2);
	outside_sends(&e, 3, 4);
	WAIT_STAT(&e, dropped, 4);
	st = stats(&e);
	ck_assert_uint_eq(st.held_frames, 0);
	ck_assert_uint_eq(st.out_frames, 0);
	ck_assert_uint_eq(st.in_frames, 0);
	outside_gets_nothing(&e, "standby");
	vm_gets_nothing(&e, "standby");

	qemu_net_serve(e.n);
	ck_assert(stats(&e).serving);
	vm_sends(&e, 5, 5);
	outside_gets(&e, 5, 5);
	outside_sends(&e, 6, 6);
	vm_gets(&e, 6, 6);
	st = stats(&e);
	ck_assert_uint_eq(st.dropped, 4);
	ck_assert_uint_eq(st.out_frames, 1);
	ck_assert_uint_eq(st.in_frames, 1);
	free_env(&e);
}
END_TEST

/* ---- QEMU's framing ---- */

static const uint32_t lying_lengths[] = { 0, QEMU_NET_FRAME_MAX + 1, UINT32_MAX };

START_TEST(a_lying_length_ends_the_connection)
{
	struct env e;
	uint8_t buf[4 + FRAME_CAP + 4], b;
	size_t len = frame_of(buf + 4, 1, ETYPE);
	uint32_t be = htobe32((uint32_t)len), bad = htobe32(lying_lengths[_i]);
	struct pollfd pf;

	netns(false);
	open_env(&e, NULL, true);
	/* A good frame, then the lie, in one write: the good one goes out. */
	memcpy(buf, &be, 4);
	memcpy(buf + 4 + len, &bad, 4);
	write_all(e.q, buf, 4 + len + 4);
	outside_gets(&e, 1, 1);
	pf = (struct pollfd){ .fd = e.q, .events = POLLIN };
	ck_assert_msg(poll(&pf, 1, WAIT_MS) == 1, "length %" PRIu32 ": the relay kept the "
		      "connection", lying_lengths[_i]);
	ck_assert_msg(read(e.q, &b, 1) == 0, "length %" PRIu32 ": no end of stream (%s)",
		      lying_lengths[_i], strerror(errno));
	ck_assert_msg(colo_test_wait(is_disconnected, &e, WAIT_MS), "stats.connected stays");

	/* QEMU connects again: frames flow both ways. */
	close(e.q);
	e.q = q_connect(e.sock);
	ck_assert_msg(colo_test_wait(is_connected, &e, WAIT_MS), "the new connection not seen");
	vm_sends(&e, 2, 2);
	outside_gets(&e, 2, 2);
	outside_sends(&e, 3, 3);
	vm_gets(&e, 3, 3);
	ck_assert_uint_eq(stats(&e).out_frames, 2);
	free_env(&e);
}
END_TEST

/* A QEMU that stops reading (or is gone while colo writes to it): the
 * connection ends, and colo's process is not killed by SIGPIPE (nothing
 * here ignores the signal, as a program using the relay need not). */
START_TEST(a_qemu_that_stops_reading_ends_the_connection)
{
	struct env e;

	netns(false);
	open_env(&e, NULL, true);
	ck_assert_int_eq(shutdown(e.q, SHUT_RD), 0);
	outside_sends(&e, 1, 1);
	ck_assert_msg(colo_test_wait(is_disconnected, &e, WAIT_MS), "stats.connected stays");
	close(e.q);
	e.q = q_connect(e.sock);
	ck_assert_msg(colo_test_wait(is_connected, &e, WAIT_MS), "the new connection not seen");
	outside_sends(&e, 2, 2);
	vm_gets(&e, 2, 2);
	vm_sends(&e, 3, 3);
	outside_gets(&e, 3, 3);
	free_env(&e);
}
END_TEST

/* ---- configuration ---- */

static void open_fails(const char *tap, const char *bridge, int code, const char *msg)
{
	struct qemu_net *n = NULL;
	struct colo_err err;
	char sock[256];
	int r;

	colo_err_clear(&err);
	snprintf(sock, sizeof(sock), "%s/bad.sock", T.dir);
	r = qemu_net_open(sock, tap, bridge, true, &n, &err);
	ck_assert_msg(r == -code, "tap '%s' bridge '%s': %d (%s), wants %d", tap,
		      bridge ? bridge : "(none)", r, err.msg, -code);
	ck_assert_str_eq(err.msg, msg);
	/* A failed open may leave the struct to free (qemu.c frees it with
	 * the guest); it leaves no socket, and no tap it made (the bridge
	 * errors come after the tap was made). */
	qemu_net_free(n);
	ck_assert_msg(access(sock, F_OK) != 0, "%s left behind", sock);
	if (code == ENODEV || code == EOPNOTSUPP)
		ck_assert_msg(if_nametoindex(tap) == 0, "tap %s left behind", tap);
}

START_TEST(bad_configurations_are_named)
{
	struct env e;
	char sock2[256];
	struct qemu_net *n2 = NULL;
	struct colo_err err;

	netns(false);
	open_fails("", NULL, EINVAL, "vm-tap '': an interface name of 1 to 15 bytes");
	open_fails("colotap456789012", NULL, EINVAL,
		   "vm-tap 'colotap456789012': an interface name of 1 to 15 bytes");
	open_fails(TAP, "colobr4567890123", EINVAL,
		   "vm-bridge 'colobr4567890123': an interface name of 1 to 15 bytes");
	open_fails(TAP, "nosuchbr", ENODEV,
		   "vm-bridge nosuchbr: cannot add vm-tap " TAP " to it: no such bridge");
	open_fails(TAP, "lo", EOPNOTSUPP,
		   "vm-bridge lo: cannot add vm-tap " TAP " to it: not a bridge");
	open_fails("lo", NULL, EINVAL, "vm-tap lo: exists and is not a tap");

	/* 15 bytes is a name. */
	colo_err_clear(&err);
	snprintf(sock2, sizeof(sock2), "%s/long.sock", T.dir);
	ck_assert_msg(qemu_net_open(sock2, "colotap45678901", "", true, &n2, &err) == 0, "%s",
		      err.msg);
	ck_assert(if_nametoindex("colotap45678901") > 0);
	qemu_net_free(n2);
	ck_assert_msg(if_nametoindex("colotap45678901") == 0, "the tap outlives its relay");

	/* Each node needs a tap of its own. */
	open_env(&e, "", true);
	open_fails(TAP, NULL, EBUSY, "vm-tap " TAP ": in use by another process (each node "
		   "needs a tap of its own)");
	ck_assert(if_nametoindex(TAP) > 0);
	free_env(&e);
}
END_TEST

/* A link's MAC as "xx:xx:xx:xx:xx:xx" (the namespace's own sysfs). */
static void mac_of(const char *dev, char *out, size_t len)
{
	char path[96];
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/net/%s/address", dev);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	ck_assert_msg(fgets(out, (int)len, f) != NULL, "%s: empty", path);
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

START_TEST(a_bridge_gets_the_tap)
{
	struct env e;
	struct colo_err err;
	char link[256], path[96], br_mac[32], mac[32];
	ssize_t k;
	int r;

	netns(true);
	need_ip();
	add_bridge(BRIDGE);
	/* A port whose random MAC starts with fe (a veth's does once in 64),
	 * the bridge's address: colo's tap must not take it over, or peers
	 * with the old one in their ARP caches lose this host (docs/vm.md). */
	run("ip link add colo-up0 address fe:fe:00:00:00:01 type veth peer name colo-up1 && "
	    "ip link set colo-up0 master " BRIDGE);
	own_sysfs();
	mac_of(BRIDGE, br_mac, sizeof(br_mac));
	ck_assert_str_eq(br_mac, "fe:fe:00:00:00:01");
	open_env(&e, BRIDGE, true);
	mac_of(TAP, mac, sizeof(mac));
	ck_assert_msg(strncmp(mac, "fe:ff:ff:", 9) == 0, "the tap's MAC is %s, wants fe:ff:ff:...",
		      mac);
	mac_of(BRIDGE, br_mac, sizeof(br_mac));
	ck_assert_msg(strcmp(br_mac, "fe:fe:00:00:00:01") == 0, "the tap in %s changed its "
		      "address to %s", BRIDGE, br_mac);
	umount2("/sys", MNT_DETACH);
	/* As a node in a namespace entered without a sysfs of its own sees
	 * it (/sys shows another namespace): the check still knows the tap is
	 * in the bridge. */
	colo_err_clear(&err);
	r = qemu_net_check(e.n, &err);
	ck_assert_msg(r == 0, "qemu_net_check with the tap in %s: %d %s", BRIDGE, r, err.msg);

	own_sysfs();
	snprintf(path, sizeof(path), "/sys/class/net/%s/master", TAP);
	k = readlink(path, link, sizeof(link) - 1);
	ck_assert_msg(k > 0, "%s: %s", path, strerror(errno));
	link[k] = '\0';
	ck_assert_str_eq(strrchr(link, '/') + 1, BRIDGE);
	colo_err_clear(&err);
	r = qemu_net_check(e.n, &err);
	ck_assert_msg(r == 0, "qemu_net_check with this namespace's sysfs: %d %s", r, err.msg);
	free_env(&e);
}
END_TEST

/* ---- qemu_net_check ---- */

/* Is every thread of this process but the caller asleep? */
static bool others_asleep(void *ud)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	bool asleep = true;

	(void)ud;
	ck_assert(d != NULL);
	while ((de = readdir(d))) {
		char path[64], buf[512], *p;
		FILE *f;
		int tid = atoi(de->d_name);

		if (tid <= 0 || tid == gettid())
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
		f = fopen(path, "r");
		if (!f)
			continue;              /* it ended */
		p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (p && p[1] == ' ' && p[2] != 'S')
			asleep = false;
	}
	closedir(d);
	return asleep;
}

START_TEST(check_brings_the_tap_up_and_names_it_gone)
{
	struct env e;
	struct colo_err err;
	int r;

	netns(false);
	need_ip();
	open_env(&e, NULL, true);
	colo_err_clear(&err);
	r = qemu_net_check(e.n, &err);
	ck_assert_msg(r == 0, "qemu_net_check: %d %s", r, err.msg);

	run("ip link set " TAP " down");
	ck_assert(!if_up(TAP));
	r = qemu_net_check(e.n, &err);
	ck_assert_msg(r == 0, "qemu_net_check on a tap that is down: %d %s", r, err.msg);
	ck_assert_msg(if_up(TAP), "qemu_net_check left %s down", TAP);

	run("ip link del " TAP);
	r = qemu_net_check(e.n, &err);
	ck_assert_int_eq(r, -ENODEV);
	ck_assert_str_eq(err.msg, "vm-tap " TAP " is gone (deleted while this node ran): the "
			 "VM would be unreachable");
	/* The relay's thread waits for work again (it does not spin on the
	 * dead tap), and the VM's frames are counted as dropped. */
	ck_assert_msg(colo_test_wait(others_asleep, NULL, WAIT_MS),
		      "the relay's thread never sleeps once the tap is gone");
	vm_sends(&e, 1, 1);
	WAIT_STAT(&e, dropped, 1);
	ck_assert_uint_eq(stats(&e).out_frames, 0);
	free_env(&e);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("qemu_net");
	TCase *tc = tcase_create("net");

	tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
	tcase_set_timeout(tc, TEST_TIMEOUT_S);
	tcase_add_test(tc, frames_from_the_vm_wait_for_their_checkpoint);
	tcase_add_test(tc, the_epoch_ends_at_close_epoch);
	tcase_add_test(tc, epoch_zero_sends_at_once_and_everything_releases_all);
	tcase_add_test(tc, a_sync_waits_for_the_epoch_of_what_was_sent);
	tcase_add_test(tc, frames_to_the_vm_wait_while_it_is_stopped);
	tcase_add_test(tc, held_frames_kick_once_per_open_epoch);
	tcase_add_test(tc, a_standby_node_drops_both_ways_until_it_serves);
	tcase_add_loop_test(tc, a_lying_length_ends_the_connection, 0,
			    (int)(sizeof(lying_lengths) / sizeof(lying_lengths[0])));
	tcase_add_test(tc, a_qemu_that_stops_reading_ends_the_connection);
	tcase_add_test(tc, bad_configurations_are_named);
	tcase_add_test(tc, a_bridge_gets_the_tap);
	tcase_add_test(tc, check_brings_the_tap_up_and_names_it_gone);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
