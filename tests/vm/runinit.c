/*
 * runinit.c: /init of an initramfs that runs one test program under a
 * kernel other than this machine's (tests/vm_softdirty.sh boots Debian's
 * under QEMU).  Linked statically: the initramfs holds it, the program and
 * the shared libraries the program loads, nothing else.
 *
 * Mounts /proc, /sys, /dev and a tmpfs on /dev/shm, brings up
 * the loopback interface, then runs the program named
 * by colo.run=PATH on the kernel command line once per name in
 * colo.cases=A,B,... with CK_RUN_CASE set to it (once without, if there is
 * no colo.cases), with the arguments in colo.args=A,B,... and
 * colo.env.NAME=VALUE in its environment for each such parameter.  First it prints "colo-vmrun: kernel RELEASE VERSION".
 * Before each run it prints "colo-vmrun: case NAME", after
 * it "colo-vmrun: exit STATUS" (a number, or "signal N"), and when all are
 * done "colo-vmrun: done" and powers the machine off: QEMU exits.  The
 * program's output goes to the console as it is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

static char cmdline[4096];

/* The value of kernel parameter `key` ("colo.run="), or NULL. */
static const char *param(const char *key)
{
	size_t n = strlen(key);

	for (char *w = cmdline; w && *w;) {
		char *end = strchr(w, ' ');

		if (strncmp(w, key, n) == 0) {
			static char val[1024];
			size_t len = end ? (size_t)(end - w) - n : strlen(w) - n;

			if (len >= sizeof(val))
				len = sizeof(val) - 1;
			memcpy(val, w + n, len);
			val[len] = '\0';
			return val;
		}
		w = end ? end + 1 : NULL;
	}
	return NULL;
}

/* colo.args=A,B,...: the program's arguments. */
static char *args[64];

static void run(const char *prog, const char *ck_case)
{
	int st;
	pid_t pid;

	printf("colo-vmrun: case %s\n", ck_case ? ck_case : "(all)");
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		if (ck_case)
			setenv("CK_RUN_CASE", ck_case, 1);
		args[0] = (char *)prog;
		execv(prog, args);
		printf("colo-vmrun: exec %s: %s\n", prog, strerror(errno));
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid) {
		printf("colo-vmrun: exit fork: %s\n", strerror(errno));
	} else if (WIFEXITED(st)) {
		printf("colo-vmrun: exit %d\n", WEXITSTATUS(st));
	} else {
		printf("colo-vmrun: exit signal %d\n", WTERMSIG(st));
	}
	fflush(stdout);
}

/* Loopback up, for programs that talk to themselves over TCP or UDP. */
static void loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
			printf("colo-vmrun: lo up: %s\n", strerror(errno));
	}
	close(fd);
}

int main(void)
{
	const char *prog, *cases;
	struct utsname u;
	FILE *f;

	mkdir("/proc", 0755);
	mkdir("/sys", 0755);
	mkdir("/dev", 0755);
	mkdir("/tmp", 01777);
	if (mount("proc", "/proc", "proc", 0, NULL) != 0)
		printf("colo-vmrun: mount /proc: %s\n", strerror(errno));
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mkdir("/dev/shm", 01777);
	mount("tmpfs", "/dev/shm", "tmpfs", 0, NULL);
	/* /tmp stays on the initramfs's own (writable) root: files packed
	 * under /tmp, such as a build tree there, remain visible. */
	loopback_up();
	setenv("PATH", "/bin", 1);
	setenv("TMPDIR", "/tmp", 1);
	f = fopen("/proc/cmdline", "r");
	if (f) {
		if (!fgets(cmdline, sizeof(cmdline), f))
			cmdline[0] = '\0';
		cmdline[strcspn(cmdline, "\n")] = '\0';
		fclose(f);
	}
	/* The console's last line (the firmware's) may lack its newline. */
	if (uname(&u) == 0)
		printf("\ncolo-vmrun: kernel %s %s\n", u.release, u.version);
	/* colo.env.NAME=VALUE: NAME=VALUE in the program's environment. */
	for (char *w = cmdline; w && *w;) {
		char *end = strchr(w, ' '), *eq;

		if (end)
			*end = '\0';
		eq = strchr(w, '=');
		if (strncmp(w, "colo.env.", 9) == 0 && eq && eq > w + 9) {
			*eq = '\0';
			setenv(w + 9, eq + 1, 1);
			*eq = '=';
		}
		if (end)
			*end = ' ';
		w = end ? end + 1 : NULL;
	}
	prog = param("colo.run=");
	if (!prog) {
		printf("colo-vmrun: no colo.run= on the kernel command line\n");
	} else {
		char progbuf[1024], list[1024];

		static char argbuf[1024];
		const char *a;
		size_t n = 1;

		/* param() returns its own buffer: copied before the next. */
		snprintf(progbuf, sizeof(progbuf), "%s", prog);
		a = param("colo.args=");
		if (a) {
			snprintf(argbuf, sizeof(argbuf), "%s", a);
			for (char *t = strtok(argbuf, ","); t && n < 63; t = strtok(NULL, ","))
				args[n++] = t;
		}
		cases = param("colo.cases=");
		if (!cases) {
			run(progbuf, NULL);
		} else {
			snprintf(list, sizeof(list), "%s", cases);
			for (char *c = strtok(list, ","); c; c = strtok(NULL, ","))
				run(progbuf, c);
		}
	}
	printf("colo-vmrun: done\n");
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
