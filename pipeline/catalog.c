/* pipeline/catalog.c — see catalog.h. The second file of the state store
 * (state_internal.h): same database, same transactions discipline, its own
 * prepared statements.
 *
 * Workload: one registration per output and per intra-step checkpoint
 * (tens to thousands per run), lineage walks over histories of up to
 * millions of artifacts. Walks are recursive CTEs over indexed edges, so
 * their cost follows the size of the answer, not of the history. */
#include "pipeline/catalog.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "pipeline/json.h"
#include "pipeline/state.h"
#include "pipeline/state_internal.h"
#include "pipeline/step.h"

static const char *const kind_words[] = {
	[AK_OUTPUT] = "output",
	[AK_INTERMEDIATE] = "intermediate",
	[AK_ROOT] = "root",
	[AK_IMPORTED] = "imported",
};
#define NKINDS (sizeof(kind_words) / sizeof(*kind_words))

const char *artifact_kind_name(enum artifact_kind k)
{
	return (unsigned)k < NKINDS ? kind_words[k] : "?";
}

int artifact_kind_parse(const char *s, enum artifact_kind *out)
{
	for (size_t i = 0; i < NKINDS; i++)
		if (s && !strcmp(s, kind_words[i])) {
			*out = (enum artifact_kind)i;
			return 0;
		}
	return ERR_INVALID;
}

/* ---- statements ---------------------------------------------------------- */

#define ART_COLS \
	"a.id, a.kind, a.name, a.version, a.type, a.digest, a.lineage_digest," \
	" a.bytes, a.files, a.run_id, a.step_id, a.attempt, a.engine_step," \
	" a.step_key, a.recipe_digest, a.git_commit, a.git_dirty, a.origin," \
	" a.path, a.created, a.pruned"

enum cq {
	C_LINEAGE_OF,
	C_FIND_NAMED,
	C_NEXT_VERSION,
	C_FIND_INTERMEDIATE,
	C_INSERT,
	C_INSERT_EDGE,
	C_GET,
	C_ALIASES_OF,
	C_MANIFEST,
	C_BY_NAME_VERSION,
	C_LATEST_OF_NAME,
	C_BY_ALIAS,
	C_BY_PREFIX,
	C_NAMES,
	C_LIST_NAME,
	C_LIST_LATEST,
	C_LIST_ALL,
	C_NAME_EXISTS,
	C_TAG,
	C_PARENTS_OF,
	C_CHILDREN_OF,
	C_PARENTS,
	C_FACTS,
	C_EACH,
	C_SET_PROV,
	C_GET_PROV,
	C_METRICS,
	C__COUNT
};

static const char *const c_sql[C__COUNT] = {
	[C_LINEAGE_OF] = "SELECT lineage_digest FROM artifacts WHERE id = ?1",
	[C_FIND_NAMED] =
		"SELECT id, version FROM artifacts WHERE name = ?1 AND digest = ?2"
		" ORDER BY version LIMIT 1",
	[C_NEXT_VERSION] =
		"SELECT coalesce(max(version), 0) + 1 FROM artifacts WHERE name = ?1",
	[C_FIND_INTERMEDIATE] =
		"SELECT id FROM artifacts WHERE lineage_digest = ?1"
		" AND kind = 'intermediate' LIMIT 1",
	[C_INSERT] =
		"INSERT INTO artifacts (kind, name, version, type, digest, manifest,"
		" bytes, files, lineage_digest, run_id, step_id, attempt, engine_step,"
		" step_key, recipe_digest, git_commit, git_dirty, origin, path, created)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14,"
		" ?15, ?16, ?17, ?18, ?19, ?20)",
	[C_INSERT_EDGE] =
		"INSERT OR IGNORE INTO lineage (child, parent, role, weight)"
		" VALUES (?1, ?2, ?3, ?4)",
	[C_GET] = "SELECT " ART_COLS " FROM artifacts a WHERE a.id = ?1",
	[C_ALIASES_OF] = "SELECT alias FROM aliases WHERE artifact = ?1 ORDER BY alias",
	[C_MANIFEST] = "SELECT manifest FROM artifacts WHERE id = ?1",
	[C_BY_NAME_VERSION] = "SELECT id FROM artifacts WHERE name = ?1 AND version = ?2",
	[C_LATEST_OF_NAME] =
		"SELECT id FROM artifacts WHERE name = ?1 ORDER BY version DESC LIMIT 1",
	[C_BY_ALIAS] = "SELECT artifact FROM aliases WHERE alias = ?1",
	[C_BY_PREFIX] =
		"SELECT id FROM artifacts WHERE substr(digest, 1, length(?1)) = ?1"
		" OR substr(lineage_digest, 1, length(?1)) = ?1 LIMIT 2",
	[C_NAMES] =
		"SELECT DISTINCT name FROM artifacts WHERE name IS NOT NULL"
		" UNION SELECT alias FROM aliases",
	[C_LIST_NAME] =
		"SELECT " ART_COLS " FROM artifacts a WHERE a.name = ?1 ORDER BY a.version",
	[C_LIST_LATEST] =
		"SELECT " ART_COLS " FROM artifacts a WHERE a.name IS NOT NULL"
		" AND a.version = (SELECT max(version) FROM artifacts b WHERE b.name = a.name)"
		" ORDER BY a.name",
	[C_LIST_ALL] =
		"SELECT " ART_COLS " FROM artifacts a"
		" ORDER BY a.name IS NULL, a.name, a.version, a.id",
	[C_NAME_EXISTS] = "SELECT 1 FROM artifacts WHERE name = ?1 LIMIT 1",
	[C_TAG] = "INSERT OR REPLACE INTO aliases (alias, artifact, created) VALUES (?1, ?2, ?3)",
	[C_PARENTS_OF] =
		"SELECT parent, role, weight FROM lineage WHERE child = ?1 ORDER BY role, parent",
	[C_CHILDREN_OF] =
		"SELECT child, role, weight FROM lineage WHERE parent = ?1 ORDER BY role, child",
	[C_PARENTS] =
		"SELECT l.role, l.weight, p.lineage_digest FROM lineage l"
		" JOIN artifacts p ON p.id = l.parent WHERE l.child = ?1",
	[C_FACTS] =
		"SELECT digest, type, step_key, recipe_digest, git_commit, git_dirty,"
		" origin FROM artifacts WHERE id = ?1",
	[C_EACH] = "SELECT " ART_COLS " FROM artifacts a ORDER BY a.id",
	[C_SET_PROV] =
		"UPDATE runs SET provenance = ?2, git_commit = ?3, git_dirty = ?4 WHERE id = ?1",
	[C_GET_PROV] = "SELECT provenance, git_commit, git_dirty FROM runs WHERE id = ?1",
	[C_METRICS] =
		"SELECT name, value FROM events WHERE id IN (SELECT max(id) FROM events"
		" WHERE run_id = ?1 AND step_id = ?2 AND kind = 'metric' GROUP BY name)"
		" ORDER BY name",
};

