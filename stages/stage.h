/* stages/stage.h — stage kinds: how one kind of recipe stage validates its
 * fields and expands into steps.
 *
 * The recipe parser (pipeline/recipe.c) handles the top level and calls a
 * kind's expand() for each stage object. A kind validates every field it
 * accepts (unknown fields are errors), then appends one or more steps and
 * says which step produces each of the stage's outputs, so that other
 * stages can refer to "STAGE.OUTPUT" whatever the expansion looks like
 * (distill with iterations: 3 exports its last merge's model). */
#ifndef ANNEAL_STAGE_H
#define ANNEAL_STAGE_H

#include <stddef.h>

#include "pipeline/json.h"
#include "pipeline/step.h"

struct buf;
struct err;
struct jnode;
struct strv;

/* What a kind sees of the recipe while expanding one stage. */
struct stage_ctx {
	const char *file;            /* recipe path, for messages */
	const struct jnode *params;  /* the params object (after --set) */
	const struct jnode *engine;  /* top-level engine or NULL */
	struct resources defaults;   /* top-level resources */
};

/* A stage output as seen by other stages: STAGE.NAME -> step.output */
struct stage_export {
	char *name;        /* the stage-level output name */
	char *step;        /* producing step id */
	char *output;      /* output name within that step */
	enum artifact_type type;
};

/* What expand() produces for one stage. References the user wrote are
 * recorded with stage_out_add_ref(), and only those are resolved by the
 * recipe parser once all stages are expanded: an input's from_step and
 * from_output hold "STAGE" and "OUTPUT" as written and become the
 * producing step and output through that stage's exports; an after[]
 * entry holds a stage id and becomes every step of that stage. Entries
 * without a record are the kind's own links between its steps (merge.1
 * after distill.1) and must already name step ids and step outputs. */
struct stage_out {
	struct step *steps;
	size_t nsteps;
	struct stage_export *exports;
	size_t nexports;
	struct stage_ref *refs;    /* where references were written (messages) */
	size_t nrefs;
};
/* Frees everything o holds and empties it; NULL-safe. */
void stage_out_clear(struct stage_out *o);

/* A reference the user wrote: steps[step].inputs[index] (or
 * .after[index] when is_after), written at JSON path `where`, e.g.
 * `stages[2] ("d").inputs.teacher`, which messages about it name. */
struct stage_ref {
	size_t step;
	int is_after;
	size_t index;
	char *where;
};
void stage_out_add_ref(struct stage_out *o, size_t step, int is_after,
		       size_t index, const char *where);

struct stage_kind {
	const char *name;
	/* Validates obj (a JSON object; "id" and "kind" already checked) and
	 * appends steps. where is the JSON-path prefix for messages, e.g.
	 * `stages[2] ("train")`; errors are ERR_INVALID and start with it
	 * (the parser adds the file name). */
	int (*expand)(const struct stage_ctx *ctx, const struct jnode *obj,
		      const char *id, const char *where, struct stage_out *out,
		      struct err *err);
};

/* The kind named name, or NULL. */
const struct stage_kind *stage_kind_find(const char *name);
/* All kind names (for "did you mean"). */
const char *const *stage_kind_names(size_t *n);

/* ---- Field checks shared by kinds (and the recipe's top level) ----
 * where is the JSON path of the value being checked ("" at the top level);
 * every error is ERR_INVALID and reads "WHERE: what". */

