/* runners/slurm.h — the Slurm runner: steps as batch jobs of a real Slurm
 * cluster, through its commands (sbatch, squeue, scontrol, sacct, scancel)
 * run as argv arrays, never through a shell.
 *
 * Submission: a batch script is generated per attempt in the attempt
 * directory (which must be on a filesystem the compute nodes share): it
 * sets the step's environment, cds to its working directory and execs
 * its argv (through srun for multi-node steps), every word quoted so that
 * any byte string survives; `sbatch --parsable` submits it with the
 * resources mapped to options (cpus -> --cpus-per-task, npus ->
 * --gres=GRES:N, gpus -> --gpus=N, mem_mb -> --mem, timeout_s -> --time,
 * --signal=B:TERM@GRACE, --requeue when allowed, --job-name
 * anneal.RUN.STEP), output to the attempt dir's output.log. --time is a
 * backstop for when anneal is gone (timeout_s + GRACE, in whole minutes,
 * plus one): anneal's own timeout, counted from submission, comes first.
 * --comment is the attempt directory, so that a job whose id was never
 * recorded (a crash right after sbatch) can still be found and adopted.
 *
 * Watching: one `squeue` per poll for all watched jobs (never one command
 * per job), with backoff while nothing changes; a job that left squeue
 * gets its final state and exit code from `scontrol show job -o`, else
 * `sacct -c` (completion records work without slurmdbd). States map to
 * anneal's outcomes: COMPLETED -> exited 0; FAILED -> its exit code;
 * CANCELLED, TIMEOUT, OUT_OF_MEMORY, DEADLINE -> signaled (detail names
 * the state); NODE_FAIL, PREEMPTED, BOOT_FAIL -> exited 75 (requeued from
 * the latest checkpoint without spending a retry).
 *
 * Handles are "slurm:JOBID"; the job id is also written to the attempt
 * directory (slurm.jobid) right after submission so that a later anneal
 * re-attaches by id and never submits a duplicate of a live job.
 *
 * Use it from one thread. Each Slurm command is a child process waited
 * for by pid (never waitpid(-1)); it inherits anneal's environment
 * (SLURM_CONF and the like) and nothing else. */
#ifndef ANNEAL_RUNNER_SLURM_H
#define ANNEAL_RUNNER_SLURM_H

#include <stddef.h>

#include "runners/runner.h"

struct buf;
struct err;
struct strv;

struct slurm_options {
	const char *partition;     /* NULL: the cluster's default */
	const char *account;
	const char *qos;
	const char *gres;          /* GRES name for npus, default "npu" */
	char *const *sbatch_extra; /* NULL-terminated extra sbatch words, or NULL */
	int requeue;               /* pass --requeue (else --no-requeue) */
	int signal_grace_s;        /* --signal=B:TERM@N; 0: 120 */
	const char *bin_dir;       /* where sbatch etc. are; NULL: PATH */
	int poll_min_ms;           /* first poll interval (default 500) */
	int poll_max_ms;           /* backoff cap (default 10000) */
	int cmd_timeout_s;         /* each Slurm command's limit (default 60) */
};

/* o may be NULL (all defaults). The options' strings are copied. Checks
 * nothing on the cluster: a missing sbatch is reported by the first submit. */
int slurm_runner_new(const struct slurm_options *o, struct runner **out,
		     struct err *err);

enum slurm_state {
	SLURM_PENDING, SLURM_RUNNING, SLURM_COMPLETED, SLURM_FAILED,
	SLURM_CANCELLED, SLURM_TIMEOUT, SLURM_NODE_FAIL, SLURM_PREEMPTED,
	SLURM_OUT_OF_MEMORY, SLURM_BOOT_FAIL, SLURM_DEADLINE, SLURM_UNKNOWN,
	/* Not final; kept apart for `anneal status`. */
	SLURM_CONFIGURING,  /* allocated, nodes booting */
	SLURM_COMPLETING,   /* ended, processes being cleaned up */
	SLURM_SUSPENDED,    /* SUSPENDED, STOPPED */
	SLURM_REQUEUED,     /* REQUEUED, REQUEUE_HOLD, REQUEUE_FED, SPECIAL_EXIT */
};

/* The state of a job as Slurm last told: for `anneal status`. A job this
 * runner watches is answered from what its last poll saw (no command);
 * any other "slurm:ID" handle costs one squeue (and scontrol or sacct -c
 * once it has ended). reason gets squeue's %r ("Resources", "None"...),
 * or for an ended job its exit code ("ExitCode=3:0"); "" if none.
 * ERR_NOTFOUND when Slurm does not know the job (any more);
 * ERR_INVALID when r is not a Slurm runner or h not a Slurm handle. */
int slurm_job_state(struct runner *r, const struct job_handle *h,
		    enum slurm_state *state, char *reason, size_t size,
		    struct err *err);

/* The same for n handles at once: one squeue for all the jobs this runner
 * does not watch (then scontrol / sacct -c for each that ended). view[i].known
 * is 0 for a job Slurm does not know (any more). */
