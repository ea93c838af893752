/* tests/pipeline/test_events.c — following events files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "pipeline/events.h"

struct seen {
	int n;
	enum ev_type type[32];
	char name[32][64];
	double value[32];
	double total[32];
	long long step[32];
	char text[32][256];
};

static void collect(void *ctx, const struct ev *ev)
{
	struct seen *s = ctx;
	int i = s->n++;
	assert_true(i < 32);
	s->type[i] = ev->type;
	snprintf(s->name[i], 64, "%s", ev->name ? ev->name : (ev->dir ? ev->dir : ""));
	s->value[i] = ev->value;
	s->total[i] = ev->total;
	s->step[i] = ev->step;
	snprintf(s->text[i], 256, "%s", ev->text ? ev->text : "");
}

static void append(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void test_events__kinds_parsed(void **state)
{
	struct seen s = { 0 };
	const char *l1 = "{\"event\":\"metric\",\"name\":\"loss\",\"value\":1.5,\"step\":10}";
	const char *l2 = "{\"event\":\"metric\",\"step\":3,\"loss\":2,\"acc\":0.25}";
	const char *l3 = "{\"event\":\"progress\",\"done\":4,\"total\":8}";
	const char *l4 = "{\"event\":\"checkpoint\",\"step\":100,\"dir\":\"step-100\"}";
	(void)state;
	events_parse_line(l1, strlen(l1), 1, collect, &s);
	events_parse_line(l2, strlen(l2), 2, collect, &s);
	events_parse_line(l3, strlen(l3), 3, collect, &s);
	events_parse_line(l4, strlen(l4), 4, collect, &s);
	assert_int_equal(s.n, 5);
	assert_int_equal(s.type[0], EVT_METRIC);
	assert_string_equal(s.name[0], "loss");
	assert_true(s.value[0] == 1.5);
	assert_int_equal(s.step[0], 10);
	assert_string_equal(s.name[1], "loss");
	assert_string_equal(s.name[2], "acc");
	assert_true(s.value[2] == 0.25);
	assert_int_equal(s.type[3], EVT_PROGRESS);
	assert_true(s.value[3] == 4 && s.total[3] == 8);
	assert_int_equal(s.type[4], EVT_CHECKPOINT);
	assert_string_equal(s.name[4], "step-100");
	assert_int_equal(s.step[4], 100);
}

static void test_events__malformed_become_warnings(void **state)
{
	struct seen s = { 0 };
	const char *bad[] = {
		"not json", "[1,2]", "{\"no\":\"event\"}", "{\"event\":\"teleport\"}",
		"{\"event\":\"checkpoint\"}", "{\"event\":\"progress\",\"done\":\"x\"}",
		"{\"event\":\"metric\",\"name\":\"x\"}", "{\"event\":\"metric\"}",
	};
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		events_parse_line(bad[i], strlen(bad[i]), i + 1, collect, &s);
	assert_int_equal(s.n, 8);
	for (int i = 0; i < 8; i++)
		assert_int_equal(s.type[i], EVT_WARNING);
	assert_non_null(strstr(s.text[0], "events line 1: not JSON: not json"));
	assert_non_null(strstr(s.text[3], "unknown event"));
}

static void test_events__incremental_partial_lines(void **state)
{
	char tmpl[] = "/tmp/anneal-ev-XXXXXX";
	char *d = mkdtemp(tmpl), *p = fs_join(d, "events.jsonl");
	struct events_reader r;
	struct seen s = { 0 };
	struct err e;
	(void)state;
	events_reader_init(&r, p, 0);
	assert_int_equal(events_read(&r, 0, collect, &s, &e), 0);   /* no file yet */
	assert_int_equal(s.n, 0);
	append(p, "{\"event\":\"progress\",\"done\":1,\"total\":3}\n{\"event\":\"prog");
	assert_int_equal(events_read(&r, 0, collect, &s, &e), 0);
	assert_int_equal(s.n, 1);
	append(p, "ress\",\"done\":2,\"total\":3}\n");
	assert_int_equal(events_read(&r, 0, collect, &s, &e), 0);
	assert_int_equal(s.n, 2);
	assert_true(s.value[1] == 2);
	assert_int_equal(events_read(&r, 0, collect, &s, &e), 0);
	assert_int_equal(s.n, 2);
	events_reader_clear(&r);
	fs_remove_tree(d, &e);
	free(p);
}

