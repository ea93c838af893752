/* pipeline/state.c — the state store in SQLite; see state.h.
 *
 * Workload: one anneal process drives a run and writes a handful of small
 * transactions per step (attempt begin, handle, events, attempt end), while
 * `anneal status` and friends read concurrently from other processes. So:
 * WAL (readers never block the writer), synchronous=NORMAL (a commit is a
 * WAL append, no fsync; durable at the next checkpoint, which is what WAL
 * with NORMAL promises: never corrupt, at worst the last commits lost on
 * power failure; ANNEAL_SYNCHRONOUS=full fsyncs every commit), and every statement prepared once per connection and
 * kept on struct state, so the per-step cost is a few sqlite3_step calls.
 *
 * Every write is BEGIN IMMEDIATE ... COMMIT: taking the write lock up front
 * means SQLITE_BUSY can only happen at BEGIN, after the busy timeout, and
 * never halfway through a function. Reads that combine several queries run
 * in one read transaction so that they see one snapshot.
 *
 * States are stored as their words and parsed into enums here, at the edge;
 * a word this binary does not know is reported, never guessed. */
#include "pipeline/state.h"
#include "pipeline/state_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fault.h"
#include "base/util.h"

#define DEFAULT_BUSY_MS 10000
#define ARRAY_LEN(a) (sizeof(a) / sizeof(*(a)))

/* ---- words -------------------------------------------------------------- */

static const char *const run_words[] = {
	[RUN_RUNNING] = "running",
	[RUN_SUCCEEDED] = "succeeded",
	[RUN_FAILED] = "failed",
	[RUN_INTERRUPTED] = "interrupted",
	[RUN_CANCELLED] = "cancelled",
};

static const char *const step_words[] = {
	[STEP_PENDING] = "pending",
	[STEP_RUNNING] = "running",
	[STEP_SUCCEEDED] = "succeeded",
	[STEP_CACHED] = "cached",
	[STEP_FAILED] = "failed",
	[STEP_CANCELLED] = "cancelled",
};

static const char *const attempt_words[] = {
	[ATT_RUNNING] = "running",
	[ATT_SUCCEEDED] = "succeeded",
	[ATT_FAILED] = "failed",
	[ATT_TIMEOUT] = "timeout",
	[ATT_REQUEUED] = "requeued",
	[ATT_INTERRUPTED] = "interrupted",
	[ATT_LOST] = "lost",
	[ATT_CANCELLED] = "cancelled",
};

static const char *const event_words[] = {
	[EV_METRIC] = "metric",
	[EV_PROGRESS] = "progress",
	[EV_WARNING] = "warning",
	[EV_CHECKPOINT] = "checkpoint",
	[EV_LOG] = "log",
};

static const char *word_name(const char *const *words, size_t n, unsigned i)
{
	return i < n ? words[i] : "?";
}

static int word_index(const char *const *words, size_t n, const char *s)
{
	if (!s)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, words[i]))
			return (int)i;
	return -1;
}

const char *run_state_name(enum run_state s)
{
	return word_name(run_words, ARRAY_LEN(run_words), (unsigned)s);
}

const char *step_state_name(enum step_state s)
{
	return word_name(step_words, ARRAY_LEN(step_words), (unsigned)s);
}

const char *attempt_state_name(enum attempt_state s)
{
	return word_name(attempt_words, ARRAY_LEN(attempt_words), (unsigned)s);
}

const char *event_kind_name(enum event_kind k)
{
	return word_name(event_words, ARRAY_LEN(event_words), (unsigned)k);
}

int run_state_parse(const char *s, enum run_state *out)
{
	int i = word_index(run_words, ARRAY_LEN(run_words), s);
	if (i < 0)
		return ERR_INVALID;
	*out = (enum run_state)i;
	return 0;
}

int step_state_parse(const char *s, enum step_state *out)
{
	int i = word_index(step_words, ARRAY_LEN(step_words), s);
	if (i < 0)
		return ERR_INVALID;
	*out = (enum step_state)i;
	return 0;
}

int attempt_state_parse(const char *s, enum attempt_state *out)
{
	int i = word_index(attempt_words, ARRAY_LEN(attempt_words), s);
	if (i < 0)
		return ERR_INVALID;
	*out = (enum attempt_state)i;
	return 0;
}

int event_kind_parse(const char *s, enum event_kind *out)
{
	int i = word_index(event_words, ARRAY_LEN(event_words), s);
	if (i < 0)
		return ERR_INVALID;
	*out = (enum event_kind)i;
	return 0;
}

/* ---- schema ------------------------------------------------------------- */

/* Ordered migrations: migrations[i] takes user_version i to i + 1. Append
 * only; never edit one that has shipped. */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE runs ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  recipe_path TEXT, recipe_name TEXT, recipe_text TEXT,"
	"  recipe_digest TEXT, params_json TEXT, runner TEXT,"
	"  state TEXT NOT NULL,"
	"  created REAL NOT NULL, finished REAL,"
	"  driver_pid INTEGER NOT NULL DEFAULT 0,"
	"  cancel_requested INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE steps ("
	"  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	"  id TEXT NOT NULL, pos INTEGER NOT NULL,"
	"  kind TEXT, stage TEXT, cache_key TEXT,"
	"  state TEXT NOT NULL, started REAL, finished REAL,"
	"  cached_from_run INTEGER, cached_from_step TEXT,"
	"  retry_max INTEGER NOT NULL, retry_backoff REAL NOT NULL,"
	"  timeout_s INTEGER NOT NULL, params_json TEXT,"
	"  cpus INTEGER NOT NULL, gpus INTEGER NOT NULL,"
	"  npus INTEGER NOT NULL, mem_mb INTEGER NOT NULL,"
	"  PRIMARY KEY (run_id, id));"
	"CREATE UNIQUE INDEX steps_by_pos ON steps(run_id, pos);"
	"CREATE INDEX steps_by_cache_key ON steps(cache_key);"
	"CREATE TABLE step_args ("
	"  run_id INTEGER NOT NULL, step_id TEXT NOT NULL, pos INTEGER NOT NULL,"
	"  arg TEXT NOT NULL,"
	"  PRIMARY KEY (run_id, step_id, pos),"
	"  FOREIGN KEY (run_id, step_id) REFERENCES steps(run_id, id) ON DELETE CASCADE);"
	"CREATE TABLE step_env ("
	"  run_id INTEGER NOT NULL, step_id TEXT NOT NULL, pos INTEGER NOT NULL,"
	"  key TEXT NOT NULL, value TEXT NOT NULL,"
	"  PRIMARY KEY (run_id, step_id, pos),"
	"  FOREIGN KEY (run_id, step_id) REFERENCES steps(run_id, id) ON DELETE CASCADE);"
	"CREATE TABLE step_inputs ("
	"  run_id INTEGER NOT NULL, step_id TEXT NOT NULL, pos INTEGER NOT NULL,"
	"  role TEXT NOT NULL, from_step TEXT, from_output TEXT,"
	"  ref TEXT, artifact INTEGER, edge_role TEXT, weight REAL,"
	"  PRIMARY KEY (run_id, step_id, pos),"
	"  FOREIGN KEY (run_id, step_id) REFERENCES steps(run_id, id) ON DELETE CASCADE);"
	"CREATE TABLE step_outputs_decl ("
	"  run_id INTEGER NOT NULL, step_id TEXT NOT NULL, pos INTEGER NOT NULL,"
	"  name TEXT NOT NULL, type TEXT NOT NULL,"
	"  PRIMARY KEY (run_id, step_id, pos),"
	"  FOREIGN KEY (run_id, step_id) REFERENCES steps(run_id, id) ON DELETE CASCADE);"
	"CREATE TABLE step_after ("
	"  run_id INTEGER NOT NULL, step_id TEXT NOT NULL, pos INTEGER NOT NULL,"
	"  dep TEXT NOT NULL,"
	"  PRIMARY KEY (run_id, step_id, pos),"
	"  FOREIGN KEY (run_id, step_id) REFERENCES steps(run_id, id) ON DELETE CASCADE);"
	/* All dependencies of a step (inputs and after), for SQL readers. The
	 * dependency side is not a foreign key: the DAG checks references. */
	"CREATE TABLE deps ("
	"  run_id INTEGER NOT NULL, step_id TEXT NOT NULL, dep_id TEXT NOT NULL,"
	"  PRIMARY KEY (run_id, step_id, dep_id),"
	"  FOREIGN KEY (run_id, step_id) REFERENCES steps(run_id, id) ON DELETE CASCADE);"
	"CREATE TABLE attempts ("
	"  run_id INTEGER NOT NULL, step_id TEXT NOT NULL, n INTEGER NOT NULL,"
	"  state TEXT NOT NULL, handle TEXT, started REAL NOT NULL, finished REAL,"
	"  exit_code INTEGER, signal INTEGER, resumed_from TEXT, reason TEXT,"
	"  spends_retry INTEGER NOT NULL DEFAULT 0,"
	"  events_offset INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (run_id, step_id, n),"
	"  FOREIGN KEY (run_id, step_id) REFERENCES steps(run_id, id) ON DELETE CASCADE);"
	"CREATE TABLE outputs ("
	"  run_id INTEGER NOT NULL, step_id TEXT NOT NULL, name TEXT NOT NULL,"
	"  type TEXT NOT NULL, path TEXT, digest TEXT NOT NULL,"
	"  bytes INTEGER NOT NULL,"
	"  PRIMARY KEY (run_id, step_id, name),"
	"  FOREIGN KEY (run_id, step_id) REFERENCES steps(run_id, id) ON DELETE CASCADE);"
	"CREATE TABLE checkpoints ("
	"  id INTEGER PRIMARY KEY,"
	"  run_id INTEGER NOT NULL, step_id TEXT NOT NULL, attempt INTEGER NOT NULL,"
	"  engine_step INTEGER, path TEXT NOT NULL, digest TEXT,"
	"  created REAL NOT NULL,"
	"  FOREIGN KEY (run_id, step_id) REFERENCES steps(run_id, id) ON DELETE CASCADE);"
	"CREATE INDEX checkpoints_by_step ON checkpoints(run_id, step_id);"
	"CREATE TABLE events ("
	"  id INTEGER PRIMARY KEY,"
	"  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
	"  step_id TEXT, attempt INTEGER, time REAL NOT NULL,"
	"  kind TEXT NOT NULL, name TEXT, value REAL, total REAL,"
	"  engine_step INTEGER, text TEXT,"
	"  FOREIGN KEY (run_id, step_id) REFERENCES steps(run_id, id) ON DELETE CASCADE);"
	/* Rowid order is event order, so these also serve "ORDER BY id" and
	 * "max(id)" per run, and per step and kind. */
	"CREATE INDEX events_by_run ON events(run_id);"
	"CREATE INDEX events_by_step_kind ON events(run_id, step_id, kind);",

	/* 1 -> 2: the artifact catalog (pipeline/catalog.c): versioned,
	 * content-addressed artifacts, their lineage, aliases, and the
	 * provenance of runs. */
	"CREATE TABLE artifacts ("
	"  id INTEGER PRIMARY KEY,"
	"  kind TEXT NOT NULL,"                 /* output|intermediate|root|imported */
	"  name TEXT, version INTEGER,"          /* NULL for intermediates */
	"  type TEXT NOT NULL,"
	"  digest TEXT NOT NULL,"                /* SHA-256 of the manifest */
	"  manifest TEXT NOT NULL,"
	"  bytes INTEGER NOT NULL, files INTEGER NOT NULL,"
	"  lineage_digest TEXT NOT NULL,"
	"  run_id INTEGER, step_id TEXT, attempt INTEGER,"
	"  step_key TEXT, recipe_digest TEXT, git_commit TEXT, git_dirty TEXT,"
	"  origin TEXT, path TEXT,"
	"  engine_step INTEGER,"
	"  created REAL NOT NULL,"
	"  pruned INTEGER NOT NULL DEFAULT 0,"
	"  UNIQUE (name, version));"
	"CREATE INDEX artifacts_by_digest ON artifacts(digest);"
	"CREATE INDEX artifacts_by_lineage ON artifacts(lineage_digest);"
	"CREATE INDEX artifacts_by_step ON artifacts(run_id, step_id);"
	"CREATE TABLE lineage ("
	"  child INTEGER NOT NULL REFERENCES artifacts(id),"
	"  parent INTEGER NOT NULL REFERENCES artifacts(id),"
	"  role TEXT NOT NULL, weight REAL,"
	"  PRIMARY KEY (child, parent, role));"
	"CREATE INDEX lineage_by_parent ON lineage(parent);"
	"CREATE TABLE aliases ("
	"  alias TEXT PRIMARY KEY,"
	"  artifact INTEGER NOT NULL REFERENCES artifacts(id),"
	"  created REAL NOT NULL);"
	"ALTER TABLE outputs ADD COLUMN artifact INTEGER REFERENCES artifacts(id);"
	"ALTER TABLE step_outputs_decl ADD COLUMN artifact_name TEXT;"
	"ALTER TABLE checkpoints ADD COLUMN artifact INTEGER REFERENCES artifacts(id);"
	"ALTER TABLE attempts ADD COLUMN host TEXT;"
	"ALTER TABLE attempts ADD COLUMN argv TEXT;"   /* resolved, as a JSON array */
	"ALTER TABLE runs ADD COLUMN provenance TEXT;"
	"ALTER TABLE runs ADD COLUMN git_commit TEXT;"
	"ALTER TABLE runs ADD COLUMN git_dirty TEXT;",

	/* 2 -> 3: per-stage runner options (a stage's "slurm" object) */
	"ALTER TABLE steps ADD COLUMN runner_json TEXT;",

	/* 3 -> 4: multi-node steps */
	("ALTER TABLE steps ADD COLUMN nodes INTEGER NOT NULL DEFAULT 0;"
	 "ALTER TABLE steps ADD COLUMN tasks_per_node INTEGER NOT NULL DEFAULT 0;"),
};

