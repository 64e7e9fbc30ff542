/*
 * qemu_net.c: the VM's frames between QEMU's `-netdev stream` and a tap,
 * held for output commit (see qemu_net.h, DESIGN.md §9).
 *
 * Frames from the VM wait in one FIFO, each with a tag: OPEN (QEMU's
 * current epoch), CLOSED (its epoch ended at a stop, its checkpoint not yet
 * in the mirror), or the sequence of the colo checkpoint that holds what
 * produced it.  Tags never decrease along the FIFO, so release pops from
 * the head while the head's tag is acknowledged; OPEN and CLOSED are the
 * two largest values, so "everything" (UINT64_MAX) releases them too.
 *
 * Dropped (counted in stats.dropped, never silently):
 *   - frames towards the VM past QEMU_NET_TOVM_MAX bytes waiting (QEMU
 *     reads too slowly, or a checkpoint stops the VM for long): the sender
 *     retransmits, as after any congested link;
 *   - frames in either direction while QEMU's NIC is not attached, and on a
 *     standby node (qemu_net.h);
 *   - a frame the tap refuses with an error other than EAGAIN.
 * Frames from the VM are never dropped for want of room: past HOLD_MAX
 * bytes held the socket is not read (QEMU then queues, and the VM's
 * transmit queue fills), except when an epoch closes, which reads it all.
 *
 * Threads: see qemu_net.h.  The kick callback is called without the lock.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "log.h"
#include "qemu_net.h"

#define TAG_CLOSED (UINT64_MAX - 1)
#define TAG_OPEN UINT64_MAX
#define HOLD_MAX (64u << 20)          /* bytes held before the socket waits */
#define TAP_BATCH 64                  /* frames read from the tap per wake-up */
#define LAT_RING 1024

struct frame {
	struct frame *next;
	uint64_t tag;
	uint64_t t_ns;                /* when it was read */
	uint32_t len;
	uint8_t data[];
};

struct qemu_net {
	char tap[IFNAMSIZ];
	char bridge[IFNAMSIZ];
	char sock_path[108];
	int listen_fd, conn_fd, tap_fd;
	int wake[2];
	pthread_t thr;
	bool thr_on;
	pthread_mutex_t lock;
	bool stopping, serving;
	bool vm_stopped;              /* QEMU stopped it for a checkpoint */
	bool in_ckpt;                 /* between REQUEST and LOADED: no kicks */
	bool kicked;                  /* asked for a checkpoint this epoch */
	bool prehold;                 /* a sync waits: asked QEMU once, uncounted */
	uint64_t unheld_open;         /* sent at once in QEMU's open epoch ... */
	uint64_t unheld_closed;       /* ... and in the closed one not yet applied */
	uint64_t epoch, released;
	void (*kick)(void *ud);
	void *kick_ud;
	/* from the VM */
	struct frame *head, *tail;
	struct colo_buf rd;           /* socket bytes not yet a whole frame */
	/* to the VM: framed bytes to write, and those waiting for it to run */
	struct colo_buf out, wait;
	size_t out_pos;
	uint8_t *tapbuf;
	struct qemu_net_stats st;
	uint32_t lat_us[LAT_RING];
	uint64_t lat_n;
	bool said_drop_in, said_drop_tap;
	bool tap_gone;                /* deleted under us: not polled any more */
};

/* ---- the tap ---- */

static int ifreq_sock(struct colo_err *err)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return colo_err_set(err, errno, "socket: %s", strerror(errno));
	return s;
}

/* Is the tap a port of the bridge already?  Asked of the kernel (the
 * tap's IFLA_MASTER over rtnetlink), not of /sys/class/net: that shows the
 * network namespace sysfs was mounted in, another one for a node that
 * entered its namespace without mounting a sysfs of its own (unshare -n,
 * nsenter --net), and adding the tap again then fails with EBUSY. */