struct cstmts {
	sqlite3_stmt *q[C__COUNT];
};

void catalog_release(struct state *st)
{
	struct cstmts **slot = (struct cstmts **)state_catalog_slot(st);

	if (!*slot)
		return;
	for (size_t i = 0; i < C__COUNT; i++)
		sqlite3_finalize((*slot)->q[i]);
	free(*slot);
	*slot = NULL;
}

static int prep(struct state *st, enum cq id, sqlite3_stmt **out, struct err *err)
{
	struct cstmts **slot = (struct cstmts **)state_catalog_slot(st);

	if (!*slot)
		*slot = xcalloc(1, sizeof(**slot));
	if (!(*slot)->q[id]) {
		int rc = sqlite3_prepare_v3(state_sqlite(st), c_sql[id], -1,
					    SQLITE_PREPARE_PERSISTENT, &(*slot)->q[id], NULL);
		if (rc != SQLITE_OK) {
			(*slot)->q[id] = NULL;
			return state_sql_err(st, rc, err, "prepare '%.40s'", c_sql[id]);
		}
	}
	*out = (*slot)->q[id];
	sqlite3_reset(*out);
	sqlite3_clear_bindings(*out);
	return 0;
}

static void done_stmt(sqlite3_stmt *s)
{
	if (s)
		sqlite3_reset(s);
}

static int btext(sqlite3_stmt *s, int i, const char *v)
{
	return v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

static char *col(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t ? xstrdup((const char *)t) : NULL;
}

/* Steps a statement that returns no rows. */
static int exec(struct state *st, sqlite3_stmt *s, struct err *err, const char *what)
{
	int rc = sqlite3_step(s);

	done_stmt(s);
	if (rc != SQLITE_DONE)
		return state_sql_err(st, rc, err, "%s", what);
	return 0;
}

/* Steps a statement expected to return at most one row of one int64. 1 if
 * a row came, 0 if none, <0 on error. */
static int one_int(struct state *st, sqlite3_stmt *s, int64_t *v, struct err *err,
		   const char *what)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW) {
		*v = sqlite3_column_int64(s, 0);
		done_stmt(s);
		return 1;
	}
	done_stmt(s);
	if (rc != SQLITE_DONE)
		return state_sql_err(st, rc, err, "%s", what);
	return 0;
}

/* ---- lineage digests ------------------------------------------------------ */

struct pline {
	char *role;
	int has_weight;
	double weight;
	char *lineage;
};

static int cmp_pline(const void *a, const void *b)
{
	const struct pline *x = a, *y = b;
	int c = strcmp(x->role, y->role);
	return c ? c : strcmp(x->lineage, y->lineage);
}

static void put(struct buf *b, const char *tag, const char *v)
{
	v = v ? v : "-";
	buf_printf(b, "%s %zu:%s\n", tag, strlen(v), v);
}

/* The text a lineage digest is taken over. Names, versions, run ids and
 * paths are local labels and stay out: the same history imported into
 * another workspace keeps its digests. */
static void lineage_text(struct buf *b, const char *digest, const char *type,
			 const char *step_key, const char *recipe, const char *commit,
			 const char *dirty, const char *origin,
			 struct pline *p, size_t np)
{
	buf_adds(b, "anneal-lineage 1\n");
	put(b, "digest", digest);
	put(b, "type", type);
	put(b, "step-key", step_key);
	put(b, "recipe", recipe);
	put(b, "commit", commit);
	put(b, "dirty", dirty);
	put(b, "origin", origin);
	if (np > 1)   /* p is NULL for a root: qsort(NULL, 0) is undefined */
		qsort(p, np, sizeof(*p), cmp_pline);
	for (size_t i = 0; i < np; i++) {
		char w[64] = "-";
		if (p[i].has_weight)
			snprintf(w, sizeof(w), "%.17g", p[i].weight);
		put(b, "parent-role", p[i].role);
		put(b, "parent-weight", w);
		put(b, "parent", p[i].lineage);
	}
}

static void hash_hex(const struct buf *b, char *out)
{
	struct digest d;
	sha256_buf(b->ptr, b->len, &d);
	digest_hex(&d, out);
}

static void free_plines(struct pline *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(p[i].role);
		free(p[i].lineage);
	}
	free(p);
}

int catalog_lineage_digest(struct state *st, int64_t id, char *out, struct err *err)
{
	sqlite3_stmt *s = NULL;
	struct pline *p = NULL;
	size_t np = 0, cap = 0;
	char *f[7] = { 0 };
	struct buf b = BUF_INIT;
	int rc, ret = 0;

	if ((ret = prep(st, C_FACTS, &s, err)))
		return ret;
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		for (int i = 0; i < 7; i++)
			f[i] = col(s, i);
	done_stmt(s);
	if (rc == SQLITE_DONE) {
		ret = err_set(err, ERR_NOTFOUND, "no artifact with id %lld", (long long)id);
		goto done;
	}
	if (rc != SQLITE_ROW) {
		ret = state_sql_err(st, rc, err, "read artifact %lld", (long long)id);
		goto done;
	}
	if ((ret = prep(st, C_PARENTS, &s, err)))
		goto done;
	sqlite3_bind_int64(s, 1, id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (np == cap) {
			cap = cap ? cap * 2 : 8;
			p = xrealloc(p, cap * sizeof(*p));
		}
		p[np].role = col(s, 0);
		p[np].has_weight = sqlite3_column_type(s, 1) != SQLITE_NULL;
		p[np].weight = sqlite3_column_double(s, 1);
		p[np].lineage = col(s, 2);
		if (!p[np].lineage)
			p[np].lineage = xstrdup("");
		np++;
	}
	done_stmt(s);
	if (rc != SQLITE_DONE) {
		ret = state_sql_err(st, rc, err, "read parents of artifact %lld", (long long)id);
		goto done;
	}
	buf_init(&b);
	lineage_text(&b, f[0], f[1], f[2], f[3], f[4], f[5], f[6], p, np);
	hash_hex(&b, out);
done:
	for (int i = 0; i < 7; i++)
		free(f[i]);
	free_plines(p, np);
	buf_free(&b);
	return ret;
}

/* ---- registration --------------------------------------------------------- */

