/* pipeline/events.c — see events.h. */
#include "pipeline/events.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "pipeline/json.h"

void events_reader_init(struct events_reader *r, const char *path, off_t offset)
{
	r->path = xstrdup(path);
	r->offset = offset;
	buf_init(&r->partial);
	r->skipping = 0;
	r->lineno = 0;
	r->limit = EVENTS_FILE_MAX;
	r->capped = 0;
	r->moved = 0;
}

void events_reader_clear(struct events_reader *r)
{
	free(r->path);
	r->path = NULL;
	buf_free(&r->partial);
}

static void warn(events_fn fn, void *ctx, size_t lineno, const char *why,
		 const char *line, size_t len)
{
	struct buf b = BUF_INIT;
	struct ev ev = { .type = EVT_WARNING, .step = -1 };

	buf_printf(&b, "events line %zu: %s", lineno, why);
	if (line) {
		buf_adds(&b, ": ");
		for (size_t i = 0; i < len && i < 200; i++) {
			unsigned char c = (unsigned char)line[i];
			buf_addc(&b, c < 0x20 || c == 0x7f ? '?' : (char)c);
		}
		if (len > 200)
			buf_adds(&b, "...");
	}
	ev.text = buf_str(&b);
	fn(ctx, &ev);
	buf_free(&b);
}

static int get_num(const struct jnode *o, const char *key, double *out)
{
	const struct jnode *n = json_get(o, key);

	if (!n || n->type != J_NUMBER || !isfinite(n->num))
		return -1;
	*out = n->num;
	return 0;
}

void events_parse_line(const char *line, size_t len, size_t lineno,
		       events_fn fn, void *ctx)
{
	struct jnode *root = NULL;
	struct err err;
	const struct jnode *kind;
	struct ev ev = { .step = -1 };
	double v;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (len == 0)
		return;
	err_clear(&err);
	if (json_parse(line, len, 0, &root, &err)) {
		warn(fn, ctx, lineno, "not JSON", line, len);
		goto done;
	}
	if (root->type != J_OBJECT) {
		warn(fn, ctx, lineno, "not a JSON object", line, len);
		goto done;
	}
	kind = json_get(root, "event");
	if (!kind || kind->type != J_STRING) {
		warn(fn, ctx, lineno, "no \"event\" string", line, len);
		goto done;
	}
	if (get_num(root, "step", &v) == 0 && v >= 0 && v < 9e18)
		ev.step = (long long)v;

	if (!strcmp(kind->str, "checkpoint")) {
		const struct jnode *dir = json_get(root, "dir");
		if (!dir || dir->type != J_STRING || !*dir->str) {
			warn(fn, ctx, lineno, "checkpoint without \"dir\"", line, len);
			goto done;
		}
		ev.type = EVT_CHECKPOINT;
		ev.dir = dir->str;
		fn(ctx, &ev);
	} else if (!strcmp(kind->str, "progress")) {
		if (get_num(root, "done", &ev.value) || ev.value < 0) {
			warn(fn, ctx, lineno, "progress without a \"done\" number", line, len);
			goto done;
		}
		if (get_num(root, "total", &ev.total) || ev.total < 0)
			ev.total = 0;
		ev.type = EVT_PROGRESS;
		fn(ctx, &ev);
	} else if (!strcmp(kind->str, "metric")) {
		const struct jnode *name = json_get(root, "name");
		int any = 0;

		ev.type = EVT_METRIC;
		if (name && name->type == J_STRING) {
			if (get_num(root, "value", &ev.value)) {
				warn(fn, ctx, lineno, "metric without a finite \"value\"", line, len);
				goto done;
			}
			ev.name = name->str;
			fn(ctx, &ev);
			goto done;
		}
		for (size_t i = 0; i < root->nkids; i++) {
			const struct jnode *k = &root->kids[i];
			if (!strcmp(k->key, "event") || !strcmp(k->key, "step") ||
			    !strcmp(k->key, "time") || k->type != J_NUMBER ||
			    !isfinite(k->num))
				continue;
			ev.name = k->key;
			ev.value = k->num;
			fn(ctx, &ev);
			any = 1;
		}
		if (!any)
			warn(fn, ctx, lineno, "metric without values", line, len);
	} else {
		warn(fn, ctx, lineno, "unknown event", line, len);
	}
done:
	json_free(root);
}

