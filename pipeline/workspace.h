/* pipeline/workspace.h — the folder holding .anneal/: found like .git/.
 *
 *   .anneal/state.db      the state store (SQLite, WAL)
 *   .anneal/config.json   optional: {"gpus": N, "npus": N, "jobs": N,
 *                         "runner": "slurm" | {"type": "slurm", ...},
 *                         "runs_dir": "/shared/path"  (work dirs elsewhere)}
 *   .anneal/store/        content-addressed objects (artifacts)
 *   .anneal/runs/<run>/<step>/   work dirs: out/, ckpt/, a<N>/ per attempt
 *
 * A run is driven by one anneal process at a time: the driver holds an
 * lock (OFD, fcntl) on .anneal/runs/<run>/lock for as long as it runs. */
#ifndef ANNEAL_WORKSPACE_H
#define ANNEAL_WORKSPACE_H

#include <stdint.h>

struct err;

struct workspace {
	char *root;       /* absolute path of the folder holding .anneal */
	char *dir;        /* root/.anneal */
	char *db_path;    /* dir/state.db */
	char *runs_dir;   /* dir/runs */
	/* config.json (0 when absent) */
	int gpus, npus, jobs;
	char *runner;     /* the runner spec (JSON text or a name), or NULL */
};

/* Finds .anneal/ in start or above (start NULL: the cwd). ERR_NOTFOUND
 * "not an anneal workspace (or any parent): '<start>'; run 'anneal init'". */
int workspace_find(const char *start, struct workspace **out, struct err *err);

/* Creates root/.anneal (and root) if missing; opens it either way. */
int workspace_init(const char *root, struct workspace **out, struct err *err);

void workspace_free(struct workspace *ws);

/* runs/<run> and runs/<run>/<step> paths (malloc'd). */
char *workspace_run_dir(const struct workspace *ws, int64_t run);
char *workspace_step_dir(const struct workspace *ws, int64_t run, const char *step);

/* Takes the run's driver lock (non-blocking). ERR_BUSY when another
 * process holds it: "run N is being driven by another anneal process".
 * *fd stays open (O_CLOEXEC) for as long as the lock is needed. */
int workspace_lock_run(const struct workspace *ws, int64_t run, int *fd,
		       struct err *err);
/* The store's gc lock (.anneal/gc.lock): writers that put objects into
 * the store and then register them (a step's outputs, anneal add, an
 * import) hold it shared from storing to registering; gc holds it
 * exclusively, so that it never removes an object between the two. Waits
 * for the lock. *fd is to be closed to release it. */
int workspace_gc_lock(const struct workspace *ws, int exclusive, int *fd,
		      struct err *err);

/* 1 when some process holds the run's driver lock, 0 if not. */
int workspace_run_locked(const struct workspace *ws, int64_t run);

#endif