int state_schema_version(void)
{
	return (int)ARRAY_LEN(migrations);
}

/* ---- statements --------------------------------------------------------- */

enum q {
	Q_BEGIN_WRITE,
	Q_BEGIN_READ,
	Q_COMMIT,
	Q_ROLLBACK,

	Q_RUN_INSERT,
	Q_RUN_EXISTS,
	Q_RUN_GET,
	Q_RUN_LIST,
	Q_RUN_TEXT,
	Q_RUN_LATEST,
	Q_RUN_LATEST_UNFINISHED,
	Q_RUN_SET_STATE,
	Q_RUN_SET_DRIVER,
	Q_RUN_SET_CANCEL,

	Q_STEP_INSERT,
	Q_ARG_INSERT,
	Q_ENV_INSERT,
	Q_INPUT_INSERT,
	Q_ODECL_INSERT,
	Q_AFTER_INSERT,
	Q_DEP_INSERT,

	Q_STEPS_LOAD,
	Q_ARGS_LOAD,
	Q_ENV_LOAD,
	Q_INPUTS_LOAD,
	Q_ODECL_LOAD,
	Q_AFTER_LOAD,

	Q_STEPS_INFO,
	Q_RUN_OUTPUTS,
	Q_STEP_SET_STATE,
	Q_STEP_SET_CACHE_KEY,
	Q_STEP_EXISTS,

	Q_ATT_INSERT,
	Q_ATT_SET_HANDLE,
	Q_ATT_END,
	Q_ATT_LIST,

	Q_OUT_DELETE,
	Q_OUT_INSERT,
	Q_OUT_COPY,
	Q_OUT_LIST,
	Q_STEP_SET_CACHED,
	Q_CACHE_CANDIDATES,

	Q_CKPT_INSERT,
	Q_CKPT_LATEST,
	Q_CKPT_BY_PATH,
	Q_EV_INSERT,
	Q_EV_OFFSET_SET,
	Q_EV_OFFSET_GET,
	Q_EV_RUN,
	Q_EV_STEP,

	Q__COUNT
};

#define FINAL_STEP_WORDS "('succeeded','cached','failed','cancelled')"

