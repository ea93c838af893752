/* engine/config.c — the reference engine's config keys, one table per
 * subcommand, and the checks both the engine (at start) and the stage kinds
 * (at `anneal validate`) run on a config object.
 *
 * The table is the single source of truth: defaults are JSON text parsed
 * when asked for (a handful of reads at start-up), `anneal-engine help CMD`
 * prints it, docs/engine.md copies it. This file is linked into libanneal
 * as well as the engine, so it depends on base/ and pipeline/json only. */
#include "engine/config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "engine/nn.h"
#include "engine/task.h"
#include "pipeline/json.h"

#define BIG 1e9
#define SEED_MAX 9007199254740991.0   /* 2^53 - 1: exact in every JSON reader */

#define K_SEED { "seed", ECFG_INT, 0, SEED_MAX, "1", NULL, \
	"random seed: the same seed and inputs give the same bytes" }
#define K_STEPS(d) { "steps", ECFG_INT, 1, BIG, d, NULL, \
	"optimizer updates" }
#define K_BATCH(d) { "batch", ECFG_INT, 1, 65536, d, NULL, \
	"sequences per update" }
#define K_LR(d) { "lr", ECFG_NUM, 1e-7, 1, d, NULL, \
	"peak learning rate (Adam)" }
#define K_LR_MIN(d) { "lr_min", ECFG_NUM, 0, 1, d, NULL, \
	"learning rate at the end of the cosine decay (<= lr)" }
#define K_WARMUP(d) { "warmup", ECFG_INT, 0, BIG, d, NULL, \
	"updates of linear warmup to lr" }
#define K_WD { "weight_decay", ECFG_NUM, 0, 1, "0", NULL, \
	"decoupled weight decay (AdamW)" }
#define K_CLIP { "clip", ECFG_NUM, 0, 1e6, "1", NULL, \
	"clip the gradient's global L2 norm to this (0: no clipping)" }
#define K_CKPT(d) { "ckpt_every", ECFG_INT, 0, BIG, d, NULL, \
	"write a checkpoint every N updates (0: only on SIGTERM)" }
#define K_LOG(d) { "log_every", ECFG_INT, 1, BIG, d, NULL, \
	"emit progress and metric events every N updates" }
#define K_MAX_LEN { "max_len", ECFG_INT, 1, TASK_MAX_LEN, "64", NULL, \
	"longest completion generated, in characters" }
#define K_AUTO_DIGITS { "auto_slow_digits", ECFG_INT, 1, TASK_MAX_DIGITS + 1, "3", NULL, \
	"auto mode: reference answer is slow when the problem has at least this many digits ..." }
#define K_AUTO_CARRIES { "auto_slow_carries", ECFG_INT, 1, TASK_MAX_DIGITS + 1, "1", NULL, \
	"... or at least this many carries" }

static const struct ecfg_key gen_data_keys[] = {
	K_SEED,
	{ "max_digits", ECFG_INT, 1, TASK_MAX_DIGITS, "4", NULL,
	  "problems have 1..max_digits digits (uniform over digit counts)" },
	{ "corpus", ECFG_INT, 0, 1e8, "60000", NULL,
	  "lines of the general corpus (output corpus)" },
	{ "corpus_slow_digits", ECFG_INT, 0, TASK_MAX_DIGITS, "2", NULL,
	  "slow traces in the corpus have at most this many digits (0: none)" },
	{ "corpus_slow_share", ECFG_NUM, 0, 1, "0.3", NULL,
	  "share of corpus lines that are slow traces" },
	{ "reasoning", ECFG_INT, 0, 1e8, "40000", NULL,
	  "lines of slow traces over all difficulties (output reasoning)" },
	{ "reasoning_fast_share", ECFG_NUM, 0, 1, "0.2", NULL,
	  "share of reasoning lines that are fast answers" },
	{ "prompts", ECFG_INT, 0, 1e8, "20000", NULL,
	  "bare problems 'a+b' (output prompts)" },
	{ "eval_per_bucket", ECFG_INT, 1, 1e6, "200", NULL,
	  "eval problems per digit count 1..max_digits (output eval)" },
};