static void test_events__overlong_line_skipped(void **state)
{
	char tmpl[] = "/tmp/anneal-ev-XXXXXX";
	char *d = mkdtemp(tmpl), *p = fs_join(d, "events.jsonl");
	struct events_reader r;
	struct seen s = { 0 };
	struct err e;
	size_t big = EVENTS_LINE_MAX * 3;
	char *line = xmalloc(big + 1);
	(void)state;
	memset(line, 'x', big);
	line[big] = '\0';
	append(p, line);
	events_reader_init(&r, p, 0);
	assert_int_equal(events_read(&r, 0, collect, &s, &e), 0);
	append(p, "yyy\n{\"event\":\"progress\",\"done\":7}\n");
	assert_int_equal(events_read(&r, 0, collect, &s, &e), 0);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.type[0], EVT_WARNING);
	assert_non_null(strstr(s.text[0], "too long"));
	assert_int_equal(s.type[1], EVT_PROGRESS);
	assert_true(s.value[1] == 7);
	/* Memory stayed bounded: the partial buffer never held the line. */
	assert_true(r.partial.cap <= 2 * EVENTS_LINE_MAX + 64);
	events_reader_clear(&r);
	fs_remove_tree(d, &e);
	free(line);
	free(p);
}

/* Nothing past r.limit is read: one warning when the file goes past it,
 * an unfinished line there dropped, later calls quiet; a reader resumed at
 * or past the limit reads nothing either. */
static void test_events__file_limit(void **state)
{
	char tmpl[] = "/tmp/anneal-ev-XXXXXX";
	char *d = mkdtemp(tmpl), *p = fs_join(d, "events.jsonl");
	const char *line = "{\"event\":\"progress\",\"done\":1}\n";   /* 30 bytes */
	struct events_reader r;
	struct seen s = { 0 };
	struct err e;
	(void)state;
	for (int i = 0; i < 10; i++)
		append(p, line);
	events_reader_init(&r, p, 0);
	assert_int_equal(r.limit, EVENTS_FILE_MAX);
	r.limit = 100;   /* three whole lines and a piece */
	assert_int_equal(events_read(&r, 0, collect, &s, &e), 0);
	assert_int_equal(s.n, 4);
	for (int i = 0; i < 3; i++)
		assert_int_equal(s.type[i], EVT_PROGRESS);
	assert_int_equal(s.type[3], EVT_WARNING);
	assert_string_equal(s.text[3], "events file over 0 MiB: the rest of it is not read");
	assert_int_equal(r.offset, 100);
	append(p, line);
	assert_int_equal(events_read(&r, 0, collect, &s, &e), 0);
	assert_int_equal(s.n, 4);
	events_reader_clear(&r);
	/* Exactly at the limit, nothing more: no warning. */
	events_reader_init(&r, p, 0);
	r.limit = 30 * 11;
	memset(&s, 0, sizeof(s));
	assert_int_equal(events_read(&r, 7, collect, &s, &e), 0);   /* small budget */
	while (r.offset < r.limit)
		assert_int_equal(events_read(&r, 7, collect, &s, &e), 0);
	assert_int_equal(events_read(&r, 7, collect, &s, &e), 0);
	assert_int_equal(s.n, 11);
	assert_int_equal(s.type[10], EVT_PROGRESS);
	events_reader_clear(&r);
	/* Resumed past the limit (a new driver): silent. */
	events_reader_init(&r, p, 200);
	r.limit = 100;
	memset(&s, 0, sizeof(s));
	assert_int_equal(events_read(&r, 0, collect, &s, &e), 0);
	assert_int_equal(s.n, 0);
	events_reader_clear(&r);
	fs_remove_tree(d, &e);
	free(p);
}

/* A FIFO, a directory or a symlink in place of the file: one warning,
 * no hang, no error, and nothing read later. */
static void test_events__not_a_regular_file(void **state)
{
	static const char *const why[] = {
		"the events file is not a regular file: not read",
		"the events file is not a regular file: not read",
		"the events file is a symbolic link: not read",
	};
	char tmpl[] = "/tmp/anneal-ev-XXXXXX";
	char *d = mkdtemp(tmpl), *p = fs_join(d, "events.jsonl");
	struct err e;
	(void)state;
	for (int k = 0; k < 3; k++) {
		struct events_reader r;
		struct seen s = { 0 };

		if (k == 0)
			assert_int_equal(mkfifo(p, 0644), 0);
		else if (k == 1)
			assert_int_equal(mkdir(p, 0755), 0);
		else
			assert_int_equal(symlink("/dev/zero", p), 0);
		events_reader_init(&r, p, 0);
		assert_int_equal(events_read(&r, 0, collect, &s, &e), 0);
		assert_int_equal(events_read(&r, 0, collect, &s, &e), 0);
		assert_int_equal(s.n, 1);
		assert_int_equal(s.type[0], EVT_WARNING);
		assert_string_equal(s.text[0], why[k]);
		events_reader_clear(&r);
		assert_int_equal(fs_remove_tree(p, &e), 0);
	}
	fs_remove_tree(d, &e);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_events__kinds_parsed),
		cmocka_unit_test(test_events__malformed_become_warnings),
		cmocka_unit_test(test_events__incremental_partial_lines),
		cmocka_unit_test(test_events__overlong_line_skipped),
		cmocka_unit_test(test_events__file_limit),
		cmocka_unit_test(test_events__not_a_regular_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