static const char *const q_sql[Q__COUNT] = {
	[Q_BEGIN_WRITE] = "BEGIN IMMEDIATE",
	[Q_BEGIN_READ] = "BEGIN",
	[Q_COMMIT] = "COMMIT",
	[Q_ROLLBACK] = "ROLLBACK",

	[Q_RUN_INSERT] =
		"INSERT INTO runs (recipe_path, recipe_name, recipe_text,"
		" recipe_digest, params_json, runner, state, created)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7)",
	[Q_RUN_EXISTS] = "SELECT 1 FROM runs WHERE id = ?1",
	[Q_RUN_GET] =
		"SELECT id, recipe_path, recipe_name, recipe_digest, params_json,"
		" runner, state, created, finished, driver_pid, cancel_requested"
		" FROM runs WHERE id = ?1",
	[Q_RUN_LIST] =
		"SELECT id, recipe_path, recipe_name, recipe_digest, params_json,"
		" runner, state, created, finished, driver_pid, cancel_requested"
		" FROM runs ORDER BY id DESC",
	[Q_RUN_TEXT] = "SELECT recipe_text FROM runs WHERE id = ?1",
	[Q_RUN_LATEST] = "SELECT max(id) FROM runs",
	[Q_RUN_LATEST_UNFINISHED] =
		"SELECT id FROM runs WHERE state IN ('running', 'interrupted')"
		" ORDER BY id DESC LIMIT 1",
	[Q_RUN_SET_STATE] =
		"UPDATE runs SET state = ?2,"
		" finished = CASE WHEN ?2 = 'running' THEN NULL ELSE max(?3, created) END"
		" WHERE id = ?1",
	[Q_RUN_SET_DRIVER] = "UPDATE runs SET driver_pid = ?2 WHERE id = ?1",
	[Q_RUN_SET_CANCEL] =
		"UPDATE runs SET cancel_requested = ?2 WHERE id = ?1",

	[Q_STEP_INSERT] =
		"INSERT INTO steps (run_id, id, pos, kind, stage, cache_key, state,"
		" retry_max, retry_backoff, timeout_s, cpus, gpus, npus, mem_mb,"
		" params_json, runner_json, nodes, tasks_per_node)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9, ?10, ?11,"
		" ?12, ?13, ?14, ?15, ?16, ?17)",
	[Q_ARG_INSERT] =
		"INSERT INTO step_args (run_id, step_id, pos, arg)"
		" VALUES (?1, ?2, ?3, ?4)",
	[Q_ENV_INSERT] =
		"INSERT INTO step_env (run_id, step_id, pos, key, value)"
		" VALUES (?1, ?2, ?3, ?4, ?5)",
	[Q_INPUT_INSERT] =
		"INSERT INTO step_inputs (run_id, step_id, pos, role, from_step,"
		" from_output, ref, artifact, edge_role, weight)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[Q_ODECL_INSERT] =
		"INSERT INTO step_outputs_decl (run_id, step_id, pos, name, type,"
		" artifact_name) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[Q_AFTER_INSERT] =
		"INSERT INTO step_after (run_id, step_id, pos, dep)"
		" VALUES (?1, ?2, ?3, ?4)",
	[Q_DEP_INSERT] =
		"INSERT OR IGNORE INTO deps (run_id, step_id, dep_id)"
		" VALUES (?1, ?2, ?3)",

	[Q_STEPS_LOAD] =
		"SELECT pos, id, kind, stage, retry_max, retry_backoff, timeout_s,"
		" cpus, gpus, npus, mem_mb, params_json, runner_json, nodes, tasks_per_node"
		" FROM steps WHERE run_id = ?1"
		" ORDER BY pos",
	[Q_ARGS_LOAD] =
		"SELECT s.pos, c.arg FROM step_args c JOIN steps s"
		" ON s.run_id = c.run_id AND s.id = c.step_id"
		" WHERE c.run_id = ?1 ORDER BY s.pos, c.pos",
	[Q_ENV_LOAD] =
		"SELECT s.pos, c.key, c.value FROM step_env c JOIN steps s"
		" ON s.run_id = c.run_id AND s.id = c.step_id"
		" WHERE c.run_id = ?1 ORDER BY s.pos, c.pos",
	[Q_INPUTS_LOAD] =
		"SELECT s.pos, c.role, c.from_step, c.from_output, c.ref, c.artifact,"
		" c.edge_role, c.weight"
		" FROM step_inputs c JOIN steps s"
		" ON s.run_id = c.run_id AND s.id = c.step_id"
		" WHERE c.run_id = ?1 ORDER BY s.pos, c.pos",
	[Q_ODECL_LOAD] =
		"SELECT s.pos, c.name, c.type, c.artifact_name FROM step_outputs_decl c JOIN steps s"
		" ON s.run_id = c.run_id AND s.id = c.step_id"
		" WHERE c.run_id = ?1 ORDER BY s.pos, c.pos",
	[Q_AFTER_LOAD] =
		"SELECT s.pos, c.dep FROM step_after c JOIN steps s"
		" ON s.run_id = c.run_id AND s.id = c.step_id"
		" WHERE c.run_id = ?1 ORDER BY s.pos, c.pos",

	[Q_STEPS_INFO] =
		"SELECT s.pos, s.id, s.state, s.cache_key, s.started, s.finished,"
		"  s.cached_from_run, s.cached_from_step,"
		"  (SELECT count(*) FROM attempts c"
		"    WHERE c.run_id = s.run_id AND c.step_id = s.id),"
		"  (SELECT count(*) FROM attempts c WHERE c.run_id = s.run_id"
		"    AND c.step_id = s.id AND c.spends_retry = 1),"
		"  a.n, a.state, a.handle, a.started,"
		"  f.state, f.reason, f.exit_code, f.signal,"
		"  p.value, p.total, m.name, m.value"
		" FROM steps s"
		" LEFT JOIN attempts a ON a.run_id = s.run_id AND a.step_id = s.id"
		"  AND a.n = (SELECT max(n) FROM attempts x"
		"   WHERE x.run_id = s.run_id AND x.step_id = s.id)"
		" LEFT JOIN attempts f ON f.run_id = s.run_id AND f.step_id = s.id"
		"  AND f.n = (SELECT max(n) FROM attempts x"
		"   WHERE x.run_id = s.run_id AND x.step_id = s.id"
		"   AND x.state IN ('failed', 'timeout', 'lost'))"
		" LEFT JOIN events p ON p.id = (SELECT max(id) FROM events e"
		"  WHERE e.run_id = s.run_id AND e.step_id = s.id"
		"  AND e.kind = 'progress')"
		" LEFT JOIN events m ON m.id = (SELECT max(id) FROM events e"
		"  WHERE e.run_id = s.run_id AND e.step_id = s.id"
		"  AND e.kind = 'metric')"
		" WHERE s.run_id = ?1 ORDER BY s.pos",
	[Q_RUN_OUTPUTS] =
		"SELECT s.pos, o.name, o.type, o.path, o.digest, o.bytes, o.artifact"
		" FROM outputs o JOIN steps s"
		" ON s.run_id = o.run_id AND s.id = o.step_id"
		" WHERE o.run_id = ?1 ORDER BY s.pos, o.rowid",
	/* Entering running keeps the first start time; finished is set exactly
	 * when the state is final, so a step sent back to pending (or running
	 * again on resume) is not shown as finished. Times are wall-clock: a
	 * clock set back meanwhile must not make a duration negative, hence
	 * the max() here and for attempts and runs. */
	[Q_STEP_SET_STATE] =
		"UPDATE steps SET state = ?3,"
		" started = CASE WHEN ?3 = 'running' AND started IS NULL THEN ?4"
		"  ELSE started END,"
		" finished = CASE WHEN ?3 IN " FINAL_STEP_WORDS
		"  THEN max(?4, coalesce(started, ?4))"
		"  ELSE NULL END"
		" WHERE run_id = ?1 AND id = ?2",
	[Q_STEP_SET_CACHE_KEY] =
		"UPDATE steps SET cache_key = ?3 WHERE run_id = ?1 AND id = ?2",
	[Q_STEP_EXISTS] = "SELECT 1 FROM steps WHERE run_id = ?1 AND id = ?2",

	[Q_ATT_INSERT] =
		"INSERT INTO attempts (run_id, step_id, n, state, started,"
		" resumed_from) VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
	[Q_ATT_SET_HANDLE] =
		"UPDATE attempts SET handle = ?4, host = coalesce(?5, host),"
		" argv = coalesce(?6, argv)"
		" WHERE run_id = ?1 AND step_id = ?2 AND n = ?3",
	[Q_ATT_END] =
		"UPDATE attempts SET state = ?4, finished = max(?5, started), exit_code = ?6,"
		" signal = ?7, reason = ?8, spends_retry = ?9"
		" WHERE run_id = ?1 AND step_id = ?2 AND n = ?3",
	[Q_ATT_LIST] =
		"SELECT n, state, handle, started, finished, exit_code, signal,"
		" resumed_from, reason FROM attempts"
		" WHERE run_id = ?1 AND step_id = ?2 ORDER BY n",

	[Q_OUT_DELETE] = "DELETE FROM outputs WHERE run_id = ?1 AND step_id = ?2",
	[Q_OUT_INSERT] =
		"INSERT INTO outputs (run_id, step_id, name, type, path, digest,"
		" bytes, artifact) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[Q_OUT_COPY] =
		"INSERT INTO outputs (run_id, step_id, name, type, path, digest,"
		" bytes, artifact) SELECT ?1, ?2, name, type, path, digest, bytes, artifact"
		" FROM outputs WHERE run_id = ?3 AND step_id = ?4 ORDER BY rowid",
	[Q_OUT_LIST] =
		"SELECT name, type, path, digest, bytes, artifact FROM outputs"
		" WHERE run_id = ?1 AND step_id = ?2 ORDER BY rowid",
	[Q_STEP_SET_CACHED] =
		"UPDATE steps SET state = 'cached', cached_from_run = ?3,"
		" cached_from_step = ?4, finished = ?5"
		" WHERE run_id = ?1 AND id = ?2",
	[Q_CACHE_CANDIDATES] =
		/* Cached rows point at the outputs of a succeeded one, which is
		 * listed itself; a bounded list keeps a popular key cheap. */
		"SELECT run_id, id FROM steps WHERE cache_key = ?1"
		" AND state = 'succeeded' ORDER BY run_id DESC, pos LIMIT 8",

	/* Once per checkpoint: a driver killed after recording one but
	 * before recording how far it read the events file reads its line
	 * again. */
	[Q_CKPT_INSERT] =
		"INSERT INTO checkpoints (run_id, step_id, attempt, engine_step,"
		" path, digest, created, artifact) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8"
		" WHERE NOT EXISTS (SELECT 1 FROM checkpoints WHERE run_id = ?1"
		" AND step_id = ?2 AND attempt = ?3 AND engine_step IS ?4 AND path = ?5"
		" AND digest IS ?6)",
	[Q_CKPT_LATEST] =
		"SELECT path, engine_step, artifact FROM checkpoints"
		" WHERE run_id = ?1 AND step_id = ?2 ORDER BY id DESC LIMIT 1",
	[Q_CKPT_BY_PATH] =
		"SELECT coalesce(artifact, 0) FROM checkpoints"
		" WHERE run_id = ?1 AND step_id = ?2 AND path = ?3 ORDER BY id DESC LIMIT 1",
	[Q_EV_INSERT] =
		"INSERT INTO events (run_id, step_id, attempt, time, kind, name,"
		" value, total, engine_step, text)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[Q_EV_OFFSET_SET] =
		"UPDATE attempts SET events_offset = ?4"
		" WHERE run_id = ?1 AND step_id = ?2 AND n = ?3",
	[Q_EV_OFFSET_GET] =
		"SELECT events_offset FROM attempts"
		" WHERE run_id = ?1 AND step_id = ?2 AND n = ?3",
	[Q_EV_RUN] =
		"SELECT step_id, attempt, time, kind, name, value, total,"
		" engine_step, text FROM events WHERE run_id = ?1 ORDER BY id",
	[Q_EV_STEP] =
		"SELECT step_id, attempt, time, kind, name, value, total,"
		" engine_step, text FROM events WHERE run_id = ?1 AND step_id = ?2"
		" ORDER BY id",
};

struct state {
	sqlite3 *db;
	char *path;                  /* as opened: named by every error */
	int busy_ms;
	sqlite3_stmt *q[Q__COUNT];   /* prepared on first use, kept until close */
	void *catalog;               /* pipeline/catalog.c's statements */
};

/* ---- errors ------------------------------------------------------------- */

static int db_verr(struct state *st, int rc, struct err *err, const char *fmt,
		   va_list ap) __attribute__((format(printf, 4, 0)));

/* Appends the OS error behind an I/O failure, when SQLite kept one: "disk
 * I/O error" alone does not say EACCES from ENOSPC. Returns err's code. */
static int add_os_error(struct state *st, int rc, struct err *err)
{
	int e = 0;
	size_t n;

	switch (rc & 0xff) {
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
		e = st->db ? sqlite3_system_errno(st->db) : 0;
		break;
	}
	if (!err)
		return ERR_SYSTEM;
	if (e > 0) {
		n = strlen(err->msg);
		snprintf(err->msg + n, sizeof(err->msg) - n, " (%s)", strerror(e));
		err->sys_errno = e;
	}
	return err->code;
}

static int db_verr(struct state *st, int rc, struct err *err, const char *fmt,
		   va_list ap)
{
	char what[256];

	vsnprintf(what, sizeof(what), fmt, ap);
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		/* A system error (exit 3), not a refusal: the caller waited
		 * as long as it was told to and the world did not move. */
		return err_set(err, ERR_SYSTEM,
			       "state database '%s' is locked by another process"
			       " (waited %d ms: %s: %s)",
			       st->path, st->busy_ms, what, sqlite3_errmsg(st->db));
	case SQLITE_NOMEM:
		return err_set(err, ERR_NOMEM, "state database '%s': %s: %s", st->path,
			       what, sqlite3_errmsg(st->db));
	default:
		err_set(err, ERR_SYSTEM, "state database '%s': %s: %s", st->path,
			what, sqlite3_errmsg(st->db));
		return add_os_error(st, rc, err);
	}
}

/* Turns an SQLite result code into our error; returns the err code. */
static int db_err(struct state *st, int rc, struct err *err, const char *fmt,
		  ...) __attribute__((format(printf, 4, 5)));

static int db_err(struct state *st, int rc, struct err *err, const char *fmt,
		  ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = db_verr(st, rc, err, fmt, ap);
	va_end(ap);
	return ret;
}

static int no_run(struct err *err, int64_t run_id)
{
	return err_set(err, ERR_NOTFOUND, "no run %lld", (long long)run_id);
}

static int no_step(struct err *err, int64_t run_id, const char *step)
{
	return err_set(err, ERR_NOTFOUND, "run %lld has no step '%s'",
		       (long long)run_id, step);
}

/* ---- statement helpers -------------------------------------------------- */

static int prep(struct state *st, enum q id, sqlite3_stmt **out,
		struct err *err)
{
	if (!st->q[id]) {
		int rc = sqlite3_prepare_v3(st->db, q_sql[id], -1,
					    SQLITE_PREPARE_PERSISTENT,
					    &st->q[id], NULL);
		if (rc != SQLITE_OK) {
			st->q[id] = NULL;
			return db_err(st, rc, err, "prepare '%.40s'", q_sql[id]);
		}
	}
	*out = st->q[id];
	return 0;
}

/* Makes a cached statement ready for its next use and drops the borrowed
 * pointers bound to it. The reset's rc repeats the step's, already
 * handled. NULL-safe. */
static void release(sqlite3_stmt *s)
{
	if (!s)
		return;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Binders that stop at the first failure: bind a whole row, check *rc once.
 * Text is bound SQLITE_STATIC: the caller's strings outlive the step, and
 * release() clears the bindings before they could dangle. */
static void bind_text(sqlite3_stmt *s, int i, const char *v, int *rc)
{
	if (*rc != SQLITE_OK)
		return;
	*rc = v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC)
		: sqlite3_bind_null(s, i);
}

static void bind_int(sqlite3_stmt *s, int i, int64_t v, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_int64(s, i, v);
}

static void bind_double(sqlite3_stmt *s, int i, double v, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_double(s, i, v);
}

static void bind_null(sqlite3_stmt *s, int i, int *rc)
{
	if (*rc == SQLITE_OK)
		*rc = sqlite3_bind_null(s, i);
}

/* Runs a bound statement that returns no rows and releases it. rc is the
 * binders' result. On failure the message names what was being done. */
static int exec_done(struct state *st, sqlite3_stmt *s, int rc,
		     struct err *err, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int exec_done(struct state *st, sqlite3_stmt *s, int rc,
		     struct err *err, const char *fmt, ...)
{
	int ret = 0;
	va_list ap;

	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_DONE) {
		va_start(ap, fmt);
		ret = db_verr(st, rc, err, fmt, ap);
		va_end(ap);
	}
	release(s);
	return ret;
}

