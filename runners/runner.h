/* runners/runner.h — where a step's process runs: an ops table.
 *
 * The scheduler speaks only this interface (ninja's CommandRunner): the
 * local runner (runners/local.c) runs processes on this machine, the Slurm
 * runner (a later issue) submits batch jobs, and tests use a fake runner
 * that scripts outcomes. A runner never touches the state store: it starts,
 * watches and stops jobs, and reports how they ended.
 *
 * Every job has an attempt directory (job_spec.attempt_dir) that the runner
 * owns: the local runner keeps there the files that let a later anneal
 * process re-attach to a job that outlived its parent (lock, pid, exit). */
#ifndef ANNEAL_RUNNER_H
#define ANNEAL_RUNNER_H

#include <stddef.h>

struct err;

#define JOB_HANDLE_MAX 64

/* Runner-specific text that identifies a job, stored in the state store:
 * "pid:12345" for the local runner, a Slurm job id later. */
struct job_handle {
	char id[JOB_HANDLE_MAX];
};

struct job_spec {
	const char *run_id;        /* for job names and messages */
	const char *step_id;
	int attempt;               /* 1-based */
	char *const *argv;         /* resolved; argv[0] looked up in PATH if it has no '/' */
	char *const *envp;         /* the complete environment of the step */
	const char *cwd;           /* working directory of the step */
	const char *attempt_dir;   /* exists; stdout.log and stderr.log go here */
	int cpus, gpus, npus;      /* granted (informational for local) */
	int nodes, tasks_per_node; /* 0/1: one node, one task; Slurm only */
	long mem_mb;
	long timeout_s;            /* the step's time limit, 0: none. The local
	                              runner ignores it (the scheduler enforces
	                              it); Slurm enforces it per job (--time):
	                              see runner_ops.enforces_limits */
	const char *runner_json;   /* the stage's options for this runner
	                              ({"partition": ..., "sbatch": [...]}), or NULL */
	void *cookie;              /* returned unchanged in struct job_done */
};

enum job_end {
	JOB_EXITED,    /* exit_code valid (0..255) */
	JOB_SIGNALED,  /* signal valid: the step died of it */
	JOB_LOST,      /* the job vanished without leaving an exit status */
	JOB_SPAWN_FAILED, /* argv[0] could not be executed (message in detail) */
};

struct job_done {
	void *cookie;
	enum job_end end;
	int exit_code;
	int signal;
	int time_limit;            /* the runner's scheduler ended it at its time
	                              limit (Slurm TIMEOUT): requeued when the
	                              attempt announced a checkpoint */
	char detail[256];          /* human words: "exec 'trian': No such file or directory" */
};

struct runner;

struct runner_ops {
	const char *name;
	/* 1 when the runner's own scheduler enforces job_spec.timeout_s as a
	 * per-job wall limit (Slurm --time), SIGTERMing the step before it:
	 * anneal then sets no deadline of its own, and a job that hits the
	 * limit after a checkpoint is requeued without spending a retry (a
	 * 30-day pretrain under a 24-hour partition limit). */
	int enforces_limits;
	/* Starts a job. On success fills *h; the job is then watched until
	 * reported by poll. A failure to exec argv[0] may be reported either
	 * here (ERR_INVALID) or later by poll as JOB_SPAWN_FAILED. */
	int (*submit)(struct runner *r, const struct job_spec *spec,
		      struct job_handle *h, struct err *err);
	/* Waits up to timeout_ms (0: don't wait) for watched jobs to end and
	 * reports up to cap of them in done[], *n set to how many. Returns
	 * early, with *n == 0, when a signal interrupts the wait. */
	int (*poll)(struct runner *r, int timeout_ms, struct job_done *done,
		    size_t cap, size_t *n, struct err *err);
	/* Sends sig to the whole job (its process group). A job already gone
	 * is not an error. */
	int (*cancel)(struct runner *r, const struct job_handle *h, int sig,
		      struct err *err);
	/* Re-attaches to a job started by an earlier anneal process, from its
	 * attempt directory (h may have an empty id if the crash came before
	 * the handle was recorded). Sets *alive = 1 and watches it (reported
	 * later by poll, with cookie), or *alive = 0 and fills *done at once
	 * when it already ended (JOB_LOST if it left no exit status). An
	 * empty h is filled in when the job's handle can be found (from the
	 * attempt directory), so that the caller can record and cancel it. */
	int (*attach)(struct runner *r, const char *attempt_dir,
		      struct job_handle *h, void *cookie, int *alive,
		      struct job_done *done, struct err *err);
	/* Optional: can jobs be submitted at all (the cluster answers)?
	 * Asked before a run is recorded, so that an absent or unreachable
	 * scheduler starts nothing. NULL: always. */
	int (*check)(struct runner *r, struct err *err);
	void (*free)(struct runner *r);
};

struct runner {
	const struct runner_ops *ops;
};

/* The local runner. shim_path is the anneal-shim binary (the per-job
 * supervisor that records the exit status in the attempt directory).
 * It installs a SIGCHLD handler for as long as it lives (the previous one is
 * still called, and restored by free) and reaps only its own children. Use
 * it from one thread; every other descriptor the process keeps open while
 * it submits must be O_CLOEXEC, or the steps inherit it. At most 8 at once. */
int local_runner_new(const char *shim_path, struct runner **out,
		     struct err *err);

/* A runner from the spec a run records: "local", "slurm", or a JSON
 * object {"type": "slurm", "partition": ..., ...} (runners/factory.c).
 * shim_path is for the local runner. */
int runner_from_spec(const char *spec, const char *shim_path,
		     struct runner **out, struct err *err);
/* The spec's type ("local", "slurm") into type; ERR_INVALID if unreadable. */
int runner_spec_type(const char *spec, char *type, size_t size);

/* NULL-safe convenience wrapper for r->ops->free(r). */
void runner_free(struct runner *r);

#endif
