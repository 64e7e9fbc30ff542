/* err.c: see err.h. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

void colo_err_clear(struct colo_err *e)
{
	e->code = 0;
	e->msg[0] = '\0';
}

int colo_err_set(struct colo_err *e, int code, const char *fmt, ...)
{
	va_list ap;

	if (code <= 0)
		code = code < 0 ? -code : 1;
	if (e->code != 0)
		return -e->code;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -code;
}

void colo_err_prefix(struct colo_err *e, const char *fmt, ...)
{
	char head[COLO_ERR_MAX];
	char tail[COLO_ERR_MAX];
	size_t hl, tl;
	va_list ap;

	if (e->code == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(head, sizeof(head), fmt, ap);
	va_end(ap);
	memcpy(tail, e->msg, sizeof(tail));
	/* "<head>: <tail>", cut to fit. */
	hl = strnlen(head, COLO_ERR_MAX - 3);
	tl = strnlen(tail, sizeof(tail));
	if (tl > COLO_ERR_MAX - 3 - hl)
		tl = COLO_ERR_MAX - 3 - hl;
	memcpy(e->msg, head, hl);
	memcpy(e->msg + hl, ": ", 2);
	memcpy(e->msg + hl + 2, tail, tl);
	e->msg[hl + 2 + tl] = '\0';
}
