/* tests/pipeline/test_sched.c — the scheduler against a fake runner that
 * scripts outcomes (ninja's FakeCommandRunner): ordering, parallelism,
 * retries, requeue, cache, re-attach after a crash, devices, timeouts,
 * interruption. Real state store in a temp workspace; no processes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "pipeline/sched.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"
#include "runners/runner.h"

/* ---- the fake runner ---------------------------------------------------- */

#define MAXJOBS 256

struct script {            /* what attempt N of a step does */
	const char *step;
	int attempt;           /* 0: every attempt */
	enum job_end end;
	int code;              /* exit code or signal */
	int hang;              /* never ends unless cancelled */
};

struct fake_job {
	char step[64];
	int attempt;
	void *cookie;
	int live;
	int hang;
	int cancelled_sig;
	struct job_done done;
	char env_cuda[64];
	char resume[256];
};

struct fake {
	struct runner base;
	const struct script *script;
	size_t nscript;
	struct fake_job jobs[MAXJOBS];
	size_t njobs;
	int live, max_live;
	char order[4096];           /* "a,b,c," in submit order */
	int stop_after_submits;     /* request a stop once this many started */
	/* attach script */
	int attach_alive;
	struct job_done attach_done;
	int attaches;
	void *attached_cookie;
	int attached_pending;       /* report the attached job done on next poll */
};

static const struct script *find_script(struct fake *f, const char *step, int attempt)
{
	for (size_t i = 0; i < f->nscript; i++)
		if (!strcmp(f->script[i].step, step) &&
		    (!f->script[i].attempt || f->script[i].attempt == attempt))
			return &f->script[i];
	return NULL;
}