static bool in_bridge(const char *tap, const char *bridge)
{
	struct {
		struct nlmsghdr nh;
		struct ifinfomsg ifi;
	} req;
	uint32_t buf[4096];           /* one link's attributes (no VF list asked) */
	unsigned int br = if_nametoindex(bridge);
	bool in = false;
	ssize_t k;
	int s;

	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = sizeof(req);
	req.nh.nlmsg_type = RTM_GETLINK;
	req.nh.nlmsg_flags = NLM_F_REQUEST;
	req.ifi.ifi_family = AF_UNSPEC;
	req.ifi.ifi_index = (int)if_nametoindex(tap);
	if (br == 0 || req.ifi.ifi_index == 0)
		return false;
	s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (s < 0)
		return false;
	/* The kernel answers within send(): the reply is queued when it returns. */
	if (send(s, &req, sizeof(req), 0) == (ssize_t)sizeof(req) &&
	    (k = recv(s, buf, sizeof(buf), 0)) > 0) {
		struct nlmsghdr *nh = (struct nlmsghdr *)buf;

		if (NLMSG_OK(nh, (size_t)k) && nh->nlmsg_type == RTM_NEWLINK) {
			int len = (int)IFLA_PAYLOAD(nh);

			for (struct rtattr *a = IFLA_RTA(NLMSG_DATA(nh)); RTA_OK(a, len);
			     a = RTA_NEXT(a, len))
				if (a->rta_type == IFLA_MASTER && RTA_PAYLOAD(a) >= 4) {
					uint32_t m;

					memcpy(&m, RTA_DATA(a), 4);
					in = m == br;
				}
		}
	}
	close(s);
	return in;
}

static int tap_up(struct qemu_net *n, struct colo_err *err)
{
	struct ifreq ifr;
	int s = ifreq_sock(err), r = 0;

	if (s < 0)
		return s;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", n->tap);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
		r = colo_err_set(err, errno, "vm-tap %s: %s", n->tap, strerror(errno));
	} else if (!(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
			r = colo_err_set(err, errno, "vm-tap %s: cannot bring it up: %s", n->tap,
					 strerror(errno));
	}
	if (r == 0 && n->bridge[0] && !in_bridge(n->tap, n->bridge)) {
		memset(&ifr, 0, sizeof(ifr));
		snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", n->bridge);
		ifr.ifr_ifindex = (int)if_nametoindex(n->tap);
		if (ioctl(s, SIOCBRADDIF, &ifr) != 0) {
			int e = errno;

			r = colo_err_set(err, e, "vm-bridge %s: cannot add vm-tap %s to it: %s",
					 n->bridge, n->tap, e == ENODEV ? "no such bridge" :
					 e == EOPNOTSUPP || e == EINVAL ? "not a bridge" :
					 e == EBUSY ? "the tap is a port of another bridge" :
					 strerror(e));
		}
	}
	close(s);
	return r;
}

/*
 * The tap's own MAC starts with fe:ff:ff.  A Linux bridge takes the lowest
 * MAC of its ports as its own: a tap with a random lower one made the
 * host's bridge change address when colo's tap joined or left, and peers
 * that had the old one in their ARP caches lost the host for minutes
 * (measured: a replication connect hung 135 s).  0xfe alone was not enough:
 * a random locally administered MAC (a veth's) starts with 0xfe once in 64,
 * and then the next byte decided (tests/vm_net_pair.sh: a primary's connect
 * to its new secondary hung 67 s, four times in a run).  No frame is ever
 * sent from this MAC.
 */
static void tap_high_mac(struct qemu_net *n)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", n->tap);
	if (ioctl(s, SIOCGIFHWADDR, &ifr) == 0 &&
	    memcmp(ifr.ifr_hwaddr.sa_data, "\xfe\xff\xff", 3) != 0) {
		memcpy(ifr.ifr_hwaddr.sa_data, "\xfe\xff\xff", 3);
		if (ioctl(s, SIOCSIFHWADDR, &ifr) != 0)
			colo_log_warn("vm-tap %s: cannot give it a MAC starting with fe:ff:ff (%s): a "
				      "bridge it joins may change address", n->tap, strerror(errno));
	}
	close(s);
}

