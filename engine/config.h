/* engine/config.h — what each reference-engine subcommand accepts in its
 * config (the step's $ANNEAL_PARAMS file), in one table used twice: by the
 * engine to read its settings (with defaults), and by the stage kinds
 * (stages/) to reject a typo or an absurd value at `anneal validate` time,
 * with the same messages as every other recipe error.
 *
 * A config is a JSON object; every key must be in the subcommand's table.
 * Types: integers within [min, max]; numbers within [min, max]; strings
 * from a fixed list; lists of integers (hidden sizes); the `rewards`
 * object of the rl subcommand. */
#ifndef ANNEAL_ENGINE_CONFIG_H
#define ANNEAL_ENGINE_CONFIG_H

#include <stddef.h>

struct err;
struct jnode;

enum ecfg_type { ECFG_INT, ECFG_NUM, ECFG_ENUM, ECFG_INTLIST, ECFG_REWARDS };

struct ecfg_key {
	const char *name;
	enum ecfg_type type;
	double min, max;       /* INT/NUM: bounds; INTLIST: bounds of each item */
	const char *def;       /* default as JSON text ("48", "0.001", "\"slow\"", "[256]") */
	const char *choices;   /* ENUM: "fast|slow|auto" */
	const char *help;      /* one line, for docs/recipes.md and --help */
};

struct ecfg_cmd {
	const char *name;      /* "pretrain", "dual-sft", ... */
	const struct ecfg_key *keys;
	size_t nkeys;
};

/* The table of subcommand name, or NULL. */
const struct ecfg_cmd *ecfg_find(const char *cmd);
/* All subcommands, in pipeline order. */
const struct ecfg_cmd *ecfg_all(size_t *n);
const struct ecfg_key *ecfg_key(const struct ecfg_cmd *c, const char *name);

/* Checks cfg (a JSON object, or NULL for {}) against c. Errors are
 * ERR_INVALID and read "WHERE.KEY: what" (where is the JSON path of the
 * config, e.g. `stages[2] ("pretrain").config`): unknown keys with a
 * did-you-mean, wrong types, out-of-range values; for rewards, unknown
 * task types (easy, hard) or sources (correct, format, length, teacher). */
int ecfg_check(const struct ecfg_cmd *c, const struct jnode *cfg,
	       const char *where, struct err *err);

/* Typed access with the table's default when cfg lacks the key (cfg may
 * be NULL). Call only after ecfg_check passed; name must be in c. */
long long ecfg_int(const struct ecfg_cmd *c, const struct jnode *cfg, const char *name);
double ecfg_num(const struct ecfg_cmd *c, const struct jnode *cfg, const char *name);
const char *ecfg_enum(const struct ecfg_cmd *c, const struct jnode *cfg, const char *name);
/* Fills up to max items; returns the count. */
size_t ecfg_intlist(const struct ecfg_cmd *c, const struct jnode *cfg,
		    const char *name, int *out, size_t max);
/* rewards.TYPE.SOURCE with defaults (correct 1, format 0, length 0,
 * teacher 0 for both types unless the table's default says otherwise). */
double ecfg_reward(const struct ecfg_cmd *c, const struct jnode *cfg,
		   const char *type, const char *source);

#endif