static const char *env_get(char *const *envp, const char *key)
{
	size_t n = strlen(key);
	for (; *envp; envp++)
		if (!strncmp(*envp, key, n) && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

static int fake_submit(struct runner *r, const struct job_spec *spec,
		       struct job_handle *h, struct err *err)
{
	struct fake *f = (struct fake *)r;
	struct fake_job *j = &f->jobs[f->njobs];
	const struct script *sc = find_script(f, spec->step_id, spec->attempt);
	const char *v;

	assert_true(f->njobs < MAXJOBS);
	memset(j, 0, sizeof(*j));
	snprintf(j->step, sizeof(j->step), "%s", spec->step_id);
	j->attempt = spec->attempt;
	j->cookie = spec->cookie;
	j->live = 1;
	j->done.cookie = spec->cookie;
	j->done.end = sc ? sc->end : JOB_EXITED;
	j->done.exit_code = sc && sc->end == JOB_EXITED ? sc->code : 0;
	j->done.signal = sc && sc->end == JOB_SIGNALED ? sc->code : 0;
	j->hang = sc ? sc->hang : 0;
	v = env_get(spec->envp, "CUDA_VISIBLE_DEVICES");
	snprintf(j->env_cuda, sizeof(j->env_cuda), "%s", v ? v : "(unset)");
	v = env_get(spec->envp, "ANNEAL_RESUME_FROM");
	snprintf(j->resume, sizeof(j->resume), "%s", v ? v : "");
	assert_non_null(env_get(spec->envp, "ANNEAL_EVENTS"));
	assert_string_equal(env_get(spec->envp, "ANNEAL_STEP_ID"), spec->step_id);
	snprintf(h->id, sizeof(h->id), "fake:%zu", f->njobs);
	f->njobs++;
	f->live++;
	if (f->live > f->max_live)
		f->max_live = f->live;
	strncat(f->order, spec->step_id, sizeof(f->order) - strlen(f->order) - 2);
	strcat(f->order, ",");
	if (f->stop_after_submits && (int)f->njobs == f->stop_after_submits)
		sched_request_stop();
	(void)err;
	return 0;
}

static int fake_poll(struct runner *r, int timeout_ms, struct job_done *done,
		     size_t cap, size_t *n, struct err *err)
{
	struct fake *f = (struct fake *)r;

	(void)timeout_ms;
	(void)err;
	*n = 0;
	if (f->attached_pending && *n < cap) {
		done[(*n)++] = f->attach_done;
		f->attached_pending = 0;
		return 0;
	}
	/* One job ends per poll, the oldest first, so that several can be
	 * live at once and parallelism is observable. */
	for (size_t i = 0; i < f->njobs && *n < cap; i++) {
		struct fake_job *j = &f->jobs[i];
		if (!j->live || (j->hang && !j->cancelled_sig))
			continue;
		j->live = 0;
		f->live--;
		done[(*n)++] = j->done;
		break;
	}
	if (*n == 0 && timeout_ms > 0)
		usleep(1000);   /* a hanging job: let wall time pass */
	return 0;
}

static int fake_cancel(struct runner *r, const struct job_handle *h, int sig,
		       struct err *err)
{
	struct fake *f = (struct fake *)r;
	size_t i = (size_t)strtoul(h->id + 5, NULL, 10);

	(void)err;
	if (i < f->njobs && f->jobs[i].live) {
		f->jobs[i].cancelled_sig = sig;
		f->jobs[i].done.end = JOB_SIGNALED;
		f->jobs[i].done.signal = sig;
	}
	return 0;
}

static int fake_attach(struct runner *r, const char *attempt_dir,
		       struct job_handle *h, void *cookie, int *alive,
		       struct job_done *done, struct err *err)
{
	struct fake *f = (struct fake *)r;

	(void)attempt_dir;
	(void)h;
	(void)err;
	f->attaches++;
	f->attached_cookie = cookie;
	*alive = f->attach_alive;
	f->attach_done.cookie = cookie;
	if (f->attach_alive)
		f->attached_pending = 1;
	else
		*done = f->attach_done;
	return 0;
}

static void fake_free(struct runner *r)
{
	(void)r;
}

static const struct runner_ops fake_ops = {
	.name = "fake", .submit = fake_submit, .poll = fake_poll, .cancel = fake_cancel,
	.attach = fake_attach, .free = fake_free,
};

/* ---- fixtures ------------------------------------------------------------- */

struct fx {
	char *dir;
	struct workspace *ws;
	struct state *st;
	struct fake fake;
	struct sched_opts so;
};

static int setup(void **state)
{
	struct fx *fx = xcalloc(1, sizeof(*fx));
	char tmpl[] = "/tmp/anneal-sched-XXXXXX";
	struct err e;

	fx->dir = xstrdup(mkdtemp(tmpl));
	assert_int_equal(workspace_init(fx->dir, &fx->ws, &e), 0);
	assert_int_equal(state_open(fx->ws->db_path, &fx->st, &e), 0);
	fx->fake.base.ops = &fake_ops;
	fx->so.jobs = 2;
	fx->so.cpus = 2;
	fx->so.grace_s = 0.05;
	fx->so.max_requeues = 5;
	sched_reset_stop();
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	struct err e;

	state_close(fx->st);
	workspace_free(fx->ws);
	fs_remove_tree(fx->dir, &e);
	free(fx->dir);
	free(fx);
	return 0;
}

/* Steps from "id:dep,dep" strings; each writes one output "out". */
static struct step *mk_steps(const char *const *desc, size_t n)
{
	struct step *s = xcalloc(n, sizeof(*s));
	for (size_t i = 0; i < n; i++) {
		const char *colon = strchr(desc[i], ':');
		s[i].id = colon ? xstrndup(desc[i], (size_t)(colon - desc[i])) : xstrdup(desc[i]);
		s[i].kind = xstrdup("exec");
		s[i].stage = xstrdup(s[i].id);
		s[i].argc = 1;
		s[i].argv = xcalloc(2, sizeof(char *));
		s[i].argv[0] = xstrdup("/bin/true");
		s[i].res.cpus = 1;
		s[i].retry.backoff_s = 0;
		s[i].outputs = xcalloc(1, sizeof(*s[i].outputs));
		s[i].outputs[0].name = xstrdup("out");
		s[i].outputs[0].type = ART_DATASET;
		s[i].noutputs = 1;
		if (colon && colon[1]) {
			char *deps = xstrdup(colon + 1), *save = NULL;
			for (char *t = strtok_r(deps, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				s[i].inputs = xrealloc(s[i].inputs, (s[i].ninputs + 1) * sizeof(*s[i].inputs));
				memset(&s[i].inputs[s[i].ninputs], 0, sizeof(*s[i].inputs));
				s[i].inputs[s[i].ninputs].role = xasprintf("in_%s", t);
				s[i].inputs[s[i].ninputs].from_step = xstrdup(t);
				s[i].inputs[s[i].ninputs].from_output = xstrdup("out");
				s[i].ninputs++;
			}
			free(deps);
		}
	}
	return s;
}

static void free_steps(struct step *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		step_clear(&s[i]);
	free(s);
}

static int64_t new_run(struct fx *fx, struct step *steps, size_t n)
{
	struct run_new rn = {
		.recipe_path = "/x/r.json", .recipe_name = "t", .recipe_text = "{}",
		.recipe_digest = "00", .params_json = "{}", .runner = "fake",
		.steps = steps, .nsteps = n,
	};
	int64_t id = 0;
	struct err e;
	assert_int_equal(state_run_create(fx->st, &rn, &id, &e), 0);
	return id;
}

static enum step_state step_state_of(struct fx *fx, int64_t run, const char *id,
				     int *attempts, int *retries)
{
	struct step_info *si = NULL;
	size_t n = 0;
	struct err e;
	enum step_state s = STEP_PENDING;
	int found = 0;

	assert_int_equal(state_steps_info(fx->st, run, &si, &n, &e), 0);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(si[i].id, id)) {
			s = si[i].state;
			if (attempts)
				*attempts = si[i].attempts;
			if (retries)
				*retries = si[i].retries_used;
			found = 1;
		}
		step_info_clear(&si[i]);
	}
	free(si);
	assert_true(found);
	return s;
}

static enum run_state run_state_of(struct fx *fx, int64_t run)
{
	struct run_info ri;
	struct err e;
	enum run_state s;
	assert_int_equal(state_run_get(fx->st, run, &ri, &e), 0);
	s = ri.state;
	run_info_clear(&ri);
	return s;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_sched__chain_runs_in_dependency_order(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "c:b", "a", "b:a" };
	struct step *s = mk_steps(d, 3);
	int64_t run = new_run(fx, s, 3);
	struct err e;

	int rc = sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e);
	if (rc)
		print_error("%s\n", e.msg);
	assert_int_equal(rc, 0);
	assert_string_equal(fx->fake.order, "a,b,c,");
	assert_int_equal(run_state_of(fx, run), RUN_SUCCEEDED);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(step_state_of(fx, run, s[i].id, NULL, NULL), STEP_SUCCEEDED);
	free_steps(s, 3);
}

