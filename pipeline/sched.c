/* pipeline/sched.c — see sched.h.
 *
 * Workload: from a handful of multi-hour training steps to thousands of
 * short ones (data shards, evals). The loop therefore does no work per
 * iteration that grows with finished steps: ready steps are found through
 * dependency counters, not by rescanning the DAG, and the only periodic
 * work is following the events files of running steps.
 *
 * Crash safety comes from ordering: an attempt is recorded (running)
 * before its job is submitted, and its outcome, the step's new state and
 * its outputs are recorded in one transaction after the job ended. A
 * driver killed anywhere in between leaves an attempt marked running,
 * which the next driver re-attaches to (or finds ended) through the
 * runner. */
#include "pipeline/sched.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/store.h"
#include "artifacts/tree.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fault.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/util.h"
#include "pipeline/catalog.h"
#include "pipeline/dag.h"
#include "pipeline/events.h"
#include "pipeline/plan.h"
#include "pipeline/state.h"
#include "pipeline/subst.h"
#include "pipeline/workspace.h"
#include "runners/runner.h"

extern char **environ;

static volatile sig_atomic_t stop_requests;

void sched_request_stop(void)
{
	if (stop_requests < 2)
		stop_requests++;
}

void sched_reset_stop(void)
{
	stop_requests = 0;
}

enum stop_mode { STOP_NONE, STOP_INTERRUPT, STOP_CANCEL, STOP_LEAVE };

struct node {
	struct step *step;
	size_t idx;
	enum step_state state;
	size_t unmet;            /* dependencies not yet succeeded/cached */
	int queued;              /* in the ready queue */
	int attempt;             /* number of the latest attempt */
	int live;                /* a job is running */
	struct job_handle handle;
	double started;          /* monotonic, of the live attempt */
	double deadline;         /* timeout (monotonic), 0: none */
	double kill_at;          /* SIGKILL after a SIGTERM, 0: none */
	int timed_out;
	double not_before;       /* retry backoff (monotonic) */
	int retries_used;
	int requeues;
	int cpus, *gpu_slots, *npu_slots;
	char *key;               /* cache key, once computed */
	char *attempt_dir;
	struct events_reader ev;
	int ev_open;
	off_t ev_recorded;       /* events-file offset the store knows */
	struct output_rec *outs;
	size_t nouts;
	int64_t resume_artifact; /* the checkpoint this attempt resumed from */
	int ckpts;               /* checkpoints this attempt announced */
	char *metric_name;
	double metric_value;
};

struct sched {
	struct state *st;
	struct runner *r;
	const struct workspace *ws;
	const struct sched_opts *o;
	int64_t run;
	char *run_dir;
	struct store *store;
	struct output_rec *ext;  /* artifacts named by "@REF" inputs, ready to read */
	size_t next;
	char *recipe_digest;
	char *git_commit, *git_dirty;   /* the run's provenance */
	char *params_path;
	char *no_params_path;
	char *params_json;
	struct step *steps;
	size_t nsteps;
	struct dag *dag;
	struct node *nodes;
	size_t *ready;           /* queue of node indexes, FIFO by recipe order */
	size_t nready;
	size_t done;             /* succeeded + cached */
	size_t live;
	int cpus_free, jobs_free;
	long mem_free;
	int *gpu_used, *npu_used;
	enum stop_mode stop;
	int hard_stop;
	int failed;              /* a step failed for good */
	char first_failure[2048];
	double last_cancel_check, last_tick;
	struct buf ev_text;      /* scratch for events */
	struct event_rec *evbuf;
	size_t nev, capev;
	struct buf evnames;
	struct { char *prog, *path, *full; } *which;
	size_t nwhich, capwhich;
};

static void report(struct sched *s, enum sched_report_kind kind,
		   const struct node *n, const char *text)
{
	struct sched_report r = {
		.kind = kind,
		.step = n ? n->step->id : NULL,
		.attempt = n ? n->attempt : 0,
		.text = text,
		.done = s->done,
		.total = s->nsteps,
		.running = s->live,
	};

	if (!s->o->report)
		return;
	if (n && n->started > 0 && kind != SR_CACHED)
		r.elapsed = now_mono() - n->started;
	if (n && n->metric_name) {
		r.has_metric = 1;
		r.metric_name = n->metric_name;
		r.metric_value = n->metric_value;
	}
	s->o->report(s->o->report_ctx, &r);
}

/* ---- ready queue ----------------------------------------------------- */

static void push_ready(struct sched *s, struct node *n)
{
	if (n->queued || n->state != STEP_PENDING || n->unmet)
		return;
	/* Keep the queue sorted by recipe order: plans read top to bottom. */
	size_t i = s->nready;
	while (i > 0 && s->ready[i - 1] > n->idx) {
		s->ready[i] = s->ready[i - 1];
		i--;
	}
	s->ready[i] = n->idx;
	s->nready++;
	n->queued = 1;
}

static void remove_ready(struct sched *s, size_t pos)
{
	s->nodes[s->ready[pos]].queued = 0;
	memmove(&s->ready[pos], &s->ready[pos + 1],
		(s->nready - pos - 1) * sizeof(*s->ready));
	s->nready--;
}

static void mark_done(struct sched *s, struct node *n)
{
	s->done++;
	for (size_t k = 0; k < s->dag->ndependents[n->idx]; k++) {
		struct node *d = &s->nodes[s->dag->dependents[n->idx][k]];
		if (d->unmet)
			d->unmet--;
		push_ready(s, d);
	}
}

/* ---- inputs, outputs, environment ------------------------------------ */

static struct node *find_node(struct sched *s, const char *id)
{
	/* dag.c has the map; the steps of one input list are few. */
	for (size_t i = 0; i < s->nsteps; i++)
		if (!strcmp(s->steps[i].id, id))
			return &s->nodes[i];
	return NULL;
}

static const struct output_rec *input_rec(struct sched *s,
					  const struct step_input *in)
{
	struct node *p;

	if (in->artifact) {
		for (size_t i = 0; i < s->next; i++)
			if (s->ext[i].artifact == in->artifact)
				return &s->ext[i];
		return NULL;
	}
	p = find_node(s, in->from_step);

	if (!p)
		return NULL;
	for (size_t i = 0; i < p->nouts; i++)
		if (!strcmp(p->outs[i].name, in->from_output))
			return &p->outs[i];
	return NULL;
}

static void free_outs(struct output_rec *o, size_t n)
{
	for (size_t i = 0; i < n; i++)
		output_rec_clear(&o[i]);
	free(o);
}

static char *out_dir(struct sched *s, const struct node *n, const char *name)
{
	return xasprintf("%s/%s/out/%s", s->run_dir, n->step->id, name);
}

struct path_ctx {
	struct sched *s;
	struct node *n;
};

static enum subst_result lookup_paths(void *ctx, const char *ns,
				      const char *name, struct buf *out,
				      char *hint, size_t hint_size)
{
	struct path_ctx *pc = ctx;
	const struct step *st = pc->n->step;

	if (!strcmp(ns, "inputs")) {
		for (size_t i = 0; i < st->ninputs; i++)
			if (!strcmp(st->inputs[i].role, name)) {
				const struct output_rec *o = input_rec(pc->s, &st->inputs[i]);
				if (!o)
					return SUBST_UNKNOWN;
				buf_adds(out, o->path);
				return SUBST_OK;
			}
	} else if (!strcmp(ns, "outputs")) {
		for (size_t i = 0; i < st->noutputs; i++)
			if (!strcmp(st->outputs[i].name, name)) {
				char *p = out_dir(pc->s, pc->n, name);
				buf_adds(out, p);
				free(p);
				return SUBST_OK;
			}
	}
	return SUBST_UNKNOWN;
}

static void env_put(struct strv *env, const char *key, const char *value)
{
	strv_push_owned(env, xasprintf("%s=%s", key, value));
}