static int tap_open(struct qemu_net *n, struct colo_err *err)
{
	struct ifreq ifr;
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		int e = errno;

		return colo_err_set(err, e, "vm-tap %s: /dev/net/tun: %s%s", n->tap, strerror(e),
				    e == ENOENT ? " (load the tun module)" : "");
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", n->tap);
	if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
		int e = errno;

		close(fd);
		return colo_err_set(err, e, "vm-tap %s: %s", n->tap,
				    e == EPERM ? "not allowed to create or open it (it needs "
				    "CAP_NET_ADMIN, or a tap made beforehand for this user: ip "
				    "tuntap add NAME mode tap user USER)" :
				    e == EBUSY ? "in use by another process (each node needs "
				    "a tap of its own)" :
				    e == EINVAL ? "exists and is not a tap" : strerror(e));
	}
	n->tap_fd = fd;
	tap_high_mac(n);
	return tap_up(n, err);
}

int qemu_net_check(struct qemu_net *n, struct colo_err *err)
{
	struct ifreq ifr;
	int r;

	pthread_mutex_lock(&n->lock);
	memset(&ifr, 0, sizeof(ifr));
	if (n->tap_fd < 0 || ioctl(n->tap_fd, TUNGETIFF, &ifr) != 0 ||
	    if_nametoindex(n->tap) == 0)
		r = colo_err_set(err, ENODEV, "vm-tap %s is gone (deleted while this node "
				 "ran): the VM would be unreachable", n->tap);
	else
		r = tap_up(n, err);
	pthread_mutex_unlock(&n->lock);
	return r;
}

/* ---- the socket ---- */

static int listen_at(struct qemu_net *n, struct colo_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

	if (fd < 0)
		return colo_err_set(err, errno, "socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", n->sock_path);
	unlink(n->sock_path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 2) != 0) {
		int e = errno;

		close(fd);
		return colo_err_set(err, e, "%s: %s", n->sock_path, strerror(e));
	}
	n->listen_fd = fd;
	return 0;
}

static void disconnect(struct qemu_net *n, const char *why)
{
	if (n->conn_fd < 0)
		return;
	colo_log_warn("the VM's NIC (%s): %s; its frames stop until QEMU connects again",
		      n->sock_path, why);
	close(n->conn_fd);
	n->conn_fd = -1;
	n->st.connected = false;
	colo_buf_reset(&n->rd);
	/* what waited for that QEMU's VM is no business of the next one's */
	colo_buf_reset(&n->out);
	colo_buf_reset(&n->wait);
	n->out_pos = 0;
}