static void test_sched__parallel_within_jobs(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a", "b", "c", "d", "e", "f", "join:a,b,c,d,e,f" };
	struct step *s = mk_steps(d, 7);
	int64_t run;
	struct err e;

	fx->so.jobs = 3;
	fx->so.cpus = 8;
	run = new_run(fx, s, 7);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), 0);
	assert_int_equal(fx->fake.max_live, 3);
	assert_string_equal(fx->fake.order + strlen(fx->fake.order) - 5, "join,");
	free_steps(s, 7);
}

static void test_sched__cpus_limit_parallelism(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a", "b", "c" };
	struct step *s = mk_steps(d, 3);
	int64_t run;
	struct err e;

	for (size_t i = 0; i < 3; i++)
		s[i].res.cpus = 2;
	fx->so.jobs = 8;
	fx->so.cpus = 4;
	run = new_run(fx, s, 3);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), 0);
	assert_int_equal(fx->fake.max_live, 2);
	free_steps(s, 3);
}

static void test_sched__retry_then_succeed(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a", "b:a" };
	static const struct script sc[] = {
		{ "a", 1, JOB_EXITED, 1, 0 },
		{ "a", 2, JOB_SIGNALED, SIGSEGV, 0 },
	};
	struct step *s = mk_steps(d, 2);
	int64_t run;
	int attempts = 0, retries = 0;
	struct err e;

	s[0].retry.max = 2;
	fx->fake.script = sc;
	fx->fake.nscript = 2;
	run = new_run(fx, s, 2);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), 0);
	assert_int_equal(step_state_of(fx, run, "a", &attempts, &retries), STEP_SUCCEEDED);
	assert_int_equal(attempts, 3);
	assert_int_equal(retries, 2);
	assert_string_equal(fx->fake.order, "a,a,a,b,");
	free_steps(s, 2);
}