static int register_in_tx(struct state *st, const struct artifact_new *a,
			  int64_t *idp, int *versionp, int *created, struct err *err)
{
	struct pline *p = xcalloc(a->nparents + 1, sizeof(*p));
	sqlite3_stmt *s = NULL;
	struct buf b = BUF_INIT;
	char lineage[DIGEST_HEX_LEN + 1];
	int64_t v = 0, id = 0;
	int ret = 0, r;

	*created = 0;
	for (size_t i = 0; i < a->nparents; i++) {
		int64_t pid = a->parents[i].id;
		if ((ret = prep(st, C_LINEAGE_OF, &s, err)))
			goto done;
		sqlite3_bind_int64(s, 1, pid);
		if (sqlite3_step(s) != SQLITE_ROW) {
			done_stmt(s);
			ret = err_set(err, ERR_NOTFOUND, "parent artifact %lld does not exist",
				      (long long)pid);
			goto done;
		}
		p[i].lineage = col(s, 0);
		done_stmt(s);
		p[i].role = xstrdup(a->parents[i].role);
		p[i].has_weight = a->parents[i].has_weight;
		p[i].weight = a->parents[i].weight;
	}
	buf_init(&b);
	lineage_text(&b, a->digest, artifact_type_name(a->type), a->step_key,
		     a->recipe_digest, a->git_commit, a->git_dirty, a->origin, p,
		     a->nparents);
	hash_hex(&b, lineage);

	if (a->kind == AK_INTERMEDIATE) {
		if ((ret = prep(st, C_FIND_INTERMEDIATE, &s, err)))
			goto done;
		btext(s, 1, lineage);
		r = one_int(st, s, &id, err, "look up checkpoint");
		if (r < 0) {
			ret = r;
			goto done;
		}
		if (r == 1) {
			*idp = id;
			*versionp = 0;
			goto done;
		}
	} else {
		int64_t ver;
		if ((ret = prep(st, C_FIND_NAMED, &s, err)))
			goto done;
		btext(s, 1, a->name);
		btext(s, 2, a->digest);
		if (sqlite3_step(s) == SQLITE_ROW) {
			*idp = sqlite3_column_int64(s, 0);
			*versionp = sqlite3_column_int(s, 1);
			done_stmt(s);
			goto done;
		}
		done_stmt(s);
		if ((ret = prep(st, C_NEXT_VERSION, &s, err)))
			goto done;
		btext(s, 1, a->name);
		r = one_int(st, s, &ver, err, "next version");
		if (r < 0) {
			ret = r;
			goto done;
		}
		v = ver;
	}

	if ((ret = prep(st, C_INSERT, &s, err)))
		goto done;
	btext(s, 1, artifact_kind_name(a->kind));
	btext(s, 2, a->kind == AK_INTERMEDIATE ? NULL : a->name);
	if (a->kind == AK_INTERMEDIATE)
		sqlite3_bind_null(s, 3);
	else
		sqlite3_bind_int64(s, 3, v);
	btext(s, 4, artifact_type_name(a->type));
	btext(s, 5, a->digest);
	btext(s, 6, a->manifest);
	sqlite3_bind_int64(s, 7, (int64_t)a->bytes);
	sqlite3_bind_int64(s, 8, (int64_t)a->files);
	btext(s, 9, lineage);
	if (a->run_id)
		sqlite3_bind_int64(s, 10, a->run_id);
	btext(s, 11, a->step);
	if (a->attempt)
		sqlite3_bind_int(s, 12, a->attempt);
	if (a->engine_step >= 0 && a->kind == AK_INTERMEDIATE)
		sqlite3_bind_int64(s, 13, a->engine_step);
	btext(s, 14, a->step_key);
	btext(s, 15, a->recipe_digest);
	btext(s, 16, a->git_commit);
	btext(s, 17, a->git_dirty);
	btext(s, 18, a->origin);
	btext(s, 19, a->path);
	sqlite3_bind_double(s, 20, now_wall());
	if ((ret = exec(st, s, err, "insert artifact")))
		goto done;
	id = sqlite3_last_insert_rowid(state_sqlite(st));
	for (size_t i = 0; i < a->nparents; i++) {
		if ((ret = prep(st, C_INSERT_EDGE, &s, err)))
			goto done;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, a->parents[i].id);
		btext(s, 3, a->parents[i].role);
		if (a->parents[i].has_weight)
			sqlite3_bind_double(s, 4, a->parents[i].weight);
		if ((ret = exec(st, s, err, "insert lineage edge")))
			goto done;
	}
	*idp = id;
	*versionp = (int)v;
	*created = 1;
done:
	free_plines(p, a->nparents);
	buf_free(&b);
	return ret;
}

int catalog_register(struct state *st, const struct artifact_new *a,
		     int64_t *id, int *version, int *created, struct err *err)
{
	int ret;

	*id = 0;
	*version = 0;
	*created = 0;
	if (a->kind != AK_INTERMEDIATE && (!a->name || !*a->name))
		return err_set(err, ERR_INVALID, "an artifact needs a name");
	if (!a->digest || strlen(a->digest) != DIGEST_HEX_LEN || !a->manifest)
		return err_set(err, ERR_INVALID, "an artifact needs a digest and a manifest");
	ret = state_tx_begin(st, 1, err);
	if (ret)
		return ret;
	ret = register_in_tx(st, a, id, version, created, err);
	return state_tx_end(st, ret, err);
}

/* ---- reading ---------------------------------------------------------------- */

void artifact_info_clear(struct artifact_info *a)
{
	if (!a)
		return;
	free(a->name);
	free(a->step);
	free(a->step_key);
	free(a->recipe_digest);
	free(a->git_commit);
	free(a->git_dirty);
	free(a->origin);
	free(a->path);
	for (size_t i = 0; i < a->naliases; i++)
		free(a->aliases[i]);
	free(a->aliases);
	memset(a, 0, sizeof(*a));
}

static void read_row(sqlite3_stmt *s, struct artifact_info *a)
{
	const char *t;
	enum artifact_type ty = ART_CHECKPOINT;
	enum artifact_kind k = AK_OUTPUT;

	memset(a, 0, sizeof(*a));
	a->id = sqlite3_column_int64(s, 0);
	artifact_kind_parse((const char *)sqlite3_column_text(s, 1), &k);
	a->kind = k;
	a->name = col(s, 2);
	a->version = sqlite3_column_int(s, 3);
	t = (const char *)sqlite3_column_text(s, 4);
	if (t)
		artifact_type_parse(t, &ty);
	a->type = ty;
	t = (const char *)sqlite3_column_text(s, 5);
	snprintf(a->digest, sizeof(a->digest), "%s", t ? t : "");
	t = (const char *)sqlite3_column_text(s, 6);
	snprintf(a->lineage, sizeof(a->lineage), "%s", t ? t : "");
	a->bytes = (uint64_t)sqlite3_column_int64(s, 7);
	a->files = (uint64_t)sqlite3_column_int64(s, 8);
	a->run_id = sqlite3_column_int64(s, 9);
	a->step = col(s, 10);
	a->attempt = sqlite3_column_int(s, 11);
	a->engine_step = sqlite3_column_type(s, 12) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 12);
	a->step_key = col(s, 13);
	a->recipe_digest = col(s, 14);
	a->git_commit = col(s, 15);
	a->git_dirty = col(s, 16);
	a->origin = col(s, 17);
	a->path = col(s, 18);
	a->created = sqlite3_column_double(s, 19);
	a->pruned = sqlite3_column_int(s, 20);
}

