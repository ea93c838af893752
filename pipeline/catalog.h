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

/* REF as catalog_resolve reads it, before anything is looked up: "NAME@N"
 * (at the last '@', which is not the first character; N a positive
 * 32-bit number written in digits only, without a leading zero) is
 * REF_VERSION; anything else is REF_WORD: a name (its latest version), an
 * alias or, when digest_prefix, a prefix of a digest (6 to 64 lowercase
 * hex digits). ERR_INVALID for "" and for NAME@ followed by anything but
 * such a number. out->name is malloc'd (catalog_ref_clear). */
enum catalog_ref_form { REF_WORD, REF_VERSION };
struct catalog_ref {
	enum catalog_ref_form form;
	char *name;          /* REF_VERSION: NAME; REF_WORD: REF itself */
	int version;         /* REF_VERSION: N */
	int digest_prefix;   /* REF_WORD: it may be a digest prefix */
};
int catalog_ref_parse(const char *ref, struct catalog_ref *out, struct err *err);
void catalog_ref_clear(struct catalog_ref *r);   /* NULL-safe; zeroes */

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

/* ---- bundles (artifacts/bundle.c: anneal export / import) ---------------- */

/* A parent of an artifact being imported: an earlier item of its batch. */
struct catalog_import_parent {
	size_t item;             /* index in the batch, below the child's */
	const char *role;
	int has_weight;
	double weight;
};

/* An artifact as another workspace recorded it (a bundle's record). */
struct catalog_import_item {
	const char *lineage;     /* its lineage digest there: must recompute here */
	const char *name;        /* NULL: unnamed there (an intermediate) */
	enum artifact_type type;
	const char *digest;      /* hex SHA-256 of manifest */
	const char *manifest;
	uint64_t bytes, files;
	/* The producer as recorded there (NULL / 0 / -1 when none). Run ids
	 * are local to a workspace: an imported artifact has none. */
	const char *step;
	int attempt;
	long long engine_step;
	const char *step_key, *recipe_digest, *git_commit, *git_dirty, *origin;
	int pruned;              /* 1: its bytes are not in the store */
	const struct catalog_import_parent *parents;
	size_t nparents;
};

/* Registers n artifacts from another workspace in ONE transaction, in
 * order (parents before children). An item whose lineage digest is
 * already here (under the same name; any artifact for an unnamed item) is
 * reused: ids[i] is that artifact, created[i] 0 (its own lineage digest
 * must still recompute). Every other item becomes an AK_IMPORTED artifact,
 * the next version of its name, with its recorded facts and parents; the
 * lineage digest the catalog computes for it must equal item.lineage.
 * Any difference: ERR_INVALID ("lineage digest X does not recompute ...";
 * *at gets the item's index, n otherwise) and nothing is registered. With
 * commit 0 everything is checked, then rolled back (a dry run: ids are
 * meaningless afterwards). created may be NULL. */
int catalog_import(struct state *st, const struct catalog_import_item *items,
		   size_t n, int commit, int64_t *ids, int *created, size_t *at,
		   struct err *err);

/* ---- gc (artifacts/gc.c: anneal gc; bench/lineage) ------------------------ */

/* What garbage collection needs to know of one artifact to decide whether
 * its bytes stay: the facts, raw; the policy is artifacts/gc.c's. */
struct catalog_gc_item {
	int64_t id;
	enum artifact_kind kind;
	char digest[DIGEST_HEX_LEN + 1];
	int pruned;              /* its bytes were let go */
	int latest;              /* the latest version of its name */
	int tagged;              /* an alias names it */
	int run_state;           /* its producing run's enum run_state
				  * (pipeline/state.h); -1: no run made it */
	unsigned used_by;        /* bit (1u << enum run_state) for each run
				  * that takes it as an input or records it
				  * as a step's output (a cached step) */
	int resume_point;        /* the latest checkpoint of its step in its run */
	char *manifest;          /* NULL unless loaded (see below) */
};

struct catalog_gc_edge {
	int64_t child, parent;
};

/* The catalog as gc sees it, at one instant. */
struct catalog_gc_view {
	struct catalog_gc_item *items;   /* ascending id */
	size_t n;
	struct catalog_gc_edge *edges;   /* every lineage edge, no order */
	size_t nedges;
	int64_t max_id;                  /* the highest artifact id (0: none) */
	/* When the earliest attempt still recorded running started (wall
	 * clock; 0: none). A run registers what it stores (a checkpoint, an
	 * output) before its attempt ends, so an object stored but not yet
	 * registered is younger than this. */
	double busy_since;
};
void catalog_gc_view_free(struct catalog_gc_view *v);   /* NULL-safe; zeroes */
/* The item with this id, or NULL (a binary search: borrowed from v). */
const struct catalog_gc_item *catalog_gc_find(const struct catalog_gc_view *v,
					      int64_t id);

/* Loads the view (every manifest included) in ONE read transaction and,
 * still inside it, calls during(ctx, view, err) (may be NULL): gc lists
 * the store there, so that the catalog and the objects are one snapshot.
 * A non-zero return from during is returned as is. *out is the caller's,
 * zeroed on failure. */
typedef int (*catalog_gc_fn)(void *ctx, const struct catalog_gc_view *v,
			     struct err *err);
int catalog_gc_snapshot(struct state *st, catalog_gc_fn during, void *ctx,
			struct catalog_gc_view *out, struct err *err);

/* In ONE write transaction (BEGIN IMMEDIATE): loads the view afresh (the
 * manifests only of artifacts with id > manifests_after: those registered
 * since a snapshot), asks pick which artifacts to mark pruned (*ids is
 * malloc'd by pick, freed here; ids that are already pruned or unknown are
 * skipped), marks them, commits. So a decision is taken on the facts of
 * the instant it is written: a tag or a run that appeared since the
 * snapshot is seen. *marked: the rows that changed. Nothing is deleted:
 * lineage records stay. */
typedef int (*catalog_gc_pick_fn)(void *ctx, const struct catalog_gc_view *now,
				  int64_t **ids, size_t *n, struct err *err);
int catalog_gc_prune(struct state *st, int64_t manifests_after,
		     catalog_gc_pick_fn pick, void *ctx, size_t *marked,
		     struct err *err);

/* Registers n artifacts in ONE transaction, as catalog_register does each
 * (same versions, deduplication and lineage digests): for histories
 * registered in bulk (bench/lineage builds 1,000,000). A parent id < 0
 * names an earlier item of the batch: -1 is items[0], -2 items[1]...
 * ids[i] gets each artifact's id. All or nothing. */
int catalog_register_many(struct state *st, const struct artifact_new *items,
			  size_t n, int64_t *ids, struct err *err);

#endif