static void test_sched__retries_exhausted_fails_run(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a", "b:a", "c" };
	static const struct script sc[] = { { "a", 0, JOB_EXITED, 3, 0 } };
	struct step *s = mk_steps(d, 3);
	int64_t run;
	int attempts = 0;
	struct err e;

	s[0].retry.max = 1;
	fx->fake.script = sc;
	fx->fake.nscript = 1;
	fx->so.jobs = 1;
	run = new_run(fx, s, 3);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), ERR_STEP);
	assert_non_null(strstr(e.msg, "step 'a' failed: exit 3"));
	assert_int_equal(step_state_of(fx, run, "a", &attempts, NULL), STEP_FAILED);
	assert_int_equal(attempts, 2);
	assert_int_equal(step_state_of(fx, run, "b", NULL, NULL), STEP_PENDING);
	assert_int_equal(run_state_of(fx, run), RUN_FAILED);
	free_steps(s, 3);
}

static void test_sched__keep_going_runs_independent_steps(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a", "b:a", "c" };
	static const struct script sc[] = { { "a", 0, JOB_EXITED, 3, 0 } };
	struct step *s = mk_steps(d, 3);
	int64_t run;
	struct err e;

	fx->fake.script = sc;
	fx->fake.nscript = 1;
	fx->so.jobs = 1;
	fx->so.keep_going = 1;
	run = new_run(fx, s, 3);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), ERR_STEP);
	assert_int_equal(step_state_of(fx, run, "c", NULL, NULL), STEP_SUCCEEDED);
	assert_int_equal(step_state_of(fx, run, "b", NULL, NULL), STEP_PENDING);
	free_steps(s, 3);
}

static void test_sched__exit75_requeues_without_spending_retry(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a" };
	static const struct script sc[] = { { "a", 1, JOB_EXITED, 75, 0 } };
	struct step *s = mk_steps(d, 1);
	int64_t run;
	int attempts = 0, retries = 0;
	struct err e;

	fx->fake.script = sc;
	fx->fake.nscript = 1;
	run = new_run(fx, s, 1);   /* retries: 0, yet it recovers */
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), 0);
	assert_int_equal(step_state_of(fx, run, "a", &attempts, &retries), STEP_SUCCEEDED);
	assert_int_equal(attempts, 2);
	assert_int_equal(retries, 0);
	free_steps(s, 1);
}

static void test_sched__exit75_forever_gives_up(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a" };
	static const struct script sc[] = { { "a", 0, JOB_EXITED, 75, 0 } };
	struct step *s = mk_steps(d, 1);
	int64_t run;
	int attempts = 0;
	struct err e;

	fx->fake.script = sc;
	fx->fake.nscript = 1;
	run = new_run(fx, s, 1);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), ERR_STEP);
	assert_int_equal(step_state_of(fx, run, "a", &attempts, NULL), STEP_FAILED);
	assert_int_equal(attempts, fx->so.max_requeues + 1);
	free_steps(s, 1);
}

static void test_sched__second_run_is_cached(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a", "b:a" };
	struct step *s = mk_steps(d, 2);
	int64_t r1, r2;
	struct err e;

	r1 = new_run(fx, s, 2);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, r1, &fx->so, &e), 0);
	assert_int_equal(fx->fake.njobs, 2);
	r2 = new_run(fx, s, 2);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, r2, &fx->so, &e), 0);
	assert_int_equal(fx->fake.njobs, 2);   /* nothing ran again */
	assert_int_equal(step_state_of(fx, r2, "a", NULL, NULL), STEP_CACHED);
	assert_int_equal(step_state_of(fx, r2, "b", NULL, NULL), STEP_CACHED);
	/* --no-cache runs everything. */
	int64_t r3 = new_run(fx, s, 2);
	fx->so.no_cache = 1;
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, r3, &fx->so, &e), 0);
	assert_int_equal(fx->fake.njobs, 4);
	free_steps(s, 2);
}

static void test_sched__damaged_output_is_not_reused(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a" };
	struct step *s = mk_steps(d, 1);
	int64_t r1, r2;
	struct err e;
	char *f;

	r1 = new_run(fx, s, 1);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, r1, &fx->so, &e), 0);
	/* Someone writes into the finished output. */
	f = xasprintf("%s/%lld/a/out/out/intruder", fx->ws->runs_dir, (long long)r1);
	assert_int_equal(fs_write_atomic(f, "x", 1, 0644, &e), 0);
	r2 = new_run(fx, s, 1);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, r2, &fx->so, &e), 0);
	assert_int_equal(fx->fake.njobs, 2);
	assert_int_equal(step_state_of(fx, r2, "a", NULL, NULL), STEP_SUCCEEDED);
	free(f);
	free_steps(s, 1);
}