static int load_aliases(struct state *st, struct artifact_info *a, struct err *err)
{
	sqlite3_stmt *s = NULL;
	size_t cap = 0;
	int rc, ret;

	if ((ret = prep(st, C_ALIASES_OF, &s, err)))
		return ret;
	sqlite3_bind_int64(s, 1, a->id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (a->naliases + 2 > cap) {
			cap = cap ? cap * 2 : 4;
			a->aliases = xrealloc(a->aliases, cap * sizeof(char *));
		}
		a->aliases[a->naliases++] = col(s, 0);
		a->aliases[a->naliases] = NULL;
	}
	done_stmt(s);
	if (rc != SQLITE_DONE)
		return state_sql_err(st, rc, err, "read aliases");
	return 0;
}

int catalog_get(struct state *st, int64_t id, struct artifact_info *out, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc, ret;

	memset(out, 0, sizeof(*out));
	if ((ret = prep(st, C_GET, &s, err)))
		return ret;
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		read_row(s, out);
	done_stmt(s);
	if (rc == SQLITE_DONE)
		return err_set(err, ERR_NOTFOUND, "no artifact with id %lld", (long long)id);
	if (rc != SQLITE_ROW)
		return state_sql_err(st, rc, err, "read artifact");
	return load_aliases(st, out, err);
}

int catalog_manifest(struct state *st, int64_t id, char **out, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc, ret;

	*out = NULL;
	if ((ret = prep(st, C_MANIFEST, &s, err)))
		return ret;
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*out = col(s, 0);
	done_stmt(s);
	if (rc == SQLITE_DONE)
		return err_set(err, ERR_NOTFOUND, "no artifact with id %lld", (long long)id);
	if (rc != SQLITE_ROW)
		return state_sql_err(st, rc, err, "read manifest");
	if (!*out)
		*out = xstrdup("");
	return 0;
}

static int is_hex(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

static int not_found(struct state *st, const char *ref, struct err *err)
{
	struct strv names = STRV_INIT;
	sqlite3_stmt *s = NULL;
	const char *hint = NULL;
	char show[JSON_SHOW_MAX], hshow[JSON_SHOW_MAX];
	int ret;

	if (prep(st, C_NAMES, &s, NULL) == 0) {
		while (sqlite3_step(s) == SQLITE_ROW)
			strv_push(&names, (const char *)sqlite3_column_text(s, 0));
		done_stmt(s);
	}
	if (names.n)
		hint = did_you_mean(ref, (const char *const *)names.v, names.n);
	json_show(ref, show, sizeof(show));
	if (hint)
		ret = err_set(err, ERR_NOTFOUND, "no artifact '%s' (did you mean '%s'?)", show,
			      json_show(hint, hshow, sizeof(hshow)));
	else
		ret = err_set(err, ERR_NOTFOUND, "no artifact '%s'", show);
	strv_free(&names);
	return ret;
}

void catalog_ref_clear(struct catalog_ref *r)
{
	if (!r)
		return;
	free(r->name);
	memset(r, 0, sizeof(*r));
}

int catalog_ref_parse(const char *ref, struct catalog_ref *out, struct err *err)
{
	char show[JSON_SHOW_MAX];
	const char *at = strrchr(ref, '@');
	size_t len = strlen(ref);

	memset(out, 0, sizeof(*out));
	if (!*ref)
		return err_set(err, ERR_INVALID, "an empty artifact reference");
	if (at && at != ref) {
		const char *p = at + 1;
		long long v = 0;

		/* Digits only, no sign, space or leading zero: one spelling
		 * per version, as `anneal ls` prints it. */
		if (*p < '1' || *p > '9')
			goto bad_version;
		for (; *p >= '0' && *p <= '9'; p++) {
			v = v * 10 + (*p - '0');
			if (v > INT32_MAX)
				goto bad_version;
		}
		if (*p)
			goto bad_version;
		out->form = REF_VERSION;
		out->name = xstrndup(ref, (size_t)(at - ref));
		out->version = (int)v;
		return 0;
	}
	out->form = REF_WORD;
	out->name = xstrdup(ref);
	out->digest_prefix = len >= 6 && len <= DIGEST_HEX_LEN && is_hex(ref);
	return 0;
bad_version:
	return err_set(err, ERR_INVALID,
		       "'%s': the version after '@' must be a positive number",
		       json_show(ref, show, sizeof(show)));
}

int catalog_resolve(struct state *st, const char *ref, int64_t *id, struct err *err)
{
	sqlite3_stmt *s = NULL;
	struct catalog_ref r;
	char show[JSON_SHOW_MAX], nshow[JSON_SHOW_MAX];
	int ret, found;

	*id = 0;
	if ((ret = catalog_ref_parse(ref, &r, err)))
		return ret;
	if (r.form == REF_VERSION) {
		if ((ret = prep(st, C_BY_NAME_VERSION, &s, err)))
			goto done;
		btext(s, 1, r.name);
		sqlite3_bind_int64(s, 2, r.version);
		found = one_int(st, s, id, err, "resolve artifact");
		if (found == 0) {
			int64_t latest = 0;
			if (prep(st, C_NEXT_VERSION, &s, NULL) == 0) {
				btext(s, 1, r.name);
				one_int(st, s, &latest, NULL, "");
			}
			if (latest > 1)
				found = err_set(err, ERR_NOTFOUND,
						"no artifact '%s' (latest is %s@%lld)",
						json_show(ref, show, sizeof(show)),
						json_show(r.name, nshow, sizeof(nshow)),
						(long long)(latest - 1));
			else
				found = not_found(st, r.name, err);
		}
		ret = found < 0 ? found : 0;
		goto done;
	}
	if ((ret = prep(st, C_LATEST_OF_NAME, &s, err)))
		goto done;
	btext(s, 1, ref);
	found = one_int(st, s, id, err, "resolve artifact");
	if (found != 0) {
		ret = found < 0 ? found : 0;
		goto done;
	}
	if ((ret = prep(st, C_BY_ALIAS, &s, err)))
		goto done;
	btext(s, 1, ref);
	found = one_int(st, s, id, err, "resolve alias");
	if (found != 0) {
		ret = found < 0 ? found : 0;
		goto done;
	}
	if (r.digest_prefix) {
		int64_t first = 0;
		int n = 0, rc;
		if ((ret = prep(st, C_BY_PREFIX, &s, err)))
			goto done;
		btext(s, 1, ref);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			if (n == 0)
				first = sqlite3_column_int64(s, 0);
			n++;
		}
		done_stmt(s);
		if (rc != SQLITE_DONE) {
			ret = state_sql_err(st, rc, err, "resolve digest prefix");
			goto done;
		}
		if (n > 1) {
			ret = err_set(err, ERR_INVALID,
				      "digest prefix '%s' is ambiguous; give more digits", ref);
			goto done;
		}
		if (n == 1) {
			*id = first;
			goto done;
		}
	}
	ret = not_found(st, ref, err);
done:
	catalog_ref_clear(&r);
	return ret;
}