static char *upper_name(const char *prefix, const char *name)
{
	char *s = xasprintf("%s%s", prefix, name);
	for (char *p = s; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
		else if (!((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
			*p = '_';
	return s;
}

static char *slots_text(const int *slots, int n)
{
	struct buf b = BUF_INIT;

	buf_init(&b);
	for (int i = 0; i < n; i++)
		buf_printf(&b, "%s%d", i ? "," : "", slots[i]);
	return buf_detach(&b);
}

/* The step's complete environment: anneal's own (less any ANNEAL_*), the
 * recipe's env, then the engine contract. */
static int build_env(struct sched *s, struct node *n, const char *resume,
		     struct strv *env, struct err *err)
{
	const struct step *st = n->step;
	struct path_ctx pc = { s, n };
	struct buf b = BUF_INIT;
	char *v;
	int rc = 0;

	buf_init(&b);
	for (char **e = environ; *e; e++) {
		if (!strncmp(*e, "ANNEAL_", 7))
			continue;
		/* Devices are anneal's to hand out when it manages them. */
		if ((s->o->gpus > 0 && !strncmp(*e, "CUDA_VISIBLE_DEVICES=", 21)) ||
		    (s->o->npus > 0 && !strncmp(*e, "ASCEND_RT_VISIBLE_DEVICES=", 26)))
			continue;
		strv_push(env, *e);
	}
	for (size_t i = 0; i < st->nenv; i++) {
		buf_reset(&b);
		rc = subst_expand(st->env[i].value, lookup_paths, &pc, &b, err);
		if (rc) {
			err_prefix(err, "step '%s': env %s", st->id, st->env[i].key);
			goto done;
		}
		env_put(env, st->env[i].key, buf_str(&b));
	}
	v = xasprintf("%" PRId64, s->run);
	env_put(env, "ANNEAL_RUN_ID", v);
	free(v);
	env_put(env, "ANNEAL_STEP_ID", st->id);
	v = xasprintf("%d", n->attempt);
	env_put(env, "ANNEAL_ATTEMPT", v);
	free(v);
	v = xasprintf("%s/%s", s->run_dir, st->id);
	env_put(env, "ANNEAL_WORK_DIR", v);
	free(v);
	v = xasprintf("%s/%s/out", s->run_dir, st->id);
	env_put(env, "ANNEAL_OUTPUT_DIR", v);
	free(v);
	for (size_t i = 0; i < st->noutputs; i++) {
		char *k = upper_name("ANNEAL_OUTPUT_", st->outputs[i].name);
		v = out_dir(s, n, st->outputs[i].name);
		env_put(env, k, v);
		free(k);
		free(v);
	}
	for (size_t i = 0; i < st->ninputs; i++) {
		const struct output_rec *o = input_rec(s, &st->inputs[i]);
		char *k = upper_name("ANNEAL_INPUT_", st->inputs[i].role);
		env_put(env, k, o ? o->path : "");
		free(k);
	}
	if (st->params_json && strcmp(st->params_json, "{}")) {
		v = xasprintf("%s/%s/params.json", s->run_dir, st->id);
		env_put(env, "ANNEAL_PARAMS", v);
		free(v);
	} else {
		env_put(env, "ANNEAL_PARAMS", s->no_params_path);
	}
	v = fs_join(n->attempt_dir, "events.jsonl");
	env_put(env, "ANNEAL_EVENTS", v);
	free(v);
	v = xasprintf("%s/%s/ckpt", s->run_dir, st->id);
	env_put(env, "ANNEAL_CKPT_DIR", v);
	free(v);
	env_put(env, "ANNEAL_RESUME_FROM", resume ? resume : "");
	v = xasprintf("%d", n->cpus);
	env_put(env, "ANNEAL_CPUS", v);
	free(v);
	if (s->o->gpus > 0) {
		v = slots_text(n->gpu_slots, st->res.gpus);
		env_put(env, "CUDA_VISIBLE_DEVICES", v);
		free(v);
	}
	if (s->o->npus > 0) {
		v = slots_text(n->npu_slots, st->res.npus);
		env_put(env, "ASCEND_RT_VISIBLE_DEVICES", v);
		free(v);
	}
done:
	buf_free(&b);
	return rc;
}

/* ---- resources ------------------------------------------------------- */

static int step_cpus(const struct sched *s, const struct step *st)
{
	int c = st->res.cpus > 0 ? st->res.cpus : 1;
	return c > s->o->cpus ? s->o->cpus : c;
}

static int fits(const struct sched *s, const struct step *st)
{
	return s->jobs_free > 0 && step_cpus(s, st) <= s->cpus_free &&
	       (!s->o->mem_mb || st->res.mem_mb <= s->mem_free);
}

static int devices_free(const int *used, int cap, int want)
{
	int n = 0;
	for (int i = 0; i < cap; i++)
		n += !used[i];
	return n >= want;
}

static int *grant(int *used, int cap, int want)
{
	int *slots = xcalloc((size_t)(want > 0 ? want : 1), sizeof(int));
	for (int i = 0, k = 0; i < cap && k < want; i++)
		if (!used[i]) {
			used[i] = 1;
			slots[k++] = i;
		}
	return slots;
}

static void take(struct sched *s, struct node *n)
{
	const struct step *st = n->step;

	n->cpus = step_cpus(s, st);
	s->cpus_free -= n->cpus;
	s->jobs_free--;
	s->mem_free -= st->res.mem_mb;
	if (s->o->cluster)
		return;
	n->gpu_slots = grant(s->gpu_used, s->o->gpus, st->res.gpus);
	n->npu_slots = grant(s->npu_used, s->o->npus, st->res.npus);
}

static void give_back(struct sched *s, struct node *n)
{
	const struct step *st = n->step;

	s->cpus_free += n->cpus;
	s->jobs_free++;
	s->mem_free += st->res.mem_mb;
	for (int i = 0; n->gpu_slots && i < st->res.gpus; i++)
		s->gpu_used[n->gpu_slots[i]] = 0;
	for (int i = 0; n->npu_slots && i < st->res.npus; i++)
		s->npu_used[n->npu_slots[i]] = 0;
	free(n->gpu_slots);
	free(n->npu_slots);
	n->gpu_slots = n->npu_slots = NULL;
	n->cpus = 0;
}

/* ---- the cache --------------------------------------------------------- */

/* Whether the files at path are still the artifact's: every manifest entry
 * present with its size and, when it is the stored object itself (a hard
 * link, as ingest leaves it), that is enough; a file that is not is hashed.
 * Cheap for the common case, so that cache checks and resume points are
 * verified without re-reading a 100 GB checkpoint. */
/* Regular files under path (or 1 for a file), -1 if anything else is
 * there (a symlink, a FIFO): such a tree matches no manifest. */
static long count_files(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	long n = 0;

	if (lstat(path, &st) < 0)
		return -1;
	if (S_ISREG(st.st_mode))
		return 1;
	if (!S_ISDIR(st.st_mode) || !(d = opendir(path)))
		return -1;
	while (n >= 0 && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *sub = fs_join(path, de->d_name);
		long k = count_files(sub);
		free(sub);
		n = k < 0 ? -1 : n + k;
	}
	closedir(d);
	return n;
}

static int tree_matches(struct sched *s, int64_t artifact, const char *path)
{
	struct manifest m = { 0 };
	char *text = NULL;
	struct err e;
	int ok = 0;

	if (catalog_manifest(s->st, artifact, &text, &e) || manifest_parse(text, &m, &e))
		goto done;
	/* Nothing added either: an extra file is a changed output. */
	if (count_files(path) != (long)m.n)
		goto done;
	ok = 1;
	for (size_t i = 0; ok && i < m.n; i++) {
		const struct manifest_entry *me = &m.v[i];
		char *f = strcmp(me->path, ".") ? fs_join(path, me->path) : xstrdup(path);
		char *obj = store_object_path(s->store, &me->digest);
		struct stat fs, os;

		if (lstat(f, &fs) < 0 || !S_ISREG(fs.st_mode) || (uint64_t)fs.st_size != me->size) {
			ok = 0;
		} else if (stat(obj, &os) < 0 || (uint64_t)os.st_size != me->size) {
			ok = 0;   /* the store lost it: not reusable */
		} else if (fs.st_dev != os.st_dev || fs.st_ino != os.st_ino) {
			struct digest d;
			ok = sha256_file(f, &d, NULL, &e) == 0 &&
			     !memcmp(d.b, me->digest.b, DIGEST_LEN);
		}
		free(obj);
		free(f);
	}
done:
	manifest_free(&m);
	free(text);
	return ok;
}

static int outputs_intact(struct sched *s, const struct output_rec *o, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct tree_info ti;
		struct err e;
		char hex[DIGEST_HEX_LEN + 1];

		if (o[i].artifact) {
			if (!tree_matches(s, o[i].artifact, o[i].path))
				return 0;
			continue;
		}
		if (tree_digest(o[i].path, &ti, &e))
			return 0;
		digest_hex(&ti.digest, hex);
		if (strcmp(hex, o[i].digest))
			return 0;
	}
	return 1;
}

/* Ingests the tree at path into the store and registers it in the
 * catalog, with the step's inputs (and the checkpoint the attempt resumed
 * from) as parents. */
static int register_tree(struct sched *s, struct node *n, enum artifact_kind kind,
			 const struct step_output *out, const char *path,
			 long long engine_step, int64_t *id, char *digest,
			 uint64_t *bytes, struct err *err)
{
	const struct step *st = n->step;
	struct lineage_parent *p = xcalloc(st->ninputs + 2, sizeof(*p));
	struct manifest m = { 0 };
	struct artifact_new a = { 0 };
	char *dflt = NULL;
	size_t np = 0;
	int version, created, rc, gc_fd = -1;

	rc = workspace_gc_lock(s->ws, 0, &gc_fd, err);
	if (rc)
		goto done;
	/* Nothing on the way from the run's work dir may be a symlink: a
	 * step must not make anneal link (and chmod) files outside it. */
	rc = store_ingest_under(s->store, s->run_dir, path, STORE_LINK, 0, &m, err);
	if (rc)
		goto done;
	fault_point("ingested");
	digest_hex(&m.digest, digest);
	*bytes = m.bytes;
	for (size_t i = 0; i < st->ninputs; i++) {
		const struct output_rec *o = input_rec(s, &st->inputs[i]);
		if (o && o->artifact) {
			p[np].id = o->artifact;
			p[np].role = st->inputs[i].edge_role ? st->inputs[i].edge_role
							     : st->inputs[i].role;
			p[np].has_weight = st->inputs[i].has_weight;
			p[np].weight = st->inputs[i].weight;
			np++;
		}
	}
	if (n->resume_artifact) {
		p[np].id = n->resume_artifact;
		p[np].role = "resumed-from";
		np++;
	}
	a.kind = kind;
	if (out && !out->artifact)   /* a plan recorded without names: the default */
		dflt = xasprintf("%s.%s", st->stage ? st->stage : st->id, out->name);
	a.name = out ? (out->artifact ? out->artifact : dflt) : NULL;
	a.type = out ? out->type : ART_CHECKPOINT;
	a.digest = digest;
	a.manifest = m.text;
	a.bytes = m.bytes;
	a.files = m.n;
	a.run_id = s->run;
	a.step = st->id;
	a.attempt = n->attempt;
	a.engine_step = engine_step;
	a.step_key = n->key;
	a.recipe_digest = s->recipe_digest;
	a.git_commit = s->git_commit;
	a.git_dirty = s->git_dirty;
	a.path = path;
	a.parents = p;
	a.nparents = np;
	rc = catalog_register(s->st, &a, id, &version, &created, err);
	if (!rc)
		fault_point("registered");
done:
	if (gc_fd >= 0)
		close(gc_fd);
	manifest_free(&m);
	free(dflt);
	free(p);
	return rc;
}

static int compute_key(struct sched *s, struct node *n, struct err *err)
{
	const struct step *st = n->step;
	struct key_input *in = xcalloc(st->ninputs + 1, sizeof(*in));
	char key[DIGEST_HEX_LEN + 1];
	int rc = 0;

	for (size_t i = 0; i < st->ninputs; i++) {
		const struct output_rec *o = input_rec(s, &st->inputs[i]);
		if (!o) {
			rc = err_set(err, ERR_SYSTEM,
				     "step '%s': input '%s': %s%s%s has no recorded output",
				     st->id, st->inputs[i].role,
				     st->inputs[i].from_step ? st->inputs[i].from_step : "@",
				     st->inputs[i].from_step ? "." : "",
				     st->inputs[i].from_output ? st->inputs[i].from_output
							       : (st->inputs[i].ref ? st->inputs[i].ref : ""));
			goto done;
		}
		in[i].role = st->inputs[i].role;
		in[i].digest = o->digest;
	}
	rc = plan_cache_key(st, st->params_json ? st->params_json : "{}", in,
			    st->ninputs, s->ws->root, NULL, key, err);
	if (rc)
		goto done;
	n->key = xstrdup(key);
	rc = state_step_set_cache_key(s->st, s->run, st->id, key, err);
done:
	free(in);
	return rc;
}

/* Reuses an earlier intact result with the same key. 1 if it did. */
static int try_cache(struct sched *s, struct node *n, struct err *err)
{
	struct cache_hit *hits = NULL;
	size_t nhits = 0;
	int rc, used = 0;

	rc = state_cache_candidates(s->st, n->key, &hits, &nhits, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < nhits && !used; i++) {
		if (hits[i].run_id == s->run)
			continue;
		if (!outputs_intact(s, hits[i].outputs, hits[i].noutputs))
			continue;
		rc = state_step_mark_cached(s->st, s->run, n->step->id,
					    hits[i].run_id, hits[i].step, err);
		if (rc)
			break;
		fault_point("cached");
		n->state = STEP_CACHED;
		n->outs = hits[i].outputs;
		n->nouts = hits[i].noutputs;
		hits[i].outputs = NULL;
		hits[i].noutputs = 0;
		used = 1;
		char text[64];
		snprintf(text, sizeof(text), "from run %" PRId64, hits[i].run_id);
		report(s, SR_CACHED, n, text);
	}
	for (size_t i = 0; i < nhits; i++)
		cache_hit_clear(&hits[i]);
	free(hits);
	return rc ? rc : used;
}

/* ---- starting a step --------------------------------------------------- */

static int prepare_dirs(struct sched *s, struct node *n, struct err *err)
{
	const struct step *st = n->step;
	char *p;
	int rc;

	free(n->attempt_dir);
	n->attempt_dir = xasprintf("%s/%s/a%d", s->run_dir, st->id, n->attempt);
	/* An attempt directory left by a try that never got recorded (a crash
	 * between mkdir and the transaction) is stale: start it afresh. */
	rc = fs_remove_tree(n->attempt_dir, err);
	if (!rc)
		rc = fs_mkdir_p(n->attempt_dir, 0777, err);
	if (rc)
		return rc;
	p = xasprintf("%s/%s/ckpt", s->run_dir, st->id);
	rc = fs_mkdir_p(p, 0777, err);
	free(p);
	if (!rc && st->params_json && strcmp(st->params_json, "{}")) {
		p = xasprintf("%s/%s/params.json", s->run_dir, st->id);
		rc = fs_write_replace(p, st->params_json, strlen(st->params_json), 0644, err);
		free(p);
	}
	/* Outputs start empty on every attempt: exit 0 must mean "this
	 * attempt wrote all of it". Checkpoints (ckpt/) carry progress. */
	for (size_t i = 0; !rc && i < st->noutputs; i++) {
		p = out_dir(s, n, st->outputs[i].name);
		rc = fs_remove_tree(p, err);
		if (!rc)
			rc = fs_mkdir_p(p, 0777, err);
		free(p);
	}
	return rc;
}

/* The resume point: the step's latest checkpoint, verified against what
 * was recorded (every file present, the right size, the stored bytes). A
 * checkpoint that fails is not used: the step starts afresh rather than
 * from damaged state. */
static char *latest_checkpoint(struct sched *s, struct node *n)
{
	struct err e;
	char *path = NULL;
	long long es;
	int64_t art = 0;

	n->resume_artifact = 0;
	if (state_checkpoint_latest(s->st, s->run, n->step->id, &path, &es, &art, &e))
		return NULL;
	if (!fs_is_dir(path) || (art && !tree_matches(s, art, path))) {
		log_warn("step '%s': checkpoint '%s' is gone or damaged; starting afresh",
			 n->step->id, path);
		free(path);
		return NULL;
	}
	n->resume_artifact = art;
	return path;
}

static int end_attempt(struct sched *s, struct node *n,
		       const struct job_done *jd, struct err *err);

/* plan_which, remembered per (program, PATH): a run of 10,000 steps of
 * one engine searches PATH once. Returns a malloc'd copy or NULL. */
static char *which_memo(struct sched *s, const char *prog, const char *path)
{
	for (size_t i = 0; i < s->nwhich; i++)
		if (!strcmp(s->which[i].prog, prog) &&
		    !strcmp(s->which[i].path, path ? path : ""))
			return s->which[i].full ? xstrdup(s->which[i].full) : NULL;
	if (s->nwhich == s->capwhich) {
		s->capwhich = s->capwhich ? s->capwhich * 2 : 8;
		s->which = xrealloc(s->which, s->capwhich * sizeof(*s->which));
	}
	s->which[s->nwhich].prog = xstrdup(prog);
	s->which[s->nwhich].path = xstrdup(path ? path : "");
	s->which[s->nwhich].full = plan_which(prog, s->ws->root, path);
	s->nwhich++;
	return s->which[s->nwhich - 1].full ? xstrdup(s->which[s->nwhich - 1].full) : NULL;
}

static int start_step(struct sched *s, struct node *n, struct err *err)
{
	const struct step *st = n->step;
	struct path_ctx pc = { s, n };
	struct strv argv = STRV_INIT, env = STRV_INIT;
	struct job_spec spec;
	struct buf b = BUF_INIT;
	char *resume = NULL;
	int rc;

	take(s, n);
	n->attempt++;
	rc = prepare_dirs(s, n, err);
	if (rc)
		goto done;
	resume = latest_checkpoint(s, n);
	rc = state_attempt_begin(s->st, s->run, st->id, n->attempt, resume, err);
	if (rc)
		goto done;
	fault_point("attempt-begun");
	n->state = STEP_RUNNING;
	n->live = 1;
	s->live++;
	n->started = now_mono();
	n->deadline = st->timeout_s && !s->r->ops->enforces_limits
		      ? n->started + (double)st->timeout_s : 0;
	n->kill_at = 0;
	n->timed_out = 0;
	n->ckpts = 0;
	events_reader_clear(&n->ev);
	events_reader_init(&n->ev, "", 0);
	free(n->ev.path);
	n->ev.path = fs_join(n->attempt_dir, "events.jsonl");
	n->ev_open = 1;
	n->ev_recorded = 0;

	buf_init(&b);
	for (size_t i = 0; i < st->argc; i++) {
		buf_reset(&b);
		rc = subst_expand(st->argv[i], lookup_paths, &pc, &b, err);
		if (rc)
			break;
		strv_push(&argv, buf_str(&b));
	}
	if (!rc)
		rc = build_env(s, n, resume, &env, err);
	if (!rc && !strchr(argv.v[0], '/')) {
		/* Found once here rather than by every exec of every step. */
		const char *path = NULL;
		for (size_t i = 0; i < env.n; i++)
			if (!strncmp(env.v[i], "PATH=", 5))
				path = env.v[i] + 5;
		char *full = which_memo(s, argv.v[0], path);
		if (full) {
			free(argv.v[0]);
			argv.v[0] = full;
		}
	}
	if (!rc) {
		memset(&spec, 0, sizeof(spec));
		char run_id[32];
		snprintf(run_id, sizeof(run_id), "%" PRId64, s->run);
		spec.run_id = run_id;
		spec.step_id = st->id;
		spec.attempt = n->attempt;
		spec.argv = argv.v;
		spec.envp = env.v;
		spec.cwd = s->ws->root;
		spec.attempt_dir = n->attempt_dir;
		spec.cpus = n->cpus;
		spec.gpus = st->res.gpus;
		spec.npus = st->res.npus;
		spec.nodes = st->res.nodes;
		spec.tasks_per_node = st->res.tasks_per_node;
		spec.mem_mb = st->res.mem_mb;
		spec.timeout_s = st->timeout_s;
		spec.runner_json = st->runner_json;
		spec.cookie = n;
		rc = s->r->ops->submit(s->r, &spec, &n->handle, err);
	}
	if (rc) {
		/* The step could not start: that is this attempt's outcome. */
		struct job_done jd = { .cookie = n, .end = JOB_SPAWN_FAILED, .exit_code = -1 };
		snprintf(jd.detail, sizeof(jd.detail), "%.250s", err->msg);
		err_clear(err);
		rc = end_attempt(s, n, &jd, err);
		goto done;
	}
	fault_point("submitted");
	{
		char host[256] = "";
		struct buf aj = BUF_INIT;
		buf_init(&aj);
		buf_addc(&aj, '[');
		for (size_t i = 0; i < argv.n; i++) {
			if (i)
				buf_addc(&aj, ',');
			buf_add_json_str(&aj, argv.v[i]);
		}
		buf_addc(&aj, ']');
		gethostname(host, sizeof(host) - 1);
		rc = state_attempt_set_launch(s->st, s->run, st->id, n->attempt,
					      n->handle.id, host, buf_str(&aj), err);
		buf_free(&aj);
	}
	if (rc)
		goto done;
	fault_point("handle-recorded");
	report(s, SR_START, n, resume);
done:
	free(resume);
	buf_free(&b);
	strv_free(&argv);
	strv_free(&env);
	return rc;
}

/* ---- events ------------------------------------------------------------ */

struct ev_ctx {
	struct sched *s;
	struct node *n;
};

static void on_event(void *ctx, const struct ev *ev)
{
	struct ev_ctx *ec = ctx;
	struct sched *s = ec->s;
	struct node *n = ec->n;
	struct event_rec *r;
	struct err e;

	if (ev->type == EVT_CHECKPOINT) {
		char *ck = xasprintf("%s/%s/ckpt", s->run_dir, n->step->id);
		size_t cl = strlen(ck);
		char *dir = ev->dir[0] == '/' ? xstrdup(ev->dir) : xasprintf("%s/%s", ck, ev->dir);
		/* A checkpoint lives in ANNEAL_CKPT_DIR: storing one from
		 * elsewhere ("/home/me", "../../..") would link, and make
		 * read-only, files that are not the step's. */
		int inside = !strncmp(dir, ck, cl) && dir[cl] == '/' && fs_relpath_safe(dir + cl + 1);

		free(ck);
		/* Only complete directories count: the engine renames a finished
		 * checkpoint into place before announcing it. */
		if (!inside || !fs_is_dir(dir)) {
			char *w = xasprintf(inside ? "checkpoint '%s' is not a directory; ignored"
					    : "checkpoint '%s' is not inside ANNEAL_CKPT_DIR; ignored",
					    dir);
			if (state_events_add(s->st, s->run, n->step->id, n->attempt,
					     &(struct event_rec){ .kind = EV_WARNING,
						     .engine_step = -1, .text = w }, 1, -1, &e))
				log_warn("%s", e.msg);
			report(s, SR_WARNING, n, w);
			free(w);
		} else {
			char digest[DIGEST_HEX_LEN + 1];
			uint64_t bytes;
			int64_t art = 0;
			/* A checkpoint is an artifact too: stored (by hard links,
			 * no copy), versioned by lineage, linked to the step. */
			if (register_tree(s, n, AK_INTERMEDIATE, NULL, dir, ev->step, &art,
					  digest, &bytes, &e) ||
			    state_checkpoint_add(s->st, s->run, n->step->id, n->attempt,
						 ev->step, dir, digest, art, &e)) {
				log_warn("step '%s': checkpoint '%s': %s", n->step->id, dir, e.msg);
			} else {
				n->ckpts++;
				fault_point("checkpoint-recorded");
			}
		}
		free(dir);
		return;
	}
	if (s->nev == s->capev) {
		s->capev = s->capev ? s->capev * 2 : 64;
		s->evbuf = xrealloc(s->evbuf, s->capev * sizeof(*s->evbuf));
	}
	r = &s->evbuf[s->nev++];
	memset(r, 0, sizeof(*r));
	r->engine_step = ev->step;
	switch (ev->type) {
	case EVT_METRIC:
		r->kind = EV_METRIC;
		/* Names are copied: the reader's buffer is reused per line. */
		r->name = (const char *)(uintptr_t)s->evnames.len;
		buf_add(&s->evnames, ev->name, strlen(ev->name) + 1);
		r->value = ev->value;
		free(n->metric_name);
		n->metric_name = xstrdup(ev->name);
		n->metric_value = ev->value;
		break;
	case EVT_PROGRESS:
		r->kind = EV_PROGRESS;
		r->value = ev->value;
		r->total = ev->total;
		break;
	default:
		r->kind = EV_WARNING;
		r->text = (const char *)(uintptr_t)s->evnames.len;
		buf_add(&s->evnames, ev->text, strlen(ev->text) + 1);
		report(s, SR_WARNING, n, ev->text);
		break;
	}
}

/* What one poll reads of a step's events file: a runaway writer cannot
 * keep the loop from the other steps. */
#define EVENTS_POLL_BYTES (4u << 20)

/* Reads what the step appended to its events file and records it. */
static int follow_events(struct sched *s, struct node *n, struct err *err)
{
	struct ev_ctx ec = { s, n };
	int rc;

	if (!n->ev_open)
		return 0;
	s->nev = 0;
	buf_reset(&s->evnames);
	rc = events_read(&n->ev, EVENTS_POLL_BYTES, on_event, &ec, err);
	if (rc)
		return rc;
	if (!s->nev && n->ev.offset == n->ev_recorded)
		return 0;
	/* Offsets into evnames become pointers now that it stopped growing. */
	for (size_t i = 0; i < s->nev; i++) {
		if (s->evbuf[i].kind == EV_METRIC)
			s->evbuf[i].name = s->evnames.ptr + (uintptr_t)s->evbuf[i].name;
		if (s->evbuf[i].kind == EV_WARNING)
			s->evbuf[i].text = s->evnames.ptr + (uintptr_t)s->evbuf[i].text;
	}
	rc = state_events_add(s->st, s->run, n->step->id, n->attempt,
			      s->evbuf, s->nev, (long long)n->ev.offset, err);
	if (!rc)
		n->ev_recorded = n->ev.offset;
	return rc;
}

/* ---- ending an attempt --------------------------------------------------- */

static int collect_outputs(struct sched *s, struct node *n,
			   struct output_rec **outp, size_t *np, struct err *err)
{
	const struct step *st = n->step;
	struct output_rec *o = xcalloc(st->noutputs + 1, sizeof(*o));
	int rc = 0;

	for (size_t i = 0; i < st->noutputs; i++) {
		o[i].name = xstrdup(st->outputs[i].name);
		o[i].type = st->outputs[i].type;
		o[i].path = out_dir(s, n, st->outputs[i].name);
		rc = register_tree(s, n, AK_OUTPUT, &st->outputs[i], o[i].path, -1,
				   &o[i].artifact, o[i].digest, &o[i].bytes, err);
		if (rc) {
			err_prefix(err, "output '%s'", st->outputs[i].name);
			free_outs(o, i + 1);
			return rc;
		}
	}
	*outp = o;
	*np = st->noutputs;
	return 0;
}

static double backoff(const struct step *st, int retry)
{
	double d = st->retry.backoff_s;
	for (int i = 1; i < retry && d < 300; i++)
		d *= 2;
	return d > 300 ? 300 : d;
}

/* The workspace itself cannot take what must be written (a full disk, a
 * quota, a read-only or failing file system, permissions anneal lacks):
 * no step's fault, and fixed outside anneal. A step's output that is
 * missing or malformed is the step's. */
static int workspace_trouble(const struct err *e)
{
	switch (e->code == ERR_SYSTEM ? e->sys_errno : 0) {
	case ENOSPC:
	case EDQUOT:
	case EROFS:
	case EIO:
	case EACCES:
	case EPERM:
		return 1;
	default:
		return 0;
	}
}

static int end_attempt(struct sched *s, struct node *n,
		       const struct job_done *jd, struct err *err)
{
	const struct step *st = n->step;
	struct attempt_end ae = { .exit_code = -1 };
	struct output_rec *outs = NULL;
	size_t nouts = 0;
	char reason[512] = "";
	int rc;
	enum sched_report_kind rk;

	if (n->live) {
		n->live = 0;
		s->live--;
		give_back(s, n);
	}
	/* The last words of the step: all of them (up to the reader's
	 * limit, EVENTS_FILE_MAX), in bounded pieces, each recorded. */
	for (;;) {
		off_t before = n->ev.offset;
		rc = follow_events(s, n, err);
		if (rc)
			return rc;
		if (!n->ev_open || n->ev.offset - before < (off_t)EVENTS_POLL_BYTES)
			break;
	}
	n->ev_open = 0;

	if (jd->end == JOB_EXITED)
		ae.exit_code = jd->exit_code;
	if (jd->end == JOB_SIGNALED)
		ae.signal = jd->signal;

	if (jd->end == JOB_EXITED && jd->exit_code == 0) {
		struct err oe;
		if (collect_outputs(s, n, &outs, &nouts, &oe) == 0) {
			ae.state = ATT_SUCCEEDED;
		} else if (workspace_trouble(&oe)) {
			/* Not the step's fault, and its work is done: leave the
			 * attempt unrecorded (running) and stop; resume finds its
			 * exit status and stores the outputs once there is room. */
			*err = oe;
			return err_prefix(err, "step '%s'", st->id);
		} else {
			ae.state = ATT_FAILED;
			snprintf(reason, sizeof(reason), "exit 0 but %.400s", oe.msg);
		}
	} else if (n->timed_out) {
		ae.state = ATT_TIMEOUT;
		snprintf(reason, sizeof(reason), "timed out after %llds",
			 (long long)st->timeout_s);
	} else if (s->stop != STOP_NONE && jd->end != JOB_SPAWN_FAILED) {
		ae.state = s->stop == STOP_CANCEL ? ATT_CANCELLED : ATT_INTERRUPTED;
		snprintf(reason, sizeof(reason), "%s",
			 s->stop == STOP_CANCEL ? "cancelled" : "interrupted");
	} else if (jd->end == JOB_EXITED && jd->exit_code == 75) {
		ae.state = ATT_REQUEUED;
		snprintf(reason, sizeof(reason), "exit 75 (interrupted, resumable)");
	} else if (jd->time_limit && n->ckpts > 0) {
		/* The cluster's per-job limit, after progress was saved: go on
		 * from the checkpoint in a new job, without spending a retry. */
		ae.state = ATT_REQUEUED;
		snprintf(reason, sizeof(reason), "time limit after a checkpoint: requeued (%.200s)",
			 jd->detail);
	} else if (jd->end == JOB_LOST) {
		ae.state = ATT_LOST;
		snprintf(reason, sizeof(reason), "lost: %s",
			 jd->detail[0] ? jd->detail : "ended without an exit status");
	} else {
		ae.state = ATT_FAILED;
		if (jd->end == JOB_EXITED)
			snprintf(reason, sizeof(reason), "exit %d", jd->exit_code);
		else if (jd->end == JOB_SIGNALED)
			snprintf(reason, sizeof(reason), "killed by signal %d (%s)",
				 jd->signal, strsignal(jd->signal));
		else
			snprintf(reason, sizeof(reason), "%s", jd->detail);
	}

	/* What becomes of the step. */
	switch (ae.state) {
	case ATT_SUCCEEDED:
		ae.step_state = STEP_SUCCEEDED;
		rk = SR_SUCCEEDED;
		break;
	case ATT_CANCELLED:
		ae.step_state = STEP_CANCELLED;
		rk = SR_STOPPED;
		break;
	case ATT_INTERRUPTED:
		ae.step_state = STEP_PENDING;
		rk = SR_STOPPED;
		break;
	case ATT_REQUEUED:
	case ATT_LOST:
		if (++n->requeues > s->o->max_requeues) {
			size_t l = strlen(reason);
			snprintf(reason + l, sizeof(reason) - l,
				 "; gave up after %d restarts", s->o->max_requeues);
			ae.step_state = STEP_FAILED;
			rk = SR_FAILED;
		} else {
			ae.step_state = STEP_PENDING;
			rk = SR_REQUEUED;
		}
		break;
	default:
		if (n->retries_used < st->retry.max) {
			n->retries_used++;
			n->not_before = now_mono() + backoff(st, n->retries_used);
			ae.step_state = STEP_PENDING;
			rk = SR_RETRY;
		} else {
			ae.step_state = STEP_FAILED;
			rk = SR_FAILED;
		}
		break;
	}
	/* A retry is spent only when one follows: the attempt that ends a
	 * step for good used none. */
	ae.spends_retry = rk == SR_RETRY;
	ae.reason = reason[0] ? reason : NULL;
	ae.outputs = outs;
	ae.noutputs = nouts;
	rc = state_attempt_end(s->st, s->run, st->id, n->attempt, &ae, err);
	if (rc) {
		free_outs(outs, nouts);
		return rc;
	}
	n->state = ae.step_state;
	if (rk == SR_RETRY) {
		char text[600];
		snprintf(text, sizeof(text), "%s; retry %d of %d in %.0fs", reason,
			 n->retries_used, st->retry.max, backoff(st, n->retries_used));
		report(s, rk, n, text);
	} else {
		report(s, rk, n, ae.reason);
	}
	if (n->state == STEP_SUCCEEDED) {
		free_outs(n->outs, n->nouts);
		n->outs = outs;
		n->nouts = nouts;
		mark_done(s, n);
	} else {
		free_outs(outs, nouts);
		if (n->state == STEP_PENDING && s->stop == STOP_NONE)
			push_ready(s, n);
		if (n->state == STEP_FAILED) {
			if (!s->failed)
				snprintf(s->first_failure, sizeof(s->first_failure),
					 "step '%s' failed: %s (anneal logs %" PRId64 " %s)",
					 st->id, reason, s->run, st->id);
			s->failed = 1;
		}
	}
	return 0;
}

/* ---- stopping ---------------------------------------------------------- */

static void signal_live(struct sched *s, int sig)
{
	struct err e;

	for (size_t i = 0; i < s->nsteps; i++) {
		struct node *n = &s->nodes[i];
		if (!n->live)
			continue;
		if (s->r->ops->cancel(s->r, &n->handle, sig, &e))
			log_warn("step '%s': %s", n->step->id, e.msg);
		if (sig == SIGTERM)
			n->kill_at = now_mono() + s->o->grace_s;
		else if (sig == SIGKILL)
			n->kill_at = 0;
	}
}

static void begin_stop(struct sched *s, enum stop_mode mode)
{
	if (s->stop == STOP_NONE) {
		s->stop = mode;
		signal_live(s, SIGTERM);
	}
}

static void check_stop(struct sched *s)
{
	double now = now_mono();
	int req = stop_requests;

	if (req && s->stop == STOP_NONE) {
		struct run_info ri;
		struct err e;
		enum stop_mode mode = STOP_INTERRUPT;
		/* `anneal cancel` marks the run, then signals its driver. */
		if (state_run_get(s->st, s->run, &ri, &e) == 0) {
			if (ri.cancel_requested)
				mode = STOP_CANCEL;
			run_info_clear(&ri);
		}
		if (mode == STOP_INTERRUPT && s->live && s->o->leave_jobs &&
		    s->o->leave_jobs(s->o->leave_ctx, s->live))
			s->stop = STOP_LEAVE;   /* nothing signalled */
		else
			begin_stop(s, mode);
	}
	if (s->stop == STOP_LEAVE)
		return;
	if (req >= 2 && !s->hard_stop) {
		s->hard_stop = 1;
		signal_live(s, SIGKILL);
	}
	if (s->stop == STOP_NONE && now - s->last_cancel_check >= 1.0) {
		struct run_info ri;
		struct err e;
		s->last_cancel_check = now;
		if (state_run_get(s->st, s->run, &ri, &e) == 0) {
			if (ri.cancel_requested)
				begin_stop(s, STOP_CANCEL);
			run_info_clear(&ri);
		}
	}
}

static void check_timeouts(struct sched *s)
{
	double now = now_mono();
	struct err e;

	for (size_t i = 0; i < s->nsteps; i++) {
		struct node *n = &s->nodes[i];
		if (!n->live)
			continue;
		if (n->deadline && now >= n->deadline && !n->timed_out && s->stop == STOP_NONE) {
			n->timed_out = 1;
			if (s->r->ops->cancel(s->r, &n->handle, SIGTERM, &e))
				log_warn("step '%s': %s", n->step->id, e.msg);
			n->kill_at = now + s->o->grace_s;
		}
		if (n->kill_at && now >= n->kill_at) {
			n->kill_at = 0;
			if (s->r->ops->cancel(s->r, &n->handle, SIGKILL, &e))
				log_warn("step '%s': %s", n->step->id, e.msg);
		}
	}
}

/* ---- the loop ------------------------------------------------------------ */

/* Starts what can start; returns the seconds until a backoff expires (or
 * -1 when none is waiting). */
static int start_ready(struct sched *s, double *wait_s, struct err *err)
{
	double now = now_mono();
	int rc = 0;

	*wait_s = -1;
	for (size_t pos = 0; pos < s->nready;) {
		struct node *n = &s->nodes[s->ready[pos]];

		if (s->stop != STOP_NONE || (s->failed && !s->o->keep_going))
			break;
		if (n->state != STEP_PENDING || n->unmet) {
			remove_ready(s, pos);
			continue;
		}
		if (n->not_before > now) {
			double w = n->not_before - now;
			if (*wait_s < 0 || w < *wait_s)
				*wait_s = w;
			pos++;
			continue;
		}
		if (!n->key && !s->o->no_cache) {
			rc = compute_key(s, n, err);
			if (rc)
				return rc;
			rc = try_cache(s, n, err);
			if (rc < 0)
				return rc;
			if (rc == 1) {
				rc = 0;
				remove_ready(s, pos);
				mark_done(s, n);
				continue;
			}
		} else if (!n->key) {
			rc = compute_key(s, n, err);
			if (rc)
				return rc;
		}
		if (!fits(s, n->step) ||
		    (!s->o->cluster &&
		     (!devices_free(s->gpu_used, s->o->gpus, n->step->res.gpus) ||
		      !devices_free(s->npu_used, s->o->npus, n->step->res.npus)))) {
			pos++;
			continue;
		}
		remove_ready(s, pos);
		rc = start_step(s, n, err);
		if (rc)
			return rc;
	}
	return 0;
}

static void tick(struct sched *s)
{
	double now = now_mono();
	struct node *pick = NULL;

	if (now - s->last_tick < 0.5)
		return;
	s->last_tick = now;
	for (size_t i = 0; i < s->nsteps; i++) {
		struct node *n = &s->nodes[i];
		if (n->live && (!pick || n->started > pick->started))
			pick = n;
	}
	report(s, SR_TICK, pick, NULL);
}

static int loop(struct sched *s, struct err *err)
{
	struct job_done done[32];
	int rc = 0;

	for (;;) {
		double wait_s;
		int timeout_ms;
		size_t nd = 0;

		check_stop(s);
		if (s->stop == STOP_LEAVE)
			break;
		rc = start_ready(s, &wait_s, err);
		if (rc)
			return rc;
		if (!s->live) {
			if (s->stop != STOP_NONE || wait_s < 0 ||
			    (s->failed && !s->o->keep_going))
				break;
		}
		/* Follow events often enough for a live progress line; finished
		 * jobs wake us at once through the runner. */
		timeout_ms = s->live ? 250 : 1000;
		if (wait_s >= 0 && wait_s * 1000 < timeout_ms)
			timeout_ms = (int)(wait_s * 1000) + 1;
		rc = s->r->ops->poll(s->r, timeout_ms, done, 32, &nd, err);
		if (rc)
			return rc;
		for (size_t i = 0; i < nd; i++) {
			fault_point("job-ended");
			rc = end_attempt(s, done[i].cookie, &done[i], err);
			if (rc)
				return rc;
			fault_point("attempt-ended");
		}
		for (size_t i = 0; i < s->nsteps && s->live; i++)
			if (s->nodes[i].live) {
				rc = follow_events(s, &s->nodes[i], err);
				if (rc)
					return rc;
			}
		check_timeouts(s);
		tick(s);
	}
	return 0;
}

/* ---- set-up: a fresh run or a resumed one ----------------------------------- */

/* Makes every "@REF" input readable: its recorded path when the files
 * there are still the artifact's, else a checkout from the store (hard
 * links) under store/checkouts/<digest>. */
static int prepare_artifact_inputs(struct sched *s, struct err *err)
{
	for (size_t i = 0; i < s->nsteps; i++) {
		const struct step *st = &s->steps[i];
		for (size_t k = 0; k < st->ninputs; k++) {
			const struct step_input *in = &st->inputs[k];
			struct artifact_info a;
			struct output_rec *o;
			int rc, dup = 0;

			if (!in->artifact)
				continue;
			for (size_t j = 0; j < s->next; j++)
				dup |= s->ext[j].artifact == in->artifact;
			if (dup)
				continue;
			rc = catalog_get(s->st, in->artifact, &a, err);
			if (rc)
				return err_prefix(err, "step '%s': input '%s'", st->id, in->role);
			s->ext = xrealloc(s->ext, (s->next + 1) * sizeof(*s->ext));
			o = &s->ext[s->next++];
			memset(o, 0, sizeof(*o));
			o->name = xstrdup(in->role);
			o->type = a.type;
			memcpy(o->digest, a.digest, sizeof(o->digest));
			o->bytes = a.bytes;
			o->artifact = a.id;
			if (a.path && tree_matches(s, a.id, a.path)) {
				o->path = xstrdup(a.path);
			} else {
				struct manifest m = { 0 };
				char *text = NULL;
				o->path = xasprintf("%s/store/checkouts/%s", s->ws->dir, a.digest);
				if (!fs_exists(o->path)) {
					char *parent = xasprintf("%s/store/checkouts", s->ws->dir);
					rc = fs_mkdir_p(parent, 0700, err);
					free(parent);
					if (!rc)
						rc = catalog_manifest(s->st, a.id, &text, err);
					if (!rc)
						rc = manifest_parse(text, &m, err);
					if (!rc)
						rc = store_checkout(s->store, &m, o->path, err);
					manifest_free(&m);
					free(text);
					if (rc) {
						err_prefix(err, "step '%s': input '%s' (@%s)", st->id,
							   in->role, in->ref ? in->ref : "");
						artifact_info_clear(&a);
						return rc;
					}
				}
			}
			artifact_info_clear(&a);
		}
	}
	return 0;
}

static int setup(struct sched *s, struct err *err)
{
	struct step_info *info = NULL;
	size_t ninfo = 0;
	struct run_info ri = { 0 };
	char *params_text = NULL;
	int rc;

	rc = state_run_get(s->st, s->run, &ri, err);
	if (rc)
		goto done;
	s->params_json = xstrdup(ri.params_json ? ri.params_json : "{}");
	s->recipe_digest = ri.recipe_digest ? xstrdup(ri.recipe_digest) : NULL;
	{
		char *json = NULL;
		rc = catalog_run_provenance(s->st, s->run, &json, &s->git_commit,
					    &s->git_dirty, err);
		free(json);
		if (rc)
			goto done;
		char *root = fs_join(s->ws->dir, "store");
		rc = store_open(&s->store, root, err);
		free(root);
		if (rc)
			goto done;
	}
	s->run_dir = workspace_run_dir(s->ws, s->run);
	rc = fs_mkdir_p(s->run_dir, 0777, err);
	if (rc)
		goto done;
	/* The run's params for people to read; each step sees only its own
	 * (steps/<id>/params.json), or this empty object. */
	s->params_path = fs_join(s->run_dir, "params.json");
	rc = fs_write_replace(s->params_path, s->params_json, strlen(s->params_json),
			      0644, err);
	if (rc)
		goto done;
	s->no_params_path = fs_join(s->run_dir, "no-params.json");
	rc = fs_write_replace(s->no_params_path, "{}", 2, 0644, err);
	if (rc)
		goto done;
	rc = state_steps_load(s->st, s->run, &s->steps, &s->nsteps, err);
	if (rc)
		goto done;
	rc = prepare_artifact_inputs(s, err);
	if (rc)
		goto done;
	rc = dag_build(s->steps, s->nsteps, &s->dag, err);
	if (rc)
		goto done;
	rc = state_steps_info(s->st, s->run, &info, &ninfo, err);
	if (rc)
		goto done;
	if (ninfo != s->nsteps) {
		rc = err_set(err, ERR_SYSTEM, "state database: run %" PRId64
			     " has %zu steps but %zu step states", s->run, s->nsteps, ninfo);
		goto done;
	}
	s->nodes = xcalloc(s->nsteps + 1, sizeof(*s->nodes));
	s->ready = xcalloc(s->nsteps + 1, sizeof(*s->ready));
	for (size_t i = 0; i < s->nsteps; i++) {
		struct node *n = &s->nodes[i];
		n->step = &s->steps[i];
		n->idx = i;
		n->state = info[i].state;
		n->attempt = info[i].attempts;
		n->unmet = s->dag->ndeps[i];
		events_reader_init(&n->ev, "", 0);
	}
	/* Settle each step's state before anything is released. */
	for (size_t i = 0; i < s->nsteps; i++) {
		struct node *n = &s->nodes[i];
		switch (n->state) {
		case STEP_SUCCEEDED:
		case STEP_CACHED:
			rc = state_step_outputs(s->st, s->run, n->step->id, &n->outs,
						&n->nouts, err);
			if (rc)
				goto done;
			if (info[i].cache_key)
				n->key = xstrdup(info[i].cache_key);
			break;
		case STEP_FAILED:
		case STEP_CANCELLED:
			/* A resumed run gives these a fresh retry budget. */
			rc = state_step_set_state(s->st, s->run, n->step->id,
						  STEP_PENDING, err);
			if (rc)
				goto done;
			n->state = STEP_PENDING;
			break;
		default:
			break;
		}
	}
	for (size_t i = 0; i < s->nsteps; i++) {
		struct node *n = &s->nodes[i];
		if (n->state == STEP_SUCCEEDED || n->state == STEP_CACHED)
			mark_done(s, n);
	}
	/* Jobs of an earlier driver: re-attach, or record how they ended. */
	for (size_t i = 0; i < s->nsteps; i++) {
		struct node *n = &s->nodes[i];
		struct job_done jd;
		int alive = 0;

		if (n->state != STEP_RUNNING)
			continue;
		if (info[i].last_attempt == 0 || info[i].last_attempt_state != ATT_RUNNING) {
			rc = state_step_set_state(s->st, s->run, n->step->id, STEP_PENDING, err);
			if (rc)
				goto done;
			n->state = STEP_PENDING;
			push_ready(s, n);
			continue;
		}
		n->attempt = info[i].last_attempt;
		n->attempt_dir = xasprintf("%s/%s/a%d", s->run_dir, n->step->id, n->attempt);
		{
			/* Its outputs' lineage names the checkpoint it resumed from. */
			struct attempt_info *ai = NULL;
			size_t na = 0;
			rc = state_attempts_list(s->st, s->run, n->step->id, &ai, &na, err);
			for (size_t k = 0; !rc && k < na; k++)
				if (ai[k].n == n->attempt && ai[k].resumed_from)
					rc = state_checkpoint_artifact(s->st, s->run, n->step->id,
								       ai[k].resumed_from,
								       &n->resume_artifact, err);
			for (size_t k = 0; k < na; k++)
				attempt_info_clear(&ai[k]);
			free(ai);
			if (rc)
				goto done;
		}
		memset(&n->handle, 0, sizeof(n->handle));
		if (info[i].last_handle)
			snprintf(n->handle.id, sizeof(n->handle.id), "%s", info[i].last_handle);
		memset(&jd, 0, sizeof(jd));
		rc = s->r->ops->attach(s->r, n->attempt_dir, &n->handle, n, &alive, &jd, err);
		if (rc)
			goto done;
		/* It holds resources whether it is ours or not. */
		take(s, n);
		n->live = 1;
		s->live++;
		free(n->ev.path);
		n->ev.path = fs_join(n->attempt_dir, "events.jsonl");
		{
			/* Continue where the previous driver stopped reading. */
			long long off = 0;
			rc = state_attempt_events_offset(s->st, s->run, n->step->id,
							 n->attempt, &off, err);
			if (rc)
				goto done;
			n->ev.offset = (off_t)off;
			n->ev_recorded = (off_t)off;
		}
		n->ev_open = 1;
		{
			/* How long ago it started can only come from the wall
			 * clock across drivers; one set back meanwhile must not
			 * put the start in the future (and a timeout out of
			 * reach): at worst the timeout counts from now. */
			double ago = info[i].last_attempt_started > 0
				? now_wall() - info[i].last_attempt_started : 0;
			n->started = now_mono() - (ago > 0 ? ago : 0);
		}
		n->deadline = n->step->timeout_s && !s->r->ops->enforces_limits
			      ? n->started + (double)n->step->timeout_s : 0;
		if (alive) {
			if (n->handle.id[0] && !info[i].last_handle) {
				/* The previous driver died before recording it. */
				rc = state_attempt_set_handle(s->st, s->run, n->step->id,
							      n->attempt, n->handle.id, err);
				if (rc)
					goto done;
			}
			report(s, SR_ATTACHED, n, n->handle.id);
		} else {
			jd.cookie = n;
			rc = end_attempt(s, n, &jd, err);
			if (rc)
				goto done;
		}
	}
	for (size_t i = 0; i < s->nsteps; i++)
		push_ready(s, &s->nodes[i]);
	rc = state_run_set_state(s->st, s->run, RUN_RUNNING, err);
	if (!rc)
		rc = state_run_set_driver(s->st, s->run, (int)getpid(), err);
done:
	for (size_t i = 0; i < ninfo; i++)
		step_info_clear(&info[i]);
	free(info);
	run_info_clear(&ri);
	free(params_text);
	return rc;
}

static void teardown(struct sched *s)
{
	for (size_t i = 0; s->nodes && i < s->nsteps; i++) {
		struct node *n = &s->nodes[i];
		free(n->gpu_slots);
		free(n->npu_slots);
		free(n->key);
		free(n->attempt_dir);
		events_reader_clear(&n->ev);
		free_outs(n->outs, n->nouts);
		free(n->metric_name);
	}
	free(s->nodes);
	free(s->ready);
	for (size_t i = 0; s->steps && i < s->nsteps; i++)
		step_clear(&s->steps[i]);
	free(s->steps);
	dag_free(s->dag);
	free(s->run_dir);
	free_outs(s->ext, s->next);
	store_free(s->store);
	free(s->recipe_digest);
	free(s->git_commit);
	free(s->git_dirty);
	free(s->params_path);
	free(s->no_params_path);
	free(s->params_json);
	free(s->gpu_used);
	free(s->npu_used);
	free(s->evbuf);
	buf_free(&s->evnames);
	for (size_t i = 0; i < s->nwhich; i++) {
		free(s->which[i].prog);
		free(s->which[i].path);
		free(s->which[i].full);
	}
	free(s->which);
}

int sched_run(struct state *st, struct runner *r, const struct workspace *ws,
	      int64_t run_id, const struct sched_opts *o, struct err *err)
{
	struct sched s = { 0 };
	enum run_state final;
	int rc, rc2;

	s.st = st;
	s.r = r;
	s.ws = ws;
	s.o = o;
	s.run = run_id;
	s.cpus_free = o->cpus > 0 ? o->cpus : 1;
	s.jobs_free = o->jobs > 0 ? o->jobs : 1;
	s.mem_free = o->mem_mb;
	s.gpu_used = xcalloc((size_t)o->gpus + 1, sizeof(int));
	s.npu_used = xcalloc((size_t)o->npus + 1, sizeof(int));

	rc = setup(&s, err);
	if (!rc && o->cancel_only)
		begin_stop(&s, STOP_CANCEL);
	if (!rc)
		rc = loop(&s, err);
	if (rc) {
		/* Recording failed (disk full, database gone): stop the steps
		 * we started so that nothing runs unrecorded, and leave the run
		 * resumable. */
		signal_live(&s, SIGTERM);
		{
			/* Best effort: the store may be what failed. */
			struct err e2;
			(void)state_run_set_state(st, run_id, RUN_INTERRUPTED, &e2);
		}
		goto done;
	}

	if (s.stop == STOP_LEAVE) {
		/* The run stays "running", its jobs too: no driver until
		 * `anneal resume` re-attaches to them. */
		rc = err_set(err, ERR_INTERRUPTED,
			     "run %" PRId64 ": %zu job%s left running; 'anneal resume %" PRId64
			     "' re-attaches to %s, 'anneal cancel %" PRId64 "' stops %s",
			     run_id, s.live, s.live == 1 ? "" : "s", run_id,
			     s.live == 1 ? "it" : "them", run_id, s.live == 1 ? "it" : "them");
		goto done;
	}
	if (s.stop == STOP_CANCEL) {
		for (size_t i = 0; i < s.nsteps; i++) {
			struct node *n = &s.nodes[i];
			if (n->state == STEP_PENDING || n->state == STEP_RUNNING) {
				rc = state_step_set_state(st, run_id, n->step->id,
							  STEP_CANCELLED, err);
				if (rc)
					goto done;
			}
		}
		final = RUN_CANCELLED;
		rc = err_set(err, ERR_STEP, "run %" PRId64 " cancelled", run_id);
	} else if (s.stop == STOP_INTERRUPT) {
		final = RUN_INTERRUPTED;
		rc = err_set(err, ERR_INTERRUPTED,
			     "run %" PRId64 " interrupted; 'anneal resume %" PRId64 "' continues it",
			     run_id, run_id);
	} else if (s.failed) {
		final = RUN_FAILED;
		rc = err_set(err, ERR_STEP, "%s", s.first_failure);
	} else if (s.done == s.nsteps) {
		final = RUN_SUCCEEDED;
	} else {
		final = RUN_FAILED;
		rc = err_set(err, ERR_SYSTEM, "run %" PRId64 ": %zu of %zu steps could not start",
			     run_id, s.nsteps - s.done, s.nsteps);
	}
	{
		struct err e2;
		rc2 = state_run_set_state(st, run_id, final, &e2);
		if (rc2) {
			*err = e2;
			rc = rc2;
		}
	}
done:
	teardown(&s);
	return rc;
}