/* Stops following the file, with one warning saying why. */
static void give_up(struct events_reader *r, events_fn fn, void *ctx, const char *why)
{
	struct ev ev = { .type = EVT_WARNING, .step = -1, .text = why };

	if (r->capped)
		return;
	r->capped = 1;
	buf_reset(&r->partial);
	fn(ctx, &ev);
}

/* At the limit: warns once if the file goes on past it. */
static void at_limit(struct events_reader *r, int fd, events_fn fn, void *ctx)
{
	struct stat st;
	char text[160];

	if (r->capped || fstat(fd, &st) < 0 || st.st_size <= r->limit)
		return;
	if (!r->moved) {   /* resumed there: the earlier reader said it */
		r->capped = 1;
		return;
	}
	snprintf(text, sizeof(text),
		 "events file over %lld MiB: the rest of it is not read",
		 (long long)(r->limit >> 20));
	give_up(r, fn, ctx, text);
}

int events_read(struct events_reader *r, size_t max_bytes, events_fn fn,
		void *ctx, struct err *err)
{
	char chunk[65536];
	size_t total = 0;
	int fd, rc = 0;

	if (r->capped)
		return 0;
	/* A step may put anything there: a symlink (to /dev/zero, to a
	 * file not its own), a FIFO, a directory. Only a regular file is
	 * read; anything else is one warning, never a hang or an error. */
	fd = open(r->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == ELOOP) {
			give_up(r, fn, ctx, "the events file is a symbolic link: not read");
			return 0;
		}
		if (errno == EACCES || errno == EPERM) {
			give_up(r, fn, ctx, "the events file is not readable: not read");
			return 0;
		}
		return err_sys(err, errno, "cannot read events '%s'", r->path);
	}
	{
		struct stat st;
		if (fstat(fd, &st) < 0) {
			rc = err_sys(err, errno, "cannot stat events '%s'", r->path);
			close(fd);
			return rc;
		}
		if (!S_ISREG(st.st_mode)) {
			close(fd);
			give_up(r, fn, ctx, "the events file is not a regular file: not read");
			return 0;
		}
	}
	for (;;) {
		size_t want = sizeof(chunk);
		ssize_t n;
		const char *p, *end;

		if (r->limit > 0) {
			if (r->offset >= r->limit) {
				at_limit(r, fd, fn, ctx);
				break;
			}
			if ((off_t)want > r->limit - r->offset)
				want = (size_t)(r->limit - r->offset);
		}
		n = pread(fd, chunk, want, r->offset);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = err_sys(err, errno, "cannot read events '%s'", r->path);
			break;
		}
		if (n == 0)
			break;
		r->offset += n;
		r->moved = 1;
		total += (size_t)n;
		p = chunk;
		end = chunk + n;
		while (p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t seg = (size_t)((nl ? nl : end) - p);

			if (r->skipping) {
				if (nl)
					r->skipping = 0;
			} else if (r->partial.len + seg > EVENTS_LINE_MAX) {
				r->lineno++;
				warn(fn, ctx, r->lineno, "line too long (over 64 KiB), skipped",
				     NULL, 0);
				buf_reset(&r->partial);
				r->skipping = !nl;
			} else if (nl) {
				r->lineno++;
				if (r->partial.len) {
					buf_add(&r->partial, p, seg);
					events_parse_line(r->partial.ptr, r->partial.len,
							  r->lineno, fn, ctx);
					buf_reset(&r->partial);
				} else {
					events_parse_line(p, seg, r->lineno, fn, ctx);
				}
			} else {
				buf_add(&r->partial, p, seg);
			}
			p += seg + (nl ? 1 : 0);
		}
		if (max_bytes && total >= max_bytes)
			break;
	}
	close(fd);
	return rc;
}
