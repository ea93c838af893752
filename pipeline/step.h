/* pipeline/step.h — the expanded step: what the scheduler runs.
 *
 * Stage kinds (stages/) turn recipe stages into steps; the state store
 * (pipeline/state) saves them at run start and loads them on resume, so a
 * run's plan never changes after it starts. argv and env values are
 * templates: ${params.KEY} is resolved at expansion, ${inputs.ROLE} and
 * ${outputs.NAME} only when the step starts (their paths depend on the run). */
#ifndef ANNEAL_STEP_H
#define ANNEAL_STEP_H

#include <stddef.h>
#include <stdint.h>

enum artifact_type { ART_CHECKPOINT, ART_DATASET, ART_REPORT };

/* "checkpoint" etc.; parse returns 0 or ERR_INVALID. */
const char *artifact_type_name(enum artifact_type t);
int artifact_type_parse(const char *s, enum artifact_type *out);

struct resources {
	int cpus;      /* default 1 */
	int gpus;
	int npus;
	long mem_mb;   /* 0: not declared */
	int nodes;           /* 0 or 1: one machine; more: a multi-node job (Slurm) */
	int tasks_per_node;  /* 0 or 1: one process; more: srun starts that many per node */
};

struct env_var {
	char *key;
	char *value;   /* template */
};

struct step_input {
	char *role;        /* "teacher" */
	char *from_step;   /* producing step id, "distill.2"; NULL for an artifact */
	char *from_output; /* output name of that step, "model"; NULL for an artifact */
	char *ref;         /* "@REF" inputs: the REF as written (base-model@2) */
	int64_t artifact;  /* ... resolved when the run is recorded (catalog id) */
	/* How the output's lineage names this parent, when not by the role:
	 * a merge's models are all "merge-input", each with its weight. */
	char *edge_role;   /* NULL: the role */
	int has_weight;
	double weight;
};

struct step_output {
	char *name;                 /* "model" */
	enum artifact_type type;
	char *artifact;             /* versioned as: "STAGE.OUTPUT" or the recipe's name */
};

/* 1 if s can name an artifact: 1-128 of [A-Za-z0-9_.-], not starting
 * with '.' or '-' (no '@', which separates versions, nor '/'). */
int artifact_name_valid(const char *s);

struct retry_policy {
	int max;            /* retries after the first attempt; default 0 */
	double backoff_s;   /* first delay; doubles each retry, capped at 300 s; default 1 */
};

struct step {
	char *id;          /* unique in the run: "train", "distill.2" */
	char *kind;        /* stage kind: "exec", ... */
	char *stage;       /* the recipe stage id it came from */
	char **argv;       /* NULL-terminated templates, argc >= 1 */
	size_t argc;
	struct env_var *env;
	size_t nenv;
	struct step_input *inputs;
	size_t ninputs;
	struct step_output *outputs;
	size_t noutputs;
	char **after;      /* extra dependencies (step ids), besides inputs */
	size_t nafter;
	struct resources res;
	struct retry_policy retry;
	long long timeout_s;  /* 0: none */
	/* The params this step sees ($ANNEAL_PARAMS) and its cache key covers,
	 * a JSON object: for exec, those its argv and env name plus those its
	 * "params" field lists. Changing another param leaves it cached.
	 * NULL means {}. */
	char *params_json;
	/* The stage's runner options ("slurm": {"partition": ..., "account":
	 * ..., "qos": ..., "sbatch": [...]}) as compact JSON, or NULL. */
	char *runner_json;
};

/* Frees the members of s (not s itself); NULL-safe. */
void step_clear(struct step *s);
/* Deep copy. */
void step_copy(struct step *dst, const struct step *src);

#endif