static void lat_add(struct qemu_net *n, uint64_t ns)
{
	uint64_t us = ns / 1000;

	n->lat_us[n->lat_n++ % LAT_RING] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* Is a frame of the open epoch waiting, with nobody asked to commit it? */
static bool want_kick(const struct qemu_net *n)
{
	return n->tail && n->tail->tag == TAG_OPEN && !n->kicked && !n->in_ckpt &&
	       (n->epoch != 0 || n->prehold) && n->kick;
}

/* A whole frame from the VM. */
static void from_vm(struct qemu_net *n, const uint8_t *p, uint32_t len)
{
	struct frame *f;

	if (!n->serving) {
		n->st.dropped++;
		return;
	}
	f = malloc(sizeof(*f) + len);
	if (!f) {
		n->st.dropped++;
		return;
	}
	f->next = NULL;
	f->tag = n->epoch == 0 && !n->prehold ? 0 : TAG_OPEN;
	n->unheld_open += f->tag == 0;
	f->t_ns = colo_now_ns();
	f->len = len;
	memcpy(f->data, p, len);
	if (n->tail)
		n->tail->next = f;
	else
		n->head = f;
	n->tail = f;
	n->st.held_frames++;
	n->st.held_bytes += len;
	if (n->st.held_bytes > n->st.held_max_bytes)
		n->st.held_max_bytes = n->st.held_bytes;
}

/* Read what the socket has (all of it when drain, else up to HOLD_MAX
 * held) and cut it into frames.  A broken length ends the connection. */
static void read_socket(struct qemu_net *n, bool drain)
{
	uint8_t tmp[65536];

	while (n->conn_fd >= 0 && (drain || n->st.held_bytes < HOLD_MAX)) {
		ssize_t k = read(n->conn_fd, tmp, sizeof(tmp));
		size_t pos = 0;

		if (k == 0) {
			disconnect(n, "QEMU closed the connection");
			return;
		}
		if (k < 0) {
			if (errno != EAGAIN && errno != EINTR)
				disconnect(n, strerror(errno));
			return;
		}
		colo_buf_put(&n->rd, tmp, (size_t)k);
		if (!colo_buf_ok(&n->rd)) {
			disconnect(n, "out of memory");
			return;
		}
		while (n->rd.len - pos >= 4) {
			uint32_t len;

			memcpy(&len, n->rd.data + pos, 4);
			len = be32toh(len);
			if (len == 0 || len > QEMU_NET_FRAME_MAX) {
				char why[96];

				snprintf(why, sizeof(why), "a frame of %" PRIu32 " bytes (1 to %u)",
					 len, QEMU_NET_FRAME_MAX);
				disconnect(n, why);
				return;
			}
			if (n->rd.len - pos - 4 < len)
				break;
			from_vm(n, n->rd.data + pos + 4, len);
			pos += 4 + len;
		}
		if (pos) {
			memmove(n->rd.data, n->rd.data + pos, n->rd.len - pos);
			n->rd.len -= pos;
		}
	}
}

/* Frames from the head whose checkpoint the secondary has, to the tap. */
static void release_to_tap(struct qemu_net *n)
{
	uint64_t now = colo_now_ns();

	while (n->head && n->head->tag <= n->released) {
		struct frame *f = n->head;
		ssize_t w = write(n->tap_fd, f->data, f->len);

		if (w < 0 && errno == EAGAIN)
			return;              /* POLLOUT on the tap */
		if (w < 0) {
			n->st.dropped++;
			if (!n->said_drop_tap)
				colo_log_warn("vm-tap %s refused a frame of the VM: %s (more are "
					      "counted in status)", n->tap, strerror(errno));
			n->said_drop_tap = true;
		} else {
			n->st.out_frames++;
			n->st.out_bytes += f->len;
			lat_add(n, now - f->t_ns);
		}
		n->head = f->next;
		if (!n->head)
			n->tail = NULL;
		n->st.held_frames--;
		n->st.held_bytes -= f->len;
		free(f);
	}
}

/* A frame from the tap: to QEMU now, or to wait while the VM is stopped. */
static void to_vm(struct qemu_net *n, const uint8_t *p, size_t len)
{
	struct colo_buf *b = n->vm_stopped ? &n->wait : &n->out;
	uint32_t be = htobe32((uint32_t)len);

	if (!n->serving || n->conn_fd < 0 || b->len + 4 + len > QEMU_NET_TOVM_MAX) {
		n->st.dropped++;
		if (n->serving && n->conn_fd >= 0 && !n->said_drop_in) {
			colo_log_warn("frames to the VM dropped: %zu bytes wait for it already "
				      "(more are counted in status)", b->len);
			n->said_drop_in = true;
		}
		return;
	}
	colo_buf_put(b, &be, 4);
	colo_buf_put(b, p, len);
	if (!colo_buf_ok(b)) {
		colo_buf_reset(b);
		n->st.dropped++;
		return;
	}
	n->st.in_frames++;
	n->st.in_bytes += len;
	n->st.in_waited += n->vm_stopped;
}

static void read_tap(struct qemu_net *n)
{
	for (int i = 0; i < TAP_BATCH; i++) {
		ssize_t k = read(n->tap_fd, n->tapbuf, QEMU_NET_FRAME_MAX);

		if (k <= 0)
			return;
		to_vm(n, n->tapbuf, (size_t)k);
	}
}

static void write_socket(struct qemu_net *n)
{
	while (n->conn_fd >= 0 && n->out_pos < n->out.len) {
		/* MSG_NOSIGNAL: a QEMU that went away is an EPIPE, not a SIGPIPE
		 * that ends the node (the program need not ignore the signal). */
		ssize_t w = send(n->conn_fd, n->out.data + n->out_pos, n->out.len - n->out_pos,
				 MSG_NOSIGNAL);

		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR)
				disconnect(n, strerror(errno));
			return;
		}
		n->out_pos += (size_t)w;
	}
	if (n->out_pos == n->out.len) {
		colo_buf_reset(&n->out);
		n->out_pos = 0;
	}
}