static void test_sched__changed_command_invalidates_downstream(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a", "b:a" };
	struct step *s = mk_steps(d, 2);
	int64_t r1, r2;
	struct err e;

	r1 = new_run(fx, s, 2);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, r1, &fx->so, &e), 0);
	free(s[1].argv[0]);
	s[1].argv[0] = xstrdup("/bin/echo");
	r2 = new_run(fx, s, 2);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, r2, &fx->so, &e), 0);
	assert_int_equal(step_state_of(fx, r2, "a", NULL, NULL), STEP_CACHED);
	assert_int_equal(step_state_of(fx, r2, "b", NULL, NULL), STEP_SUCCEEDED);
	assert_int_equal(fx->fake.njobs, 3);
	free_steps(s, 2);
}

/* A driver died while 'a' ran: the next one attaches, never starts a copy. */
static void test_sched__resume_attaches_to_live_job(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a", "b:a" };
	struct step *s = mk_steps(d, 2);
	int64_t run = new_run(fx, s, 2);
	int attempts = 0;
	struct err e;

	/* What the earlier driver had prepared before it died. */
	char *out = xasprintf("%s/%lld/a/out/out", fx->ws->runs_dir, (long long)run);
	assert_int_equal(fs_mkdir_p(out, 0777, &e), 0);
	free(out);
	assert_int_equal(state_attempt_begin(fx->st, run, "a", 1, NULL, &e), 0);
	assert_int_equal(state_attempt_set_handle(fx->st, run, "a", 1, "fake:99", &e), 0);
	fx->fake.attach_alive = 1;
	fx->fake.attach_done.end = JOB_EXITED;
	fx->fake.attach_done.exit_code = 0;
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), 0);
	assert_int_equal(fx->fake.attaches, 1);
	assert_string_equal(fx->fake.order, "b,");   /* 'a' was not started again */
	assert_int_equal(step_state_of(fx, run, "a", &attempts, NULL), STEP_SUCCEEDED);
	assert_int_equal(attempts, 1);
	free_steps(s, 2);
}

static void test_sched__resume_records_job_that_ended_meanwhile(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a" };
	struct step *s = mk_steps(d, 1);
	int64_t run = new_run(fx, s, 1);
	int attempts = 0;
	struct err e;

	assert_int_equal(state_attempt_begin(fx->st, run, "a", 1, NULL, &e), 0);
	fx->fake.attach_alive = 0;
	fx->fake.attach_done.end = JOB_LOST;
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), 0);
	/* Lost: restarted (attempt 2) without spending a retry. */
	assert_int_equal(step_state_of(fx, run, "a", &attempts, NULL), STEP_SUCCEEDED);
	assert_int_equal(attempts, 2);
	assert_string_equal(fx->fake.order, "a,");
	free_steps(s, 1);
}

static void test_sched__retry_resumes_from_latest_checkpoint(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a" };
	static const struct script sc[] = { { "a", 1, JOB_EXITED, 1, 0 } };
	struct step *s = mk_steps(d, 1);
	int64_t run;
	char *ck;
	struct err e;

	s[0].retry.max = 1;
	fx->fake.script = sc;
	fx->fake.nscript = 1;
	run = new_run(fx, s, 1);
	/* A checkpoint recorded by attempt 1 (as the events file would). */
	ck = xasprintf("%s/ck-100", fx->dir);
	assert_int_equal(fs_mkdir_p(ck, 0777, &e), 0);
	assert_int_equal(state_checkpoint_add(fx->st, run, "a", 1, 100, ck, NULL, 0, &e), 0);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), 0);
	assert_int_equal(fx->fake.njobs, 2);
	assert_string_equal(fx->fake.jobs[1].resume, ck);
	free(ck);
	free_steps(s, 1);
}