static const struct ecfg_key pretrain_keys[] = {
	K_SEED,
	{ "hidden", ECFG_INTLIST, 1, NN_MAX_HIDDEN, "[256]", NULL,
	  "hidden layer sizes, 1 to 4 layers (ignored with an init model)" },
	{ "window", ECFG_INT, 1, NN_MAX_WINDOW, "48", NULL,
	  "characters of context (ignored with an init model)" },
	K_STEPS("3000"), K_BATCH("32"), K_LR("0.003"), K_LR_MIN("0.0001"),
	K_WARMUP("100"), K_WD, K_CLIP, K_CKPT("1000"),
	{ "loss", ECFG_ENUM, 0, 0, "\"all\"", "all|completion",
	  "train on every position, or on the completion only" },
	K_LOG("100"),
};

static const struct ecfg_key sft_keys[] = {
	K_SEED,
	K_STEPS("1000"), K_BATCH("32"), K_LR("0.001"), K_LR_MIN("0.0001"),
	K_WARMUP("50"), K_WD, K_CLIP, K_CKPT("500"),
	{ "loss", ECFG_ENUM, 0, 0, "\"completion\"", "all|completion",
	  "train on every position, or on the completion only" },
	K_LOG("100"),
};

static const struct ecfg_key distill_keys[] = {
	K_SEED,
	{ "iteration", ECFG_INT, 1, 1e6, "1", NULL,
	  "iteration number (set by the stage kind): picks a fresh slice of prompts" },
	{ "prompts", ECFG_INT, 1, 1e7, "5000", NULL,
	  "prompts drawn per iteration" },
	{ "samples", ECFG_INT, 1, 64, "4", NULL,
	  "teacher samples per prompt" },
	{ "temperature", ECFG_NUM, 0, 10, "0.7", NULL,
	  "teacher sampling temperature (0: greedy)" },
	{ "mode", ECFG_ENUM, 0, 0, "\"slow\"", "fast|slow|auto",
	  "answering mode the teacher is prompted in" },
	K_MAX_LEN,
	{ "select_low", ECFG_NUM, 0, 1, "0.1", NULL,
	  "keep examples whose student loss is at or above this quantile ..." },
	{ "select_high", ECFG_NUM, 0, 1, "0.95", NULL,
	  "... and at or below this one (>= select_low)" },
	K_STEPS("2000"), K_BATCH("32"), K_LR("0.002"), K_LR_MIN("0.0001"),
	K_WARMUP("50"), K_WD, K_CLIP, K_CKPT("500"), K_LOG("100"),
};

static const struct ecfg_key rl_keys[] = {
	K_SEED,
	K_STEPS("500"),
	{ "prompts_per_step", ECFG_INT, 1, 4096, "16", NULL,
	  "prompts per update" },
	{ "group", ECFG_INT, 2, 256, "8", NULL,
	  "samples per prompt (advantages are normalised within a group)" },
	{ "temperature", ECFG_NUM, 0.01, 10, "1", NULL,
	  "sampling temperature" },
	{ "mode", ECFG_ENUM, 0, 0, "\"slow\"", "fast|slow|auto",
	  "answering mode the policy is prompted in" },
	{ "hard_digits", ECFG_INT, 1, TASK_MAX_DIGITS + 1, "3", NULL,
	  "problems with at least this many digits use the 'hard' reward weights" },
	{ "rewards", ECFG_REWARDS, -100, 100, "{\"easy\": {\"correct\": 1, \"format\": 0.2, "
	  "\"length\": 0.2}, \"hard\": {\"correct\": 1, \"format\": 0.5, \"teacher\": 0.1}}", NULL,
	  "reward weights per task type (easy, hard) and source (correct, format, length, teacher)" },
	K_MAX_LEN, K_AUTO_DIGITS, K_AUTO_CARRIES,
	K_LR("0.0003"), K_LR_MIN("0.00002"), K_WARMUP("0"), K_WD, K_CLIP,
	K_CKPT("100"), K_LOG("50"),
};

