/* pipeline/events.h — following a step's events file (JSON lines).
 *
 * The engine appends one JSON object per line to $ANNEAL_EVENTS:
 *   {"event":"checkpoint","step":N,"dir":"..."}   a complete checkpoint dir
 *   {"event":"metric","name":"loss","value":1.83,"step":N}
 *   {"event":"metric","step":N,"loss":1.83,"acc":0.5}   (several at once)
 *   {"event":"progress","done":N,"total":M}
 * The reader keeps an offset and returns only complete lines, so it can be
 * called whenever convenient while the step writes. Anything it cannot
 * understand (bad JSON, unknown event, a line over EVENTS_LINE_MAX) becomes
 * a warning event carrying the reason, never a failure. */
#ifndef ANNEAL_EVENTS_H
#define ANNEAL_EVENTS_H

#include <stddef.h>
#include <sys/types.h>

#include "base/buf.h"

struct err;

#define EVENTS_LINE_MAX (64 * 1024)
/* How much of one attempt's events file is followed: an engine that
 * writes without bound (or a 10 GB line) costs at most this much reading,
 * then one warning, and the rest is ignored. */
#define EVENTS_FILE_MAX ((off_t)1 << 30)

enum ev_type { EVT_METRIC, EVT_PROGRESS, EVT_CHECKPOINT, EVT_WARNING };

struct ev {
	enum ev_type type;
	const char *name;        /* metric name */
	double value;            /* metric value / progress done */
	double total;            /* progress total */
	long long step;          /* engine step, -1 if absent */
	const char *dir;         /* checkpoint dir as written */
	const char *text;        /* warning: reason and the (truncated) line */
};

struct events_reader {
	char *path;
	off_t offset;        /* bytes consumed */
	struct buf partial;  /* an incomplete last line */
	int skipping;        /* inside an over-long line: drop until '\n' */
	size_t lineno;
	off_t limit;         /* stop at this offset (init: EVENTS_FILE_MAX; 0: none) */
	int capped;          /* stopped following (limit reached, not a file) */
	int moved;           /* this reader consumed bytes: it, not an earlier
				* driver, reached the limit and warns */
};

void events_reader_init(struct events_reader *r, const char *path, off_t offset);
void events_reader_clear(struct events_reader *r);

typedef void (*events_fn)(void *ctx, const struct ev *ev);

/* Reads what was appended since the last call and calls fn per event. A
 * missing file is no error (the step has not written yet). Reads at most
 * max_bytes per call (0: no limit) so that a runaway writer cannot stall
 * the scheduler, and nothing past r->limit: the first call that finds the
 * file longer than that gives one warning event, and the reader stays
 * there (an unfinished line at the limit is dropped). Memory is bounded
 * by EVENTS_LINE_MAX whatever the file holds. */
int events_read(struct events_reader *r, size_t max_bytes, events_fn fn,
		void *ctx, struct err *err);

/* Parses one line (without '\n') into events (metrics may be several). */
void events_parse_line(const char *line, size_t len, size_t lineno,
		       events_fn fn, void *ctx);

#endif
