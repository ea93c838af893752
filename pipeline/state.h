/* pipeline/state.h — the state store: runs, steps, attempts, outputs,
 * checkpoints and events in SQLite (.anneal/state.db).
 *
 * The only module that includes sqlite3.h. WAL mode, busy_timeout, prepared
 * statements, every rc checked and reported with sqlite3_errmsg, schema
 * version in PRAGMA user_version with ordered migrations. Each function
 * below that changes state is one transaction (BEGIN IMMEDIATE ... COMMIT):
 * a crash at any instant leaves the store as before or after it, never in
 * between. States are enums here; their words exist only in the database
 * and in output.
 *
 * A struct state is one SQLite connection: use it from one thread at a
 * time (opened NOMUTEX). Its file descriptors are close-on-exec, so steps
 * spawned by anneal never inherit the database. */
#ifndef ANNEAL_STATE_H
#define ANNEAL_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/step.h"

struct err;
struct state;   /* opaque */

enum run_state { RUN_RUNNING, RUN_SUCCEEDED, RUN_FAILED, RUN_INTERRUPTED, RUN_CANCELLED };
enum step_state { STEP_PENDING, STEP_RUNNING, STEP_SUCCEEDED, STEP_CACHED, STEP_FAILED, STEP_CANCELLED };
enum attempt_state {
	ATT_RUNNING,      /* started, outcome not yet known */
	ATT_SUCCEEDED,
	ATT_FAILED,       /* non-zero exit, signal, or spawn failure */
	ATT_TIMEOUT,      /* killed by anneal at its time limit */
	ATT_REQUEUED,     /* exit 75: interrupted, resumable; no retry spent */
	ATT_INTERRUPTED,  /* stopped because anneal was interrupted */
	ATT_LOST,         /* vanished without an exit status (e.g. killed with anneal) */
	ATT_CANCELLED,
};

const char *run_state_name(enum run_state s);
const char *step_state_name(enum step_state s);
const char *attempt_state_name(enum attempt_state s);
int run_state_parse(const char *s, enum run_state *out);     /* 0 or ERR_INVALID */
int step_state_parse(const char *s, enum step_state *out);
int attempt_state_parse(const char *s, enum attempt_state *out);

/* Opens (creating and migrating as needed) the database at path. ":memory:"
 * works for tests. Waits up to 10 s for a lock held by another process
 * (ANNEAL_BUSY_TIMEOUT_MS overrides), then fails with ERR_SYSTEM ("state
 * database 'PATH' is locked by another process (waited N ms ...)"); every
 * error names the database's path. A database
 * written by a newer anneal (higher schema version) is ERR_INVALID. */
int state_open(const char *path, struct state **out, struct err *err);
void state_close(struct state *st);   /* NULL-safe */

/* How long a call waits for another process's lock before failing. */
void state_set_busy_timeout(struct state *st, int ms);
/* The schema version this anneal writes (PRAGMA user_version). */
int state_schema_version(void);

/* ---- runs ---------------------------------------------------------- */

struct run_new {
	const char *recipe_path;
	const char *recipe_name;
	const char *recipe_text;
	const char *recipe_digest;
	const char *params_json;
	const char *runner;          /* "local" */
	const struct step *steps;    /* the expanded plan, in recipe order */
	size_t nsteps;
	const char *const *cache_keys;  /* per step, NULL entries allowed;
					 * NULL: none known yet */
};

/* One transaction: the run (state running), its steps (pending) with their
 * full specs (argv, env, inputs, outputs, after, resources, retry,
 * timeout) and dependency rows. Run ids are 1, 2, 3... */
int state_run_create(struct state *st, const struct run_new *rn,
		     int64_t *run_id, struct err *err);

struct run_info {
	int64_t id;
	char *recipe_path;
	char *recipe_name;
	char *recipe_digest;
	char *params_json;
	char *runner;
	enum run_state state;
	double created, finished;   /* finished 0 while unfinished */
	int driver_pid;             /* last anneal process that drove it, 0 if none */
	int cancel_requested;
};
void run_info_clear(struct run_info *ri);

int state_run_get(struct state *st, int64_t run_id, struct run_info *out,
		  struct err *err);   /* ERR_NOTFOUND: "no run N" */
