/*
 * ctl_int.h: what the control socket's server (ctl.c) and its blocking
 * client (ctl_client.c) share, and nothing outside them uses.
 */
#ifndef COLO_CTL_INT_H
#define COLO_CTL_INT_H

#include <sys/un.h>

#include "err.h"

/* The socket address of path; a path empty or too long is refused. */
int colo__ctl_sockaddr(struct sockaddr_un *sa, const char *path, struct colo_err *err);

#endif