static int list_query(struct state *st, sqlite3_stmt *s, struct artifact_info **out,
		      size_t *n, struct err *err)
{
	struct artifact_info *v = NULL;
	size_t cap = 0;
	int rc, ret = 0;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		read_row(s, &v[(*n)++]);
	}
	done_stmt(s);
	if (rc != SQLITE_DONE)
		ret = state_sql_err(st, rc, err, "list artifacts");
	for (size_t i = 0; !ret && i < *n; i++)
		ret = load_aliases(st, &v[i], err);
	if (ret) {
		for (size_t i = 0; i < *n; i++)
			artifact_info_clear(&v[i]);
		free(v);
		v = NULL;
		*n = 0;
	}
	*out = v;
	return ret;
}

int catalog_list(struct state *st, const char *name, int all,
		 struct artifact_info **out, size_t *n, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int ret;

	*out = NULL;
	*n = 0;
	ret = prep(st, name ? C_LIST_NAME : all ? C_LIST_ALL : C_LIST_LATEST, &s, err);
	if (ret)
		return ret;
	if (name)
		btext(s, 1, name);
	return list_query(st, s, out, n, err);
}

int catalog_tag(struct state *st, const char *alias, int64_t id, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int64_t one;
	int ret, r;

	/* The rules of artifact names: an alias is printed, matched and
	 * exported like one (no '/', '@', newline, or terminal escape). */
	if (!artifact_name_valid(alias)) {
		char show[JSON_SHOW_MAX];
		return err_set(err, ERR_INVALID,
			       "invalid alias '%s' (1 to 128 letters, digits, '_', '-' or '.', not starting with '.' or '-')",
			       json_show(alias, show, sizeof(show)));
	}
	if (strlen(alias) >= 6 && is_hex(alias))
		return err_set(err, ERR_INVALID,
			       "invalid alias '%s': it would read as a digest prefix", alias);
	ret = state_tx_begin(st, 1, err);
	if (ret)
		return ret;
	if ((ret = prep(st, C_NAME_EXISTS, &s, err)))
		goto done;
	btext(s, 1, alias);
	r = one_int(st, s, &one, err, "check name");
	if (r < 0) {
		ret = r;
		goto done;
	}
	if (r == 1) {
		ret = err_set(err, ERR_INVALID, "'%s' is an artifact name; pick another alias", alias);
		goto done;
	}
	if ((ret = prep(st, C_TAG, &s, err)))
		goto done;
	btext(s, 1, alias);
	sqlite3_bind_int64(s, 2, id);
	sqlite3_bind_double(s, 3, now_wall());
	ret = exec(st, s, err, "set alias");
done:
	return state_tx_end(st, ret, err);
}

void lineage_edge_clear(struct lineage_edge *e)
{
	if (!e)
		return;
	free(e->role);
	memset(e, 0, sizeof(*e));
}

/* A set of artifact ids (open addressing; 0 is never an id). */
struct idset {
	int64_t *v;
	size_t cap, n;
};

static int idset_add(struct idset *s, int64_t id)
{
	size_t i;

	if ((s->n + 1) * 2 > s->cap) {
		struct idset t = { xcalloc(s->cap ? s->cap * 2 : 64, sizeof(int64_t)),
				   s->cap ? s->cap * 2 : 64, 0 };
		for (size_t k = 0; k < s->cap; k++)
			if (s->v[k])
				idset_add(&t, s->v[k]);
		free(s->v);
		*s = t;
	}
	i = (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull) & (s->cap - 1);
	while (s->v[i]) {
		if (s->v[i] == id)
			return 0;
		i = (i + 1) & (s->cap - 1);
	}
	s->v[i] = id;
	s->n++;
	return 1;
}

/* Breadth first, one indexed lookup per node, each node expanded once: the
 * cost follows the answer, however many paths merges make through it (a
 * recursive CTE with UNION revisits an edge once per path length). */
int catalog_lineage(struct state *st, int64_t id, int descendants, int max_depth,
		    struct lineage_edge **out, size_t *n, struct err *err)
{
	sqlite3_stmt *s = NULL;
	struct lineage_edge *v = NULL;
	struct idset seen = { 0 };
	int64_t *frontier = NULL, *next = NULL;
	size_t cap = 0, nf = 0, nn = 0, capf = 0, capn = 0;
	int rc = SQLITE_OK, ret, depth = 0;

	*out = NULL;
	*n = 0;
	ret = state_tx_begin(st, 0, err);    /* one consistent snapshot */
	if (ret)
		return ret;
	idset_add(&seen, id);
	frontier = xcalloc(1, sizeof(*frontier));
	frontier[nf++] = id;
	capf = 1;
	while (nf && (max_depth <= 0 || depth < max_depth) && !ret) {
		depth++;
		nn = 0;
		for (size_t f = 0; f < nf && !ret; f++) {
			if ((ret = prep(st, descendants ? C_CHILDREN_OF : C_PARENTS_OF, &s, err)))
				break;
			sqlite3_bind_int64(s, 1, frontier[f]);
			while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
				int64_t other = sqlite3_column_int64(s, 0);
				if (*n == cap) {
					cap = cap ? cap * 2 : 16;
					v = xrealloc(v, cap * sizeof(*v));
				}
				struct lineage_edge *e = &v[(*n)++];
				e->child = descendants ? other : frontier[f];
				e->parent = descendants ? frontier[f] : other;
				e->role = col(s, 1);
				e->has_weight = sqlite3_column_type(s, 2) != SQLITE_NULL;
				e->weight = sqlite3_column_double(s, 2);
				e->depth = depth;
				if (idset_add(&seen, other)) {
					if (nn == capn) {
						capn = capn ? capn * 2 : 16;
						next = xrealloc(next, capn * sizeof(*next));
					}
					next[nn++] = other;
				}
			}
			done_stmt(s);
			if (rc != SQLITE_DONE)
				ret = state_sql_err(st, rc, err, "walk lineage");
		}
		int64_t *t = frontier;
		size_t tc = capf;
		frontier = next;
		capf = capn;
		nf = nn;
		next = t;
		capn = tc;
	}
	ret = state_tx_end(st, ret, err);
	free(frontier);
	free(next);
	free(seen.v);
	if (ret) {
		for (size_t i = 0; i < *n; i++)
			lineage_edge_clear(&v[i]);
		free(v);
		*n = 0;
		return ret;
	}
	*out = v;
	return 0;
}

