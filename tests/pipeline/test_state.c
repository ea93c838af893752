/* tests/pipeline/test_state.c — the state store: round trips, atomicity
 * under injected failures, locking, migrations, corruption at the edge.
 *
 * File databases live in a mkdtemp directory removed by each test. The
 * test talks to SQLite directly (a second connection) to hold locks, plant
 * bad words and inspect rows: that is the state store's own territory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "pipeline/state.h"
#include "pipeline/state_internal.h"

/* ---- fixtures ----------------------------------------------------------- */

struct fx {
	char dir[64];
	char path[128];
	struct state *st;
};

/* File-database tests get a fresh directory; teardown removes it even
 * when the test failed halfway. */
static int setup_dir(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/anneal-test-state-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
	*state = f;
	return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	return remove(p);
}

static int teardown_dir(void **state)
{
	struct fx *f = *state;
	int rc;

	state_close(f->st);
	rc = nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return rc;
}

static struct fx *fx_open(void **state)
{
	struct fx *f = *state;
	struct err err;

	err_clear(&err);
	assert_int_equal(state_open(f->path, &f->st, &err), 0);
	return f;
}

static struct state *open_mem(void)
{
	struct state *st = NULL;
	struct err err;

	assert_int_equal(state_open(":memory:", &st, &err), 0);
	return st;
}

static sqlite3 *raw_open(const char *path)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL),
			 SQLITE_OK);
	return db;
}

static void raw_exec(sqlite3 *db, const char *sql)
{
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
}

static long long raw_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *s = NULL;
	long long v;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* Rows of every per-run table that belong to run 1..: used to prove that
 * a failed call left nothing behind. */
static long long raw_rows_total(sqlite3 *db)
{
	return raw_int(db,
		"SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM steps)"
		" + (SELECT count(*) FROM step_args) + (SELECT count(*) FROM step_env)"
		" + (SELECT count(*) FROM step_inputs)"
		" + (SELECT count(*) FROM step_outputs_decl)"
		" + (SELECT count(*) FROM step_after) + (SELECT count(*) FROM deps)"
		" + (SELECT count(*) FROM attempts) + (SELECT count(*) FROM outputs)"
		" + (SELECT count(*) FROM checkpoints) + (SELECT count(*) FROM events)");
}

/* ---- a plan to store ---------------------------------------------------- */

/* Three steps: prep -> train (input + after) -> eval (two inputs). */
static void plan3(struct step s[3])
{
	static char *prep_argv[] = { "python3", "prep.py", "--out", "${outputs.data}", NULL };
	static struct env_var prep_env[] = { { "Z_LAST", "1" }, { "A_FIRST", "x y" } };
	static struct step_output prep_out[] = { { .name = "data", .type = ART_DATASET } };
	static char *train_argv[] = { "engine", "train", "--lr=${params.lr}", NULL };
	static struct step_input train_in[] = { { .role = "data", .from_step = "prep", .from_output = "data" } };
	static struct step_output train_out[] = { { .name = "model", .type = ART_CHECKPOINT } };
	static char *train_after[] = { "prep" };
	static char *eval_argv[] = { "engine", "eval", NULL };
	static struct step_input eval_in[] = {
		{ .role = "model", .from_step = "train", .from_output = "model" },
		{ .role = "data", .from_step = "prep", .from_output = "data" },
	};
	static struct step_output eval_out[] = {
		{ .name = "report", .type = ART_REPORT },
		{ .name = "samples", .type = ART_DATASET },
	};

	memset(s, 0, 3 * sizeof(*s));
	s[0] = (struct step){
		.id = "prep", .kind = "data", .stage = "data",
		.argv = prep_argv, .argc = 4, .env = prep_env, .nenv = 2,
		.outputs = prep_out, .noutputs = 1,
		.res = { .cpus = 4, .mem_mb = 2048 },
		.retry = { .max = 2, .backoff_s = 1.5 }, .timeout_s = 3600,
	};
	s[1] = (struct step){
		.id = "train", .kind = "pretrain", .stage = "pretrain",
		.argv = train_argv, .argc = 3, .inputs = train_in, .ninputs = 1,
		.outputs = train_out, .noutputs = 1, .after = train_after, .nafter = 1,
		.res = { .cpus = 16, .gpus = 8, .npus = 0, .mem_mb = 512000 },
		.retry = { .max = 5, .backoff_s = 30 }, .timeout_s = 0,
	};
	s[2] = (struct step){
		.id = "eval", .kind = "eval", .stage = NULL,
		.argv = eval_argv, .argc = 2, .inputs = eval_in, .ninputs = 2,
		.outputs = eval_out, .noutputs = 2,
		.res = { .cpus = 1, .npus = 2 },
		.retry = { .max = 0, .backoff_s = 1 }, .timeout_s = 60,
	};
}

static int64_t create_plan3(struct state *st, const char *const keys[3])
{
	struct step s[3];
	struct run_new rn = {
		.recipe_path = "/r/pangu.json", .recipe_name = "pangu",
		.recipe_text = "{\"name\": \"pangu\"}", .recipe_digest = "abc",
		.params_json = "{\"lr\": 0.1}", .runner = "local",
		.steps = s, .nsteps = 3, .cache_keys = keys,
	};
	struct err err;
	int64_t id = 0;

	plan3(s);
	err_clear(&err);
	assert_int_equal(state_run_create(st, &rn, &id, &err), 0);
	assert_true(id > 0);
	return id;
}

