/* engine/cmd.h — the reference engine's subcommands (one engine/cmd_*.c
 * each) and the helpers they share. main.c reads the environment and the
 * config, checks it against engine/config.c's table, and calls one of
 * these; they return 0 or a negative err code (ERR_INVALID: exit 2,
 * ERR_INTERRUPTED: exit 75, others: exit 1) and never print or exit. */
#ifndef ANNEAL_ENGINE_CMD_H
#define ANNEAL_ENGINE_CMD_H

#include <stddef.h>
#include <stdint.h>

struct contract;
struct ecfg_cmd;
struct err;
struct jnode;
struct nn_model;
struct train_opts;

/* A subcommand's view of its step: its table, its (checked) config, its
 * side of the contract. */
struct cmd_ctx {
	const struct ecfg_cmd *c;
	const struct jnode *cfg;
	struct contract *ct;
};

int cmd_gen_data(const struct cmd_ctx *x, struct err *err);
int cmd_pretrain(const struct cmd_ctx *x, struct err *err);
int cmd_sft(const struct cmd_ctx *x, struct err *err);
int cmd_distill(const struct cmd_ctx *x, struct err *err);
int cmd_rl(const struct cmd_ctx *x, struct err *err);
int cmd_dual_sft(const struct cmd_ctx *x, struct err *err);
int cmd_eval(const struct cmd_ctx *x, struct err *err);

/* ---- shared ---- */

#define MODEL_FILE_NAME "model.safetensors"

/* Loads DIR/model.safetensors; the message names the input role. */
int cmd_load_model(const char *role, const char *dir, struct nn_model *m,
		   struct err *err);
/* Loads the model of a required input role. */
int cmd_input_model(const char *role, struct nn_model *m, struct err *err);
/* Writes m as OUTPUT/model.safetensors for output name. */
int cmd_save_model(const char *output, const struct nn_model *m, struct err *err);

/* Trains m with src from the contract's resume point (if any) to the
 * last update, then writes it as output `model`. */
struct train_source;
int cmd_train(const struct cmd_ctx *x, struct nn_model *m,
	      const struct train_source *src, struct err *err);

/* The training keys of x's table (steps, lr, ... as present; absent
 * ones get neutral values). */
void cmd_train_opts(const struct cmd_ctx *x, struct train_opts *o);

/* One JSON metric event from name/value pairs: n pairs. */
void cmd_metrics(const struct cmd_ctx *x, const char *const *names,
		 const double *values, size_t n);

#endif
