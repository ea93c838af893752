/* artifacts/audit.h — is every stored byte still what was recorded?
 *
 * For each artifact checked: its manifest parses and hashes to its digest;
 * unless its bytes were pruned, every object its manifest names is in the
 * store, read-only, with the right size (deep: re-hashed); its lineage
 * digest recomputes from its recorded facts and its parents' lineage
 * digests, so an edited row anywhere upstream shows. A whole-workspace
 * audit also checks the catalog's rows (producers, provenance, dangling
 * edges) and scans the store for stray files; objects nothing references
 * and leftover staging files are reported as notes (gc's business), not
 * as findings. */
#ifndef ANNEAL_AUDIT_H
#define ANNEAL_AUDIT_H

#include <stddef.h>
#include <stdint.h>

struct err;
struct state;
struct store;

struct audit_item {
	int64_t artifact;   /* 0 when about no single artifact */
	char *ref;          /* "student@4", or "(checkpoint 1a2b3c4d5e6f)" */
	char *what;
};

struct audit_report {
	struct audit_item *findings;
	size_t nfindings;
	struct audit_item *notes;
	size_t nnotes;
	size_t artifacts;       /* checked */
	size_t objects;         /* object references checked */
	uint64_t bytes_hashed;  /* deep */
};

/* Audits artifact `only` and its ancestors, or everything (only == 0).
 * Returns 0 whatever it finds (findings are in *out); an error only when
 * the audit itself could not run. */
int audit_run(struct state *st, struct store *store, int64_t only, int deep,
	      struct audit_report *out, struct err *err);
void audit_report_clear(struct audit_report *r);

/* Adds notes for leftovers of writers that died between two syscalls:
 * partial checkouts (store/checkouts/ *.anneal-tmp.*), import staging
 * directories, and ingest's temporary links (.anneal-link.PID.RANDOM) in the
 * work dirs under runs/. dir is the workspace's .anneal. */
void audit_temp_files(const char *dir, struct audit_report *r);

#endif
