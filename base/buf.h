/* base/buf.h — a growable byte buffer, always NUL-terminated.
 *
 * Used for building strings (JSON output, SQL-free text, paths). Allocation
 * failure aborts: a workflow driver that cannot allocate a few bytes cannot
 * record anything useful anyway, and it keeps every caller simple (git's
 * strbuf does the same). */
#ifndef ANNEAL_BUF_H
#define ANNEAL_BUF_H

#include <stddef.h>

struct buf {
	char *ptr;   /* never NULL after buf_init: "" at least */
	size_t len;
	size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

void buf_init(struct buf *b);
void buf_free(struct buf *b);          /* leaves b initialised and empty */
void buf_reset(struct buf *b);         /* len = 0, keeps memory */
void buf_grow(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *data, size_t len);
void buf_adds(struct buf *b, const char *s);
void buf_addc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends v in the shortest "%g" form that reads back as the same double
 * (3, 0.1, 1795920164.9282203): valid JSON for finite v. */
void buf_add_num(struct buf *b, double v);
/* Appends s as a JSON string literal, quotes included. */
void buf_add_json_str(struct buf *b, const char *s);
/* Returns the string and leaves b empty; caller frees. */
char *buf_detach(struct buf *b);
/* The string (borrowed; "" when empty). */
const char *buf_str(const struct buf *b);

/* xmalloc & co: abort on allocation failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
