/* engine/contract.h — the reference engine's side of the engine contract
 * (docs/engine-contract.md): where its inputs, outputs, params, events and
 * checkpoints are (ANNEAL_* variables), appending events, SIGTERM, and
 * checkpoint directories that appear complete or not at all.
 *
 * Nothing here prints: errors go into a struct err for main.c. */
#ifndef ANNEAL_ENGINE_CONTRACT_H
#define ANNEAL_ENGINE_CONTRACT_H

#include <signal.h>

struct buf;
struct err;
struct jnode;

/* Exit statuses of the engine. */
#define ENGINE_EXIT_OK 0
#define ENGINE_EXIT_FAIL 1
#define ENGINE_EXIT_INVALID 2
#define ENGINE_EXIT_INTERRUPTED 75

/* Set by SIGTERM / SIGINT; long loops check it between units of work. */
extern volatile sig_atomic_t contract_stop;
void contract_signals(void);

struct contract {
	const char *cmd;        /* subcommand, e.g. "pretrain" */
	const char *step_id;    /* $ANNEAL_STEP_ID or "" */
	char *ckpt_dir;         /* $ANNEAL_CKPT_DIR, or NULL */
	char *resume;           /* the checkpoint to resume from, or NULL */
	int events_fd;          /* $ANNEAL_EVENTS opened O_APPEND, or -1 */
};

/* Reads the environment. ERR_INVALID when ANNEAL_RESUME_FROM is set but
 * is not a directory (relative names are tried under ANNEAL_CKPT_DIR). */
int contract_open(struct contract *c, const char *cmd, struct err *err);
void contract_close(struct contract *c);

/* The path of input ROLE ($ANNEAL_INPUT_<ROLE>), NULL when unset or empty;
 * a required one that is missing is ERR_INVALID. Borrowed from environ. */
int contract_input(const char *role, int required, const char **out,
		   struct err *err);
/* The directory of output NAME: $ANNEAL_OUTPUT_<NAME>, else
 * $ANNEAL_OUTPUT_DIR/NAME; created if missing. *out is malloc'd. */
int contract_output(const char *name, char **out, struct err *err);

/* Reads the config object: path (from --config), else $ANNEAL_PARAMS;
 * neither: *out NULL (all defaults). */
int contract_params(const char *path, struct jnode **out, struct err *err);

/* Appends one line (a JSON object, no newline) to the events file in a
 * single write(2). Without an events file, does nothing. Failing to
 * write an event is not fatal: it is lost, as a broken pipe would. */
void contract_event(struct contract *c, const char *json);
void contract_progress(struct contract *c, long long done, long long total);

/* Checkpoint step-N under the checkpoint dir: begin makes an empty
 * step-N.tmp/ (removing leftovers) and returns its path in *tmp
 * (malloc'd); the caller writes its files there; commit fsyncs every file
 * and the directory, renames it to step-N, fsyncs the parent, appends
 * {"event":"checkpoint","step":N,"dir":"step-N"}, then removes all but
 * the newest `keep` step-* directories. ERR_INVALID when there is no
 * checkpoint dir. */
int contract_ckpt_begin(struct contract *c, long long step, char **tmp,
			struct err *err);
int contract_ckpt_commit(struct contract *c, long long step, const char *tmp,
			 int keep, struct err *err);

/* Writes text to DIR/NAME atomically (temp, fsync, rename, fsync dir). */
int contract_write(const char *dir, const char *name, const char *data,
		   size_t len, struct err *err);

/* The exit status for an error code: 0, 1, 2 or 75. */
int contract_exit_status(int code);

#endif