static void assert_str_eq0(const char *a, const char *b)
{
	if (!a || !b)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

static void assert_step_equal(const struct step *a, const struct step *b)
{
	assert_str_eq0(a->id, b->id);
	assert_str_eq0(a->kind, b->kind);
	assert_str_eq0(a->stage, b->stage);
	assert_int_equal(a->argc, b->argc);
	for (size_t i = 0; i < a->argc; i++)
		assert_string_equal(a->argv[i], b->argv[i]);
	assert_null(b->argv[b->argc]);
	assert_int_equal(a->nenv, b->nenv);
	for (size_t i = 0; i < a->nenv; i++) {
		assert_string_equal(a->env[i].key, b->env[i].key);
		assert_string_equal(a->env[i].value, b->env[i].value);
	}
	assert_int_equal(a->ninputs, b->ninputs);
	for (size_t i = 0; i < a->ninputs; i++) {
		assert_string_equal(a->inputs[i].role, b->inputs[i].role);
		assert_string_equal(a->inputs[i].from_step, b->inputs[i].from_step);
		assert_string_equal(a->inputs[i].from_output, b->inputs[i].from_output);
	}
	assert_int_equal(a->noutputs, b->noutputs);
	for (size_t i = 0; i < a->noutputs; i++) {
		assert_string_equal(a->outputs[i].name, b->outputs[i].name);
		assert_int_equal(a->outputs[i].type, b->outputs[i].type);
	}
	assert_int_equal(a->nafter, b->nafter);
	for (size_t i = 0; i < a->nafter; i++)
		assert_string_equal(a->after[i], b->after[i]);
	assert_int_equal(a->res.cpus, b->res.cpus);
	assert_int_equal(a->res.gpus, b->res.gpus);
	assert_int_equal(a->res.npus, b->res.npus);
	assert_int_equal(a->res.mem_mb, b->res.mem_mb);
	assert_int_equal(a->retry.max, b->retry.max);
	assert_true(a->retry.backoff_s == b->retry.backoff_s);
	assert_int_equal(a->timeout_s, b->timeout_s);
}

static void free_loaded(struct step *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		step_clear(&v[i]);
	free(v);
}

static void free_infos(struct step_info *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		step_info_clear(&v[i]);
	free(v);
}

static struct output_rec out_rec(const char *name, enum artifact_type t,
				 const char *path, char digest_fill,
				 uint64_t bytes)
{
	struct output_rec o = { .name = (char *)name, .type = t,
				.path = (char *)path, .bytes = bytes };

	memset(o.digest, digest_fill, 64);
	o.digest[64] = '\0';
	return o;
}

/* attempt n of step: begin, then end with the given outcome. */
static void run_attempt(struct state *st, int64_t run, const char *step, int n,
			enum attempt_state as, enum step_state ss,
			const struct output_rec *o, size_t no)
{
	struct attempt_end ae = {
		.state = as, .exit_code = as == ATT_SUCCEEDED ? 0 : 1,
		.spends_retry = as == ATT_FAILED || as == ATT_TIMEOUT || as == ATT_LOST,
		.step_state = ss, .outputs = o, .noutputs = no,
	};
	struct err err;

	assert_int_equal(state_attempt_begin(st, run, step, n, NULL, &err), 0);
	assert_int_equal(state_attempt_end(st, run, step, n, &ae, &err), 0);
}

static const struct step_info *info_of(const struct step_info *v, size_t n,
				       const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].id, id))
			return &v[i];
	fail_msg("no step info for '%s'", id);
	return NULL;
}

/* ---- names -------------------------------------------------------------- */

static void test_state__names_roundtrip(void **unused)
{
	enum run_state rs;
	enum step_state ss;
	enum attempt_state as;
	enum event_kind ek;

	for (int i = RUN_RUNNING; i <= RUN_CANCELLED; i++) {
		assert_int_equal(run_state_parse(run_state_name(i), &rs), 0);
		assert_int_equal(rs, i);
	}
	for (int i = STEP_PENDING; i <= STEP_CANCELLED; i++) {
		assert_int_equal(step_state_parse(step_state_name(i), &ss), 0);
		assert_int_equal(ss, i);
	}
	for (int i = ATT_RUNNING; i <= ATT_CANCELLED; i++) {
		assert_int_equal(attempt_state_parse(attempt_state_name(i), &as), 0);
		assert_int_equal(as, i);
	}
	for (int i = EV_METRIC; i <= EV_LOG; i++) {
		assert_int_equal(event_kind_parse(event_kind_name(i), &ek), 0);
		assert_int_equal(ek, i);
	}
	assert_string_equal(step_state_name(STEP_CACHED), "cached");
	assert_string_equal(attempt_state_name(ATT_TIMEOUT), "timeout");
	assert_int_equal(step_state_parse("RUNNING", &ss), ERR_INVALID);
	assert_int_equal(attempt_state_parse("", &as), ERR_INVALID);
	assert_int_equal(run_state_parse("done", &rs), ERR_INVALID);
}

/* ---- opening and schema ------------------------------------------------- */

static void test_state__migration_from_empty(void **state)
{
	struct fx *f;
	struct run_info ri;
	struct err err;
	sqlite3 *db;
	int64_t id;

	f = fx_open(state);
	db = raw_open(f->path);
	assert_int_equal(raw_int(db, "PRAGMA user_version"), state_schema_version());
	assert_true(state_schema_version() >= 1);
	assert_int_equal(raw_int(db,
		"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
		" ('runs', 'steps', 'step_args', 'step_env', 'step_inputs',"
		" 'step_outputs_decl', 'step_after', 'deps', 'attempts', 'outputs',"
		" 'checkpoints', 'events')"), 12);
	assert_int_equal(raw_int(db,
		"SELECT count(*) FROM sqlite_master WHERE type = 'index'"
		" AND name IN ('steps_by_cache_key', 'events_by_step_kind')"), 2);
	{
		sqlite3_stmt *s = NULL;
		assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1,
						    &s, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_step(s), SQLITE_ROW);
		assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
		sqlite3_finalize(s);
	}
	sqlite3_close(db);

	/* Reopening migrates nothing and keeps the data. */
	id = create_plan3(f->st, NULL);
	state_close(f->st);
	assert_int_equal(state_open(f->path, &f->st, &err), 0);
	assert_int_equal(state_run_get(f->st, id, &ri, &err), 0);
	assert_string_equal(ri.recipe_name, "pangu");
	run_info_clear(&ri);

	/* An existing empty file is an empty database. */
	state_close(f->st);
	f->st = NULL;
	assert_int_equal(unlink(f->path), 0);
	/* Closing the last connection removes the WAL; make sure. */
	assert_int_equal(access(f->path, F_OK), -1);
	{
		char wal[160];
		snprintf(wal, sizeof(wal), "%s-wal", f->path);
		assert_int_equal(access(wal, F_OK), -1);
	}
	{
		int fd = open(f->path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		assert_true(fd >= 0);
		close(fd);
	}
	assert_int_equal(state_open(f->path, &f->st, &err), 0);
	assert_int_equal(state_run_latest(f->st, 0, &id, &err), ERR_NOTFOUND);
	db = raw_open(f->path);
	assert_int_equal(raw_int(db, "PRAGMA user_version"), state_schema_version());
	sqlite3_close(db);
}

static void test_state__newer_schema_refused(void **state)
{
	struct fx *f;
	char want[512];
	struct err err;
	struct state *st2 = NULL;
	sqlite3 *db;

	f = fx_open(state);
	db = raw_open(f->path);
	raw_exec(db, "PRAGMA user_version = 999");
	sqlite3_close(db);
	err_clear(&err);
	assert_int_equal(state_open(f->path, &st2, &err), ERR_INVALID);
	assert_null(st2);
	snprintf(want, sizeof(want), "state database '%s' has schema version 999,"
		 " newer than this anneal (%d); upgrade anneal", f->path,
		 state_schema_version());
	assert_string_equal(err.msg, want);
}

static void test_state__bad_busy_env_rejected(void **unused)
{
	struct state *st = NULL;
	struct err err;

	setenv("ANNEAL_BUSY_TIMEOUT_MS", "soon", 1);
	assert_int_equal(state_open(":memory:", &st, &err), ERR_INVALID);
	assert_null(st);
	assert_non_null(strstr(err.msg, "ANNEAL_BUSY_TIMEOUT_MS"));
	unsetenv("ANNEAL_BUSY_TIMEOUT_MS");
}

/* NORMAL by default; ANNEAL_SYNCHRONOUS=full makes every commit fsync
 * (PRAGMA synchronous reads 1 and 2); anything else is refused. */
