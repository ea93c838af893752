/* stages/train.h — the stage kinds that run a training engine: data,
 * pretrain, sft, distill, rl, dual_sft, eval.
 *
 * Each becomes one or more engine steps: argv = the engine's command (the
 * recipe's "engine", else the reference engine bin/anneal-engine) plus a
 * subcommand (gen-data, pretrain, ...); the stage's "config" object is the
 * step's $ANNEAL_PARAMS file (values of the exact form "${params.X}" take
 * the param's value and type; other strings have ${params.X} substituted),
 * checked key by key against engine/config.h when the engine is the
 * reference one. Inputs are given by role ("inputs": {"init":
 * "pretrain.model"}) and become lineage roles of the outputs.
 *
 *   {"id": "pretrain", "kind": "pretrain",
 *    "inputs": {"data": "data.corpus"},
 *    "config": {"hidden": [256], "steps": "${params.pretrain_steps}"},
 *    "resources": {"npus": 8}, "retries": 2, "timeout": "12h"}
 *
 * distill with "iterations": N and a "merge" block expands to distill.1,
 * distill.merge.1, ..., distill.N, distill.merge.N; eval with "models": [...]
 * to one step per model. See docs/recipes.md. */
#ifndef ANNEAL_STAGES_TRAIN_H
#define ANNEAL_STAGES_TRAIN_H

#include "stages/stage.h"

int data_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		const char *id, const char *where, struct stage_out *out,
		struct err *err);
int pretrain_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		    const char *id, const char *where, struct stage_out *out,
		    struct err *err);
int sft_expand(const struct stage_ctx *ctx, const struct jnode *obj,
	       const char *id, const char *where, struct stage_out *out,
	       struct err *err);
int rl_expand(const struct stage_ctx *ctx, const struct jnode *obj,
	      const char *id, const char *where, struct stage_out *out,
	      struct err *err);
int dual_sft_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		    const char *id, const char *where, struct stage_out *out,
		    struct err *err);
int distill_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		   const char *id, const char *where, struct stage_out *out,
		   struct err *err);
int eval_expand(const struct stage_ctx *ctx, const struct jnode *obj,
		const char *id, const char *where, struct stage_out *out,
		struct err *err);

/* ---- Shared by the kinds (stages/train.c) ---- */

/* The engine a stage runs: the stage's "engine", else the recipe's, else
 * the reference engine next to the anneal binary. */
struct engine_spec {
	char **argv;          /* the command, NULL-terminated */
	size_t argc;
	struct env_var *env;  /* engine.env then the stage's env */
	size_t nenv;
	int reference;        /* argv[0] is anneal-engine: configs are checked */
};
int engine_resolve(const struct stage_ctx *ctx, const struct jnode *obj,
		   const char *where, struct engine_spec *e, struct err *err);
void engine_spec_free(struct engine_spec *e);

/* The stage's "config" as JSON text for subcommand cmd, params
 * substituted, checked when e->reference; extra_key (if not NULL) is set
 * to extra_val (distill's "iteration"). */
int engine_config(const struct stage_ctx *ctx, const struct jnode *obj,
		  const char *where, const char *cmd,
		  const struct engine_spec *e, const char *extra_key,
		  long long extra_val, char **json, struct err *err);

/* v itself, or the param's value when v is exactly "${params.X}" (then
 * an unknown X is an error at where). For fields that are numbers. */
int engine_param_value(const struct stage_ctx *ctx, const struct jnode *v,
		       const char *where, const struct jnode **out,
		       struct err *err);

/* Substitutes params throughout n (a copy the caller owns): strings that
 * are exactly "${params.X}" become X's value, other strings templates. */
int engine_subst_params(const struct stage_ctx *ctx, struct jnode *n,
			const char *where, struct err *err);

/* A new step running e's command + cmd, with e's env and the config. */
void engine_step_init(struct step *st, const struct engine_spec *e,
		      const char *cmd, const char *id, const char *kind,
		      const char *stage, const struct stage_ctx *ctx);

/* Adds input role from what the user wrote ("STAGE.OUTPUT", "STAGE[K].OUTPUT"
 * or "@REF", at JSON path where) — a reference of step out->nsteps — or,
 * with text NULL, from step link_step's output link_output. */
int engine_add_input(struct step *st, struct stage_out *out, const char *role,
		     const char *text, const char *where, const char *link_step,
		     const char *link_output, struct err *err);
void engine_add_output(struct step *st, const char *name,
		       enum artifact_type type, const char *artifact);

/* A kind's input roles. */
struct role_spec {
	const char *name;
	int required;
};
/* Reads "inputs" (an object of role -> reference) against roles[0..n):
 * unknown roles with did-you-mean, missing required ones. texts[i] and
 * wheres[i] (malloc'd, caller frees) get what was written for roles[i],
 * or NULL when absent. */
int engine_get_inputs(const struct jnode *obj, const char *where,
		      const struct role_spec *roles, size_t n, char **texts,
		      char **wheres, struct err *err);

#endif