static void do_accept(struct qemu_net *n)
{
	int fd = accept4(n->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	if (n->conn_fd >= 0)
		disconnect(n, "QEMU connected again");
	n->conn_fd = fd;
	n->st.connected = true;
}

static void wake(struct qemu_net *n)
{
	ssize_t w = write(n->wake[1], "x", 1);

	(void)w;
}

static void *net_main(void *arg)
{
	struct qemu_net *n = arg;

	pthread_setname_np(pthread_self(), "vm-nic");
	pthread_mutex_lock(&n->lock);
	while (!n->stopping) {
		struct pollfd pf[4];
		void (*kick)(void *) = NULL;
		void *ud = NULL;
		char junk[64];
		int np = 0, ic = -1;

		pf[np++] = (struct pollfd){ .fd = n->wake[0], .events = POLLIN };
		pf[np++] = (struct pollfd){ .fd = n->listen_fd, .events = POLLIN };
		/* A deleted tap's fd polls POLLERR for ever: poll() ignores fd -1. */
		pf[np++] = (struct pollfd){ .fd = n->tap_gone ? -1 : n->tap_fd, .events = POLLIN |
			(n->head && n->head->tag <= n->released ? POLLOUT : 0) };
		if (n->conn_fd >= 0) {
			ic = np;
			pf[np++] = (struct pollfd){ .fd = n->conn_fd,
				.events = (n->st.held_bytes < HOLD_MAX ? POLLIN : 0) |
					  (n->out.len > n->out_pos ? POLLOUT : 0) };
		}
		pthread_mutex_unlock(&n->lock);
		if (poll(pf, (nfds_t)np, -1) < 0 && errno != EINTR) {
			colo_log_error("the VM's network relay: poll: %s", strerror(errno));
			pthread_mutex_lock(&n->lock);
			break;
		}
		pthread_mutex_lock(&n->lock);
		if (pf[0].revents)
			while (read(n->wake[0], junk, sizeof(junk)) > 0)
				;
		if (ic >= 0 && n->conn_fd == pf[ic].fd && pf[ic].revents)
			/* a hang-up is read to its end even past HOLD_MAX, or
			 * poll would report it again at once, forever */
			read_socket(n, (pf[ic].revents & (POLLHUP | POLLERR)) != 0);
		if (pf[1].revents & POLLIN)
			do_accept(n);
		if (pf[2].revents & POLLIN)
			read_tap(n);
		if (pf[2].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			n->tap_gone = true;
			colo_log_error("vm-tap %s is gone (deleted while this node ran): the "
				       "VM's frames are dropped from now on", n->tap);
		}
		write_socket(n);
		release_to_tap(n);
		if (want_kick(n)) {
			n->kicked = true;
			n->st.kicks++;
			kick = n->kick;
			ud = n->kick_ud;
		}
		if (kick) {
			pthread_mutex_unlock(&n->lock);
			kick(ud);
			pthread_mutex_lock(&n->lock);
		}
	}
	pthread_mutex_unlock(&n->lock);
	return NULL;
}

/* ---- API ---- */

int qemu_net_open(const char *sock_path, const char *tap, const char *bridge, bool serving,
		  struct qemu_net **out, struct colo_err *err)
{
	struct qemu_net *n;
	int r;

	*out = NULL;
	if (!tap || !*tap || strlen(tap) >= IFNAMSIZ)
		return colo_err_set(err, EINVAL, "vm-tap '%s': an interface name of 1 to %d "
				    "bytes", tap ? tap : "", IFNAMSIZ - 1);
	if (bridge && strlen(bridge) >= IFNAMSIZ)
		return colo_err_set(err, EINVAL, "vm-bridge '%s': an interface name of 1 to %d "
				    "bytes", bridge, IFNAMSIZ - 1);
	if (strlen(sock_path) >= sizeof(n->sock_path))
		return colo_err_set(err, ENAMETOOLONG, "%s: too long for a unix socket",
				    sock_path);
	n = calloc(1, sizeof(*n));
	if (!n)
		return colo_err_set(err, ENOMEM, "out of memory");
	snprintf(n->tap, sizeof(n->tap), "%s", tap);
	snprintf(n->bridge, sizeof(n->bridge), "%s", bridge ? bridge : "");
	snprintf(n->sock_path, sizeof(n->sock_path), "%s", sock_path);
	n->listen_fd = n->conn_fd = n->tap_fd = -1;
	n->wake[0] = n->wake[1] = -1;
	n->serving = serving;
	n->st.serving = serving;
	colo_buf_init(&n->rd);
	colo_buf_init(&n->out);
	colo_buf_init(&n->wait);
	pthread_mutex_init(&n->lock, NULL);
	*out = n;
	n->tapbuf = malloc(QEMU_NET_FRAME_MAX);
	if (!n->tapbuf)
		return colo_err_set(err, ENOMEM, "out of memory");
	if (pipe2(n->wake, O_CLOEXEC | O_NONBLOCK) != 0)
		return colo_err_set(err, errno, "pipe: %s", strerror(errno));
	r = tap_open(n, err);
	if (r == 0)
		r = listen_at(n, err);
	if (r)
		return r;
	if (pthread_create(&n->thr, NULL, net_main, n) != 0)
		return colo_err_set(err, EAGAIN, "cannot start the network relay thread");
	n->thr_on = true;
	colo_log_info("the VM's NIC: %s <-> vm-tap %s%s%s, %s", n->sock_path, n->tap,
		      n->bridge[0] ? " in bridge " : "", n->bridge,
		      serving ? "serving" : "standby (frames dropped until a takeover)");
	return 0;
}

void qemu_net_free(struct qemu_net *n)
{
	if (!n)
		return;
	if (n->thr_on) {
		pthread_mutex_lock(&n->lock);
		n->stopping = true;
		pthread_mutex_unlock(&n->lock);
		wake(n);
		pthread_join(n->thr, NULL);
	}
	while (n->head) {
		struct frame *f = n->head;

		n->head = f->next;
		free(f);
	}
	for (int i = 0; i < 2; i++)
		if (n->wake[i] >= 0)
			close(n->wake[i]);
	if (n->conn_fd >= 0)
		close(n->conn_fd);
	if (n->listen_fd >= 0) {
		close(n->listen_fd);
		unlink(n->sock_path);
	}
	if (n->tap_fd >= 0)
		close(n->tap_fd);
	colo_buf_free(&n->rd);
	colo_buf_free(&n->out);
	colo_buf_free(&n->wait);
	free(n->tapbuf);
	pthread_mutex_destroy(&n->lock);
	free(n);
}

void qemu_net_set_kick(struct qemu_net *n, void (*fn)(void *ud), void *ud)
{
	pthread_mutex_lock(&n->lock);
	n->kick = fn;
	n->kick_ud = ud;
	pthread_mutex_unlock(&n->lock);
	wake(n);
}

void qemu_net_serve(struct qemu_net *n)
{
	pthread_mutex_lock(&n->lock);
	n->serving = n->st.serving = true;
	pthread_mutex_unlock(&n->lock);
	wake(n);
}

void qemu_net_vm_stopping(struct qemu_net *n)
{
	pthread_mutex_lock(&n->lock);
	n->vm_stopped = true;
	n->in_ckpt = true;
	n->kicked = false;
	pthread_mutex_unlock(&n->lock);
}

void qemu_net_close_epoch(struct qemu_net *n)
{
	pthread_mutex_lock(&n->lock);
	/* Everything QEMU wrote before it sent VMSTATE_SEND is in the socket
	 * now (a unix socket's write lands in the reader's buffer). */
	read_socket(n, true);
	for (struct frame *f = n->head; f; f = f->next)
		if (f->tag == TAG_OPEN)
			f->tag = TAG_CLOSED;
	n->unheld_closed += n->unheld_open;
	n->unheld_open = 0;
	n->st.epochs++;
	pthread_mutex_unlock(&n->lock);
}

void qemu_net_tag(struct qemu_net *n, uint64_t seq)
{
	bool any = false;

	pthread_mutex_lock(&n->lock);
	n->unheld_closed = 0;         /* their epoch is in the mirror now */
	for (struct frame *f = n->head; f; f = f->next)
		if (f->tag == TAG_CLOSED) {
			f->tag = n->epoch == 0 ? 0 : seq;
			any = true;
		}
	pthread_mutex_unlock(&n->lock);
	if (any)
		wake(n);
}

void qemu_net_vm_running(struct qemu_net *n)
{
	pthread_mutex_lock(&n->lock);
	n->vm_stopped = false;
	n->in_ckpt = false;
	if (n->wait.len) {
		colo_buf_put(&n->out, n->wait.data, n->wait.len);
		if (!colo_buf_ok(&n->out))
			colo_buf_reset(&n->out);
		colo_buf_reset(&n->wait);
	}
	pthread_mutex_unlock(&n->lock);
	wake(n);
}

void qemu_net_epoch(struct qemu_net *n, uint64_t seq)
{
	pthread_mutex_lock(&n->lock);
	/* The engine names the sync's epoch at every ask: the same again
	 * keeps the sync's wait (one kick for it). */
	if (seq != n->epoch)
		n->prehold = false;
	n->epoch = seq;
	/* "Everything released" covered the epochs before this one only. */
	if (seq && n->released == UINT64_MAX)
		n->released = seq - 1;
	pthread_mutex_unlock(&n->lock);
	wake(n);
}

bool qemu_net_sync_ready(struct qemu_net *n)
{
	void (*kick)(void *) = NULL;
	void *ud = NULL;
	bool ready;

	pthread_mutex_lock(&n->lock);
	/* (the engine set the sync's epoch before asking: what is said from
	 * then on is held, and counts here no more) */
	ready = n->unheld_open + n->unheld_closed == 0;
	if (!ready && !n->prehold) {
		/* Have QEMU close the epoch those went out in: once it is in
		 * the mirror, so is all that was said.  What is said from now
		 * on no longer counts here (held under the sync's epoch, or,
		 * under output-mode none, never held at all). */
		n->prehold = true;
		if (!n->in_ckpt) {
			kick = n->kick;
			ud = n->kick_ud;
			n->kicked = true;
			n->st.kicks++;
		}
	}
	pthread_mutex_unlock(&n->lock);
	if (kick)
		kick(ud);
	return ready;
}

void qemu_net_release(struct qemu_net *n, uint64_t seq)
{
	pthread_mutex_lock(&n->lock);
	if (seq > n->released)
		n->released = seq;
	pthread_mutex_unlock(&n->lock);
	wake(n);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void qemu_net_stats(struct qemu_net *n, struct qemu_net_stats *st)
{
	uint32_t s[LAT_RING];
	size_t k;

	pthread_mutex_lock(&n->lock);
	*st = n->st;
	k = n->lat_n < LAT_RING ? (size_t)n->lat_n : LAT_RING;
	memcpy(s, n->lat_us, k * sizeof(s[0]));
	pthread_mutex_unlock(&n->lock);
	st->release_p50_ms = st->release_p99_ms = 0;
	if (k) {
		qsort(s, k, sizeof(s[0]), cmp_u32);
		st->release_p50_ms = s[k / 2] / 1000.0;
		st->release_p99_ms = s[k * 99 / 100] / 1000.0;
	}
}
