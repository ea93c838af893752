/* pipeline/catalog_audit.c — the catalog's side of `anneal audit`: facts
 * that only SQL can check (dangling edges, producers that are gone, runs
 * without provenance). Part of the state store (state_internal.h); the
 * policy and the byte checks are in artifacts/audit.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "pipeline/catalog.h"
#include "pipeline/catalog_audit.h"
#include "pipeline/state.h"
#include "pipeline/state_internal.h"

static int each_row(struct state *st, const char *sql, int64_t bind,
		    catalog_finding_fn fn, void *ctx, const char *what,
		    struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc, ret = 0;

	rc = sqlite3_prepare_v2(state_sqlite(st), sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return state_sql_err(st, rc, err, "prepare %s", what);
	if (bind)
		sqlite3_bind_int64(s, 1, bind);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW && !ret) {
		const char *t = (const char *)sqlite3_column_text(s, 1);
		ret = fn(ctx, sqlite3_column_int64(s, 0), t ? t : "");
	}
	if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = state_sql_err(st, rc, err, "%s", what);
	sqlite3_finalize(s);
	return ret;
}

int catalog_audit_rows(struct state *st, catalog_finding_fn fn, void *ctx,
		       struct err *err)
{
	static const struct {
		const char *what;
		const char *sql;
	} checks[] = {
		{ "dangling lineage edges",
		  "SELECT l.child, 'lineage edge to missing parent ' || l.parent || ' (' || l.role || ')'"
		  " FROM lineage l LEFT JOIN artifacts p ON p.id = l.parent WHERE p.id IS NULL"
		  " UNION ALL"
		  " SELECT l.child, 'lineage edge from missing child (parent ' || l.parent || ')'"
		  " FROM lineage l LEFT JOIN artifacts c ON c.id = l.child WHERE c.id IS NULL" },
		{ "producers",
		  "SELECT a.id, CASE"
		  "  WHEN a.run_id IS NULL OR a.step_id IS NULL THEN 'no producing step recorded'"
		  "  WHEN NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = a.run_id)"
		  "    THEN 'its run ' || a.run_id || ' is gone'"
		  "  WHEN NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = a.run_id AND s.id = a.step_id)"
		  "    THEN 'its step ''' || a.step_id || ''' of run ' || a.run_id || ' is gone'"
		  "  ELSE 'run ' || a.run_id || ' recorded no provenance' END"
		  " FROM artifacts a WHERE a.kind IN ('output', 'intermediate') AND ("
		  "  a.run_id IS NULL OR a.step_id IS NULL"
		  "  OR NOT EXISTS (SELECT 1 FROM steps s WHERE s.run_id = a.run_id AND s.id = a.step_id)"
		  "  OR (SELECT provenance FROM runs r WHERE r.id = a.run_id) IS NULL)" },
		{ "roots",
		  "SELECT id, 'a root without an origin' FROM artifacts"
		  " WHERE kind = 'root' AND (origin IS NULL OR origin = '')" },
		{ "versions",
		  "SELECT id, 'a named artifact without a version' FROM artifacts"
		  " WHERE name IS NOT NULL AND (version IS NULL OR version < 1)" },
		{ "aliases",
		  "SELECT 0, 'alias ''' || alias || ''' points at missing artifact ' || artifact"
		  " FROM aliases WHERE artifact NOT IN (SELECT id FROM artifacts)" },
	};
	int ret = 0;

	for (size_t i = 0; i < sizeof(checks) / sizeof(*checks) && !ret; i++)
		ret = each_row(st, checks[i].sql, 0, fn, ctx, checks[i].what, err);
	return ret;
}
