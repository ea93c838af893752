/* artifacts/gc.h — garbage collection: which stored objects no artifact
 * needs any more, and their removal (anneal gc).
 *
 * An artifact is kept when it is
 *   - the latest version of its name, or tagged (an alias names it);
 *   - made by, or an input or step output of, a run that is not finished
 *     (running or interrupted): its intra-step checkpoints included;
 *   - the resume point (latest checkpoint of a step) of a run that failed
 *     or was cancelled: 'anneal resume' takes those too, and starts the
 *     step afresh when that checkpoint's bytes are gone;
 *   - an ancestor, through lineage, of a kept artifact. With
 *     prune_intermediate, intra-step checkpoints of finished runs are not
 *     kept for being ancestors (they are the bulk of a training run); the
 *     walk still goes through them to their own ancestors.
 * Every object a kept artifact's manifest names stays, and so does every
 * object any artifact that is not pruned names. The others go, and the
 * artifacts that lose bytes get pruned = 1. Catalog rows are never
 * deleted: lineage stays queryable, audit skips pruned bytes.
 *
 * Crash safety: the rows are marked pruned in one transaction before any
 * object is removed, so a crash leaves at worst objects that the next gc
 * removes, never an artifact that is not pruned and misses bytes.
 *
 * Concurrency with a run that stores artifacts meanwhile: the catalog and
 * the list of objects are read in one read transaction; the decision is
 * taken again, on the facts of that instant, inside the write transaction
 * that marks rows (a tag or a run that appeared in between is seen, and
 * artifacts registered in between keep their objects); and an object whose
 * inode changed (ctime or mtime) at or after gc's start, or after the start
 * of the earliest step attempt still recorded running, is never removed: a
 * run registers what it stores before that attempt ends, so this covers an
 * ingest of any length (the first shard of a checkpoint is stored minutes
 * before the last), and an object that an ingest links again just before
 * removal is seen by a second look at it. What this cannot see: an ingest
 * outside runs (`anneal add`, an import) that began before gc and
 * registers after it. Closing that needs a lock such ingests hold from
 * store to register and gc takes exclusively. */
#ifndef ANNEAL_GC_H
#define ANNEAL_GC_H

#include <stdint.h>

struct err;
struct state;
struct store;

struct gc_opts {
	int dry_run;              /* decide and report; change nothing */
	int prune_intermediate;   /* see above */
	/* When gc started, by the clock that stamps the store's files
	 * (gc_fs_now): objects changed at or after it are left alone. 0: the
	 * wall clock now, less a second (a filesystem's clock may disagree). */
	double start;
	/* Tests: called between the snapshot and the write transaction,
	 * outside any transaction (NULL: none). */
	void (*between)(void *ctx);
	void *between_ctx;
};

struct gc_report {
	uint64_t objects, bytes;   /* objects removed (dry run: that would be) */
	uint64_t bytes_freed;      /* of those bytes, the ones no other link held
				    * (a checkout or a run's work dir keeps its
				    * own hard link to an object's inode) */
	uint64_t pruned;           /* artifacts marked pruned */
	uint64_t checkouts;        /* stale checkouts removed */
	uint64_t objects_kept, bytes_kept;   /* objects that stay */
	uint64_t young;            /* of those, left for being newer than gc */
	uint64_t artifacts;        /* artifacts in the catalog */
	uint64_t kept;             /* of those, kept by the rules above */
};

/* The time now by the clock of the filesystem holding dir: the ctime of
 * a file made there (and removed). On a network filesystem the server
 * stamps files; its clock is the one objects are compared with. */
int gc_fs_now(const char *dir, double *out, struct err *err);

/* Collects garbage in store for the catalog in st; checkouts is the folder
 * of checkouts (store/checkouts/<digest>: removed when every artifact with
 * that digest is pruned; NULL: none). *out is filled on success (and, on
 * failure, with what was done before it). */
int gc_run(struct state *st, struct store *store, const char *checkouts,
	   const struct gc_opts *o, struct gc_report *out, struct err *err);

#endif