static char *col_str(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	return t ? xstrdup((const char *)t) : NULL;
}

static double col_double0(sqlite3_stmt *s, int i)
{
	return sqlite3_column_type(s, i) == SQLITE_NULL
		? 0 : sqlite3_column_double(s, i);
}

/* Parses a stored word into an enum index; unknown words are corruption
 * (or a newer anneal's), reported rather than guessed. */
static int col_word(sqlite3_stmt *s, int i, const char *const *words,
		    size_t n, const char *what, int *out, struct err *err)
{
	const char *w = (const char *)sqlite3_column_text(s, i);
	int k = word_index(words, n, w);

	if (k < 0)
		return err_set(err, ERR_SYSTEM,
			       "state database: unknown %s '%s'", what,
			       w ? w : "");
	*out = k;
	return 0;
}

static int col_type(sqlite3_stmt *s, int i, enum artifact_type *out,
		    struct err *err)
{
	const char *w = (const char *)sqlite3_column_text(s, i);

	if (!w || artifact_type_parse(w, out) != 0)
		return err_set(err, ERR_SYSTEM,
			       "state database: unknown artifact type '%s'",
			       w ? w : "");
	return 0;
}

/* ---- transactions ------------------------------------------------------- */

static int tx_begin(struct state *st, int write, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int ret = prep(st, write ? Q_BEGIN_WRITE : Q_BEGIN_READ, &s, err);

	if (ret)
		return ret;
	return exec_done(st, s, SQLITE_OK, err, "begin transaction");
}

/* Ends the transaction: COMMIT when ret is 0, else ROLLBACK. Returns the
 * final result. */
static int tx_end(struct state *st, int ret, struct err *err)
{
	sqlite3_stmt *s = NULL;

	if (ret == 0) {
		fault_point("state.tx-commit");
		ret = prep(st, Q_COMMIT, &s, err);
		if (ret == 0)
			ret = exec_done(st, s, SQLITE_OK, err, "commit");
		if (ret == 0)
			return 0;
	}
	/* SQLite may already have rolled back (on I/O errors, full disk...).
	 * A ROLLBACK that fails has nothing more to undo; the error that
	 * brought us here is the one to report. */
	if (!sqlite3_get_autocommit(st->db) && prep(st, Q_ROLLBACK, &s, NULL) == 0)
		exec_done(st, s, SQLITE_OK, NULL, "rollback");
	return ret;
}

/* ---- open, migrate, close ----------------------------------------------- */

/* Errors while opening name the database, as the caller has no other
 * context yet: "state database 'PATH': set journal mode: MSG". */
static int open_err(struct state *st, int rc, struct err *err,
		    const char *path, const char *what)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return err_set(err, ERR_SYSTEM,
			       "state database '%s' is locked by another process"
			       " (waited %d ms: %s: %s)",
			       path, st->busy_ms, what, sqlite3_errmsg(st->db));
	default:
		err_set(err, (rc & 0xff) == SQLITE_NOMEM ? ERR_NOMEM
			: ERR_SYSTEM, "state database '%s': %s: %s", path,
			what, sqlite3_errmsg(st->db));
		return add_os_error(st, rc, err);
	}
}

static int exec_sql(struct state *st, const char *path, const char *sql,
		    const char *what, struct err *err)
{
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : open_err(st, rc, err, path, what);
}

/* Runs a one-row PRAGMA and hands its first column to the caller through
 * *s (finalized by the caller, also on failure). */
