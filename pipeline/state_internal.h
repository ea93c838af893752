/* pipeline/state_internal.h — what the two files of the state store share.
 *
 * The store is one module in two files: state.c (runs, steps, attempts,
 * events) and catalog.c (artifacts, lineage, aliases). Only they include
 * this header, and with it sqlite3.h; nothing outside the store sees
 * SQLite. The schema, with its migrations, lives in state.c. */
#ifndef ANNEAL_STATE_INTERNAL_H
#define ANNEAL_STATE_INTERNAL_H

#include <sqlite3.h>

struct err;
struct state;

sqlite3 *state_sqlite(struct state *st);
/* BEGIN IMMEDIATE (write) or a read transaction / COMMIT or ROLLBACK:
 * state_tx_end commits when ret is 0, rolls back otherwise, returns ret
 * (or the commit's error). */
int state_tx_begin(struct state *st, int write, struct err *err);
int state_tx_end(struct state *st, int ret, struct err *err);
/* "state database: <what>: <sqlite3_errmsg>", ERR_BUSY when locked. */
int state_sql_err(struct state *st, int rc, struct err *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Where catalog.c keeps its prepared statements. */
void **state_catalog_slot(struct state *st);
/* Finalizes them (called by state_close). */
void catalog_release(struct state *st);

#endif
