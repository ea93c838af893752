/* pipeline/catalog_audit.h — row-level checks of the catalog for audit:
 * dangling lineage edges, producers that are gone, runs without
 * provenance, roots without an origin, aliases to nothing. */
#ifndef ANNEAL_CATALOG_AUDIT_H
#define ANNEAL_CATALOG_AUDIT_H

#include <stdint.h>

struct err;
struct state;

/* Called per finding: the artifact concerned (0 if none) and what is wrong.
 * A non-zero return stops the checks and is returned. */
typedef int (*catalog_finding_fn)(void *ctx, int64_t artifact, const char *what);

int catalog_audit_rows(struct state *st, catalog_finding_fn fn, void *ctx,
		       struct err *err);

#endif
