/* artifacts/store.h — content-addressed objects; never changed once written.
 *
 * Layout under the root the caller gives (a workspace's .anneal/store):
 *
 *     objects/<2 hex>/<62 hex>   one file per distinct content, mode 0444,
 *                                named by the SHA-256 of its bytes
 *     tmp/<pid>.<random>         staging files of writers at work
 *
 * Directories are 0700. An object appears under its final name only when
 * it is complete (link(2) of a finished file), and is never replaced: a
 * second writer of the same bytes finds it there and uses it. A staging
 * file is held with an exclusive flock(2) by its writer for its whole
 * life; store_open removes the ones nobody holds (their writer died), so
 * a crash, a kill or a full disk leaves either a complete object or a
 * stale staging file that the next open removes.
 *
 * Objects are hard links: an ingested output, the object and every
 * checkout share one inode, read-only, so a 100 GB checkpoint is stored
 * once and never copied on one filesystem. The exec bit belongs to the
 * manifest, not to the object (as in git): objects are always 0444.
 *
 * Thread safety: a struct store may be used by several threads at once;
 * several processes may use one store directory at once.
 *
 * Fault points (base/fault.h): "store.ingested" (every object of an
 * ingest in place, directories not yet fsynced, nothing returned to the
 * caller to register) and "store.checkout_rename" (a checkout complete
 * under its temporary name). */
#ifndef ANNEAL_STORE_H
#define ANNEAL_STORE_H

#include <stdint.h>

#include "artifacts/tree.h"
#include "base/hash.h"

struct err;
struct store;                                         /* opaque */

enum store_mode {
	/* Hard-link each file into objects/ when it is on the store's
	 * filesystem: the source path keeps its inode, which becomes the
	 * object (fsynced, made 0444). A file whose content is already stored
	 * is replaced, atomically, by a link to the existing object (a link
	 * under a temporary name in its directory, renamed over it), so the
	 * bytes exist once. Files on another filesystem (EXDEV), files anneal
	 * cannot link or chmod (not the owner, protected_hardlinks),
	 * executable files (whose mode the shared inode would lose) and files
	 * with other hard links (names anneal does not own, perhaps outside
	 * the tree: they must not become read-only, nor a way to write into
	 * the object) are copied as STORE_COPY does. Link mode
	 * trusts the contract that an output is finished when reported: a
	 * process still holding a source open for writing could change the
	 * object afterwards (store_verify with deep finds it). */
	STORE_LINK,
	/* Copy each file into tmp/ while it is hashed (one read, one hash
	 * per byte), fsync, and link it into objects/; the source is left as
	 * it is. */
	STORE_COPY,
};

/* Opens (creating objects/ and tmp/, 0700) the store at root and removes
 * staging files whose writer is gone. *out is the caller's. */
int store_open(struct store **out, const char *root, struct err *err);
void store_free(struct store *s);                     /* NULL-safe */

/* Hashes src (a directory or a single file) on nthreads threads (<= 0:
 * one per CPU) and puts every file into objects/; *out gets the manifest
 * (the caller's, manifest_free; zeroed on failure). The walk refuses
 * hostile trees (symlinks, devices, ...) before anything is stored. On
 * failure, the objects already stored stay (complete, and unreferenced
 * until an artifact names them: gc's business); nothing else is left.
 * Each object directory written to is fsynced before returning. */
int store_ingest_tree(struct store *s, const char *src, enum store_mode mode,
		      int nthreads, struct manifest *out, struct err *err);

/* store_ingest_tree of src inside top (tree_scan_under): a step's output
 * or checkpoint, which must not lead out of the run's work dir. */
int store_ingest_under(struct store *s, const char *top, const char *src,
		       enum store_mode mode, int nthreads, struct manifest *out,
		       struct err *err);

/* 1 if the object is present (*size, if non-NULL, gets its size), else 0.
 * Presence only: store_verify checks it. */
int store_has(struct store *s, const struct digest *d, uint64_t *size);

/* The path of the object (whether or not present); malloc'd. */
char *store_object_path(const struct store *s, const struct digest *d);

/* Checks one object: ERR_NOTFOUND when missing, ERR_INVALID when it is
 * not a regular file, is writable, or has not `size` bytes; with deep,
 * also re-hashes it and compares with d (ERR_INVALID on a mismatch). The
 * message names the object by its digest. */
int store_verify(struct store *s, const struct digest *d, uint64_t size,
		 int deep, struct err *err);

/* Materialises m at dst, which must not exist: files are hard links to
 * the objects (copies when dst is on another filesystem, and for
 * executable entries, which get 0555), directories are made 0555. Built
 * under a temporary sibling name and renamed into place, so dst is whole
 * or absent (a crash may leave the sibling "DST.anneal-tmp.*"). Every
 * object must be present with its size. A single-file manifest (path
 * ".") makes dst a file. */
int store_checkout(struct store *s, const struct manifest *m, const char *dst,
		   struct err *err);

/* Removes one object (gc). ERR_NOTFOUND if it was not there. Checkouts
 * keep their bytes (their own links). */
int store_remove_object(struct store *s, const struct digest *d, struct err *err);

/* One file found under objects/ by store_list. */
struct store_entry {
	struct digest digest;  /* parsed from the name; zero when stray */
	uint64_t size;
	const char *path;      /* borrowed for the callback's duration */
	int stray;             /* 1: not an object (bad name, not a regular
				* file): audit reports it */
};

/* Calls fn for every entry under objects/, in no particular order. A
 * non-zero return from fn stops the walk and is returned. */
typedef int (*store_list_fn)(void *ctx, const struct store_entry *e);
int store_list(struct store *s, store_list_fn fn, void *ctx, struct err *err);

#endif