int catalog_each(struct state *st, catalog_each_fn fn, void *ctx, struct err *err)
{
	struct artifact_info *v = NULL;
	sqlite3_stmt *s = NULL;
	size_t n = 0;
	int ret;

	/* Read whole, then call: fn may query the store itself. */
	if ((ret = prep(st, C_EACH, &s, err)))
		return ret;
	if ((ret = list_query(st, s, &v, &n, err)))
		return ret;
	for (size_t i = 0; i < n && !ret; i++)
		ret = fn(ctx, &v[i]);
	for (size_t i = 0; i < n; i++)
		artifact_info_clear(&v[i]);
	free(v);
	return ret;
}

int catalog_set_run_provenance(struct state *st, int64_t run_id, const char *json,
			       const char *commit, const char *dirty, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int ret = state_tx_begin(st, 1, err);

	if (ret)
		return ret;
	if (!(ret = prep(st, C_SET_PROV, &s, err))) {
		sqlite3_bind_int64(s, 1, run_id);
		btext(s, 2, json);
		btext(s, 3, commit);
		btext(s, 4, dirty);
		ret = exec(st, s, err, "record provenance");
	}
	return state_tx_end(st, ret, err);
}

int catalog_run_provenance(struct state *st, int64_t run_id, char **json,
			   char **commit, char **dirty, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc, ret;

	*json = *commit = *dirty = NULL;
	if ((ret = prep(st, C_GET_PROV, &s, err)))
		return ret;
	sqlite3_bind_int64(s, 1, run_id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*json = col(s, 0);
		*commit = col(s, 1);
		*dirty = col(s, 2);
	}
	done_stmt(s);
	if (rc == SQLITE_DONE)
		return err_set(err, ERR_NOTFOUND, "no run %lld", (long long)run_id);
	if (rc != SQLITE_ROW)
		return state_sql_err(st, rc, err, "read provenance");
	return 0;
}

int catalog_metrics(struct state *st, int64_t run_id, const char *step,
		    struct metric **out, size_t *n, struct err *err)
{
	sqlite3_stmt *s = NULL;
	struct metric *v = NULL;
	size_t cap = 0;
	int rc, ret;

	*out = NULL;
	*n = 0;
	if (!run_id || !step)
		return 0;
	if ((ret = prep(st, C_METRICS, &s, err)))
		return ret;
	sqlite3_bind_int64(s, 1, run_id);
	btext(s, 2, step);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			v = xrealloc(v, cap * sizeof(*v));
		}
		v[*n].name = col(s, 0);
		v[*n].value = sqlite3_column_double(s, 1);
		(*n)++;
	}
	done_stmt(s);
	if (rc != SQLITE_DONE) {
		metrics_free(v, *n);
		*n = 0;
		return state_sql_err(st, rc, err, "read metrics");
	}
	*out = v;
	return 0;
}

void metrics_free(struct metric *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(m[i].name);
	free(m);
}

/* ---- bundles (artifacts/bundle.c: anneal export / import) ------------------
 *
 * An import is one transaction: each item is reused (its lineage digest is
 * here) or inserted with its recorded facts and edges, and then its lineage
 * digest is recomputed by catalog_lineage_digest, the function audit uses,
 * from what was just stored. The stored lineage_digest column holds the
 * declared value, so that a child's recomputation builds on its parents'
 * declared digests, each of which has been checked the same way. */

static int import_prepare(struct state *st, const char *sql, sqlite3_stmt **s,
			  struct err *err)
{
	int rc = sqlite3_prepare_v2(state_sqlite(st), sql, -1, s, NULL);

	if (rc != SQLITE_OK) {
		*s = NULL;
		return state_sql_err(st, rc, err, "prepare '%.40s'", sql);
	}
	return 0;
}

static int import_one(struct state *st, const struct catalog_import_item *it,
		      size_t i, int64_t *ids, int *createdp, sqlite3_stmt *find,
		      sqlite3_stmt *ins, struct err *err)
{
	char lineage[DIGEST_HEX_LEN + 1];
	sqlite3_stmt *s = NULL;
	int64_t id = 0, ver = 0;
	int ret, r;

	*createdp = 0;
	if (it->name && !*it->name)
		return err_set(err, ERR_INVALID, "an empty artifact name");
	if (!it->lineage || strlen(it->lineage) != DIGEST_HEX_LEN || !it->digest ||
	    strlen(it->digest) != DIGEST_HEX_LEN || !it->manifest)
		return err_set(err, ERR_INVALID,
			       "an artifact needs a digest, a lineage digest and a manifest");
	for (size_t k = 0; k < it->nparents; k++)
		if (it->parents[k].item >= i || !it->parents[k].role)
			return err_set(err, ERR_INVALID,
				       "parent %zu does not come before its child", k);

	sqlite3_reset(find);
	sqlite3_clear_bindings(find);
	btext(find, 1, it->lineage);
	btext(find, 2, it->name);
	r = one_int(st, find, &id, err, "look up lineage digest");
	if (r < 0)
		return r;
	if (r == 1) {
		/* Reused: only sound if this workspace's own record still holds. */
		if ((ret = catalog_lineage_digest(st, id, lineage, err)))
			return ret;
		if (strcmp(lineage, it->lineage))
			return err_set(err, ERR_INVALID,
				       "artifact %lld here has lineage digest %.12s but its facts give"
				       " %.12s (run 'anneal audit')", (long long)id, it->lineage,
				       lineage);
		ids[i] = id;
		return 0;
	}

	if (it->name) {
		if ((ret = prep(st, C_NEXT_VERSION, &s, err)))
			return ret;
		btext(s, 1, it->name);
		r = one_int(st, s, &ver, err, "next version");
		if (r < 0)
			return r;
	}
	sqlite3_reset(ins);
	sqlite3_clear_bindings(ins);
	btext(ins, 1, artifact_kind_name(AK_IMPORTED));
	btext(ins, 2, it->name);
	if (it->name)
		sqlite3_bind_int64(ins, 3, ver);
	btext(ins, 4, artifact_type_name(it->type));
	btext(ins, 5, it->digest);
	btext(ins, 6, it->manifest);
	sqlite3_bind_int64(ins, 7, (int64_t)it->bytes);
	sqlite3_bind_int64(ins, 8, (int64_t)it->files);
	btext(ins, 9, it->lineage);
	btext(ins, 10, it->step);
	if (it->attempt)
		sqlite3_bind_int(ins, 11, it->attempt);
	if (it->engine_step >= 0)
		sqlite3_bind_int64(ins, 12, it->engine_step);
	btext(ins, 13, it->step_key);
	btext(ins, 14, it->recipe_digest);
	btext(ins, 15, it->git_commit);
	btext(ins, 16, it->git_dirty);
	btext(ins, 17, it->origin);
	sqlite3_bind_double(ins, 18, now_wall());
	sqlite3_bind_int(ins, 19, it->pruned ? 1 : 0);
	if ((ret = exec(st, ins, err, "insert imported artifact")))
		return ret;
	id = sqlite3_last_insert_rowid(state_sqlite(st));
	for (size_t k = 0; k < it->nparents; k++) {
		const struct catalog_import_parent *p = &it->parents[k];
		if ((ret = prep(st, C_INSERT_EDGE, &s, err)))
			return ret;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_int64(s, 2, ids[p->item]);
		btext(s, 3, p->role);
		if (p->has_weight)
			sqlite3_bind_double(s, 4, p->weight);
		if ((ret = exec(st, s, err, "insert lineage edge")))
			return ret;
	}
	if ((ret = catalog_lineage_digest(st, id, lineage, err)))
		return ret;
	if (strcmp(lineage, it->lineage))
		return err_set(err, ERR_INVALID,
			       "lineage digest %s does not recompute from its facts and parents"
			       " (they give %s)", it->lineage, lineage);
	ids[i] = id;
	*createdp = 1;
	return 0;
}