static void test_state__synchronous_from_env(void **state)
{
	struct fx *f = *state;
	struct state *st = NULL;
	struct err err;

	unsetenv("ANNEAL_SYNCHRONOUS");
	f = fx_open(state);
	assert_int_equal(raw_int(state_sqlite(f->st), "PRAGMA synchronous"), 1);
	state_close(f->st);
	setenv("ANNEAL_SYNCHRONOUS", "full", 1);
	assert_int_equal(state_open(f->path, &f->st, &err), 0);
	assert_int_equal(raw_int(state_sqlite(f->st), "PRAGMA synchronous"), 2);
	setenv("ANNEAL_SYNCHRONOUS", "off", 1);
	assert_int_equal(state_open(":memory:", &st, &err), ERR_INVALID);
	assert_null(st);
	assert_non_null(strstr(err.msg, "ANNEAL_SYNCHRONOUS"));
	unsetenv("ANNEAL_SYNCHRONOUS");
}

/* anneal spawns steps: the database must not leak into them. */
static void test_state__fds_close_on_exec(void **state)
{
	struct fx *f;
	struct err err;
	DIR *d;
	struct dirent *e;
	int seen = 0;

	d = opendir("/proc/self/fd");
	if (!d)
		skip();
	f = fx_open(state);
	/* A write opens the -wal and -shm files too. */
	create_plan3(f->st, NULL);
	assert_int_equal(state_run_set_driver(f->st, 1, 42, &err), 0);
	rewinddir(d);
	while ((e = readdir(d))) {
		char link[PATH_MAX], target[PATH_MAX];
		ssize_t n;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = '\0';
		if (strncmp(target, f->dir, strlen(f->dir)) != 0)
			continue;
		fd = atoi(e->d_name);
		assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
		seen++;
	}
	closedir(d);
	assert_true(seen >= 2);   /* state.db and state.db-wal at least */
}

/* ---- runs and plans ----------------------------------------------------- */

static void test_state__create_and_load_roundtrip(void **state)
{
	const char *const keys[3] = { "k-prep", NULL, "k-eval" };
	struct fx *f;
	struct step want[3], *got = NULL;
	struct step_info *si = NULL;
	size_t n = 0, ni = 0;
	struct err err;
	sqlite3 *db;
	int64_t id;

	f = fx_open(state);
	plan3(want);
	assert_int_equal(create_plan3(f->st, keys), 1);
	assert_int_equal(create_plan3(f->st, keys), 2);
	id = create_plan3(f->st, keys);
	assert_int_equal(id, 3);

	assert_int_equal(state_steps_load(f->st, id, &got, &n, &err), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < 3; i++)
		assert_step_equal(&want[i], &got[i]);
	free_loaded(got, n);

	/* Fresh steps: pending, with their cache keys. */
	assert_int_equal(state_steps_info(f->st, id, &si, &ni, &err), 0);
	assert_int_equal(ni, 3);
	assert_string_equal(si[0].id, "prep");
	assert_int_equal(si[0].state, STEP_PENDING);
	assert_string_equal(si[0].cache_key, "k-prep");
	assert_null(si[1].cache_key);
	assert_int_equal(si[1].attempts, 0);
	assert_int_equal(si[1].last_attempt, 0);
	assert_null(si[1].last_error);
	assert_null(si[1].metric_name);
	assert_int_equal(si[1].noutputs, 0);
	assert_true(si[1].started == 0 && si[1].finished == 0);
	free_infos(si, ni);

	/* Dependencies: unique, from inputs and after together. */
	db = raw_open(f->path);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM deps WHERE run_id = 3"), 3);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM deps WHERE run_id = 3"
				 " AND step_id = 'train' AND dep_id = 'prep'"), 1);
	assert_int_equal(raw_int(db, "SELECT count(*) FROM deps WHERE run_id = 3"
				 " AND step_id = 'eval'"), 2);
	sqlite3_close(db);

	assert_int_equal(state_steps_load(f->st, 99, &got, &n, &err), ERR_NOTFOUND);
	assert_string_equal(err.msg, "no run 99");
	assert_null(got);
}

/* Fault injection: the second step repeats the first's id, so the insert
 * fails halfway through the transaction. Nothing of the run may remain. */
static void test_state__create_failure_leaves_no_rows(void **state)
{
	struct fx *f;
	struct step s[3];
	struct run_new rn = { .recipe_name = "dup", .runner = "local",
			      .steps = s, .nsteps = 3 };
	struct err err;
	sqlite3 *db;
	int64_t id = -5;

	f = fx_open(state);
	plan3(s);
	s[2].id = "prep";
	err_clear(&err);
	assert_int_equal(state_run_create(f->st, &rn, &id, &err), ERR_SYSTEM);
	assert_int_equal(id, -5);
	assert_non_null(strstr(err.msg, "': insert step 'prep': "));
	assert_non_null(strstr(err.msg, "UNIQUE"));

	db = raw_open(f->path);
	assert_int_equal(raw_rows_total(db), 0);
	sqlite3_close(db);

	/* The failed run did not consume an id; the store still works. */
	s[2].id = "eval";
	assert_int_equal(state_run_create(f->st, &rn, &id, &err), 0);
	assert_int_equal(id, 1);
}

static void test_state__create_1000_steps_fast(void **state)
{
	enum { N = 1000 };
	struct fx *f;
	struct step *s = xcalloc(N, sizeof(*s)), *got = NULL;
	char **keys = xcalloc(N, sizeof(*keys));
	char *argv_tmpl[] = { "engine", "train", "--seed", "7", "--out", "x", NULL };
	struct env_var env[] = { { "A", "1" }, { "B", "2" } };
	struct step_output outs[] = { { .name = "model", .type = ART_CHECKPOINT } };
	struct step_input *ins = xcalloc(N, sizeof(*ins));
	struct run_new rn = { .recipe_name = "big", .runner = "local", .steps = s,
			      .nsteps = N, .cache_keys = (const char *const *)keys };
	struct err err;
	size_t n = 0;
	int64_t id;
	double t0, dt;

	f = fx_open(state);
	for (size_t i = 0; i < N; i++) {
		s[i].id = xasprintf("s%zu", i);
		s[i].kind = "exec";
		s[i].argv = argv_tmpl;
		s[i].argc = 6;
		s[i].env = env;
		s[i].nenv = 2;
		s[i].outputs = outs;
		s[i].noutputs = 1;
		s[i].res.cpus = 1;
		keys[i] = xasprintf("key%zu", i);
		if (i) {
			ins[i] = (struct step_input){ .role = "init", .from_step = s[i - 1].id,
						    .from_output = "model" };
			s[i].inputs = &ins[i];
			s[i].ninputs = 1;
		}
	}
	t0 = now_mono();
	assert_int_equal(state_run_create(f->st, &rn, &id, &err), 0);
	dt = now_mono() - t0;
	/* Typically ~10 ms; a per-row commit would take seconds. Generous so
	 * that sanitizers and slow disks do not make it flaky. */
	assert_true(dt < 2.0);
	assert_int_equal(state_steps_load(f->st, id, &got, &n, &err), 0);
	assert_int_equal(n, N);
	for (size_t i = 0; i < N; i++)
		assert_step_equal(&s[i], &got[i]);
	free_loaded(got, n);
	for (size_t i = 0; i < N; i++) {
		free(s[i].id);
		free(keys[i]);
	}
	free(s);
	free(keys);
	free(ins);
}