static const struct ecfg_key dual_sft_keys[] = {
	K_SEED,
	{ "fast", ECFG_NUM, 0, 1, "0.25", NULL, "share of fast examples (F:)" },
	{ "slow", ECFG_NUM, 0, 1, "0.25", NULL, "share of slow examples (S:)" },
	{ "auto", ECFG_NUM, 0, 1, "0.5", NULL,
	  "share of auto examples (A:, fast or slow by the rule below)" },
	K_AUTO_DIGITS, K_AUTO_CARRIES,
	K_STEPS("4000"), K_BATCH("32"), K_LR("0.001"), K_LR_MIN("0.0001"),
	K_WARMUP("50"), K_WD, K_CLIP, K_CKPT("1000"), K_LOG("100"),
};

static const struct ecfg_key eval_keys[] = {
	K_MAX_LEN,
	{ "batch", ECFG_INT, 1, 65536, "512", NULL,
	  "sequences decoded at once (memory, not results)" },
	{ "auto_slow_digits", ECFG_INT, 1, TASK_MAX_DIGITS + 1, "3", NULL,
	  "the rule auto mode is scored against (rule_agreement): slow at this many digits ..." },
	K_AUTO_CARRIES,
};

#define CMD(n, k) { n, k, sizeof(k) / sizeof(k[0]) }
static const struct ecfg_cmd cmds[] = {
	CMD("gen-data", gen_data_keys),
	CMD("pretrain", pretrain_keys),
	CMD("sft", sft_keys),
	CMD("distill", distill_keys),
	CMD("rl", rl_keys),
	CMD("dual-sft", dual_sft_keys),
	CMD("eval", eval_keys),
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const char *const task_types[] = { "easy", "hard" };
static const char *const sources[] = { "correct", "format", "length", "teacher" };

const struct ecfg_cmd *ecfg_find(const char *cmd)
{
	for (size_t i = 0; cmd && i < NCMDS; i++)
		if (!strcmp(cmds[i].name, cmd))
			return &cmds[i];
	return NULL;
}

const struct ecfg_cmd *ecfg_all(size_t *n)
{
	*n = NCMDS;
	return cmds;
}

const struct ecfg_key *ecfg_key(const struct ecfg_cmd *c, const char *name)
{
	for (size_t i = 0; i < c->nkeys; i++)
		if (!strcmp(c->keys[i].name, name))
			return &c->keys[i];
	return NULL;
}

/* ---- checks ---------------------------------------------------------------- */

static int bad(struct err *err, const char *where, const char *key,
	       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* "WHERE.KEY: what" (or "KEY: what" without a where). */
static int bad(struct err *err, const char *where, const char *key,
	       const char *fmt, ...)
{
	char msg[ERR_MSG_MAX / 2], show[JSON_SHOW_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_show(key, show, sizeof(show));
	if (where && *where)
		return err_set(err, ERR_INVALID, "%s.%s: %s", where, show, msg);
	return err_set(err, ERR_INVALID, "%s: %s", show, msg);
}

/* An integral value of v in [min, max] (2.0 and 1e3 count as integers). */
static int check_int(const struct jnode *v, double min, double max,
		     const char *where, const char *key, struct err *err)
{
	char num[64];

	if (v->type != J_NUMBER)
		return bad(err, where, key, "must be an integer, not %s", json_type_article(v->type));
	json_format_number(v, num, sizeof(num));
	if (v->num != floor(v->num))
		return bad(err, where, key, "must be an integer, not %s", num);
	if (v->num < min)
		return bad(err, where, key, "must be an integer >= %.17g, not %s", min, num);
	if (v->num > max)
		return bad(err, where, key, "must be an integer <= %.17g, not %s", max, num);
	return 0;
}

static int check_num(const struct jnode *v, double min, double max,
		     const char *where, const char *key, struct err *err)
{
	char num[64];

	if (v->type != J_NUMBER)
		return bad(err, where, key, "must be a number, not %s", json_type_article(v->type));
	json_format_number(v, num, sizeof(num));
	if (v->num < min)
		return bad(err, where, key, "must be >= %g, not %s", min, num);
	if (v->num > max)
		return bad(err, where, key, "must be <= %g, not %s", max, num);
	return 0;
}

/* Is s one of the '|'-separated choices? */
static int in_choices(const char *s, const char *choices)
{
	size_t n = strlen(s);

	for (const char *p = choices; p && *p;) {
		const char *e = strchr(p, '|');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (len == n && !strncmp(p, s, n))
			return 1;
		p = e ? e + 1 : NULL;
	}
	return 0;
}

static int check_enum(const struct ecfg_key *k, const struct jnode *v,
		      const char *where, struct err *err)
{
	char show[JSON_SHOW_MAX], alts[256];

	if (v->type != J_STRING)
		return bad(err, where, k->name, "must be a string, not %s", json_type_article(v->type));
	if (in_choices(v->str, k->choices))
		return 0;
	snprintf(alts, sizeof(alts), "%s", k->choices);
	for (char *p = alts; *p; p++)
		if (*p == '|')
			*p = ',';
	json_show(v->str, show, sizeof(show));
	return bad(err, where, k->name, "'%s' is not one of: %s", show, alts);
}

static int check_intlist(const struct ecfg_key *k, const struct jnode *v,
			 const char *where, struct err *err)
{
	char key[128];

	if (v->type != J_ARRAY)
		return bad(err, where, k->name, "must be an array of integers, not %s",
			   json_type_article(v->type));
	if (v->nkids < 1 || v->nkids > NN_MAX_LAYERS)
		return bad(err, where, k->name, "must have 1 to %d items, not %zu",
			   NN_MAX_LAYERS, v->nkids);
	for (size_t i = 0; i < v->nkids; i++) {
		snprintf(key, sizeof(key), "%s[%zu]", k->name, i);
		int rc = check_int(&v->kids[i], k->min, k->max, where, key, err);
		if (rc)
			return rc;
	}
	return 0;
}

/* Unknown member of obj (not in names)? Returns its error. */
static int check_members(const struct jnode *obj, const char *const *names,
			 size_t n, const char *what, const char *where,
			 const char *prefix, struct err *err)
{
	char key[256];

	for (size_t i = 0; i < obj->nkids; i++) {
		const char *name = obj->kids[i].key, *dym;
		size_t j;

		snprintf(key, sizeof(key), "%s%s", prefix, name);
		for (size_t d = 0; d < i; d++)
			if (!strcmp(obj->kids[d].key, name))
				return bad(err, where, key, "given twice");
		for (j = 0; j < n; j++)
			if (!strcmp(name, names[j]))
				break;
		if (j < n)
			continue;
		dym = did_you_mean(name, names, n);
		if (dym)
			return bad(err, where, key, "unknown %s (did you mean '%s'?)", what, dym);
		struct buf list = BUF_INIT;
		for (j = 0; j < n; j++)
			buf_printf(&list, "%s%s", j ? ", " : "", names[j]);
		int rc = bad(err, where, key, "unknown %s (expected one of: %s)", what,
			     buf_str(&list));
		buf_free(&list);
		return rc;
	}
	return 0;
}

static int check_rewards(const struct ecfg_key *k, const struct jnode *v,
			 const char *where, struct err *err)
{
	char prefix[128], key[192];
	int rc;

	if (v->type != J_OBJECT)
		return bad(err, where, k->name, "must be an object, not %s", json_type_article(v->type));
	snprintf(prefix, sizeof(prefix), "%s.", k->name);
	rc = check_members(v, task_types, 2, "task type", where, prefix, err);
	for (size_t i = 0; !rc && i < v->nkids; i++) {
		const struct jnode *t = &v->kids[i];

		snprintf(prefix, sizeof(prefix), "%s.%s", k->name, t->key);
		if (t->type != J_OBJECT)
			return bad(err, where, prefix, "must be an object, not %s",
				   json_type_article(t->type));
		snprintf(prefix, sizeof(prefix), "%s.%s.", k->name, t->key);
		rc = check_members(t, sources, 4, "reward source", where, prefix, err);
		for (size_t j = 0; !rc && j < t->nkids; j++) {
			snprintf(key, sizeof(key), "%s%s", prefix, t->kids[j].key);
			rc = check_num(&t->kids[j], k->min, k->max, where, key, err);
		}
	}
	return rc;
}

static int check_value(const struct ecfg_key *k, const struct jnode *v,
		       const char *where, struct err *err)
{
	switch (k->type) {
	case ECFG_INT: return check_int(v, k->min, k->max, where, k->name, err);
	case ECFG_NUM: return check_num(v, k->min, k->max, where, k->name, err);
	case ECFG_ENUM: return check_enum(k, v, where, err);
	case ECFG_INTLIST: return check_intlist(k, v, where, err);
	case ECFG_REWARDS: return check_rewards(k, v, where, err);
	}
	return bad(err, where, k->name, "unknown type");
}

/* Rules across keys. */
static int check_pairs(const struct ecfg_cmd *c, const struct jnode *cfg,
		       const char *where, struct err *err)
{
	if (ecfg_key(c, "lr_min") && ecfg_num(c, cfg, "lr_min") > ecfg_num(c, cfg, "lr"))
		return bad(err, where, "lr_min", "must be <= lr (%g), not %g",
			   ecfg_num(c, cfg, "lr"), ecfg_num(c, cfg, "lr_min"));
	if (ecfg_key(c, "select_low") &&
	    ecfg_num(c, cfg, "select_low") > ecfg_num(c, cfg, "select_high"))
		return bad(err, where, "select_low", "must be <= select_high (%g), not %g",
			   ecfg_num(c, cfg, "select_high"), ecfg_num(c, cfg, "select_low"));
	if (ecfg_key(c, "auto") && ecfg_num(c, cfg, "fast") + ecfg_num(c, cfg, "slow") +
	    ecfg_num(c, cfg, "auto") <= 0)
		return bad(err, where, "auto", "fast, slow and auto shares are all 0");
	return 0;
}

int ecfg_check(const struct ecfg_cmd *c, const struct jnode *cfg,
	       const char *where, struct err *err)
{
	const char *names[64];
	size_t n = c->nkeys < 64 ? c->nkeys : 64;
	int rc;

	if (!cfg)
		return 0;
	if (cfg->type != J_OBJECT) {
		if (where && *where)
			return err_set(err, ERR_INVALID, "%s: must be an object, not %s",
				       where, json_type_article(cfg->type));
		return err_set(err, ERR_INVALID, "config must be an object, not %s",
			       json_type_article(cfg->type));
	}
	for (size_t i = 0; i < n; i++)
		names[i] = c->keys[i].name;
	rc = check_members(cfg, names, n, "key", where, "", err);
	for (size_t i = 0; !rc && i < cfg->nkids; i++)
		rc = check_value(ecfg_key(c, cfg->kids[i].key), &cfg->kids[i], where, err);
	if (!rc)
		rc = check_pairs(c, cfg, where, err);
	return rc;
}

/* ---- typed access ------------------------------------------------------------ */

static const struct jnode *given(const struct jnode *cfg, const char *name)
{
	return cfg && cfg->type == J_OBJECT ? json_get(cfg, name) : NULL;
}

static const struct ecfg_key *must_key(const struct ecfg_cmd *c, const char *name)
{
	const struct ecfg_key *k = ecfg_key(c, name);

	if (!k) {
		/* A programmer error: the engine asked for a key its own table
		 * lacks. */
		fprintf(stderr, "ecfg: subcommand '%s' has no key '%s'\n", c->name, name);
		abort();
	}
	return k;
}

long long ecfg_int(const struct ecfg_cmd *c, const struct jnode *cfg, const char *name)
{
	const struct ecfg_key *k = must_key(c, name);
	const struct jnode *v = given(cfg, name);

	if (v && v->type == J_NUMBER)
		return v->is_int ? v->inum : (long long)v->num;
	return strtoll(k->def, NULL, 10);
}

double ecfg_num(const struct ecfg_cmd *c, const struct jnode *cfg, const char *name)
{
	const struct ecfg_key *k = must_key(c, name);
	const struct jnode *v = given(cfg, name);

	if (v && v->type == J_NUMBER)
		return v->num;
	return strtod(k->def, NULL);
}

const char *ecfg_enum(const struct ecfg_cmd *c, const struct jnode *cfg, const char *name)
{
	/* Defaults are JSON strings in the table ("\"slow\""): return the
	 * matching choice as a static string of its own. */
	static struct { const struct ecfg_key *k; char s[32]; } pool[32];
	static size_t npool;
	const struct ecfg_key *k = must_key(c, name);
	const struct jnode *v = given(cfg, name);
	size_t i, len;

	if (v && v->type == J_STRING)
		return v->str;
	for (i = 0; i < npool; i++)
		if (pool[i].k == k)
			return pool[i].s;
	if (npool == sizeof(pool) / sizeof(pool[0]))
		abort();
	len = strlen(k->def);
	if (len < 2 || len - 2 >= sizeof(pool[0].s))
		abort();
	memcpy(pool[npool].s, k->def + 1, len - 2);
	pool[npool].s[len - 2] = '\0';
	pool[npool].k = k;
	return pool[npool++].s;
}

size_t ecfg_intlist(const struct ecfg_cmd *c, const struct jnode *cfg,
		    const char *name, int *out, size_t max)
{
	const struct ecfg_key *k = must_key(c, name);
	const struct jnode *v = given(cfg, name);
	size_t n = 0;

	if (v && v->type == J_ARRAY) {
		for (size_t i = 0; i < v->nkids && n < max; i++)
			out[n++] = (int)v->kids[i].num;
		return n;
	}
	for (const char *p = k->def; *p && n < max;) {
		char *e;
		long x;

		while (*p && (*p < '0' || *p > '9'))
			p++;
		if (!*p)
			break;
		x = strtol(p, &e, 10);
		out[n++] = (int)x;
		p = e;
	}
	return n;
}

/* The weight of source in one task type's object t (NULL: not given). */
static double source_weight(const struct jnode *t, const char *source)
{
	const struct jnode *w = t ? json_get(t, source) : NULL;

	if (w && w->type == J_NUMBER)
		return w->num;
	return !strcmp(source, "correct") ? 1.0 : 0.0;
}

/* A type given in the config replaces that type's default weights whole
 * (absent sources: correct 1, the others 0); a type not given keeps the
 * table's default for it. */
double ecfg_reward(const struct ecfg_cmd *c, const struct jnode *cfg,
		   const char *type, const char *source)
{
	const struct ecfg_key *k = must_key(c, "rewards");
	const struct jnode *v = given(cfg, "rewards");
	const struct jnode *t = v && v->type == J_OBJECT ? json_get(v, type) : NULL;
	struct jnode *def = NULL;
	struct err err;
	double w;

	if (t && t->type == J_OBJECT)
		return source_weight(t, source);
	if (json_parse(k->def, strlen(k->def), 0, &def, &err))
		abort();
	t = json_get(def, type);
	w = source_weight(t && t->type == J_OBJECT ? t : NULL, source);
	json_free(def);
	return w;
}
