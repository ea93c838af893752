/* base/err.c — see err.h. Formatting only; never allocates. */
#include "base/err.h"

#include <stdio.h>
#include <string.h>

void err_clear(struct err *err)
{
	if (!err)
		return;
	err->code = ERR_OK;
	err->sys_errno = 0;
	err->msg[0] = '\0';
}

__attribute__((format(printf, 3, 0)))
static void vset(struct err *err, int code, const char *fmt, va_list ap)
{
	err->code = code;
	err->sys_errno = 0;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

int err_set(struct err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	va_start(ap, fmt);
	vset(err, code, fmt, ap);
	va_end(ap);
	return code;
}

int err_sys(struct err *err, int errnum, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (!err)
		return ERR_SYSTEM;
	va_start(ap, fmt);
	vset(err, ERR_SYSTEM, fmt, ap);
	va_end(ap);
	err->sys_errno = errnum;
	n = strlen(err->msg);
	if (n < sizeof(err->msg))
		snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(errnum));
	return err->code;
}

int err_prefix(struct err *err, const char *fmt, ...)
{
	char prefix[ERR_MSG_MAX], old[ERR_MSG_MAX];
	va_list ap;

	if (!err)
		return ERR_SYSTEM;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Truncation is fine: the start of a message matters most. */
	size_t n = strlen(prefix);
	if (n > sizeof(err->msg) - 3)
		n = sizeof(err->msg) - 3;
	memcpy(err->msg, prefix, n);
	memcpy(err->msg + n, ": ", 2);
	size_t room = sizeof(err->msg) - n - 3;
	size_t ol = strnlen(old, room);
	memcpy(err->msg + n + 2, old, ol);
	err->msg[n + 2 + ol] = '\0';
	return err->code;
}

int err_exit_status(int code)
{
	switch (code) {
	case ERR_OK:
		return 0;
	case ERR_STEP:
		return 1;
	case ERR_INVALID:
	case ERR_NOTFOUND:
	case ERR_BUSY:
		return 2;
	case ERR_INTERRUPTED:
		return 130;
	default:
		return 3;
	}
}
