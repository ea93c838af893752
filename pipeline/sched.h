/* pipeline/sched.h — the scheduler: drives one run to its end.
 *
 * One readable loop (ninja's Builder): start the ready steps that fit the
 * free resources (or reuse an intact earlier result with the same cache
 * key), wait for the runner to report an ending, follow events files,
 * enforce timeouts, record every transition in the state store. The plan
 * comes from the store, never from the recipe file, so a resumed run does
 * exactly what it set out to do.
 *
 * Resume is the same call: steps that succeeded are kept, steps whose job
 * outlived the previous driver are re-attached through the runner, failed
 * or cancelled steps get a fresh retry budget. */
#ifndef ANNEAL_SCHED_H
#define ANNEAL_SCHED_H

#include <stddef.h>
#include <stdint.h>

struct err;
struct runner;
struct state;
struct workspace;

enum sched_report_kind {
	SR_START,     /* a step's attempt started */
	SR_CACHED,    /* reused an earlier result */
	SR_SUCCEEDED,
	SR_RETRY,     /* an attempt ended badly; another will follow */
	SR_REQUEUED,  /* exit 75 / lost: restarts from its checkpoint */
	SR_FAILED,    /* the step failed for good */
	SR_STOPPED,   /* interrupted or cancelled */
	SR_ATTACHED,  /* re-attached to a job of an earlier driver */
	SR_WARNING,
	SR_TICK,      /* periodic summary for a live progress line */
};

struct sched_report {
	enum sched_report_kind kind;
	const char *step;      /* NULL for run-level reports */
	int attempt;
	const char *text;      /* details: "exit 1", "resumed from ..." */
	double elapsed;        /* seconds the step has run (its attempt) */
	/* run summary */
	size_t done, total, running;
	/* latest metric of step (has_metric) */
	int has_metric;
	const char *metric_name;
	double metric_value;
};

typedef void (*sched_report_fn)(void *ctx, const struct sched_report *r);

struct sched_opts {
	int jobs;          /* at most this many steps at once (>= 1) */
	int cpus;          /* CPU capacity; a step asking more is clamped to it */
	int gpus, npus;    /* device slots */
	long mem_mb;       /* memory capacity, 0: not enforced */
	double grace_s;    /* SIGTERM, then SIGKILL after this (default 10) */
	int keep_going;    /* after a failure, keep running independent steps */
	int no_cache;      /* never reuse earlier results */
	int max_requeues;  /* exit-75 / lost restarts per step (default 100) */
	int cancel_only;   /* stop the run's live jobs and record it cancelled */
	/* A cluster runner: its scheduler places jobs and hands out devices
	 * (gpus/npus are requests to it, not slots anneal manages; no
	 * CUDA_/ASCEND_RT_VISIBLE_DEVICES from anneal). */
	int cluster;
	/* On an interrupt (Ctrl-C, SIGTERM), asked once: non-zero leaves the
	 * live jobs running and returns at once (the run stays "running"
	 * without a driver; `anneal resume` re-attaches), zero stops them.
	 * NULL: stop them. */
	int (*leave_jobs)(void *ctx, size_t live);
	void *leave_ctx;
	sched_report_fn report;
	void *report_ctx;
};

/* Drives run run_id to its end. Returns 0 when it succeeded, ERR_STEP when
 * a step failed or the run was cancelled, ERR_INTERRUPTED when stopped by a
 * signal (resumable), another code when recording failed. The caller holds
 * the run's driver lock. */
int sched_run(struct state *st, struct runner *r, const struct workspace *ws,
	      int64_t run_id, const struct sched_opts *o, struct err *err);

/* Async-signal-safe: asks the running scheduler to stop (first call:
 * gracefully; second: kill at once). For SIGINT/SIGTERM/SIGHUP handlers. */
void sched_request_stop(void);
/* Forgets earlier stop requests (a process that drives several runs, tests). */
void sched_reset_stop(void);

#endif
