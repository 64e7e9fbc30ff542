/*
 * etcdsrv.c: a real etcd member for the tests (etcdsrv.h).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "etcdsrv.h"
#include "testutil.h"

const char *colo_etcdsrv_binary(void)
{
	static char path[4096];
	const char *env = getenv("COLO_ETCD"), *p;

	if (env != NULL && *env != '\0')
		return access(env, X_OK) == 0 ? env : NULL;
	p = getenv("PATH");
	if (p == NULL || *p == '\0')
		p = "/usr/local/bin:/usr/bin:/bin";
	while (*p != '\0') {
		size_t n = strcspn(p, ":");

		if ((size_t)snprintf(path, sizeof(path), "%.*s/etcd", (int)n, p) < sizeof(path) &&
		    access(path, X_OK) == 0)
			return path;
		p += n + (p[n] == ':');
	}
	return NULL;
}

uint16_t colo_etcdsrv_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t port = 0;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* GET /health on the client port: true when etcd says so. */
static int etcdsrv_healthy(uint16_t port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	static const char req[] = "GET /health HTTP/1.0\r\n\r\n";
	struct timeval tv = { .tv_sec = 2 };
	char buf[2048];
	size_t len = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok = 0;

	if (fd < 0)
		return 0;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    write(fd, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1)) {
		while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
			len += (size_t)n;
		buf[len] = '\0';
		ok = strstr(buf, "\"health\":\"true\"") != NULL;
	}
	close(fd);
	return ok;
}

static int etcdsrv_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void etcdsrv_exec(const struct colo_etcdsrv *s, const char *bin)
{
	char data[4096], log[4096], client[64], peer[64], cluster[96];
	int fd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	snprintf(data, sizeof(data), "%s/data", s->dir);
	snprintf(log, sizeof(log), "%s/etcd.log", s->dir);
	snprintf(client, sizeof(client), "http://127.0.0.1:%u", s->client_port);
	snprintf(peer, sizeof(peer), "http://127.0.0.1:%u", s->peer_port);
	snprintf(cluster, sizeof(cluster), "colotest=%s", peer);
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	execl(bin, "etcd", "--name", "colotest", "--data-dir", data,
	      "--listen-client-urls", client, "--advertise-client-urls", client,
	      "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
	      "--initial-cluster", cluster, "--initial-cluster-state", "new",
	      "--heartbeat-interval", "10", "--election-timeout", "100", (char *)NULL);
	_exit(127);
}

/* One try on fresh ports: 0 once healthy, 1 if etcd exited (ports taken?),
 * -1 on anything else. */
static int etcdsrv_try(struct colo_etcdsrv *s, const char *bin, char *why, size_t whylen)
{
	struct timespec t0, now;
	int status;

	s->client_port = colo_etcdsrv_free_port();
	do
		s->peer_port = colo_etcdsrv_free_port();
	while (s->peer_port != 0 && s->peer_port == s->client_port);
	if (s->client_port == 0 || s->peer_port == 0) {
		snprintf(why, whylen, "no free loopback port");
		return -1;
	}
	snprintf(s->endpoint, sizeof(s->endpoint), "http://127.0.0.1:%u", s->client_port);
	s->pid = fork();
	if (s->pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		return -1;
	}
	if (s->pid == 0)
		etcdsrv_exec(s, bin);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
			s->pid = 0;
			snprintf(why, whylen, "etcd exited (status 0x%x), see %s/etcd.log", status,
				 s->dir);
			return 1;
		}
		if (etcdsrv_healthy(s->client_port))
			return 0;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 30) {
			snprintf(why, whylen, "etcd not healthy after 30 s, see %s/etcd.log", s->dir);
			return -1;
		}
		usleep(20 * 1000);
	}
}

int colo_etcdsrv_start(struct colo_etcdsrv *s, char *why, size_t whylen)
{
	const char *bin = colo_etcdsrv_binary();
	int r = 1;

	memset(s, 0, sizeof(*s));
	if (bin == NULL) {
		snprintf(why, whylen, "no etcd binary (install etcd-server)");
		return -1;
	}
	s->dir = colo_test_tmpdir();
	if (s->dir == NULL) {
		snprintf(why, whylen, "no temporary directory");
		return -1;
	}
	/* A port taken between our probe and etcd's bind: try other ports. */
	for (int i = 0; i < 3 && r == 1; i++) {
		char data[4096];

		snprintf(data, sizeof(data), "%s/data", s->dir);
		nftw(data, etcdsrv_rm, 16, FTW_DEPTH | FTW_PHYS);
		r = etcdsrv_try(s, bin, why, whylen);
	}
	if (r != 0) {
		/* Keep the directory for its log: only stop the process. */
		if (s->pid > 0) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
			s->pid = 0;
		}
		return -1;
	}
	return 0;
}

void colo_etcdsrv_stop(struct colo_etcdsrv *s)
{
	if (s->pid > 0) {
		int i;

		kill(s->pid, SIGTERM);
		for (i = 0; i < 500 && waitpid(s->pid, NULL, WNOHANG) == 0; i++)
			usleep(10 * 1000);
		if (i == 500) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
		}
		s->pid = 0;
	}
	if (s->dir != NULL) {
		nftw(s->dir, etcdsrv_rm, 16, FTW_DEPTH | FTW_PHYS);
		free(s->dir);
		s->dir = NULL;
	}
}