static void test_sched__devices_are_exclusive(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a", "b", "c" };
	struct step *s = mk_steps(d, 3);
	int64_t run;
	struct err e;

	s[0].res.gpus = 1;
	s[1].res.gpus = 1;
	fx->so.gpus = 1;
	fx->so.jobs = 4;
	fx->so.cpus = 4;
	run = new_run(fx, s, 3);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), 0);
	assert_string_equal(fx->fake.jobs[0].env_cuda, "0");
	/* c needs no device: it is hidden from it. */
	for (size_t i = 0; i < fx->fake.njobs; i++)
		if (!strcmp(fx->fake.jobs[i].step, "c"))
			assert_string_equal(fx->fake.jobs[i].env_cuda, "");
		else
			assert_string_equal(fx->fake.jobs[i].env_cuda, "0");
	/* a and b never overlapped: at most 2 live (one gpu step + c). */
	assert_true(fx->fake.max_live <= 2);
	free_steps(s, 3);
}

static void test_sched__timeout_kills_and_fails(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a" };
	static const struct script sc[] = { { "a", 0, JOB_EXITED, 0, 1 } };
	struct step *s = mk_steps(d, 1);
	int64_t run;
	struct attempt_info *ai = NULL;
	size_t na = 0;
	struct err e;

	s[0].timeout_s = 1;
	fx->fake.script = sc;
	fx->fake.nscript = 1;
	run = new_run(fx, s, 1);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), ERR_STEP);
	assert_non_null(strstr(e.msg, "timed out after 1s"));
	assert_int_equal(fx->fake.jobs[0].cancelled_sig, SIGTERM);
	assert_int_equal(state_attempts_list(fx->st, run, "a", &ai, &na, &e), 0);
	assert_int_equal(na, 1);
	assert_int_equal(ai[0].state, ATT_TIMEOUT);
	attempt_info_clear(&ai[0]);
	free(ai);
	free_steps(s, 1);
}

static void test_sched__stop_request_interrupts_resumably(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a", "b:a" };
	static const struct script sc[] = { { "a", 1, JOB_EXITED, 0, 1 } };
	struct step *s = mk_steps(d, 2);
	int64_t run;
	int attempts = 0;
	struct err e;

	fx->fake.script = sc;
	fx->fake.nscript = 1;
	fx->fake.stop_after_submits = 1;
	run = new_run(fx, s, 2);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e),
			 ERR_INTERRUPTED);
	assert_int_equal(run_state_of(fx, run), RUN_INTERRUPTED);
	assert_int_equal(step_state_of(fx, run, "a", &attempts, NULL), STEP_PENDING);
	assert_int_equal(fx->fake.jobs[0].cancelled_sig, SIGTERM);
	/* And resume finishes it. */
	sched_reset_stop();
	fx->fake.stop_after_submits = 0;
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), 0);
	assert_int_equal(run_state_of(fx, run), RUN_SUCCEEDED);
	assert_string_equal(fx->fake.order, "a,a,b,");
	free_steps(s, 2);
}

static void test_sched__cancel_request_cancels(void **state)
{
	struct fx *fx = *state;
	const char *d[] = { "a", "b:a" };
	static const struct script sc[] = { { "a", 0, JOB_EXITED, 0, 1 } };
	struct step *s = mk_steps(d, 2);
	int64_t run;
	struct err e;

	fx->fake.script = sc;
	fx->fake.nscript = 1;
	fx->fake.stop_after_submits = 1;
	run = new_run(fx, s, 2);
	assert_int_equal(state_run_request_cancel(fx->st, run, &e), 0);
	assert_int_equal(sched_run(fx->st, &fx->fake.base, fx->ws, run, &fx->so, &e), ERR_STEP);
	assert_non_null(strstr(e.msg, "cancelled"));
	assert_int_equal(run_state_of(fx, run), RUN_CANCELLED);
	assert_int_equal(step_state_of(fx, run, "a", NULL, NULL), STEP_CANCELLED);
	assert_int_equal(step_state_of(fx, run, "b", NULL, NULL), STEP_CANCELLED);
	free_steps(s, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sched__chain_runs_in_dependency_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__parallel_within_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__cpus_limit_parallelism, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__retry_then_succeed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__retries_exhausted_fails_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__keep_going_runs_independent_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__exit75_requeues_without_spending_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__exit75_forever_gives_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__second_run_is_cached, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__damaged_output_is_not_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__changed_command_invalidates_downstream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__resume_attaches_to_live_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__resume_records_job_that_ended_meanwhile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__retry_resumes_from_latest_checkpoint, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__devices_are_exclusive, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__timeout_kills_and_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__stop_request_interrupts_resumably, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sched__cancel_request_cancels, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