struct slurm_job_view {
	int known;
	enum slurm_state state;
	char reason[128];
};
int slurm_jobs_state(struct runner *r, const struct job_handle *h, size_t n,
		     struct slurm_job_view *view, struct err *err);

/* ---- Pure pieces, exposed for tests ---- */

/* s quoted for POSIX sh: '...' with ' written as '\'' (any bytes but NUL).
 * A carriage return is written as '"$(printf '\r')"' so that the script
 * never holds "\r\n", which sbatch rejects as DOS line breaks. */
void slurm_quote(const char *s, struct buf *out);

/* "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "CANCELLED by 0", ...
 * and squeue's short codes ("PD", "R", "CG", "CA", "TO", "OOM"...).
 * SLURM_UNKNOWN for anything else. */
enum slurm_state slurm_state_parse(const char *s);
const char *slurm_state_name(enum slurm_state s);
/* 1 for the states a job never leaves (COMPLETED ... DEADLINE). */
int slurm_state_final(enum slurm_state s);

/* The job id of a handle ("slurm:123" or "123") into id. 0 or ERR_INVALID. */
int slurm_handle_jobid(const char *handle, char *id, size_t size);

/* sbatch --parsable's stdout ("123\n" or "123;cluster\n"; warnings may
 * precede it on stdout of some versions: the last non-empty line counts)
 * into id. 0 or ERR_INVALID. */
int slurm_parse_sbatch(const char *out, char *id, size_t size);

/* How to report a failed sbatch from its stderr: ERR_SYSTEM when the
 * cluster could not be asked (controller unreachable, timeouts, busy),
 * ERR_INVALID when it refused the request (bad partition, account, gres,
 * option...). */
int slurm_sbatch_error_code(const char *stderr_text);

/* "3:0" -> code 3, signal 0. 0 or ERR_INVALID. */
int slurm_parse_exit_code(const char *s, int *code, int *sig);

/* One line of `squeue -h -o '%i|%T|%r'`. id and reason are filled
 * (truncated to their sizes). 0 or ERR_INVALID. */
int slurm_parse_squeue_line(const char *line, char *id, size_t id_size,
			    enum slurm_state *state, char *reason,
			    size_t reason_size);

/* One line of `squeue -h -O JobID:|,State:|,exit_code:|,Reason:`: the
 * same with the job's wait status (exit code << 8 | signal), which lets one
 * squeue per poll report how ended jobs ended. 0 or ERR_INVALID. */
int slurm_parse_squeue_exit_line(const char *line, char *id, size_t id_size,
				 enum slurm_state *state, int *code, int *sig,
				 char *reason, size_t reason_size);

/* `scontrol show job -o ID`: JobState=, Reason= and ExitCode= (the first
 * occurrence of each as a whole field). reason may be NULL. 0 or
 * ERR_INVALID when a field is missing. */
int slurm_parse_scontrol(const char *text, enum slurm_state *state,
			 int *code, int *sig, char *reason, size_t reason_size);

/* `sacct -c -n -P -o state,exitcode`: the last non-empty line (a requeued
 * job has a record per run). 0, ERR_NOTFOUND when there is no line,
 * ERR_INVALID when it makes no sense. */
int slurm_parse_sacct(const char *text, enum slurm_state *state, int *code,
		      int *sig);

/* What a final state means to anneal (see the file comment). jobid names
 * the job in d->detail; d->cookie is left alone. A FAILED job without an
 * exit code or signal (it failed to launch) is JOB_SPAWN_FAILED. */
void slurm_outcome(enum slurm_state state, int code, int sig,
		   const char *jobid, struct job_done *d);

/* The next poll interval: min_ms after a change, else cur_ms doubled up
 * to max_ms. */
int slurm_backoff_next(int cur_ms, int changed, int min_ms, int max_ms);

/* The batch script for spec (spec->cwd absolute). Exports every variable
 * of spec->envp whose name the shell accepts, except SLURM_* (the job's
 * own are set by Slurm) and, when spec->gpus > 0, the GPU lists Slurm
 * sets for its allocation (CUDA_VISIBLE_DEVICES & co); unsets the
 * variables of submit_env (what sbatch exports) that spec->envp lacks,
 * with the same exceptions; cds to spec->cwd; execs spec->argv. A step
 * whose cwd cannot be entered exits 126 after one line on stderr.
 * submit_env may be NULL. ERR_INVALID for an empty argv or no cwd. */
int slurm_batch_script(const struct job_spec *spec, char *const *submit_env,
		       struct buf *out, struct err *err);

/* The sbatch command for spec: argv[0] is "sbatch" (the caller places
 * it), then the options, then script. o must have its defaults filled
 * (gres, signal_grace_s). The job name is anneal.RUN.STEP with every byte
 * outside [A-Za-z0-9._-] made '_'; spec->cwd must be absolute. */
void slurm_sbatch_argv(const struct slurm_options *o, const struct job_spec *spec,
		       const char *script, struct strv *out);

#endif
