/* hbcap.c: one heartbeat as a node sends it (see hbcap.h). */
#include "config.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <uv.h>

#include "hb.h"
#include "hbcap.h"
#include "testutil.h"

void hb_capture(const char *node, int role, uint64_t gen, const uint8_t *key,
		struct dgram *d)
{
	struct colo_addr any = { "127.0.0.1", 0 };
	struct colo_hb_cb cb = { NULL, NULL, NULL };
	struct timeval tv = { 10, 0 };
	struct sockaddr_in sa = { 0 };
	socklen_t salen = sizeof(sa);
	struct colo_hb *hb;
	struct colo_err err;
	uv_loop_t loop;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	ck_assert_int_ge(fd, 0);
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &salen), 0);
	ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	colo_err_clear(&err);
	ck_assert_msg(colo_hb_start(&loop, &any, &cb, NULL, &hb, &err) == 0, "%s", err.msg);
	colo_hb_set_identity(hb, node, role, gen);
	if (key)
		ck_assert_msg(colo_hb_set_key(hb, key, &err) == 0, "%s", err.msg);
	/* The first heartbeat leaves at once; the next would be a minute later. */
	colo_hb_send_to(hb, (struct sockaddr *)&sa, 60000, 60000);
	n = recv(fd, d->data, sizeof(d->data), 0);
	colo_hb_stop(hb);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	close(fd);
	ck_assert_msg(n > 0, "no heartbeat caught");
	d->len = (size_t)n;
}
