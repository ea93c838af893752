/* artifacts/bundle.h — bundles: artifacts with their lineage, in one file
 * another workspace can import (anneal export / anneal import).
 *
 * A bundle is a POSIX tar archive (pax restricted) compressed with zstd,
 * readable by plain `tar --zstd -xf`:
 *
 *     anneal-bundle.json    first: the records, parents before children
 *     objects/<sha256>      the files' bytes, each distinct content once
 *
 * The records always cover the exported artifact and every ancestor, so
 * that each lineage digest can be recomputed where it is imported; the
 * bytes are those of the exported artifact alone, or (with_ancestors) of
 * every ancestor too. docs/bundles.md describes the JSON.
 *
 * Import trusts nothing in the file. It reads the archive in one streaming
 * pass and never extracts by path: the JSON is parsed (size-limited), each
 * object's bytes are streamed through a hash into a staging directory of
 * its own and must hash to the entry's name and have the size the
 * manifests give; any link, device, FIFO, directory, absolute or ".."
 * name, unexpected name, duplicate entry or read error refuses the whole
 * bundle. Then every manifest must parse and hash to its digest, every
 * file must be in the bundle or already in the store, and every lineage
 * digest must recompute in the catalog (a dry run, rolled back). Only then
 * do the staged objects enter the store and the records the catalog (one
 * transaction). A refused bundle leaves no row and no object behind. */
#ifndef ANNEAL_BUNDLE_H
#define ANNEAL_BUNDLE_H

#include <stddef.h>
#include <stdint.h>

struct err;
struct state;
struct store;

#define BUNDLE_FORMAT_VERSION 1
#define BUNDLE_JSON_NAME "anneal-bundle.json"

/* What an export wrote or an import read. */
struct bundle_summary {
	size_t artifacts;       /* records */
	size_t with_bytes;      /* records whose bytes the bundle carries */
	size_t objects;         /* objects/ entries */
	uint64_t object_bytes;  /* their total size */
};

/* Writes the bundle of artifact id to path, whole or not at all (a
 * temporary sibling, fsynced, renamed; the directory fsynced). Each object
 * is re-hashed as it is written: a damaged store refuses the export rather
 * than shipping bad bytes, and so does a lineage digest that no longer
 * recomputes. Artifacts whose bytes were pruned travel as records only.
 * out may be NULL. */
int bundle_export(struct state *st, struct store *store, int64_t id,
		  int with_ancestors, const char *path, struct bundle_summary *out,
		  struct err *err);

/* Limits on what an import reads (0: the default). */
struct bundle_limits {
	uint64_t max_entries;     /* default 1,000,000 */
	uint64_t max_json_bytes;  /* default 64 MiB */
};

struct bundle_imported {
	int64_t id;      /* the artifact here */
	int created;     /* 0: it was already here (same lineage digest), reused */
	int pruned;      /* registered without its bytes */
};

struct bundle_import_result {
	struct bundle_imported *v;  /* one per record, in the bundle's order */
	size_t n;
	int64_t root;               /* the exported artifact, here */
	struct bundle_summary summary;
};
void bundle_import_result_clear(struct bundle_import_result *r); /* NULL-safe */

/* Verifies and imports the bundle at path (see above). staging is a
 * directory on the store's filesystem (the workspace's .anneal/import)
 * where the import stages objects in a subdirectory of its own, held with
 * flock(2) while it lives; stale ones (their importer died) are removed
 * by the next import. ERR_INVALID, naming the entry or the record, for
 * anything wrong with the bundle; *out (the caller's) is filled on
 * success only. lim may be NULL. */
int bundle_import(struct state *st, struct store *store, const char *staging,
		  const char *path, const struct bundle_limits *lim,
		  struct bundle_import_result *out, struct err *err);

#endif