int catalog_import(struct state *st, const struct catalog_import_item *items,
		   size_t n, int commit, int64_t *ids, int *created, size_t *at,
		   struct err *err)
{
	sqlite3_stmt *find = NULL, *ins = NULL;
	size_t i = 0;
	int ret, c = 0;

	*at = n;
	for (size_t k = 0; k < n; k++) {
		ids[k] = 0;
		if (created)
			created[k] = 0;
	}
	if ((ret = state_tx_begin(st, 1, err)))
		return ret;
	ret = import_prepare(st,
			     "SELECT id FROM artifacts WHERE lineage_digest = ?1"
			     " AND (?2 IS NULL OR name = ?2) ORDER BY id LIMIT 1",
			     &find, err);
	if (!ret)
		ret = import_prepare(st,
				     "INSERT INTO artifacts (kind, name, version, type, digest,"
				     " manifest, bytes, files, lineage_digest, step_id, attempt,"
				     " engine_step, step_key, recipe_digest, git_commit, git_dirty,"
				     " origin, created, pruned) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,"
				     " ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
				     &ins, err);
	for (i = 0; !ret && i < n; i++) {
		ret = import_one(st, &items[i], i, ids, &c, find, ins, err);
		if (created)
			created[i] = c;
		if (ret)
			*at = i;
	}
	sqlite3_finalize(find);
	sqlite3_finalize(ins);
	if (ret || commit)
		return state_tx_end(st, ret, err);
	/* A dry run: everything held; undo it. */
	state_tx_end(st, 1, NULL);
	return 0;
}

/* ---- gc (artifacts/gc.c: anneal gc; bench/lineage) ------------------------
 *
 * The view gc decides on: each artifact's facts (latest of its name,
 * tagged, its run's state, the runs that use it, resume points) and every
 * lineage edge, read in one transaction. Statements are prepared per call:
 * gc runs once per command. */

void catalog_gc_view_free(struct catalog_gc_view *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++)
		free(v->items[i].manifest);
	free(v->items);
	free(v->edges);
	memset(v, 0, sizeof(*v));
}

const struct catalog_gc_item *catalog_gc_find(const struct catalog_gc_view *v, int64_t id)
{
	size_t lo = 0, hi = v->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v->items[mid].id == id)
			return &v->items[mid];
		if (v->items[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int gc_prepare(struct state *st, const char *sql, sqlite3_stmt **s, struct err *err)
{
	int rc = sqlite3_prepare_v2(state_sqlite(st), sql, -1, s, NULL);

	if (rc != SQLITE_OK) {
		*s = NULL;
		return state_sql_err(st, rc, err, "prepare '%.40s'", sql);
	}
	return 0;
}

static struct catalog_gc_item *gc_item_mut(struct catalog_gc_view *v, int64_t id)
{
	return (struct catalog_gc_item *)catalog_gc_find(v, id);
}

static int gc_run_state(sqlite3_stmt *s, int i)
{
	enum run_state rs;
	const char *t = (const char *)sqlite3_column_text(s, i);

	if (!t || run_state_parse(t, &rs))
		return -1;
	return (int)rs;
}

/* Loads the view; the caller holds a transaction. */
static int gc_load(struct state *st, int64_t manifests_after, struct catalog_gc_view *v,
		   struct err *err)
{
	static const char *const q_items =
		"SELECT a.id, a.kind, a.digest, a.pruned,"
		" a.name IS NOT NULL AND a.version ="
		"  (SELECT max(b.version) FROM artifacts b WHERE b.name = a.name),"
		" r.state, CASE WHEN a.id > ?1 THEN a.manifest END"
		" FROM artifacts a LEFT JOIN runs r ON r.id = a.run_id ORDER BY a.id";
	static const char *const q_aliases = "SELECT artifact FROM aliases";
	static const char *const q_used =
		"SELECT i.artifact, r.state FROM step_inputs i JOIN runs r ON r.id = i.run_id"
		" WHERE i.artifact IS NOT NULL"
		" UNION SELECT o.artifact, r.state FROM outputs o JOIN runs r ON r.id = o.run_id"
		" WHERE o.artifact IS NOT NULL";
	/* Latest by insertion order, as state_checkpoint_latest picks it. */
	static const char *const q_resume =
		"SELECT c.artifact FROM checkpoints c WHERE c.artifact IS NOT NULL"
		" AND c.id IN (SELECT max(id) FROM checkpoints GROUP BY run_id, step_id)";
	static const char *const q_edges = "SELECT child, parent FROM lineage";
	static const char *const q_busy = "SELECT min(started) FROM attempts WHERE state = ?1";
	sqlite3_stmt *s = NULL;
	size_t cap = 0;
	int rc, ret;

	memset(v, 0, sizeof(*v));
	if ((ret = gc_prepare(st, q_items, &s, err)))
		goto done;
	sqlite3_bind_int64(s, 1, manifests_after);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct catalog_gc_item *it;
		enum artifact_kind k = AK_OUTPUT;
		const char *t;

		if (v->n == cap) {
			cap = cap ? cap * 2 : 256;
			v->items = xrealloc(v->items, cap * sizeof(*v->items));
		}
		it = &v->items[v->n++];
		memset(it, 0, sizeof(*it));
		it->id = sqlite3_column_int64(s, 0);
		artifact_kind_parse((const char *)sqlite3_column_text(s, 1), &k);
		it->kind = k;
		t = (const char *)sqlite3_column_text(s, 2);
		snprintf(it->digest, sizeof(it->digest), "%s", t ? t : "");
		it->pruned = sqlite3_column_int(s, 3) != 0;
		it->latest = sqlite3_column_int(s, 4) != 0;
		it->run_state = gc_run_state(s, 5);
		it->manifest = col(s, 6);
		v->max_id = it->id;
	}
	if (rc != SQLITE_DONE) {
		ret = state_sql_err(st, rc, err, "read artifacts");
		goto done;
	}
	sqlite3_finalize(s);
	if ((ret = gc_prepare(st, q_aliases, &s, err)))
		goto done;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct catalog_gc_item *it = gc_item_mut(v, sqlite3_column_int64(s, 0));
		if (it)
			it->tagged = 1;
	}
	if (rc != SQLITE_DONE) {
		ret = state_sql_err(st, rc, err, "read aliases");
		goto done;
	}
	sqlite3_finalize(s);
	if ((ret = gc_prepare(st, q_used, &s, err)))
		goto done;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct catalog_gc_item *it = gc_item_mut(v, sqlite3_column_int64(s, 0));
		int rs = gc_run_state(s, 1);
		if (it && rs >= 0)
			it->used_by |= 1u << rs;
	}
	if (rc != SQLITE_DONE) {
		ret = state_sql_err(st, rc, err, "read the inputs of runs");
		goto done;
	}
	sqlite3_finalize(s);
	if ((ret = gc_prepare(st, q_resume, &s, err)))
		goto done;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct catalog_gc_item *it = gc_item_mut(v, sqlite3_column_int64(s, 0));
		if (it)
			it->resume_point = 1;
	}
	if (rc != SQLITE_DONE) {
		ret = state_sql_err(st, rc, err, "read checkpoints");
		goto done;
	}
	sqlite3_finalize(s);
	if ((ret = gc_prepare(st, q_edges, &s, err)))
		goto done;
	cap = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (v->nedges == cap) {
			cap = cap ? cap * 2 : 256;
			v->edges = xrealloc(v->edges, cap * sizeof(*v->edges));
		}
		v->edges[v->nedges].child = sqlite3_column_int64(s, 0);
		v->edges[v->nedges].parent = sqlite3_column_int64(s, 1);
		v->nedges++;
	}
	if (rc != SQLITE_DONE) {
		ret = state_sql_err(st, rc, err, "read lineage");
		goto done;
	}
	sqlite3_finalize(s);
	if ((ret = gc_prepare(st, q_busy, &s, err)))
		goto done;
	btext(s, 1, attempt_state_name(ATT_RUNNING));
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		v->busy_since = sqlite3_column_double(s, 0);
	else
		ret = state_sql_err(st, rc, err, "read running attempts");