/* Sets "WHERE: what" (or just "what" when where is ""). */
int stage_err(struct err *err, const char *where, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* where + "." + field (or field alone when where is ""); malloc'd. */
char *stage_path(const char *where, const char *field);

/* Every member of obj (an object) must be in allowed[0..n):
 * "WHERE: unknown field 'comand' (did you mean 'command'?)". */
int stage_check_fields(const struct jnode *obj, const char *where,
		       const char *const *allowed, size_t n, struct err *err);

/* did_you_mean(), also accepting one swap of adjacent letters ("exce"
 * for "exec"), which plain edit distance counts as two edits. */
const char *stage_suggest(const char *word, const char *const *cands,
			  size_t n);

/* "WHERE: must be a TYPE, not number" unless v has type t. */
int stage_want_type(const struct jnode *v, enum jtype t, const char *where,
		    struct err *err);

/* An integer in [min, max]: "must be an integer >= 1, not -2",
 * "must be an integer <= 4096, not 5000", "must be an integer, not 1.5". */
int stage_get_int(const struct jnode *v, const char *where, long long min,
		  long long max, long long *out, struct err *err);

/* 1 if s is 1..64 of [A-Za-z0-9_-] (a stage id: no dots). */
int stage_id_valid(const char *s);
/* 1 if s can name an environment variable: [A-Za-z_][A-Za-z0-9_]*. */
int stage_env_name_valid(const char *s);
/* 1 if s is 1..63 of [A-Za-z0-9_] (roles, output names). */
int stage_name_valid(const char *s);

/* The param at a dotted path ("opt.lr") in params, or NULL; then hint
 * (hint_size bytes) gets the closest existing path, or "". */
const struct jnode *stage_param_find(const struct jnode *params,
				     const char *path, char *hint,
				     size_t hint_size);
/* Appends a param's value as ${params.X} substitutes it: strings raw,
 * numbers as json_write writes them, true/false, null, arrays and objects
 * as compact JSON. */
void stage_param_text(const struct jnode *v, struct buf *out);

#define STAGE_MAX_CPUS 4096
#define STAGE_MAX_MEM_MB (1L << 30)
#define STAGE_MAX_NODES 100000
#define STAGE_MAX_RETRIES 100
#define STAGE_MAX_TIMEOUT_S (30LL * 86400)
#define STAGE_MAX_BACKOFF_S 86400LL

/* "resources": {cpus, gpus, npus, mem_mb}; fields present override *res. */
int stage_get_resources(const struct jnode *v, const char *where,
			struct resources *res, struct err *err);
/* "retries": N, or {"max": N, "backoff": "10s"}; backoff defaults to 1 s. */
int stage_get_retries(const struct jnode *v, const char *where,
		      struct retry_policy *out, struct err *err);
/* "timeout": seconds (> 0) or a duration string; at most 30 days. */
int stage_get_timeout(const struct jnode *v, const char *where,
		      long long *out, struct err *err);

/* The fields every kind that runs steps accepts: "after" (stage ids,
 * recorded as references of step out->nsteps), "resources", "retries",
 * "timeout". Absent fields leave st as it is. */
int stage_get_common(const struct jnode *obj, const char *where,
		     struct step *st, struct stage_out *out, struct err *err);

/* A merge weight: a finite number of magnitude <= 1e6. */
int stage_get_weight(const struct jnode *v, const char *where, double *out,
		     struct err *err);

/* text, "@REF", names a workspace artifact the way a run resolves it
 * (pipeline/catalog.h catalog_ref_parse: "@NAME", "@NAME@N", "@ALIAS",
 * "@DIGEST-PREFIX"; no '/', at most 200 bytes): what run would refuse is
 * refused at validation. ERR_INVALID naming where. */
int stage_check_ref(const char *text, const char *where, struct err *err);

/* An artifact name (artifact_name_valid); *out malloc'd. */
int stage_get_artifact_name(const struct jnode *v, const char *where,
			    char **out, struct err *err);

/* Appends an export: other stages' "STAGE.name" means step's output. */
void stage_out_export(struct stage_out *o, const char *name, const char *step,
		      const char *output, enum artifact_type type);

/* Records that a step uses param path ("opt.lr" counts as "opt"). */
void stage_param_use(struct strv *used, const char *path);
/* Validates a "params" field: an array of existing param names, each
 * recorded as used. */
int stage_get_param_names(const struct jnode *v, const char *where,
			  const struct jnode *params, struct strv *used,
			  struct err *err);
/* The used params as a JSON object in recipe order (malloc'd): what the
 * step sees as $ANNEAL_PARAMS and what its cache key covers. */
char *stage_params_subset(const struct jnode *params, const struct strv *used);

#endif
