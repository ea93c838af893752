/* pipeline/catalog.h — the artifact catalog: versioned, content-addressed
 * artifacts and their lineage, in the state store.
 *
 * An artifact is an immutable file tree whose bytes live in the content
 * store (artifacts/store); here it has a name and version (student@4), a
 * digest (SHA-256 of its manifest: its content), its producer (run, step,
 * attempt, the step's cache key, the recipe's digest, the git commit) and
 * its parents with roles (init, teacher, data, merge-input with a weight,
 * resumed-from, ...). Its lineage digest is SHA-256 over its digest, its
 * parents' lineage digests with roles and weights, and its producer's
 * key, recipe digest and commit — like a git commit, so that changing any
 * recorded fact or byte anywhere upstream breaks the chain (audit).
 *
 * Versions: NAME@N grows by one whenever NAME gets content it has not had;
 * registering content the name already has returns that version. NAME
 * alone is the latest version. Intermediate (intra-step) checkpoints have
 * no name: they are reached through lineage and by digest. */
#ifndef ANNEAL_CATALOG_H
#define ANNEAL_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "base/hash.h"
#include "pipeline/step.h"

struct err;
struct state;

enum artifact_kind { AK_OUTPUT, AK_INTERMEDIATE, AK_ROOT, AK_IMPORTED };

const char *artifact_kind_name(enum artifact_kind k);
int artifact_kind_parse(const char *s, enum artifact_kind *out);

struct lineage_parent {
	int64_t id;            /* the parent artifact */
	const char *role;      /* "data", "teacher", "merge-input", "resumed-from" */
	int has_weight;
	double weight;         /* merge weight */
};

struct artifact_new {
	enum artifact_kind kind;
	const char *name;            /* required except for intermediates */
	enum artifact_type type;
	const char *digest;          /* hex SHA-256 of manifest */
	const char *manifest;        /* the manifest text (artifacts/tree.h) */
	uint64_t bytes, files;
	/* producer; zero/NULL for roots and imports */
	int64_t run_id;
	const char *step;
	int attempt;
	long long engine_step;       /* intermediates: the engine's step, -1 if none */
	const char *step_key;
	const char *recipe_digest;
	const char *git_commit;
	const char *git_dirty;       /* digest of uncommitted changes, NULL if clean */
	const char *origin;          /* roots: where it came from */
	const char *path;            /* a directory holding its files (checked out) */
	const struct lineage_parent *parents;
	size_t nparents;
};

/* Registers an artifact, one transaction. A named artifact whose name
 * already has this content is not registered again: *id and *version are
 * those of the existing one and *created is 0. Otherwise the next version
 * is taken and *created is 1. Intermediates are deduplicated by lineage
 * digest. Parents must exist. */
int catalog_register(struct state *st, const struct artifact_new *a,
		     int64_t *id, int *version, int *created, struct err *err);

struct artifact_info {
	int64_t id;
	enum artifact_kind kind;
	char *name;              /* NULL for intermediates */
	int version;             /* 0 for intermediates */
	enum artifact_type type;
	char digest[DIGEST_HEX_LEN + 1];
	char lineage[DIGEST_HEX_LEN + 1];
	uint64_t bytes, files;
	int64_t run_id;          /* 0: none */
	char *step;
	int attempt;
	long long engine_step;
	char *step_key, *recipe_digest, *git_commit, *git_dirty;
	char *origin;
	char *path;
	double created;
	int pruned;
	char **aliases;          /* NULL-terminated */
	size_t naliases;
};
void artifact_info_clear(struct artifact_info *a);

int catalog_get(struct state *st, int64_t id, struct artifact_info *out,
		struct err *err);
/* The manifest text (malloc'd). */
int catalog_manifest(struct state *st, int64_t id, char **out, struct err *err);

/* Resolves REF: "NAME@N", "NAME" (latest version), an alias, or a hex
 * prefix (>= 6 digits) of a digest or lineage digest. ERR_NOTFOUND with
 * "no artifact 'x' (did you mean 'y'?)"; ERR_INVALID when a prefix is
 * ambiguous. */
int catalog_resolve(struct state *st, const char *ref, int64_t *id,
		    struct err *err);

/* Named artifacts: every version of name, or the latest of every name
 * (name NULL; all: every version of every name, and intermediates), in
 * name then version order. Caller frees (clear each, free array). */
int catalog_list(struct state *st, const char *name, int all,
		 struct artifact_info **out, size_t *n, struct err *err);

/* Sets (or moves) an alias. Aliases may not look like NAME@N or collide
 * with a name. */
int catalog_tag(struct state *st, const char *alias, int64_t id,
		struct err *err);

struct lineage_edge {
	int64_t child, parent;
	char *role;
	int has_weight;
	double weight;
	int depth;               /* 1 for direct parents (or children) */
};
void lineage_edge_clear(struct lineage_edge *e);

/* Ancestry (or, with descendants, descent) of id as edges, breadth first,
 * to max_depth (0: unlimited), each edge once. A recursive SQL query. */
int catalog_lineage(struct state *st, int64_t id, int descendants,
		    int max_depth, struct lineage_edge **out, size_t *n,
		    struct err *err);

/* The lineage digest of an artifact from its recorded facts (used by
 * catalog_register and by audit to recompute it): hex into out. */
int catalog_lineage_digest(struct state *st, int64_t id, char *out,
			   struct err *err);

/* Every artifact, by id, through fn (stops on non-zero, returned as is). */
typedef int (*catalog_each_fn)(void *ctx, const struct artifact_info *a);
int catalog_each(struct state *st, catalog_each_fn fn, void *ctx,
		 struct err *err);

/* Records a run's provenance (JSON text, commit, dirty digest). */
int catalog_set_run_provenance(struct state *st, int64_t run_id,
			       const char *json, const char *commit,
			       const char *dirty, struct err *err);
int catalog_run_provenance(struct state *st, int64_t run_id, char **json,
			   char **commit, char **dirty, struct err *err);

/* The latest value of each metric a step reported (name order). */
struct metric {
	char *name;
	double value;
};
int catalog_metrics(struct state *st, int64_t run_id, const char *step,
		    struct metric **out, size_t *n, struct err *err);
void metrics_free(struct metric *m, size_t n);

#endif