/* The recipe text of a run (malloc'd). */
int state_run_recipe_text(struct state *st, int64_t run_id, char **out,
			  struct err *err);
/* Latest run by id; with unfinished_only, the latest in state running or
 * interrupted. ERR_NOTFOUND when none. */
int state_run_latest(struct state *st, int unfinished_only, int64_t *run_id,
		     struct err *err);
/* All runs, newest first; *out is an array the caller frees with
 * run_info_clear on each then free. */
int state_run_list(struct state *st, struct run_info **out, size_t *n,
		   struct err *err);

int state_run_set_state(struct state *st, int64_t run_id, enum run_state s,
			struct err *err);     /* sets finished when not running */
int state_run_set_driver(struct state *st, int64_t run_id, int pid,
			 struct err *err);
int state_run_request_cancel(struct state *st, int64_t run_id, struct err *err);
/* Clears cancel_requested (resume of a cancelled run). */
int state_run_clear_cancel(struct state *st, int64_t run_id, struct err *err);

/* ---- steps --------------------------------------------------------- */

/* The plan of a run, as stored: steps[] in the original order (caller
 * frees each with step_clear, then the array). */
int state_steps_load(struct state *st, int64_t run_id, struct step **steps,
		     size_t *n, struct err *err);

struct output_rec {
	char *name;
	enum artifact_type type;
	char *path;        /* absolute path of the output tree */
	char digest[65];   /* tree digest, hex */
	uint64_t bytes;
	int64_t artifact;  /* its catalog entry (pipeline/catalog.h), 0 if none */
};

struct step_info {
	char *id;
	enum step_state state;
	char *cache_key;       /* may be NULL */
	int attempts;          /* attempts started so far */
	int retries_used;      /* attempts that spent a retry (failed, timeout, lost) */
	double started, finished;  /* 0 when not yet */
	int64_t cached_from_run;   /* when STEP_CACHED: the run it reused */
	char *cached_from_step;
	char *last_error;      /* of the latest failed attempt, or NULL */
	/* latest attempt */
	int last_attempt;              /* 0 if none */
	enum attempt_state last_attempt_state;
	char *last_handle;             /* NULL if none */
	double last_attempt_started;
	/* latest progress/metric events (NULL/0 when none) */
	double progress_done, progress_total;
	char *metric_name;
	double metric_value;
	struct output_rec *outputs;    /* recorded outputs */
	size_t noutputs;
};
void step_info_clear(struct step_info *si);

/* Per-step status of a run, in plan order; caller frees with
 * step_info_clear on each then free. */
int state_steps_info(struct state *st, int64_t run_id, struct step_info **out,
		     size_t *n, struct err *err);

/* Sets a step's state (and its started/finished times as fitting). */
int state_step_set_state(struct state *st, int64_t run_id, const char *step,
			 enum step_state s, struct err *err);
/* Records the cache key computed when the step became ready. */
int state_step_set_cache_key(struct state *st, int64_t run_id,
			     const char *step, const char *key,
			     struct err *err);

/* ---- attempts ------------------------------------------------------ */

/* One transaction: attempt row n (state running, resumed_from may be NULL)
 * and step state running. */
int state_attempt_begin(struct state *st, int64_t run_id, const char *step,
			int n, const char *resumed_from, struct err *err);
/* Records the runner handle once the job was submitted. */
int state_attempt_set_handle(struct state *st, int64_t run_id,
			     const char *step, int n, const char *handle,
			     struct err *err);
/* The same with where and how it was launched: the host and the resolved
 * argv (a JSON array), kept for lineage. NULLs leave them as they are. */
int state_attempt_set_launch(struct state *st, int64_t run_id,
			     const char *step, int n, const char *handle,
			     const char *host, const char *argv_json,
			     struct err *err);

struct attempt_end {
	enum attempt_state state;   /* not ATT_RUNNING */
	int exit_code;              /* -1 if none */
	int signal;                 /* 0 if none */
	const char *reason;         /* human words, may be NULL */
	int spends_retry;           /* counts against the retry budget */
	enum step_state step_state; /* the step's state after this attempt */
	const struct output_rec *outputs;  /* when step_state is SUCCEEDED */
	size_t noutputs;
};
/* One transaction: attempt outcome, step state (+ finished time), outputs. */
int state_attempt_end(struct state *st, int64_t run_id, const char *step,
		      int n, const struct attempt_end *ae, struct err *err);