done:
	sqlite3_finalize(s);
	if (ret)
		catalog_gc_view_free(v);
	return ret;
}

int catalog_gc_snapshot(struct state *st, catalog_gc_fn during, void *ctx,
			struct catalog_gc_view *out, struct err *err)
{
	int ret;

	memset(out, 0, sizeof(*out));
	if ((ret = state_tx_begin(st, 0, err)))
		return ret;
	ret = gc_load(st, -1, out, err);
	if (!ret && during)
		ret = during(ctx, out, err);
	ret = state_tx_end(st, ret, err);
	if (ret)
		catalog_gc_view_free(out);
	return ret;
}

int catalog_gc_prune(struct state *st, int64_t manifests_after, catalog_gc_pick_fn pick,
		     void *ctx, size_t *marked, struct err *err)
{
	struct catalog_gc_view v = { 0 };
	sqlite3_stmt *s = NULL;
	int64_t *ids = NULL;
	size_t n = 0;
	int ret;

	*marked = 0;
	if ((ret = state_tx_begin(st, 1, err)))
		return ret;
	if ((ret = gc_load(st, manifests_after, &v, err)))
		goto done;
	if ((ret = pick(ctx, &v, &ids, &n, err)))
		goto done;
	if (!n)
		goto done;
	if ((ret = gc_prepare(st, "UPDATE artifacts SET pruned = 1 WHERE id = ?1 AND pruned = 0",
			      &s, err)))
		goto done;
	for (size_t i = 0; i < n && !ret; i++) {
		int rc;
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, ids[i]);
		rc = sqlite3_step(s);
		if (rc != SQLITE_DONE)
			ret = state_sql_err(st, rc, err, "mark artifact %lld pruned", (long long)ids[i]);
		else
			*marked += (size_t)sqlite3_changes(state_sqlite(st));
	}
done:
	sqlite3_finalize(s);
	free(ids);
	catalog_gc_view_free(&v);
	ret = state_tx_end(st, ret, err);
	if (ret)
		*marked = 0;
	return ret;
}

int catalog_register_many(struct state *st, const struct artifact_new *items, size_t n,
			  int64_t *ids, struct err *err)
{
	struct lineage_parent *p = NULL;
	size_t cap = 0;
	int ret;

	for (size_t i = 0; i < n; i++) {
		const struct artifact_new *a = &items[i];
		if (a->kind != AK_INTERMEDIATE && (!a->name || !*a->name))
			return err_set(err, ERR_INVALID, "item %zu: an artifact needs a name", i);
		if (!a->digest || strlen(a->digest) != DIGEST_HEX_LEN || !a->manifest)
			return err_set(err, ERR_INVALID,
				       "item %zu: an artifact needs a digest and a manifest", i);
		for (size_t k = 0; k < a->nparents; k++)
			if (a->parents[k].id < 0 && (size_t)-a->parents[k].id > i)
				return err_set(err, ERR_INVALID,
					       "item %zu: parent %lld is not an earlier item",
					       i, (long long)a->parents[k].id);
	}
	if ((ret = state_tx_begin(st, 1, err)))
		return ret;
	for (size_t i = 0; i < n && !ret; i++) {
		struct artifact_new a = items[i];
		int version, created;

		if (a.nparents > cap) {
			cap = a.nparents;
			p = xrealloc(p, cap * sizeof(*p));
		}
		for (size_t k = 0; k < a.nparents; k++) {
			p[k] = a.parents[k];
			if (p[k].id < 0)
				p[k].id = ids[-p[k].id - 1];
		}
		a.parents = p;
		ret = register_in_tx(st, &a, &ids[i], &version, &created, err);
		if (ret)
			err_prefix(err, "item %zu", i);
	}
	free(p);
	return state_tx_end(st, ret, err);
}
