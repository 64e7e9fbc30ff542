/*
 * thread.h: the threads colo starts besides a daemon's loop thread.
 *
 * A daemon's signals (SIGTERM, SIGINT, SIGHUP: libuv's handlers) are for
 * its loop thread, so every other thread starts with them blocked.  The
 * signals a fault raises in the thread itself stay open: SIGSEGV is how
 * the mprotect dirty tracker sees a write (ram.h), and a SIGBUS, SIGFPE or
 * SIGILL blocked while it is raised kills the process without its
 * handler.
 */
#ifndef COLO_THREAD_H
#define COLO_THREAD_H

#include <pthread.h>

/* pthread_create() with that signal mask; the caller's own mask is kept.
 * 0 or pthread_create()'s error number. */
int colo_thread_start(pthread_t *th, void *(*fn)(void *), void *arg);

#endif