struct attempt_info {
	int n;
	enum attempt_state state;
	char *handle;
	double started, finished;
	int exit_code, signal;
	char *resumed_from;
	char *reason;
};
void attempt_info_clear(struct attempt_info *ai);
/* All attempts of a step in order; caller frees (clear each, free array). */
int state_attempts_list(struct state *st, int64_t run_id, const char *step,
			struct attempt_info **out, size_t *n, struct err *err);

/* ---- cache --------------------------------------------------------- */

/* One transaction: marks step cached, copying the outputs rows of
 * (from_run, from_step). */
int state_step_mark_cached(struct state *st, int64_t run_id, const char *step,
			   int64_t from_run, const char *from_step,
			   struct err *err);

struct cache_hit {
	int64_t run_id;
	char *step;
	struct output_rec *outputs;
	size_t noutputs;
};
void cache_hit_clear(struct cache_hit *h);
/* Succeeded steps with this cache key in any run, newest first, at most 8
 * (steps that were themselves cached point at one of these).
 * Caller verifies outputs are intact and picks the first that is.
 * Caller frees (cache_hit_clear each, free array). */
int state_cache_candidates(struct state *st, const char *key,
			   struct cache_hit **out, size_t *n, struct err *err);

/* Outputs recorded for a step of a run (succeeded or cached). */
int state_step_outputs(struct state *st, int64_t run_id, const char *step,
		       struct output_rec **out, size_t *n, struct err *err);
void output_rec_clear(struct output_rec *o);

/* ---- checkpoints and events ------------------------------------------ */

int state_checkpoint_add(struct state *st, int64_t run_id, const char *step,
			 int attempt, long long engine_step, const char *path,
			 const char *digest, int64_t artifact, struct err *err);
/* Latest recorded checkpoint of a step (any attempt), by insertion order;
 * ERR_NOTFOUND when none. *path malloc'd; *artifact (if non-NULL) its
 * catalog entry or 0. */
int state_checkpoint_latest(struct state *st, int64_t run_id,
			    const char *step, char **path, long long *engine_step,
			    int64_t *artifact, struct err *err);

/* The catalog entry of the checkpoint recorded at path (0 if none). */
int state_checkpoint_artifact(struct state *st, int64_t run_id, const char *step,
			      const char *path, int64_t *artifact, struct err *err);

enum event_kind { EV_METRIC, EV_PROGRESS, EV_WARNING, EV_CHECKPOINT, EV_LOG };
const char *event_kind_name(enum event_kind k);
int event_kind_parse(const char *s, enum event_kind *out);  /* 0 or ERR_INVALID */

struct event_rec {
	enum event_kind kind;
	const char *name;      /* metric name; NULL otherwise */
	double value;          /* metric value, or progress done */
	double total;          /* progress total */
	long long engine_step; /* -1 if none */
	const char *text;      /* raw line (warnings) or message; may be NULL */
};
/* Appends events in one transaction, together with how far the attempt's
 * events file has been read (offset >= 0; -1: leave it), so that a driver
 * taking over a running step after a crash continues where the last one
 * stopped instead of recording the same events twice. */
int state_events_add(struct state *st, int64_t run_id, const char *step,
		     int attempt, const struct event_rec *ev, size_t n,
		     long long offset, struct err *err);
/* The recorded events-file offset of an attempt (0 if none). */
int state_attempt_events_offset(struct state *st, int64_t run_id,
				const char *step, int attempt, long long *offset,
				struct err *err);

/* Events of a run (step may be NULL: all), oldest first, via callback.
 * Strings passed to fn are borrowed for the call only. fn returns 0 to go
 * on; anything else stops the walk and is returned as is (fn fills err's
 * counterpart itself). fn must not call state_events_each. */
typedef int (*state_event_fn)(void *ctx, const char *step, int attempt,
			      double time, enum event_kind kind,
			      const char *name, double value, double total,
			      long long engine_step, const char *text);
int state_events_each(struct state *st, int64_t run_id, const char *step,
		      state_event_fn fn, void *ctx, struct err *err);

#endif
