/* tests/fuzz/fuzz_events.c — libFuzzer target for the events reader
 * (pipeline/events.c): events_parse_line and the incremental events_read.
 *
 * Input: an 8-byte control block, then the events file's bytes.
 *   c[0..6]  the sizes of the pieces the file is appended in (cycled)
 *   c[7]     low 3 bits: events_read's max_bytes (0: no limit, else
 *            1 << (2 * bits)); bit 3: the first line gets a prefix of
 *            spaces that brings it near EVENTS_LINE_MAX (64 KiB), bits 4-7
 *            where (MAX - 8 .. MAX + 7 bytes of spaces), so that the
 *            over-long path and the reader's 64 KiB chunks are reached
 *            without 64 KiB inputs.
 *
 * Invariant (differential): the file is written to a temp file piece by
 * piece, with an events_read after each piece (and then until it is all
 * read); the events delivered, in order and field by field, must equal
 * those of splitting the whole file on '\n' at once and calling
 * events_parse_line on each complete line (a line over EVENTS_LINE_MAX,
 * complete or not, gives exactly one "line too long" warning instead).
 * And every event is well formed: a checkpoint has a non-empty dir, a
 * metric a name and a finite value, progress finite non-negative numbers,
 * a warning one line of text. */
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "pipeline/events.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CTL 8
#define MAX_PIECES 64

static char *path;

/* Appends one event as a line of text (numbers by their bits). */
static void record(void *ctx, const struct ev *ev)
{
	struct buf *b = ctx;

	switch (ev->type) {
	case EVT_CHECKPOINT:
		if (!ev->dir || !*ev->dir)
			abort();
		break;
	case EVT_METRIC:
		if (!ev->name || !isfinite(ev->value))
			abort();
		break;
	case EVT_PROGRESS:
		if (!isfinite(ev->value) || ev->value < 0 || !isfinite(ev->total) ||
		    ev->total < 0)
			abort();
		break;
	case EVT_WARNING:
		if (!ev->text || strchr(ev->text, '\n') || strlen(ev->text) > 400)
			abort();
		break;
	default:
		abort();
	}
	if (ev->step < -1)
		abort();
	buf_printf(b, "%d|%s|%a|%a|%lld|%s|%s\n", (int)ev->type,
		   ev->name ? ev->name : "-", ev->value, ev->total, ev->step,
		   ev->dir ? ev->dir : "-", ev->text ? ev->text : "-");
}

static char *dir;

static void cleanup(void)
{
	unlink(path);
	rmdir(dir);
}

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");

	dir = xasprintf("%s/anneal-fuzz-events-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		abort();
	path = xasprintf("%s/events.jsonl", dir);
	atexit(cleanup);
}

/* The reference: the whole file, line by line. */
static void reference(const char *file, size_t len, struct buf *out)
{
	const char *p = file, *end = file + len;
	size_t lineno = 0;
	struct buf w = BUF_INIT;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl ? nl : end) - p);

		if (n > EVENTS_LINE_MAX) {
			struct ev ev = { .type = EVT_WARNING, .step = -1 };
			buf_reset(&w);
			buf_printf(&w, "events line %zu: line too long (over 64 KiB), skipped",
				   ++lineno);
			ev.text = buf_str(&w);
			record(out, &ev);
		} else if (nl) {
			events_parse_line(p, n, ++lineno, record, out);
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	buf_free(&w);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			abort();
		p += w;
		n -= (size_t)w;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf file = BUF_INIT, want = BUF_INIT, got = BUF_INIT;
	struct events_reader r;
	struct err err;
	uint8_t c[CTL] = { 0 };
	size_t max_bytes, unit, at = 0, pieces = 0;
	int fd;

	if (!path)
		setup();
	memcpy(c, data, size < CTL ? size : CTL);
	data += size < CTL ? size : CTL;
	size -= size < CTL ? size : CTL;
	if (c[7] & 8) {
		size_t pad = EVENTS_LINE_MAX - 8 + (c[7] >> 4);
		buf_grow(&file, pad + size);
		memset(file.ptr, ' ', pad);
		file.len = pad;
	}
	buf_add(&file, data, size);
	max_bytes = (c[7] & 7) ? (size_t)1 << (2 * (c[7] & 7)) : 0;

	reference(file.ptr, file.len, &want);

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	events_reader_init(&r, path, 0);
	unit = file.len / 512 + 1;
	while (at < file.len) {
		size_t n = (size_t)(c[pieces % 7] + 1) * unit;

		if (++pieces >= MAX_PIECES || n > file.len - at)
			n = file.len - at;
		write_all(fd, file.ptr + at, n);
		at += n;
		err_clear(&err);
		if (events_read(&r, max_bytes, record, &got, &err))
			abort();
		if (r.offset > (off_t)at)
			abort();
	}
	/* Drain what the per-call limit left. */
	while (r.offset < (off_t)file.len) {
		off_t before = r.offset;
		if (events_read(&r, max_bytes, record, &got, &err) || r.offset == before)
			abort();
	}
	close(fd);
	if (got.len != want.len || memcmp(buf_str(&got), buf_str(&want), want.len)) {
		fprintf(stderr, "events_read gave:\n%s\nwhole lines give:\n%s\n",
			buf_str(&got), buf_str(&want));
		abort();
	}
	events_reader_clear(&r);
	buf_free(&file);
	buf_free(&want);
	buf_free(&got);
	return 0;
}
