/* base/err.h — error codes and the caller-owned error message buffer.
 *
 * Every fallible function returns 0 or a negative enum err_code and, on
 * failure, fills a struct err the caller owns. The buffer is fixed so that
 * failing paths never allocate. Callers add context on the way up with
 * err_prefix(): "recipe 'x.json': stages[2].id: ..." */
#ifndef ANNEAL_ERR_H
#define ANNEAL_ERR_H

#include <stdarg.h>

enum err_code {
	ERR_OK = 0,
	ERR_INVALID = -1,  /* bad user input: recipe, argument, reference (exit 2) */
	ERR_SYSTEM = -2,   /* I/O, SQLite, fork...: the world failed (exit 3) */
	ERR_NOTFOUND = -3, /* a named thing does not exist (exit 2 at the CLI) */
	ERR_BUSY = -4,     /* held by another process (a run's lock) */
	ERR_NOMEM = -5,
	ERR_STEP = -6,     /* a step failed (exit 1) */
	ERR_INTERRUPTED = -7,
};

#define ERR_MSG_MAX 1024

struct err {
	int code;
	int sys_errno;     /* err_sys's errnum (kept by err_prefix), else 0: lets
	                      a caller tell a full disk from a missing file */
	char msg[ERR_MSG_MAX];
};

/* Resets err to "no error". */
void err_clear(struct err *err);

/* Sets code and message (printf-style); returns code so callers can write
 * `return err_set(err, ERR_INVALID, "...")`. err may be NULL. */
int err_set(struct err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like err_set, appending ": strerror(errnum)". */
int err_sys(struct err *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepends "PREFIX: " to the message; keeps the code. Returns err->code. */
int err_prefix(struct err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The process exit status the CLI uses for a code: 0, 1, 2 or 3. */
int err_exit_status(int code);

#endif