static int pragma_row(struct state *st, const char *path, const char *sql,
		      sqlite3_stmt **s, const char *what, struct err *err)
{
	int rc = sqlite3_prepare_v2(st->db, sql, -1, s, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_step(*s);
	return rc == SQLITE_ROW ? 0 : open_err(st, rc, err, path, what);
}

static int user_version(struct state *st, const char *path, int *out,
			struct err *err)
{
	sqlite3_stmt *s = NULL;
	int ret = pragma_row(st, path, "PRAGMA user_version", &s,
			     "read schema version", err);

	if (ret == 0)
		*out = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	if (ret == 0 && *out < 0)
		ret = err_set(err, ERR_SYSTEM,
			      "state database '%s' has invalid schema version %d",
			      path, *out);
	if (ret == 0 && *out > state_schema_version())
		ret = err_set(err, ERR_INVALID,
			      "state database '%s' has schema version %d, newer"
			      " than this anneal (%d); upgrade anneal",
			      path, *out, state_schema_version());
	return ret;
}

/* Applies the migrations this database lacks, one transaction each. The
 * version is read again under the write lock: another anneal opening the
 * same workspace may have migrated it meanwhile. */
static int migrate(struct state *st, const char *path, struct err *err)
{
	int have, ret;

	ret = user_version(st, path, &have, err);
	while (ret == 0 && have < state_schema_version()) {
		char setv[64];

		ret = exec_sql(st, path, "BEGIN IMMEDIATE", "begin migration", err);
		if (ret)
			break;
		ret = user_version(st, path, &have, err);
		if (ret == 0 && have < state_schema_version()) {
			snprintf(setv, sizeof(setv), "PRAGMA user_version = %d",
				 have + 1);
			ret = exec_sql(st, path, migrations[have],
				       "migrate schema", err);
			if (ret == 0)
				ret = exec_sql(st, path, setv,
					       "set schema version", err);
			if (ret == 0)
				have++;
		}
		if (ret == 0) {
			fault_point("state.migrated");
			ret = exec_sql(st, path, "COMMIT", "commit migration", err);
		}
		/* A failed ROLLBACK leaves nothing more to undo; the error
		 * already reported is the one that matters. */
		if (ret && !sqlite3_get_autocommit(st->db))
			(void)sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	}
	return ret;
}

static int busy_ms_from_env(int *out, struct err *err)
{
	const char *v = getenv("ANNEAL_BUSY_TIMEOUT_MS");
	long long ms;

	*out = DEFAULT_BUSY_MS;
	if (!v || !*v)
		return 0;
	if (parse_int(v, 0, 24LL * 3600 * 1000, &ms) != 0)
		return err_set(err, ERR_INVALID,
			       "environment variable 'ANNEAL_BUSY_TIMEOUT_MS':"
			       " invalid milliseconds '%s'", v);
	*out = (int)ms;
	return 0;
}

/* PRAGMA synchronous: NORMAL unless ANNEAL_SYNCHRONOUS says FULL (a
 * commit fsyncs the WAL: a power cut loses no committed transaction, at
 * one fsync per transaction, a few per step). */
static int synchronous_from_env(const char **out, struct err *err)
{
	const char *v = getenv("ANNEAL_SYNCHRONOUS");

	*out = "PRAGMA synchronous = NORMAL";
	if (!v || !*v || !strcasecmp(v, "normal"))
		return 0;
	if (!strcasecmp(v, "full")) {
		*out = "PRAGMA synchronous = FULL";
		return 0;
	}
	return err_set(err, ERR_INVALID, "environment variable 'ANNEAL_SYNCHRONOUS':"
		       " expected 'normal' or 'full', not '%s'", v);
}

static int is_memory(const char *path)
{
	return !*path || !strcmp(path, ":memory:");
}

int state_open(const char *path, struct state **out, struct err *err)
{
	struct state *st = xcalloc(1, sizeof(*st));
	sqlite3_stmt *s = NULL;
	const char *sync_sql;
	int rc, ret;

	*out = NULL;
	st->path = xstrdup(path);
	ret = busy_ms_from_env(&st->busy_ms, err);
	if (!ret)
		ret = synchronous_from_env(&sync_sql, err);
	if (ret)
		goto done;
	rc = sqlite3_open_v2(path, &st->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			     SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		err_set(err, ERR_SYSTEM, "state database '%s': cannot open: %s",
			path, st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		ret = add_os_error(st, rc, err);
		goto done;
	}
	/* SQLite falls back to read-only when it may not write the file (a
	 * read-only mount, another user's file): every later error would
	 * then be about the WAL's shared memory file instead. */
	if (!is_memory(path) && sqlite3_db_readonly(st->db, "main") == 1) {
		ret = err_sys(err, access(path, W_OK) < 0 ? errno : EACCES,
			      "state database '%s': cannot open for writing", path);
		goto done;
	}
	rc = sqlite3_extended_result_codes(st->db, 1);
	if (rc == SQLITE_OK)
		rc = sqlite3_busy_timeout(st->db, st->busy_ms);
	if (rc != SQLITE_OK) {
		ret = open_err(st, rc, err, path, "configure connection");
		goto done;
	}
	if (!is_memory(path)) {
		const char *mode;

		ret = pragma_row(st, path, "PRAGMA journal_mode = WAL", &s,
				 "set journal mode", err);
		if (ret)
			goto done;
		mode = (const char *)sqlite3_column_text(s, 0);
		if (!mode || strcmp(mode, "wal") != 0) {
			ret = err_set(err, ERR_SYSTEM, "state database '%s':"
				      " cannot use WAL journal mode (got '%s')",
				      path, mode ? mode : "");
			goto done;
		}
		/* A live statement would keep the migration from committing. */
		sqlite3_finalize(s);
		s = NULL;
	}
	ret = exec_sql(st, path, sync_sql, "set synchronous", err);
	if (ret == 0)
		ret = exec_sql(st, path, "PRAGMA foreign_keys = ON",
			       "enable foreign keys", err);
	if (ret == 0)
		ret = migrate(st, path, err);
done:
	sqlite3_finalize(s);
	if (ret) {
		state_close(st);
		return ret;
	}
	*out = st;
	return 0;
}

void state_set_busy_timeout(struct state *st, int ms)
{
	st->busy_ms = ms < 0 ? 0 : ms;
	/* Only fails for a closed connection, which st never holds. */
	(void)sqlite3_busy_timeout(st->db, st->busy_ms);
}

/* ---- for the other half of the store (state_internal.h) ---------------- */

sqlite3 *state_sqlite(struct state *st)
{
	return st->db;
}

void **state_catalog_slot(struct state *st)
{
	return &st->catalog;
}

int state_tx_begin(struct state *st, int write, struct err *err)
{
	return tx_begin(st, write, err);
}

int state_tx_end(struct state *st, int ret, struct err *err)
{
	return tx_end(st, ret, err);
}

int state_sql_err(struct state *st, int rc, struct err *err, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = db_verr(st, rc, err, fmt, ap);
	va_end(ap);
	return ret;
}

void state_close(struct state *st)
{
	if (!st)
		return;
	catalog_release(st);
	for (size_t i = 0; i < Q__COUNT; i++)
		sqlite3_finalize(st->q[i]);
	/* close_v2 cannot fail with every statement finalized above. */
	sqlite3_close_v2(st->db);
	free(st->path);
	free(st);
}

/* ---- runs --------------------------------------------------------------- */

static int run_exists(struct state *st, int64_t run_id, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret = prep(st, Q_RUN_EXISTS, &s, err);

	if (ret)
		return ret;
	bind_int(s, 1, run_id, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		ret = no_run(err, run_id);
	else if (rc != SQLITE_ROW)
		ret = db_err(st, rc, err, "find run %lld", (long long)run_id);
	release(s);
	return ret;
}

static int step_exists(struct state *st, int64_t run_id, const char *step,
		       struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret = prep(st, Q_STEP_EXISTS, &s, err);

	if (ret)
		return ret;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		ret = no_step(err, run_id, step);
	else if (rc != SQLITE_ROW)
		ret = db_err(st, rc, err, "find step '%s'", step);
	release(s);
	return ret;
}

static int insert_step(struct state *st, int64_t run_id, size_t pos,
		       const struct step *sp, const char *cache_key,
		       struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	ret = prep(st, Q_STEP_INSERT, &s, err);
	if (ret)
		return ret;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, sp->id, &rc);
	bind_int(s, 3, (int64_t)pos, &rc);
	bind_text(s, 4, sp->kind, &rc);
	bind_text(s, 5, sp->stage, &rc);
	bind_text(s, 6, cache_key, &rc);
	bind_int(s, 7, sp->retry.max, &rc);
	bind_double(s, 8, sp->retry.backoff_s, &rc);
	bind_int(s, 9, sp->timeout_s, &rc);
	bind_int(s, 10, sp->res.cpus, &rc);
	bind_int(s, 11, sp->res.gpus, &rc);
	bind_int(s, 12, sp->res.npus, &rc);
	bind_int(s, 13, sp->res.mem_mb, &rc);
	bind_text(s, 14, sp->params_json, &rc);
	bind_text(s, 15, sp->runner_json, &rc);
	bind_int(s, 16, sp->res.nodes, &rc);
	bind_int(s, 17, sp->res.tasks_per_node, &rc);
	return exec_done(st, s, rc, err, "insert step '%s'",
			 sp->id ? sp->id : "");
}

/* The rows hanging off one step: argv, env, inputs, declared outputs,
 * after, and the union of dependencies. */
static int insert_step_specs(struct state *st, int64_t run_id,
			     const struct step *sp, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc, ret = 0;

	for (size_t i = 0; ret == 0 && i < sp->argc; i++) {
		rc = SQLITE_OK;
		ret = prep(st, Q_ARG_INSERT, &s, err);
		if (ret)
			break;
		bind_int(s, 1, run_id, &rc);
		bind_text(s, 2, sp->id, &rc);
		bind_int(s, 3, (int64_t)i, &rc);
		bind_text(s, 4, sp->argv[i], &rc);
		ret = exec_done(st, s, rc, err, "insert argv[%zu] of step '%s'",
				i, sp->id);
	}
	for (size_t i = 0; ret == 0 && i < sp->nenv; i++) {
		rc = SQLITE_OK;
		ret = prep(st, Q_ENV_INSERT, &s, err);
		if (ret)
			break;
		bind_int(s, 1, run_id, &rc);
		bind_text(s, 2, sp->id, &rc);
		bind_int(s, 3, (int64_t)i, &rc);
		bind_text(s, 4, sp->env[i].key, &rc);
		bind_text(s, 5, sp->env[i].value, &rc);
		ret = exec_done(st, s, rc, err, "insert env of step '%s'", sp->id);
	}
	for (size_t i = 0; ret == 0 && i < sp->ninputs; i++) {
		const struct step_input *in = &sp->inputs[i];

		rc = SQLITE_OK;
		ret = prep(st, Q_INPUT_INSERT, &s, err);
		if (ret)
			break;
		bind_int(s, 1, run_id, &rc);
		bind_text(s, 2, sp->id, &rc);
		bind_int(s, 3, (int64_t)i, &rc);
		bind_text(s, 4, in->role, &rc);
		bind_text(s, 5, in->from_step, &rc);
		bind_text(s, 6, in->from_output, &rc);
		bind_text(s, 7, in->ref, &rc);
		if (in->artifact)
			bind_int(s, 8, in->artifact, &rc);
		else
			bind_null(s, 8, &rc);
		bind_text(s, 9, in->edge_role, &rc);
		if (in->has_weight)
			bind_double(s, 10, in->weight, &rc);
		else
			bind_null(s, 10, &rc);
		ret = exec_done(st, s, rc, err, "insert input of step '%s'", sp->id);
		if (ret)
			break;
		if (!in->from_step)
			continue;   /* an artifact: no step to wait for */
		rc = SQLITE_OK;
		ret = prep(st, Q_DEP_INSERT, &s, err);
		if (ret)
			break;
		bind_int(s, 1, run_id, &rc);
		bind_text(s, 2, sp->id, &rc);
		bind_text(s, 3, in->from_step, &rc);
		ret = exec_done(st, s, rc, err, "insert dependency of step '%s'",
				sp->id);
	}
	for (size_t i = 0; ret == 0 && i < sp->noutputs; i++) {
		rc = SQLITE_OK;
		ret = prep(st, Q_ODECL_INSERT, &s, err);
		if (ret)
			break;
		bind_int(s, 1, run_id, &rc);
		bind_text(s, 2, sp->id, &rc);
		bind_int(s, 3, (int64_t)i, &rc);
		bind_text(s, 4, sp->outputs[i].name, &rc);
		bind_text(s, 5, artifact_type_name(sp->outputs[i].type), &rc);
		bind_text(s, 6, sp->outputs[i].artifact, &rc);
		ret = exec_done(st, s, rc, err, "insert output of step '%s'",
				sp->id);
	}
	for (size_t i = 0; ret == 0 && i < sp->nafter; i++) {
		rc = SQLITE_OK;
		ret = prep(st, Q_AFTER_INSERT, &s, err);
		if (ret)
			break;
		bind_int(s, 1, run_id, &rc);
		bind_text(s, 2, sp->id, &rc);
		bind_int(s, 3, (int64_t)i, &rc);
		bind_text(s, 4, sp->after[i], &rc);
		ret = exec_done(st, s, rc, err, "insert after of step '%s'", sp->id);
		if (ret)
			break;
		rc = SQLITE_OK;
		ret = prep(st, Q_DEP_INSERT, &s, err);
		if (ret)
			break;
		bind_int(s, 1, run_id, &rc);
		bind_text(s, 2, sp->id, &rc);
		bind_text(s, 3, sp->after[i], &rc);
		ret = exec_done(st, s, rc, err, "insert dependency of step '%s'",
				sp->id);
	}
	return ret;
}

int state_run_create(struct state *st, const struct run_new *rn,
		     int64_t *run_id, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int64_t id = 0;
	int rc = SQLITE_OK, ret;

	ret = tx_begin(st, 1, err);
	if (ret)
		return ret;
	ret = prep(st, Q_RUN_INSERT, &s, err);
	if (ret)
		goto done;
	bind_text(s, 1, rn->recipe_path, &rc);
	bind_text(s, 2, rn->recipe_name, &rc);
	bind_text(s, 3, rn->recipe_text, &rc);
	bind_text(s, 4, rn->recipe_digest, &rc);
	bind_text(s, 5, rn->params_json, &rc);
	bind_text(s, 6, rn->runner, &rc);
	bind_double(s, 7, now_wall(), &rc);
	ret = exec_done(st, s, rc, err, "insert run");
	if (ret)
		goto done;
	id = sqlite3_last_insert_rowid(st->db);
	/* All step rows first, so that a duplicate id is reported as such
	 * rather than as a child row's constraint. */
	for (size_t i = 0; ret == 0 && i < rn->nsteps; i++)
		ret = insert_step(st, id, i, &rn->steps[i],
				  rn->cache_keys ? rn->cache_keys[i] : NULL, err);
	for (size_t i = 0; ret == 0 && i < rn->nsteps; i++)
		ret = insert_step_specs(st, id, &rn->steps[i], err);
done:
	ret = tx_end(st, ret, err);
	if (ret == 0)
		*run_id = id;
	return ret;
}

void run_info_clear(struct run_info *ri)
{
	if (!ri)
		return;
	free(ri->recipe_path);
	free(ri->recipe_name);
	free(ri->recipe_digest);
	free(ri->params_json);
	free(ri->runner);
	memset(ri, 0, sizeof(*ri));
}

/* Reads a row of Q_RUN_GET / Q_RUN_LIST. */
static int read_run_row(sqlite3_stmt *s, struct run_info *ri, struct err *err)
{
	int k = 0, ret;

	memset(ri, 0, sizeof(*ri));
	ret = col_word(s, 6, run_words, ARRAY_LEN(run_words), "run state", &k,
		       err);
	if (ret)
		return ret;
	ri->id = sqlite3_column_int64(s, 0);
	ri->recipe_path = col_str(s, 1);
	ri->recipe_name = col_str(s, 2);
	ri->recipe_digest = col_str(s, 3);
	ri->params_json = col_str(s, 4);
	ri->runner = col_str(s, 5);
	ri->state = (enum run_state)k;
	ri->created = col_double0(s, 7);
	ri->finished = col_double0(s, 8);
	ri->driver_pid = sqlite3_column_int(s, 9);
	ri->cancel_requested = sqlite3_column_int(s, 10);
	return 0;
}

int state_run_get(struct state *st, int64_t run_id, struct run_info *out,
		  struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	memset(out, 0, sizeof(*out));
	ret = prep(st, Q_RUN_GET, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		ret = no_run(err, run_id);
	else if (rc != SQLITE_ROW)
		ret = db_err(st, rc, err, "read run %lld", (long long)run_id);
	else
		ret = read_run_row(s, out, err);
done:
	release(s);
	return ret;
}

int state_run_recipe_text(struct state *st, int64_t run_id, char **out,
			  struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	*out = NULL;
	ret = prep(st, Q_RUN_TEXT, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		ret = no_run(err, run_id);
	else if (rc != SQLITE_ROW)
		ret = db_err(st, rc, err, "read recipe of run %lld",
			     (long long)run_id);
	else
		*out = xstrdup(sqlite3_column_type(s, 0) == SQLITE_NULL ? ""
			       : (const char *)sqlite3_column_text(s, 0));
done:
	release(s);
	return ret;
}

int state_run_latest(struct state *st, int unfinished_only, int64_t *run_id,
		     struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc, ret;

	ret = prep(st, unfinished_only ? Q_RUN_LATEST_UNFINISHED : Q_RUN_LATEST,
		   &s, err);
	if (ret)
		goto done;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL)
		*run_id = sqlite3_column_int64(s, 0);
	else if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		ret = err_set(err, ERR_NOTFOUND, unfinished_only
			      ? "no unfinished run" : "no run yet");
	else
		ret = db_err(st, rc, err, "find latest run");
done:
	release(s);
	return ret;
}

int state_run_list(struct state *st, struct run_info **out, size_t *n,
		   struct err *err)
{
	struct run_info *v = NULL;
	size_t len = 0, cap = 0;
	sqlite3_stmt *s = NULL;
	int rc, ret;

	*out = NULL;
	*n = 0;
	ret = prep(st, Q_RUN_LIST, &s, err);
	if (ret)
		goto done;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (len == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		ret = read_run_row(s, &v[len], err);
		if (ret)
			goto done;
		len++;
	}
	if (rc != SQLITE_DONE)
		ret = db_err(st, rc, err, "list runs");
done:
	release(s);
	if (ret) {
		for (size_t i = 0; i < len; i++)
			run_info_clear(&v[i]);
		free(v);
		return ret;
	}
	*out = v;
	*n = len;
	return 0;
}

/* Runs a one-row UPDATE of a run in its own transaction; ERR_NOTFOUND
 * when there is no such run. */
static int update_run(struct state *st, sqlite3_stmt *s, int rc,
		      int64_t run_id, struct err *err, const char *what)
{
	int ret = tx_begin(st, 1, err);

	if (ret) {
		release(s);
		return ret;
	}
	ret = exec_done(st, s, rc, err, "%s of run %lld", what,
			(long long)run_id);
	if (ret == 0 && sqlite3_changes(st->db) == 0)
		ret = no_run(err, run_id);
	return tx_end(st, ret, err);
}

int state_run_set_state(struct state *st, int64_t run_id, enum run_state rs,
			struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret = prep(st, Q_RUN_SET_STATE, &s, err);

	if (ret)
		return ret;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, run_state_name(rs), &rc);
	bind_double(s, 3, now_wall(), &rc);
	return update_run(st, s, rc, run_id, err, "set state");
}

int state_run_set_driver(struct state *st, int64_t run_id, int pid,
			 struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret = prep(st, Q_RUN_SET_DRIVER, &s, err);

	if (ret)
		return ret;
	bind_int(s, 1, run_id, &rc);
	bind_int(s, 2, pid, &rc);
	return update_run(st, s, rc, run_id, err, "set driver");
}

static int set_cancel(struct state *st, int64_t run_id, int on,
		      struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret = prep(st, Q_RUN_SET_CANCEL, &s, err);

	if (ret)
		return ret;
	bind_int(s, 1, run_id, &rc);
	bind_int(s, 2, on, &rc);
	return update_run(st, s, rc, run_id, err, "set cancel request");
}

int state_run_request_cancel(struct state *st, int64_t run_id, struct err *err)
{
	return set_cancel(st, run_id, 1, err);
}

int state_run_clear_cancel(struct state *st, int64_t run_id, struct err *err)
{
	return set_cancel(st, run_id, 0, err);
}

/* ---- steps: load -------------------------------------------------------- */

/* The step a child row belongs to, by its plan position. */
static int child_step(sqlite3_stmt *s, struct step *steps, size_t n,
		      struct step **out, struct err *err)
{
	int64_t pos = sqlite3_column_int64(s, 0);

	if (pos < 0 || (uint64_t)pos >= n)
		return err_set(err, ERR_SYSTEM,
			       "state database: step position %lld out of range",
			       (long long)pos);
	*out = &steps[pos];
	return 0;
}

/* Runs one of the *_LOAD child queries, handing each row to fn. */
typedef void (*child_fn)(struct step *sp, sqlite3_stmt *s);

static int load_children(struct state *st, enum q id, int64_t run_id,
			 struct step *steps, size_t n, child_fn fn,
			 struct err *err)
{
	sqlite3_stmt *s = NULL;
	struct step *sp = NULL;
	int rc = SQLITE_OK, ret;

	ret = prep(st, id, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		ret = child_step(s, steps, n, &sp, err);
		if (ret)
			goto done;
		fn(sp, s);
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		ret = db_err(st, rc, err, "load steps of run %lld",
			     (long long)run_id);
done:
	release(s);
	return ret;
}

static char *col_str_nn(sqlite3_stmt *s, int i)
{
	char *v = col_str(s, i);
	return v ? v : xstrdup("");
}

static void add_arg(struct step *sp, sqlite3_stmt *s)
{
	sp->argv = xrealloc(sp->argv, (sp->argc + 2) * sizeof(*sp->argv));
	sp->argv[sp->argc++] = col_str_nn(s, 1);
	sp->argv[sp->argc] = NULL;
}

static void add_env(struct step *sp, sqlite3_stmt *s)
{
	sp->env = xrealloc(sp->env, (sp->nenv + 1) * sizeof(*sp->env));
	sp->env[sp->nenv].key = col_str_nn(s, 1);
	sp->env[sp->nenv].value = col_str_nn(s, 2);
	sp->nenv++;
}

static void add_input(struct step *sp, sqlite3_stmt *s)
{
	struct step_input *in;

	sp->inputs = xrealloc(sp->inputs, (sp->ninputs + 1) * sizeof(*sp->inputs));
	in = &sp->inputs[sp->ninputs++];
	memset(in, 0, sizeof(*in));
	in->role = col_str_nn(s, 1);
	in->from_step = col_str(s, 2);
	in->from_output = col_str(s, 3);
	in->ref = col_str(s, 4);
	in->artifact = sqlite3_column_int64(s, 5);
	in->edge_role = col_str(s, 6);
	in->has_weight = sqlite3_column_type(s, 7) != SQLITE_NULL;
	in->weight = sqlite3_column_double(s, 7);
}

static void add_after(struct step *sp, sqlite3_stmt *s)
{
	sp->after = xrealloc(sp->after, (sp->nafter + 1) * sizeof(*sp->after));
	sp->after[sp->nafter++] = col_str_nn(s, 1);
}

/* Declared outputs carry a type word that may fail to parse, so they are
 * read by hand rather than through load_children. */
static int load_outputs_decl(struct state *st, int64_t run_id,
			     struct step *steps, size_t n, struct err *err)
{
	sqlite3_stmt *s = NULL;
	struct step *sp = NULL;
	enum artifact_type t;
	int rc = SQLITE_OK, ret;

	ret = prep(st, Q_ODECL_LOAD, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		ret = child_step(s, steps, n, &sp, err);
		if (ret == 0)
			ret = col_type(s, 2, &t, err);
		if (ret)
			goto done;
		sp->outputs = xrealloc(sp->outputs,
				       (sp->noutputs + 1) * sizeof(*sp->outputs));
		sp->outputs[sp->noutputs].name = col_str_nn(s, 1);
		sp->outputs[sp->noutputs].type = t;
		sp->outputs[sp->noutputs].artifact = col_str(s, 3);
		sp->noutputs++;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		ret = db_err(st, rc, err, "load outputs of run %lld",
			     (long long)run_id);
done:
	release(s);
	return ret;
}

static void free_steps(struct step *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		step_clear(&v[i]);
	free(v);
}

int state_steps_load(struct state *st, int64_t run_id, struct step **out,
		     size_t *nout, struct err *err)
{
	struct step *v = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	*out = NULL;
	*nout = 0;
	ret = tx_begin(st, 0, err);
	if (ret)
		return ret;
	ret = run_exists(st, run_id, err);
	if (ret == 0)
		ret = prep(st, Q_STEPS_LOAD, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct step *sp = NULL;

		if (sqlite3_column_int64(s, 0) != (int64_t)n) {
			ret = err_set(err, ERR_SYSTEM,
				      "state database: run %lld: step positions"
				      " are not contiguous", (long long)run_id);
			goto done;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		sp = &v[n++];
		memset(sp, 0, sizeof(*sp));
		sp->id = col_str(s, 1);
		sp->kind = col_str(s, 2);
		sp->stage = col_str(s, 3);
		sp->retry.max = sqlite3_column_int(s, 4);
		sp->retry.backoff_s = sqlite3_column_double(s, 5);
		sp->timeout_s = sqlite3_column_int64(s, 6);
		sp->res.cpus = sqlite3_column_int(s, 7);
		sp->res.gpus = sqlite3_column_int(s, 8);
		sp->res.npus = sqlite3_column_int(s, 9);
		sp->res.mem_mb = (long)sqlite3_column_int64(s, 10);
		sp->params_json = col_str(s, 11);
		sp->runner_json = col_str(s, 12);
		sp->res.nodes = sqlite3_column_int(s, 13);
		sp->res.tasks_per_node = sqlite3_column_int(s, 14);
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE) {
		ret = db_err(st, rc, err, "load steps of run %lld",
			     (long long)run_id);
		goto done;
	}
	release(s);
	s = NULL;
	ret = load_children(st, Q_ARGS_LOAD, run_id, v, n, add_arg, err);
	if (ret == 0)
		ret = load_children(st, Q_ENV_LOAD, run_id, v, n, add_env, err);
	if (ret == 0)
		ret = load_children(st, Q_INPUTS_LOAD, run_id, v, n, add_input,
				    err);
	if (ret == 0)
		ret = load_outputs_decl(st, run_id, v, n, err);
	if (ret == 0)
		ret = load_children(st, Q_AFTER_LOAD, run_id, v, n, add_after,
				    err);
	/* argv is NULL-terminated even when empty. */
	for (size_t i = 0; ret == 0 && i < n; i++)
		if (!v[i].argv)
			v[i].argv = xcalloc(1, sizeof(*v[i].argv));
done:
	release(s);
	ret = tx_end(st, ret, err);
	if (ret) {
		free_steps(v, n);
		return ret;
	}
	*out = v;
	*nout = n;
	return 0;
}

/* ---- outputs ------------------------------------------------------------ */

void output_rec_clear(struct output_rec *o)
{
	if (!o)
		return;
	free(o->name);
	free(o->path);
	memset(o, 0, sizeof(*o));
}

static void free_outputs(struct output_rec *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		output_rec_clear(&v[i]);
	free(v);
}

/* Reads name, type, path, digest, bytes, artifact from columns
 * first..first+5. */
static int read_output(sqlite3_stmt *s, int first, struct output_rec *o,
		       struct err *err)
{
	const char *d = (const char *)sqlite3_column_text(s, first + 3);
	int ret;

	memset(o, 0, sizeof(*o));
	ret = col_type(s, first + 1, &o->type, err);
	if (ret)
		return ret;
	if (!d || strlen(d) >= sizeof(o->digest))
		return err_set(err, ERR_SYSTEM,
			       "state database: invalid output digest '%.80s'",
			       d ? d : "");
	memcpy(o->digest, d, strlen(d) + 1);
	o->name = col_str_nn(s, first);
	o->path = col_str(s, first + 2);
	o->bytes = (uint64_t)sqlite3_column_int64(s, first + 4);
	o->artifact = sqlite3_column_int64(s, first + 5);
	return 0;
}

static int list_outputs(struct state *st, int64_t run_id, const char *step,
			struct output_rec **out, size_t *nout, struct err *err)
{
	struct output_rec *v = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	*out = NULL;
	*nout = 0;
	ret = prep(st, Q_OUT_LIST, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			v = xrealloc(v, cap * sizeof(*v));
		}
		ret = read_output(s, 0, &v[n], err);
		if (ret)
			goto done;
		n++;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		ret = db_err(st, rc, err, "read outputs of step '%s'", step);
done:
	release(s);
	if (ret) {
		free_outputs(v, n);
		return ret;
	}
	*out = v;
	*nout = n;
	return 0;
}

int state_step_outputs(struct state *st, int64_t run_id, const char *step,
		       struct output_rec **out, size_t *n, struct err *err)
{
	return list_outputs(st, run_id, step, out, n, err);
}

/* ---- steps: info -------------------------------------------------------- */

void step_info_clear(struct step_info *si)
{
	if (!si)
		return;
	free(si->id);
	free(si->cache_key);
	free(si->cached_from_step);
	free(si->last_error);
	free(si->last_handle);
	free(si->metric_name);
	free_outputs(si->outputs, si->noutputs);
	memset(si, 0, sizeof(*si));
}

static void free_infos(struct step_info *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		step_info_clear(&v[i]);
	free(v);
}

/* Why the latest failed attempt failed: its recorded reason, else words
 * made from its outcome. Columns: state, reason, exit_code, signal. */
static char *failure_words(sqlite3_stmt *s, int first)
{
	const char *state = (const char *)sqlite3_column_text(s, first);
	const char *reason = (const char *)sqlite3_column_text(s, first + 1);

	if (!state)
		return NULL;
	if (reason)
		return xstrdup(reason);
	if (!strcmp(state, "timeout"))
		return xstrdup("timed out");
	if (!strcmp(state, "lost"))
		return xstrdup("lost (no exit status)");
	if (sqlite3_column_type(s, first + 3) != SQLITE_NULL)
		return xasprintf("killed by signal %d",
				 sqlite3_column_int(s, first + 3));
	if (sqlite3_column_type(s, first + 2) != SQLITE_NULL)
		return xasprintf("exit code %d", sqlite3_column_int(s, first + 2));
	return xstrdup("failed");
}

static int read_info_row(sqlite3_stmt *s, struct step_info *si,
			 struct err *err)
{
	int k = 0, ret;

	ret = col_word(s, 2, step_words, ARRAY_LEN(step_words), "step state",
		       &k, err);
	if (ret)
		return ret;
	si->state = (enum step_state)k;
	si->id = col_str_nn(s, 1);
	si->cache_key = col_str(s, 3);
	si->started = col_double0(s, 4);
	si->finished = col_double0(s, 5);
	si->cached_from_run = sqlite3_column_int64(s, 6);
	si->cached_from_step = col_str(s, 7);
	si->attempts = sqlite3_column_int(s, 8);
	si->retries_used = sqlite3_column_int(s, 9);
	if (sqlite3_column_type(s, 10) != SQLITE_NULL) {
		ret = col_word(s, 11, attempt_words, ARRAY_LEN(attempt_words),
			       "attempt state", &k, err);
		if (ret)
			return ret;
		si->last_attempt = sqlite3_column_int(s, 10);
		si->last_attempt_state = (enum attempt_state)k;
		si->last_handle = col_str(s, 12);
		si->last_attempt_started = col_double0(s, 13);
	}
	si->last_error = failure_words(s, 14);
	si->progress_done = col_double0(s, 18);
	si->progress_total = col_double0(s, 19);
	si->metric_name = col_str(s, 20);
	si->metric_value = col_double0(s, 21);
	return 0;
}

static int load_run_outputs(struct state *st, int64_t run_id,
			    struct step_info *v, size_t n, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	ret = prep(st, Q_RUN_OUTPUTS, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t pos = sqlite3_column_int64(s, 0);
		struct step_info *si;

		if (pos < 0 || (uint64_t)pos >= n) {
			ret = err_set(err, ERR_SYSTEM, "state database: step"
				      " position %lld out of range",
				      (long long)pos);
			goto done;
		}
		si = &v[pos];
		si->outputs = xrealloc(si->outputs,
				       (si->noutputs + 1) * sizeof(*si->outputs));
		ret = read_output(s, 1, &si->outputs[si->noutputs], err);
		if (ret)
			goto done;
		si->noutputs++;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		ret = db_err(st, rc, err, "read outputs of run %lld",
			     (long long)run_id);
done:
	release(s);
	return ret;
}

int state_steps_info(struct state *st, int64_t run_id, struct step_info **out,
		     size_t *nout, struct err *err)
{
	struct step_info *v = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	*out = NULL;
	*nout = 0;
	ret = tx_begin(st, 0, err);
	if (ret)
		return ret;
	ret = run_exists(st, run_id, err);
	if (ret == 0)
		ret = prep(st, Q_STEPS_INFO, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (sqlite3_column_int64(s, 0) != (int64_t)n) {
			ret = err_set(err, ERR_SYSTEM,
				      "state database: run %lld: step positions"
				      " are not contiguous", (long long)run_id);
			goto done;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xrealloc(v, cap * sizeof(*v));
		}
		memset(&v[n], 0, sizeof(v[n]));
		n++;
		ret = read_info_row(s, &v[n - 1], err);
		if (ret)
			goto done;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE) {
		ret = db_err(st, rc, err, "read steps of run %lld",
			     (long long)run_id);
		goto done;
	}
	release(s);
	s = NULL;
	ret = load_run_outputs(st, run_id, v, n, err);
done:
	release(s);
	ret = tx_end(st, ret, err);
	if (ret) {
		free_infos(v, n);
		return ret;
	}
	*out = v;
	*nout = n;
	return 0;
}

/* ---- steps: changes ----------------------------------------------------- */

/* Sets the state inside the caller's transaction. */
static int set_step_state(struct state *st, int64_t run_id, const char *step,
			  enum step_state ss, double now, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret = prep(st, Q_STEP_SET_STATE, &s, err);

	if (ret)
		return ret;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	bind_text(s, 3, step_state_name(ss), &rc);
	bind_double(s, 4, now, &rc);
	ret = exec_done(st, s, rc, err, "set state of step '%s'", step);
	if (ret == 0 && sqlite3_changes(st->db) == 0)
		ret = no_step(err, run_id, step);
	return ret;
}

int state_step_set_state(struct state *st, int64_t run_id, const char *step,
			 enum step_state ss, struct err *err)
{
	int ret = tx_begin(st, 1, err);

	if (ret)
		return ret;
	ret = set_step_state(st, run_id, step, ss, now_wall(), err);
	return tx_end(st, ret, err);
}

int state_step_set_cache_key(struct state *st, int64_t run_id,
			     const char *step, const char *key,
			     struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	ret = tx_begin(st, 1, err);
	if (ret)
		return ret;
	ret = prep(st, Q_STEP_SET_CACHE_KEY, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	bind_text(s, 3, key, &rc);
	ret = exec_done(st, s, rc, err, "set cache key of step '%s'", step);
	if (ret == 0 && sqlite3_changes(st->db) == 0)
		ret = no_step(err, run_id, step);
done:
	return tx_end(st, ret, err);
}

/* ---- attempts ----------------------------------------------------------- */

int state_attempt_begin(struct state *st, int64_t run_id, const char *step,
			int n, const char *resumed_from, struct err *err)
{
	sqlite3_stmt *s = NULL;
	double now = now_wall();
	int rc = SQLITE_OK, ret;

	ret = tx_begin(st, 1, err);
	if (ret)
		return ret;
	/* The step first: an unknown step is ERR_NOTFOUND, not a foreign
	 * key failure. */
	ret = set_step_state(st, run_id, step, STEP_RUNNING, now, err);
	if (ret == 0)
		ret = prep(st, Q_ATT_INSERT, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	bind_int(s, 3, n, &rc);
	bind_double(s, 4, now, &rc);
	bind_text(s, 5, resumed_from, &rc);
	ret = exec_done(st, s, rc, err, "insert attempt %d of step '%s'", n,
			step);
done:
	return tx_end(st, ret, err);
}

int state_attempt_set_handle(struct state *st, int64_t run_id,
			     const char *step, int n, const char *handle,
			     struct err *err)
{
	return state_attempt_set_launch(st, run_id, step, n, handle, NULL, NULL, err);
}

int state_attempt_set_launch(struct state *st, int64_t run_id,
			     const char *step, int n, const char *handle,
			     const char *host, const char *argv_json,
			     struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	ret = tx_begin(st, 1, err);
	if (ret)
		return ret;
	ret = prep(st, Q_ATT_SET_HANDLE, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	bind_int(s, 3, n, &rc);
	bind_text(s, 4, handle, &rc);
	bind_text(s, 5, host, &rc);
	bind_text(s, 6, argv_json, &rc);
	ret = exec_done(st, s, rc, err, "set handle of attempt %d of step '%s'",
			n, step);
	if (ret == 0 && sqlite3_changes(st->db) == 0)
		ret = err_set(err, ERR_NOTFOUND,
			      "step '%s' of run %lld has no attempt %d", step,
			      (long long)run_id, n);
done:
	return tx_end(st, ret, err);
}

/* Replaces a step's outputs rows, inside the caller's transaction. */
static int replace_outputs(struct state *st, int64_t run_id, const char *step,
			   const struct output_rec *o, size_t n,
			   struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret = prep(st, Q_OUT_DELETE, &s, err);

	if (ret)
		return ret;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	ret = exec_done(st, s, rc, err, "delete outputs of step '%s'", step);
	for (size_t i = 0; ret == 0 && i < n; i++) {
		rc = SQLITE_OK;
		ret = prep(st, Q_OUT_INSERT, &s, err);
		if (ret)
			break;
		bind_int(s, 1, run_id, &rc);
		bind_text(s, 2, step, &rc);
		bind_text(s, 3, o[i].name, &rc);
		bind_text(s, 4, artifact_type_name(o[i].type), &rc);
		bind_text(s, 5, o[i].path, &rc);
		bind_text(s, 6, o[i].digest, &rc);
		bind_int(s, 7, (int64_t)o[i].bytes, &rc);
		if (o[i].artifact)
			bind_int(s, 8, o[i].artifact, &rc);
		else
			bind_null(s, 8, &rc);
		ret = exec_done(st, s, rc, err, "insert output '%s' of step '%s'",
				o[i].name ? o[i].name : "", step);
	}
	return ret;
}

int state_attempt_end(struct state *st, int64_t run_id, const char *step,
		      int n, const struct attempt_end *ae, struct err *err)
{
	sqlite3_stmt *s = NULL;
	double now = now_wall();
	int rc = SQLITE_OK, ret;

	if (ae->state == ATT_RUNNING)
		return err_set(err, ERR_INVALID, "attempt %d of step '%s': 'running'"
			       " is not an outcome", n, step);
	ret = tx_begin(st, 1, err);
	if (ret)
		return ret;
	ret = prep(st, Q_ATT_END, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	bind_int(s, 3, n, &rc);
	bind_text(s, 4, attempt_state_name(ae->state), &rc);
	bind_double(s, 5, now, &rc);
	if (ae->exit_code >= 0)
		bind_int(s, 6, ae->exit_code, &rc);
	else
		bind_null(s, 6, &rc);
	if (ae->signal)
		bind_int(s, 7, ae->signal, &rc);
	else
		bind_null(s, 7, &rc);
	bind_text(s, 8, ae->reason, &rc);
	bind_int(s, 9, ae->spends_retry ? 1 : 0, &rc);
	ret = exec_done(st, s, rc, err, "end attempt %d of step '%s'", n, step);
	if (ret == 0 && sqlite3_changes(st->db) == 0)
		ret = err_set(err, ERR_NOTFOUND,
			      "step '%s' of run %lld has no attempt %d", step,
			      (long long)run_id, n);
	if (ret == 0)
		ret = set_step_state(st, run_id, step, ae->step_state, now, err);
	if (ret == 0 && ae->step_state == STEP_SUCCEEDED)
		ret = replace_outputs(st, run_id, step, ae->outputs,
				      ae->noutputs, err);
done:
	return tx_end(st, ret, err);
}

void attempt_info_clear(struct attempt_info *ai)
{
	if (!ai)
		return;
	free(ai->handle);
	free(ai->resumed_from);
	free(ai->reason);
	memset(ai, 0, sizeof(*ai));
}

int state_attempts_list(struct state *st, int64_t run_id, const char *step,
			struct attempt_info **out, size_t *nout,
			struct err *err)
{
	struct attempt_info *v = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, k = 0, ret;

	*out = NULL;
	*nout = 0;
	ret = prep(st, Q_ATT_LIST, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct attempt_info *ai;

		ret = col_word(s, 1, attempt_words, ARRAY_LEN(attempt_words),
			       "attempt state", &k, err);
		if (ret)
			goto done;
		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			v = xrealloc(v, cap * sizeof(*v));
		}
		ai = &v[n++];
		ai->n = sqlite3_column_int(s, 0);
		ai->state = (enum attempt_state)k;
		ai->handle = col_str(s, 2);
		ai->started = col_double0(s, 3);
		ai->finished = col_double0(s, 4);
		ai->exit_code = sqlite3_column_type(s, 5) == SQLITE_NULL
			? -1 : sqlite3_column_int(s, 5);
		ai->signal = sqlite3_column_int(s, 6);
		ai->resumed_from = col_str(s, 7);
		ai->reason = col_str(s, 8);
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		ret = db_err(st, rc, err, "list attempts of step '%s'", step);
done:
	release(s);
	if (ret) {
		for (size_t i = 0; i < n; i++)
			attempt_info_clear(&v[i]);
		free(v);
		return ret;
	}
	*out = v;
	*nout = n;
	return 0;
}

/* ---- cache -------------------------------------------------------------- */

int state_step_mark_cached(struct state *st, int64_t run_id, const char *step,
			   int64_t from_run, const char *from_step,
			   struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	ret = tx_begin(st, 1, err);
	if (ret)
		return ret;
	ret = step_exists(st, from_run, from_step, err);
	if (ret == 0)
		ret = prep(st, Q_STEP_SET_CACHED, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	bind_int(s, 3, from_run, &rc);
	bind_text(s, 4, from_step, &rc);
	bind_double(s, 5, now_wall(), &rc);
	ret = exec_done(st, s, rc, err, "mark step '%s' cached", step);
	if (ret == 0 && sqlite3_changes(st->db) == 0)
		ret = no_step(err, run_id, step);
	if (ret == 0)
		ret = replace_outputs(st, run_id, step, NULL, 0, err);
	if (ret == 0)
		ret = prep(st, Q_OUT_COPY, &s, err);
	if (ret)
		goto done;
	rc = SQLITE_OK;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	bind_int(s, 3, from_run, &rc);
	bind_text(s, 4, from_step, &rc);
	ret = exec_done(st, s, rc, err, "copy outputs of step '%s' of run %lld",
			from_step, (long long)from_run);
done:
	return tx_end(st, ret, err);
}

void cache_hit_clear(struct cache_hit *h)
{
	if (!h)
		return;
	free(h->step);
	free_outputs(h->outputs, h->noutputs);
	memset(h, 0, sizeof(*h));
}

int state_cache_candidates(struct state *st, const char *key,
			   struct cache_hit **out, size_t *nout,
			   struct err *err)
{
	struct cache_hit *v = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	*out = NULL;
	*nout = 0;
	ret = tx_begin(st, 0, err);
	if (ret)
		return ret;
	ret = prep(st, Q_CACHE_CANDIDATES, &s, err);
	if (ret)
		goto done;
	bind_text(s, 1, key, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct cache_hit *h;

		if (n == cap) {
			cap = cap ? cap * 2 : 4;
			v = xrealloc(v, cap * sizeof(*v));
		}
		h = &v[n++];
		memset(h, 0, sizeof(*h));
		h->run_id = sqlite3_column_int64(s, 0);
		h->step = col_str_nn(s, 1);
		ret = list_outputs(st, h->run_id, h->step, &h->outputs,
				   &h->noutputs, err);
		if (ret)
			goto done;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		ret = db_err(st, rc, err, "find cache candidates");
done:
	release(s);
	ret = tx_end(st, ret, err);
	if (ret) {
		for (size_t i = 0; i < n; i++)
			cache_hit_clear(&v[i]);
		free(v);
		return ret;
	}
	*out = v;
	*nout = n;
	return 0;
}

/* ---- checkpoints and events --------------------------------------------- */

int state_checkpoint_add(struct state *st, int64_t run_id, const char *step,
			 int attempt, long long engine_step, const char *path,
			 const char *digest, int64_t artifact, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	ret = tx_begin(st, 1, err);
	if (ret)
		return ret;
	ret = prep(st, Q_CKPT_INSERT, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	bind_int(s, 3, attempt, &rc);
	if (engine_step >= 0)
		bind_int(s, 4, engine_step, &rc);
	else
		bind_null(s, 4, &rc);
	bind_text(s, 5, path, &rc);
	bind_text(s, 6, digest, &rc);
	bind_double(s, 7, now_wall(), &rc);
	if (artifact)
		bind_int(s, 8, artifact, &rc);
	else
		bind_null(s, 8, &rc);
	ret = exec_done(st, s, rc, err, "insert checkpoint of step '%s'", step);
done:
	return tx_end(st, ret, err);
}

int state_checkpoint_latest(struct state *st, int64_t run_id,
			    const char *step, char **path,
			    long long *engine_step, int64_t *artifact,
			    struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	*path = NULL;
	if (artifact)
		*artifact = 0;
	ret = prep(st, Q_CKPT_LATEST, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		ret = err_set(err, ERR_NOTFOUND,
			      "step '%s' of run %lld has no checkpoint", step,
			      (long long)run_id);
	} else if (rc != SQLITE_ROW) {
		ret = db_err(st, rc, err, "find checkpoint of step '%s'", step);
	} else {
		*path = col_str_nn(s, 0);
		*engine_step = sqlite3_column_type(s, 1) == SQLITE_NULL
			? -1 : sqlite3_column_int64(s, 1);
		if (artifact)
			*artifact = sqlite3_column_int64(s, 2);
	}
done:
	release(s);
	return ret;
}

int state_checkpoint_artifact(struct state *st, int64_t run_id, const char *step,
			      const char *path, int64_t *artifact, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	*artifact = 0;
	ret = prep(st, Q_CKPT_BY_PATH, &s, err);
	if (ret)
		return ret;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	bind_text(s, 3, path, &rc);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		*artifact = sqlite3_column_int64(s, 0);
		rc = SQLITE_DONE;
	}
	return exec_done(st, s, rc, err, "find checkpoint '%s' of step '%s'", path, step);
}

int state_events_add(struct state *st, int64_t run_id, const char *step,
		     int attempt, const struct event_rec *ev, size_t n,
		     long long offset, struct err *err)
{
	sqlite3_stmt *s = NULL;
	double now = now_wall();
	int rc, ret;

	if (n == 0 && offset < 0)
		return 0;
	ret = tx_begin(st, 1, err);
	if (ret)
		return ret;
	if (offset >= 0) {
		rc = SQLITE_OK;
		ret = prep(st, Q_EV_OFFSET_SET, &s, err);
		if (ret == 0) {
			bind_int(s, 1, run_id, &rc);
			bind_text(s, 2, step, &rc);
			bind_int(s, 3, attempt, &rc);
			bind_int(s, 4, offset, &rc);
			ret = exec_done(st, s, rc, err, "set events offset of step '%s'",
					step ? step : "");
		}
	}
	for (size_t i = 0; ret == 0 && i < n; i++) {
		const struct event_rec *e = &ev[i];

		rc = SQLITE_OK;
		ret = prep(st, Q_EV_INSERT, &s, err);
		if (ret)
			break;
		bind_int(s, 1, run_id, &rc);
		bind_text(s, 2, step, &rc);
		bind_int(s, 3, attempt, &rc);
		bind_double(s, 4, now, &rc);
		bind_text(s, 5, event_kind_name(e->kind), &rc);
		bind_text(s, 6, e->name, &rc);
		bind_double(s, 7, e->value, &rc);
		bind_double(s, 8, e->total, &rc);
		if (e->engine_step >= 0)
			bind_int(s, 9, e->engine_step, &rc);
		else
			bind_null(s, 9, &rc);
		bind_text(s, 10, e->text, &rc);
		ret = exec_done(st, s, rc, err, "insert event of step '%s'",
				step ? step : "");
	}
	return tx_end(st, ret, err);
}

int state_attempt_events_offset(struct state *st, int64_t run_id,
				const char *step, int attempt, long long *offset,
				struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, ret;

	*offset = 0;
	ret = prep(st, Q_EV_OFFSET_GET, &s, err);
	if (ret)
		return ret;
	bind_int(s, 1, run_id, &rc);
	bind_text(s, 2, step, &rc);
	bind_int(s, 3, attempt, &rc);
	if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		*offset = sqlite3_column_int64(s, 0);
		rc = SQLITE_DONE;
	}
	return exec_done(st, s, rc == SQLITE_ROW ? SQLITE_DONE : rc, err,
			 "read events offset of step '%s'", step ? step : "");
}

int state_events_each(struct state *st, int64_t run_id, const char *step,
		      state_event_fn fn, void *ctx, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_OK, k = 0, ret;

	ret = prep(st, step ? Q_EV_STEP : Q_EV_RUN, &s, err);
	if (ret)
		goto done;
	bind_int(s, 1, run_id, &rc);
	if (step)
		bind_text(s, 2, step, &rc);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		ret = col_word(s, 3, event_words, ARRAY_LEN(event_words),
			       "event kind", &k, err);
		if (ret)
			goto done;
		ret = fn(ctx, (const char *)sqlite3_column_text(s, 0),
			 sqlite3_column_int(s, 1), sqlite3_column_double(s, 2),
			 (enum event_kind)k,
			 (const char *)sqlite3_column_text(s, 4),
			 sqlite3_column_double(s, 5), sqlite3_column_double(s, 6),
			 sqlite3_column_type(s, 7) == SQLITE_NULL
				? -1 : sqlite3_column_int64(s, 7),
			 (const char *)sqlite3_column_text(s, 8));
		if (ret)
			goto done;
		rc = SQLITE_OK;
	}
	if (rc != SQLITE_DONE)
		ret = db_err(st, rc, err, "read events of run %lld",
			     (long long)run_id);
done:
	release(s);
	return ret;
}