static void test_state__run_fields_state_and_cancel(void **unused)
{
	struct state *st = open_mem();
	struct run_info ri, *list = NULL;
	struct err err;
	char *text = NULL;
	size_t n = 0;
	int64_t a, b, latest = 0;

	assert_int_equal(state_run_latest(st, 0, &latest, &err), ERR_NOTFOUND);
	assert_int_equal(state_run_latest(st, 1, &latest, &err), ERR_NOTFOUND);
	a = create_plan3(st, NULL);
	b = create_plan3(st, NULL);
	assert_int_equal(state_run_latest(st, 1, &latest, &err), 0);
	assert_int_equal(latest, b);

	assert_int_equal(state_run_get(st, a, &ri, &err), 0);
	assert_int_equal(ri.id, a);
	assert_string_equal(ri.recipe_path, "/r/pangu.json");
	assert_string_equal(ri.recipe_digest, "abc");
	assert_string_equal(ri.params_json, "{\"lr\": 0.1}");
	assert_string_equal(ri.runner, "local");
	assert_int_equal(ri.state, RUN_RUNNING);
	assert_true(ri.created > 1e9);
	assert_true(ri.finished == 0);
	assert_int_equal(ri.driver_pid, 0);
	assert_int_equal(ri.cancel_requested, 0);
	run_info_clear(&ri);
	run_info_clear(NULL);

	assert_int_equal(state_run_recipe_text(st, a, &text, &err), 0);
	assert_string_equal(text, "{\"name\": \"pangu\"}");
	free(text);

	/* Finished is set by a final state and cleared by running again. */
	assert_int_equal(state_run_set_state(st, b, RUN_INTERRUPTED, &err), 0);
	assert_int_equal(state_run_get(st, b, &ri, &err), 0);
	assert_int_equal(ri.state, RUN_INTERRUPTED);
	assert_true(ri.finished >= ri.created);
	run_info_clear(&ri);
	assert_int_equal(state_run_set_state(st, b, RUN_RUNNING, &err), 0);
	assert_int_equal(state_run_get(st, b, &ri, &err), 0);
	assert_true(ri.finished == 0);
	run_info_clear(&ri);

	/* Latest unfinished: running or interrupted, highest id. */
	assert_int_equal(state_run_set_state(st, b, RUN_SUCCEEDED, &err), 0);
	assert_int_equal(state_run_latest(st, 1, &latest, &err), 0);
	assert_int_equal(latest, a);
	assert_int_equal(state_run_latest(st, 0, &latest, &err), 0);
	assert_int_equal(latest, b);
	assert_int_equal(state_run_set_state(st, a, RUN_INTERRUPTED, &err), 0);
	assert_int_equal(state_run_latest(st, 1, &latest, &err), 0);
	assert_int_equal(latest, a);
	assert_int_equal(state_run_set_state(st, a, RUN_CANCELLED, &err), 0);
	assert_int_equal(state_run_latest(st, 1, &latest, &err), ERR_NOTFOUND);

	/* Driver and the cancel flag. */
	assert_int_equal(state_run_set_driver(st, a, 4242, &err), 0);
	assert_int_equal(state_run_request_cancel(st, a, &err), 0);
	assert_int_equal(state_run_get(st, a, &ri, &err), 0);
	assert_int_equal(ri.driver_pid, 4242);
	assert_int_equal(ri.cancel_requested, 1);
	run_info_clear(&ri);
	assert_int_equal(state_run_get(st, b, &ri, &err), 0);
	assert_int_equal(ri.cancel_requested, 0);
	run_info_clear(&ri);
	assert_int_equal(state_run_clear_cancel(st, a, &err), 0);
	assert_int_equal(state_run_get(st, a, &ri, &err), 0);
	assert_int_equal(ri.cancel_requested, 0);
	run_info_clear(&ri);

	/* Newest first. */
	assert_int_equal(state_run_list(st, &list, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(list[0].id, b);
	assert_int_equal(list[0].state, RUN_SUCCEEDED);
	assert_int_equal(list[1].id, a);
	assert_int_equal(list[1].state, RUN_CANCELLED);
	for (size_t i = 0; i < n; i++)
		run_info_clear(&list[i]);
	free(list);

	/* Unknown runs. */
	assert_int_equal(state_run_get(st, 77, &ri, &err), ERR_NOTFOUND);
	assert_string_equal(err.msg, "no run 77");
	assert_int_equal(state_run_set_state(st, 77, RUN_FAILED, &err), ERR_NOTFOUND);
	assert_int_equal(state_run_request_cancel(st, 77, &err), ERR_NOTFOUND);
	assert_int_equal(state_run_recipe_text(st, 77, &text, &err), ERR_NOTFOUND);
	state_close(st);
	state_close(NULL);
}

/* ---- steps and attempts ------------------------------------------------- */

static void test_state__step_state_times(void **unused)
{
	struct state *st = open_mem();
	struct step_info *si = NULL;
	struct err err;
	size_t n;
	double started;
	int64_t id = create_plan3(st, NULL);

	assert_int_equal(state_step_set_state(st, id, "prep", STEP_RUNNING, &err), 0);
	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	assert_int_equal(si[0].state, STEP_RUNNING);
	assert_true(si[0].started > 0);
	assert_true(si[0].finished == 0);
	started = si[0].started;
	free_infos(si, n);

	assert_int_equal(state_step_set_state(st, id, "prep", STEP_FAILED, &err), 0);
	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	assert_int_equal(si[0].state, STEP_FAILED);
	assert_true(si[0].finished >= started);
	free_infos(si, n);

	/* Back to pending: no longer finished; the first start is kept. */
	assert_int_equal(state_step_set_state(st, id, "prep", STEP_PENDING, &err), 0);
	assert_int_equal(state_step_set_state(st, id, "prep", STEP_RUNNING, &err), 0);
	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	assert_int_equal(si[0].state, STEP_RUNNING);
	assert_true(si[0].finished == 0);
	assert_true(si[0].started == started);
	free_infos(si, n);

	assert_int_equal(state_step_set_cache_key(st, id, "train", "kk", &err), 0);
	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	assert_string_equal(si[1].cache_key, "kk");
	free_infos(si, n);

	assert_int_equal(state_step_set_state(st, id, "nope", STEP_RUNNING, &err),
			 ERR_NOTFOUND);
	assert_string_equal(err.msg, "run 1 has no step 'nope'");
	assert_int_equal(state_step_set_cache_key(st, id, "nope", "k", &err),
			 ERR_NOTFOUND);
	state_close(st);
}

static void test_state__attempts_lifecycle(void **unused)
{
	struct state *st = open_mem();
	struct output_rec outs[2] = {
		out_rec("model", ART_CHECKPOINT, "/ws/store/aa", 'a', 1234),
		out_rec("tok", ART_DATASET, "/ws/store/bb", 'b', 99),
	};
	struct attempt_end fail1 = {
		.state = ATT_FAILED, .exit_code = 3, .signal = 0,
		.reason = "exit code 3: CUDA error", .spends_retry = 1,
		.step_state = STEP_PENDING,
	};
	struct attempt_end requeue = {
		.state = ATT_REQUEUED, .exit_code = 75, .spends_retry = 0,
		.step_state = STEP_PENDING,
	};
	struct attempt_end ok = {
		.state = ATT_SUCCEEDED, .exit_code = 0, .step_state = STEP_SUCCEEDED,
		.outputs = outs, .noutputs = 2,
	};
	struct attempt_info *ai = NULL;
	struct step_info *si = NULL;
	struct output_rec *got = NULL;
	struct err err;
	size_t n, na;
	int64_t id = create_plan3(st, NULL);
	const struct step_info *t;

	assert_int_equal(state_attempt_begin(st, id, "train", 1, NULL, &err), 0);
	assert_int_equal(state_attempt_set_handle(st, id, "train", 1, "pid:100", &err), 0);
	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	t = info_of(si, n, "train");
	assert_int_equal(t->state, STEP_RUNNING);
	assert_int_equal(t->attempts, 1);
	assert_int_equal(t->last_attempt, 1);
	assert_int_equal(t->last_attempt_state, ATT_RUNNING);
	assert_string_equal(t->last_handle, "pid:100");
	assert_true(t->last_attempt_started > 0);
	free_infos(si, n);

	assert_int_equal(state_attempt_end(st, id, "train", 1, &fail1, &err), 0);
	assert_int_equal(state_attempt_begin(st, id, "train", 2, "/ckpt/100", &err), 0);
	assert_int_equal(state_attempt_end(st, id, "train", 2, &requeue, &err), 0);
	assert_int_equal(state_attempt_begin(st, id, "train", 3, "/ckpt/200", &err), 0);
	assert_int_equal(state_attempt_set_handle(st, id, "train", 3, "slurm:77", &err), 0);

	/* Mid-flight: the latest failure explains the retry. */
	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	t = info_of(si, n, "train");
	assert_int_equal(t->attempts, 3);
	assert_int_equal(t->retries_used, 1);
	assert_string_equal(t->last_error, "exit code 3: CUDA error");
	assert_int_equal(t->last_attempt, 3);
	assert_int_equal(t->last_attempt_state, ATT_RUNNING);
	assert_string_equal(t->last_handle, "slurm:77");
	free_infos(si, n);

	assert_int_equal(state_attempt_end(st, id, "train", 3, &ok, &err), 0);
	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	t = info_of(si, n, "train");
	assert_int_equal(t->state, STEP_SUCCEEDED);
	assert_true(t->finished >= t->started && t->started > 0);
	assert_int_equal(t->last_attempt_state, ATT_SUCCEEDED);
	assert_int_equal(t->noutputs, 2);
	assert_string_equal(t->outputs[0].name, "model");
	assert_int_equal(t->outputs[0].type, ART_CHECKPOINT);
	assert_string_equal(t->outputs[0].path, "/ws/store/aa");
	assert_string_equal(t->outputs[0].digest, outs[0].digest);
	assert_int_equal(t->outputs[0].bytes, 1234);
	assert_string_equal(t->outputs[1].name, "tok");
	assert_int_equal(t->outputs[1].type, ART_DATASET);
	assert_int_equal(info_of(si, n, "prep")->noutputs, 0);
	free_infos(si, n);

	assert_int_equal(state_attempts_list(st, id, "train", &ai, &na, &err), 0);
	assert_int_equal(na, 3);
	assert_int_equal(ai[0].n, 1);
	assert_int_equal(ai[0].state, ATT_FAILED);
	assert_int_equal(ai[0].exit_code, 3);
	assert_int_equal(ai[0].signal, 0);
	assert_string_equal(ai[0].handle, "pid:100");
	assert_null(ai[0].resumed_from);
	assert_string_equal(ai[0].reason, "exit code 3: CUDA error");
	assert_true(ai[0].finished >= ai[0].started);
	assert_int_equal(ai[1].state, ATT_REQUEUED);
	assert_int_equal(ai[1].exit_code, 75);
	assert_null(ai[1].handle);
	assert_string_equal(ai[1].resumed_from, "/ckpt/100");
	assert_int_equal(ai[2].state, ATT_SUCCEEDED);
	assert_int_equal(ai[2].exit_code, 0);
	for (size_t i = 0; i < na; i++)
		attempt_info_clear(&ai[i]);
	free(ai);

	assert_int_equal(state_step_outputs(st, id, "train", &got, &na, &err), 0);
	assert_int_equal(na, 2);
	assert_string_equal(got[1].path, "/ws/store/bb");
	assert_int_equal(got[1].bytes, 99);
	for (size_t i = 0; i < na; i++)
		output_rec_clear(&got[i]);
	free(got);

	/* Wrong references. */
	assert_int_equal(state_attempt_set_handle(st, id, "train", 9, "x", &err),
			 ERR_NOTFOUND);
	assert_string_equal(err.msg, "step 'train' of run 1 has no attempt 9");
	assert_int_equal(state_attempt_end(st, id, "train", 9, &ok, &err),
			 ERR_NOTFOUND);
	assert_int_equal(state_attempt_begin(st, id, "ghost", 1, NULL, &err),
			 ERR_NOTFOUND);
	ok.state = ATT_RUNNING;
	assert_int_equal(state_attempt_end(st, id, "train", 3, &ok, &err),
			 ERR_INVALID);
	state_close(st);
}

static void test_state__last_error_words_without_reason(void **unused)
{
	struct state *st = open_mem();
	struct attempt_end sig = { .state = ATT_FAILED, .exit_code = -1,
				   .signal = 9, .spends_retry = 1,
				   .step_state = STEP_PENDING };
	struct attempt_end tmo = { .state = ATT_TIMEOUT, .exit_code = -1,
				   .spends_retry = 1, .step_state = STEP_FAILED };
	struct attempt_info *ai = NULL;
	struct step_info *si = NULL;
	struct err err;
	size_t n;
	int64_t id = create_plan3(st, NULL);

	assert_int_equal(state_attempt_begin(st, id, "prep", 1, NULL, &err), 0);
	assert_int_equal(state_attempt_end(st, id, "prep", 1, &sig, &err), 0);
	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	assert_string_equal(si[0].last_error, "killed by signal 9");
	free_infos(si, n);
	assert_int_equal(state_attempts_list(st, id, "prep", &ai, &n, &err), 0);
	assert_int_equal(ai[0].exit_code, -1);
	assert_int_equal(ai[0].signal, 9);
	attempt_info_clear(&ai[0]);
	free(ai);

	assert_int_equal(state_attempt_begin(st, id, "prep", 2, NULL, &err), 0);
	assert_int_equal(state_attempt_end(st, id, "prep", 2, &tmo, &err), 0);
	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	assert_string_equal(si[0].last_error, "timed out");
	assert_int_equal(si[0].retries_used, 2);
	assert_int_equal(si[0].state, STEP_FAILED);
	assert_true(si[0].finished > 0);
	free_infos(si, n);
	state_close(st);
}

/* Fault injection: the new outputs repeat a name, so the outputs insert
 * fails after the attempt and step rows were already updated in the same
 * transaction. Everything must be as before the call. */
static void test_state__attempt_end_is_atomic(void **unused)
{
	struct state *st = open_mem();
	struct output_rec first[1] = {
		out_rec("model", ART_CHECKPOINT, "/old", 'o', 1),
	};
	struct output_rec dup[2] = {
		out_rec("model", ART_CHECKPOINT, "/new", 'n', 2),
		out_rec("model", ART_CHECKPOINT, "/new2", 'm', 3),
	};
	struct attempt_end ae = { .state = ATT_SUCCEEDED, .exit_code = 0,
				  .step_state = STEP_SUCCEEDED, .outputs = dup,
				  .noutputs = 2 };
	struct attempt_info *ai = NULL;
	struct step_info *si = NULL;
	struct err err;
	size_t n;
	int64_t id = create_plan3(st, NULL);
	const struct step_info *t;

	run_attempt(st, id, "train", 1, ATT_SUCCEEDED, STEP_SUCCEEDED, first, 1);
	assert_int_equal(state_step_set_state(st, id, "train", STEP_PENDING, &err), 0);
	assert_int_equal(state_attempt_begin(st, id, "train", 2, NULL, &err), 0);

	err_clear(&err);
	assert_int_equal(state_attempt_end(st, id, "train", 2, &ae, &err), ERR_SYSTEM);
	assert_non_null(strstr(err.msg, "': insert output 'model'"));

	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	t = info_of(si, n, "train");
	assert_int_equal(t->state, STEP_RUNNING);
	assert_true(t->finished == 0);
	assert_int_equal(t->last_attempt, 2);
	assert_int_equal(t->last_attempt_state, ATT_RUNNING);
	assert_int_equal(t->noutputs, 1);
	assert_string_equal(t->outputs[0].path, "/old");
	free_infos(si, n);
	assert_int_equal(state_attempts_list(st, id, "train", &ai, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_true(ai[1].finished == 0);
	assert_int_equal(ai[1].exit_code, -1);
	for (size_t i = 0; i < n; i++)
		attempt_info_clear(&ai[i]);
	free(ai);

	/* The store is usable afterwards: the same call, fixed, succeeds. */
	ae.noutputs = 1;
	assert_int_equal(state_attempt_end(st, id, "train", 2, &ae, &err), 0);
	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	t = info_of(si, n, "train");
	assert_int_equal(t->state, STEP_SUCCEEDED);
	assert_int_equal(t->noutputs, 1);
	assert_string_equal(t->outputs[0].path, "/new");
	free_infos(si, n);
	state_close(st);
}

/* ---- cache -------------------------------------------------------------- */

static void test_state__cache_candidates_newest_first(void **unused)
{
	const char *const keys[3] = { "K-prep", "K-train", "K-eval" };
	struct state *st = open_mem();
	struct output_rec o1 = out_rec("data", ART_DATASET, "/store/d1", '1', 10);
	struct output_rec o2 = out_rec("data", ART_DATASET, "/store/d2", '2', 20);
	struct cache_hit *h = NULL;
	struct output_rec *outs = NULL;
	struct step_info *si = NULL;
	struct err err;
	size_t n = 9;
	int64_t r1, r2, r3, r4;

	r1 = create_plan3(st, keys);
	r2 = create_plan3(st, keys);
	r3 = create_plan3(st, keys);
	r4 = create_plan3(st, keys);
	(void)r4;

	assert_int_equal(state_cache_candidates(st, "K-prep", &h, &n, &err), 0);
	assert_int_equal(n, 0);
	free(h);

	run_attempt(st, r1, "prep", 1, ATT_SUCCEEDED, STEP_SUCCEEDED, &o1, 1);
	run_attempt(st, r2, "prep", 1, ATT_SUCCEEDED, STEP_SUCCEEDED, &o2, 1);
	run_attempt(st, r3, "prep", 1, ATT_FAILED, STEP_FAILED, NULL, 0);
	/* r4 reuses r1's result. */
	assert_int_equal(state_step_mark_cached(st, r4, "prep", r1, "prep", &err), 0);

	/* r4's cached row points at r1's outputs: not listed twice. */
	assert_int_equal(state_cache_candidates(st, "K-prep", &h, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(h[0].run_id, r2);
	assert_int_equal(h[1].run_id, r1);
	assert_string_equal(h[0].step, "prep");
	assert_int_equal(h[0].noutputs, 1);
	assert_string_equal(h[0].outputs[0].path, "/store/d2");
	assert_string_equal(h[1].outputs[0].digest, o1.digest);
	assert_int_equal(h[1].outputs[0].type, ART_DATASET);
	assert_string_equal(h[1].outputs[0].path, "/store/d1");
	assert_int_equal(h[1].outputs[0].bytes, 10);
	for (size_t i = 0; i < n; i++)
		cache_hit_clear(&h[i]);
	free(h);
	cache_hit_clear(NULL);

	/* Cached step: state, provenance, copied outputs. */
	assert_int_equal(state_steps_info(st, r4, &si, &n, &err), 0);
	assert_int_equal(si[0].state, STEP_CACHED);
	assert_int_equal(si[0].cached_from_run, r1);
	assert_string_equal(si[0].cached_from_step, "prep");
	assert_true(si[0].finished > 0);
	assert_int_equal(si[0].noutputs, 1);
	free_infos(si, n);
	assert_int_equal(state_step_outputs(st, r4, "prep", &outs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_string_equal(outs[0].name, "data");
	output_rec_clear(&outs[0]);
	free(outs);

	assert_int_equal(state_step_mark_cached(st, r4, "train", r1, "nope", &err),
			 ERR_NOTFOUND);
	assert_int_equal(state_step_mark_cached(st, r4, "nope", r1, "prep", &err),
			 ERR_NOTFOUND);
	state_close(st);
}

/* ---- checkpoints and events --------------------------------------------- */

static void test_state__checkpoint_latest(void **unused)
{
	struct state *st = open_mem();
	struct err err;
	char *path = NULL;
	long long es = 0;
	int64_t id = create_plan3(st, NULL);

	assert_int_equal(state_checkpoint_latest(st, id, "train", &path, &es, NULL, &err),
			 ERR_NOTFOUND);
	assert_null(path);
	assert_int_equal(state_checkpoint_add(st, id, "train", 1, 500, "/c/500",
					      "d500", 0, &err), 0);
	assert_int_equal(state_checkpoint_add(st, id, "train", 2, 1000, "/c/1000",
					      NULL, 0, &err), 0);
	/* Insertion order, not engine step, decides "latest". */
	assert_int_equal(state_checkpoint_add(st, id, "train", 2, 900, "/c/900b",
					      NULL, 0, &err), 0);
	assert_int_equal(state_checkpoint_add(st, id, "prep", 1, 7, "/p/7", NULL, 0,
					      &err), 0);
	assert_int_equal(state_checkpoint_latest(st, id, "train", &path, &es, NULL, &err), 0);
	assert_string_equal(path, "/c/900b");
	assert_int_equal(es, 900);
	free(path);
	assert_int_equal(state_checkpoint_add(st, id, "train", 3, -1, "/c/x", NULL, 0,
					      &err), 0);
	assert_int_equal(state_checkpoint_latest(st, id, "train", &path, &es, NULL, &err), 0);
	assert_string_equal(path, "/c/x");
	assert_int_equal(es, -1);
	free(path);
	state_close(st);
}

static void test_state__step_info_latest_events(void **unused)
{
	struct state *st = open_mem();
	struct event_rec ev1[] = {
		{ EV_PROGRESS, NULL, 1, 10, 1, NULL },
		{ EV_METRIC, "loss", 2.5, 0, 1, NULL },
	};
	struct event_rec ev2[] = {
		{ EV_METRIC, "loss", 1.5, 0, 5, NULL },
		{ EV_PROGRESS, NULL, 5, 10, 5, NULL },
		{ EV_WARNING, NULL, 0, 0, -1, "nan in grad" },
		{ EV_METRIC, "acc", 0.75, 0, 6, NULL },
	};
	struct event_rec other[] = {
		{ EV_PROGRESS, NULL, 9, 9, -1, NULL },
		{ EV_METRIC, "bleu", 33, 0, -1, NULL },
	};
	struct step_info *si = NULL;
	struct err err;
	size_t n;
	int64_t id = create_plan3(st, NULL);
	const struct step_info *t;

	assert_int_equal(state_events_add(st, id, "train", 1, ev1, 2, -1, &err), 0);
	assert_int_equal(state_events_add(st, id, "eval", 1, other, 2, -1, &err), 0);
	assert_int_equal(state_events_add(st, id, "train", 1, ev2, 4, -1, &err), 0);
	assert_int_equal(state_events_add(st, id, "train", 1, NULL, 0, -1, &err), 0);

	assert_int_equal(state_steps_info(st, id, &si, &n, &err), 0);
	t = info_of(si, n, "train");
	assert_true(t->progress_done == 5 && t->progress_total == 10);
	assert_string_equal(t->metric_name, "acc");
	assert_true(t->metric_value == 0.75);
	t = info_of(si, n, "eval");
	assert_true(t->progress_done == 9 && t->progress_total == 9);
	assert_string_equal(t->metric_name, "bleu");
	t = info_of(si, n, "prep");
	assert_null(t->metric_name);
	assert_true(t->progress_total == 0);
	free_infos(si, n);
	state_close(st);
}

struct ev_log {
	struct buf b;
	int stop_after;
	int calls;
};

static int log_event(void *ctx, const char *step, int attempt, double time,
		     enum event_kind kind, const char *name, double value,
		     double total, long long engine_step, const char *text)
{
	struct ev_log *l = ctx;

	assert_true(time > 0);
	buf_printf(&l->b, "%s/%d %s %s %g %g %lld %s\n", step ? step : "-",
		   attempt, event_kind_name(kind), name ? name : "-", value,
		   total, engine_step, text ? text : "-");
	return ++l->calls == l->stop_after ? 42 : 0;
}

static void test_state__events_offset_recorded_with_events(void **unused)
{
	struct state *st = open_mem();
	struct event_rec a[] = { { EV_METRIC, "loss", 2, 0, 10, NULL } };
	struct err err;
	long long off = -5;
	int64_t id = create_plan3(st, NULL);

	(void)unused;
	assert_int_equal(state_attempt_begin(st, id, "train", 1, NULL, &err), 0);
	assert_int_equal(state_attempt_events_offset(st, id, "train", 1, &off, &err), 0);
	assert_int_equal(off, 0);
	assert_int_equal(state_events_add(st, id, "train", 1, a, 1, 123, &err), 0);
	assert_int_equal(state_attempt_events_offset(st, id, "train", 1, &off, &err), 0);
	assert_int_equal(off, 123);
	/* An offset alone (no new events) is recorded too; -1 leaves it. */
	assert_int_equal(state_events_add(st, id, "train", 1, NULL, 0, 456, &err), 0);
	assert_int_equal(state_events_add(st, id, "train", 1, a, 1, -1, &err), 0);
	assert_int_equal(state_attempt_events_offset(st, id, "train", 1, &off, &err), 0);
	assert_int_equal(off, 456);
	/* No such attempt: 0. */
	assert_int_equal(state_attempt_events_offset(st, id, "train", 9, &off, &err), 0);
	assert_int_equal(off, 0);
	state_close(st);
}

static void test_state__events_each_in_order(void **unused)
{
	struct state *st = open_mem();
	struct event_rec a[] = {
		{ EV_METRIC, "loss", 2, 0, 10, NULL },
		{ EV_LOG, NULL, 0, 0, -1, "hello" },
	};
	struct event_rec b[] = { { EV_CHECKPOINT, NULL, 0, 0, 20, "/c/20" } };
	struct ev_log l = { BUF_INIT, 0, 0 };
	struct err err;
	int64_t id = create_plan3(st, NULL);

	assert_int_equal(state_events_add(st, id, "train", 2, a, 2, -1, &err), 0);
	assert_int_equal(state_events_add(st, id, "prep", 1, b, 1, -1, &err), 0);
	assert_int_equal(state_events_add(st, id, NULL, 0, b, 1, -1, &err), 0);

	assert_int_equal(state_events_each(st, id, NULL, log_event, &l, &err), 0);
	assert_string_equal(buf_str(&l.b),
		"train/2 metric loss 2 0 10 -\n"
		"train/2 log - 0 0 -1 hello\n"
		"prep/1 checkpoint - 0 0 20 /c/20\n"
		"-/0 checkpoint - 0 0 20 /c/20\n");
	buf_reset(&l.b);
	assert_int_equal(state_events_each(st, id, "train", log_event, &l, &err), 0);
	assert_string_equal(buf_str(&l.b),
		"train/2 metric loss 2 0 10 -\n"
		"train/2 log - 0 0 -1 hello\n");

	/* The callback stops the walk; its value comes back as is. */
	buf_reset(&l.b);
	l.calls = 0;
	l.stop_after = 1;
	assert_int_equal(state_events_each(st, id, NULL, log_event, &l, &err), 42);
	assert_int_equal(l.calls, 1);
	/* ... and the statement was reset: a new walk starts at the top. */
	l.calls = 0;
	l.stop_after = 0;
	buf_reset(&l.b);
	assert_int_equal(state_events_each(st, id, NULL, log_event, &l, &err), 0);
	assert_int_equal(l.calls, 4);
	buf_free(&l.b);
	state_close(st);
}

/* ---- locking and corruption --------------------------------------------- */

static void test_state__busy_reports_locked(void **state)
{
	struct fx *f;
	struct step s[3];
	struct run_new rn = { .recipe_name = "busy", .runner = "local",
			      .steps = s, .nsteps = 3 };
	struct event_rec ev = { EV_LOG, NULL, 0, 0, -1, "x" };
	struct state *st2 = NULL;
	struct err err;
	sqlite3 *db;
	double t0;
	int64_t id = -1;

	f = fx_open(state);
	plan3(s);
	assert_int_equal(create_plan3(f->st, NULL), 1);
	db = raw_open(f->path);
	assert_int_equal(raw_rows_total(db), 1 + 3 + 9 + 2 + 3 + 4 + 1 + 3);
	raw_exec(db, "BEGIN EXCLUSIVE");
	raw_exec(db, "INSERT INTO runs (state, created) VALUES ('running', 1)");

	state_set_busy_timeout(f->st, 100);
	t0 = now_mono();
	err_clear(&err);
	assert_int_equal(state_run_create(f->st, &rn, &id, &err), ERR_SYSTEM);
	assert_true(now_mono() - t0 < 5);
	assert_int_equal(id, -1);
	assert_non_null(strstr(err.msg, "state database '"));
	assert_non_null(strstr(err.msg, "' is locked by another process ("));
	assert_int_equal(state_attempt_begin(f->st, 1, "prep", 1, NULL, &err),
			 ERR_SYSTEM);
	assert_int_equal(state_events_add(f->st, 1, "prep", 1, &ev, 1, -1, &err),
			 ERR_SYSTEM);
	assert_int_equal(state_run_set_state(f->st, 1, RUN_FAILED, &err), ERR_SYSTEM);

	/* The environment sets the default for new handles. */
	setenv("ANNEAL_BUSY_TIMEOUT_MS", "100", 1);
	assert_int_equal(state_open(f->path, &st2, &err), 0);
	unsetenv("ANNEAL_BUSY_TIMEOUT_MS");
	t0 = now_mono();
	assert_int_equal(state_step_set_state(st2, 1, "prep", STEP_RUNNING, &err),
			 ERR_SYSTEM);
	assert_true(now_mono() - t0 < 5);
	assert_non_null(strstr(err.msg, "waited 100 ms"));

	/* Nothing was half-written; once released, writes go through. */
	raw_exec(db, "ROLLBACK");
	assert_int_equal(raw_rows_total(db), 1 + 3 + 9 + 2 + 3 + 4 + 1 + 3);
	assert_int_equal(state_step_set_state(st2, 1, "prep", STEP_RUNNING, &err), 0);
	assert_int_equal(state_run_create(f->st, &rn, &id, &err), 0);
	assert_int_equal(id, 2);
	sqlite3_close(db);
	state_close(st2);
}

static void test_state__unknown_state_word_rejected(void **state)
{
	struct fx *f;
	struct step_info *si = NULL;
	struct attempt_info *ai = NULL;
	struct run_info ri;
	struct cache_hit *h = NULL;
	struct step *steps = NULL;
	struct err err;
	size_t n = 7;
	sqlite3 *db;
	const char *const keys[3] = { "kp", NULL, NULL };
	struct output_rec o = out_rec("data", ART_DATASET, "/d", 'd', 1);

	f = fx_open(state);
	create_plan3(f->st, keys);
	run_attempt(f->st, 1, "prep", 1, ATT_SUCCEEDED, STEP_SUCCEEDED, &o, 1);
	db = raw_open(f->path);

	raw_exec(db, "UPDATE steps SET state = 'exploded' WHERE id = 'train'");
	err_clear(&err);
	assert_int_equal(state_steps_info(f->st, 1, &si, &n, &err), ERR_SYSTEM);
	assert_string_equal(err.msg, "state database: unknown step state 'exploded'");
	assert_null(si);
	assert_int_equal(n, 0);
	raw_exec(db, "UPDATE steps SET state = 'pending' WHERE id = 'train'");

	raw_exec(db, "UPDATE attempts SET state = 'zombie'");
	assert_int_equal(state_attempts_list(f->st, 1, "prep", &ai, &n, &err), ERR_SYSTEM);
	assert_string_equal(err.msg, "state database: unknown attempt state 'zombie'");
	assert_int_equal(state_steps_info(f->st, 1, &si, &n, &err), ERR_SYSTEM);
	raw_exec(db, "UPDATE attempts SET state = 'succeeded'");

	raw_exec(db, "UPDATE outputs SET type = 'tensorboard'");
	assert_int_equal(state_cache_candidates(f->st, "kp", &h, &n, &err), ERR_SYSTEM);
	assert_string_equal(err.msg, "state database: unknown artifact type 'tensorboard'");
	raw_exec(db, "UPDATE outputs SET type = 'dataset'");

	raw_exec(db, "UPDATE step_outputs_decl SET type = 'blob' WHERE step_id = 'eval'");
	assert_int_equal(state_steps_load(f->st, 1, &steps, &n, &err), ERR_SYSTEM);
	assert_string_equal(err.msg, "state database: unknown artifact type 'blob'");
	assert_null(steps);

	raw_exec(db, "UPDATE runs SET state = 'paused'");
	assert_int_equal(state_run_get(f->st, 1, &ri, &err), ERR_SYSTEM);
	assert_string_equal(err.msg, "state database: unknown run state 'paused'");

	raw_exec(db, "INSERT INTO events (run_id, step_id, attempt, time, kind)"
		 " VALUES (1, 'prep', 1, 1, 'telemetry')");
	assert_int_equal(state_events_each(f->st, 1, NULL, log_event, &(struct ev_log){
			 BUF_INIT, 0, 0 }, &err), ERR_SYSTEM);
	assert_string_equal(err.msg, "state database: unknown event kind 'telemetry'");
	sqlite3_close(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state__names_roundtrip),
		cmocka_unit_test_setup_teardown(test_state__migration_from_empty,
						setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_state__newer_schema_refused,
						setup_dir, teardown_dir),
		cmocka_unit_test(test_state__bad_busy_env_rejected),
		cmocka_unit_test_setup_teardown(test_state__synchronous_from_env,
						setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_state__fds_close_on_exec,
						setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_state__create_and_load_roundtrip,
						setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_state__create_failure_leaves_no_rows,
						setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_state__create_1000_steps_fast,
						setup_dir, teardown_dir),
		cmocka_unit_test(test_state__run_fields_state_and_cancel),
		cmocka_unit_test(test_state__step_state_times),
		cmocka_unit_test(test_state__attempts_lifecycle),
		cmocka_unit_test(test_state__last_error_words_without_reason),
		cmocka_unit_test(test_state__attempt_end_is_atomic),
		cmocka_unit_test(test_state__cache_candidates_newest_first),
		cmocka_unit_test(test_state__checkpoint_latest),
		cmocka_unit_test(test_state__step_info_latest_events),
		cmocka_unit_test(test_state__events_each_in_order),
		cmocka_unit_test(test_state__events_offset_recorded_with_events),
		cmocka_unit_test_setup_teardown(test_state__busy_reports_locked,
						setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_state__unknown_state_word_rejected,
						setup_dir, teardown_dir),
	};

	unsetenv("ANNEAL_BUSY_TIMEOUT_MS");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
