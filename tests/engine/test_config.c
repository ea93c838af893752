/* tests/engine/test_config.c — the reference engine's config table
 * (engine/config.c): lookups, every check and its message, defaults and
 * typed access, the rewards object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "engine/config.h"
#include "pipeline/json.h"

#define W "stages[2] (\"pre\").config"

static struct jnode *parse(const char *text)
{
	struct jnode *n = NULL;
	struct err err;

	err_clear(&err);
	if (json_parse(text, strlen(text), 0, &n, &err))
		fail_msg("bad test JSON %s: %s", text, err.msg);
	return n;
}

/* ecfg_check of text against cmd: 0 or the message (static). */
static const char *check(const char *cmd, const char *text)
{
	static struct err err;
	struct jnode *n = parse(text);
	const struct ecfg_cmd *c = ecfg_find(cmd);
	int rc;

	assert_non_null(c);
	err_clear(&err);
	rc = ecfg_check(c, n, W, &err);
	json_free(n);
	if (!rc)
		return NULL;
	assert_int_equal(rc, ERR_INVALID);
	return err.msg;
}

#define assert_ok(cmd, text) assert_null(check(cmd, text))
#define assert_msg(cmd, text, want) assert_string_equal(check(cmd, text), want)

static void test_config__finds_subcommands_in_pipeline_order(void **state)
{
	static const char *const order[] = { "gen-data", "pretrain", "sft", "distill",
					      "rl", "dual-sft", "eval" };
	size_t n;
	const struct ecfg_cmd *all = ecfg_all(&n);
	(void)state;

	assert_int_equal(n, 7);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(all[i].name, order[i]);
		assert_ptr_equal(ecfg_find(order[i]), &all[i]);
	}
	assert_null(ecfg_find("pretrian"));
	assert_null(ecfg_find(NULL));
	assert_non_null(ecfg_key(ecfg_find("rl"), "rewards"));
	assert_null(ecfg_key(ecfg_find("eval"), "steps"));
}

/* Every default in every table passes the table's own checks, and every
 * key has a help line. */
static void test_config__defaults_pass_their_own_checks(void **state)
{
	size_t n;
	const struct ecfg_cmd *all = ecfg_all(&n);
	(void)state;

	for (size_t i = 0; i < n; i++) {
		struct buf b = BUF_INIT;
		struct jnode *obj;
		struct err err;

		buf_addc(&b, '{');
		for (size_t k = 0; k < all[i].nkeys; k++) {
			const struct ecfg_key *key = &all[i].keys[k];
			assert_non_null(key->help);
			assert_true(strlen(key->help) > 0);
			buf_printf(&b, "%s\"%s\": %s", k ? ", " : "", key->name, key->def);
		}
		buf_addc(&b, '}');
		obj = parse(b.ptr);
		err_clear(&err);
		if (ecfg_check(&all[i], obj, all[i].name, &err))
			fail_msg("defaults of %s: %s", all[i].name, err.msg);
		json_free(obj);
		buf_free(&b);
	}
}

static void test_config__empty_and_null_configs_are_valid(void **state)
{
	struct err err;
	(void)state;

	assert_ok("pretrain", "{}");
	assert_int_equal(ecfg_check(ecfg_find("rl"), NULL, W, &err), 0);
	assert_msg("pretrain", "[1]", W ": must be an object, not an array");
}

static void test_config__unknown_key_suggests_the_nearest(void **state)
{
	(void)state;
	assert_msg("pretrain", "{\"lrr\": 0.1}", W ".lrr: unknown key (did you mean 'lr'?)");
	assert_msg("pretrain", "{\"setps\": 10}", W ".setps: unknown key (did you mean 'steps'?)");
	assert_msg("distill", "{\"select_hihg\": 0.5}",
		   W ".select_hihg: unknown key (did you mean 'select_high'?)");
	/* Nothing close: the list of keys. */
	assert_msg("eval", "{\"colour\": 1}",
		   W ".colour: unknown key (expected one of: max_len, batch, "
		   "auto_slow_digits, auto_slow_carries)");
	/* A key of another subcommand is unknown here. */
	assert_non_null(strstr(check("eval", "{\"steps\": 1}"), "unknown key"));
}

static void test_config__duplicate_key(void **state)
{
	(void)state;
	assert_msg("pretrain", "{\"steps\": 1, \"steps\": 2}", W ".steps: given twice");
}

static void test_config__integers(void **state)
{
	(void)state;
	assert_ok("pretrain", "{\"steps\": 10, \"warmup\": 0}");
	assert_ok("pretrain", "{\"steps\": 1e3, \"batch\": 2.0}");
	assert_msg("pretrain", "{\"steps\": \"10\"}", W ".steps: must be an integer, not a string");
	assert_msg("pretrain", "{\"steps\": 1.5}", W ".steps: must be an integer, not 1.5");
	assert_msg("pretrain", "{\"steps\": 0}", W ".steps: must be an integer >= 1, not 0");
	assert_msg("pretrain", "{\"window\": 1000}", W ".window: must be an integer <= 256, not 1000");
	assert_msg("pretrain", "{\"seed\": -1}", W ".seed: must be an integer >= 0, not -1");
	assert_msg("pretrain", "{\"ckpt_every\": true}",
		   W ".ckpt_every: must be an integer, not a boolean");
}

static void test_config__numbers(void **state)
{
	(void)state;
	assert_ok("pretrain", "{\"lr\": 0.01, \"clip\": 0, \"weight_decay\": 1}");
	assert_ok("pretrain", "{\"lr\": 1}");
	assert_msg("pretrain", "{\"lr\": 2}", W ".lr: must be <= 1, not 2");
	assert_msg("pretrain", "{\"lr\": 0}", W ".lr: must be >= 1e-07, not 0");
	assert_msg("pretrain", "{\"lr\": null}", W ".lr: must be a number, not null");
	assert_msg("gen-data", "{\"corpus_slow_share\": 1.5}",
		   W ".corpus_slow_share: must be <= 1, not 1.5");
}

static void test_config__enums(void **state)
{
	(void)state;
	assert_ok("pretrain", "{\"loss\": \"completion\"}");
	assert_ok("rl", "{\"mode\": \"auto\"}");
	assert_msg("pretrain", "{\"loss\": \"some\"}",
		   W ".loss: 'some' is not one of: all,completion");
	assert_msg("rl", "{\"mode\": 1}", W ".mode: must be a string, not a number");
	assert_msg("distill", "{\"mode\": \"Slow\"}",
		   W ".mode: 'Slow' is not one of: fast,slow,auto");
}

static void test_config__hidden_sizes(void **state)
{
	(void)state;
	assert_ok("pretrain", "{\"hidden\": [64]}");
	assert_ok("pretrain", "{\"hidden\": [64, 32, 16, 8]}");
	assert_msg("pretrain", "{\"hidden\": 64}",
		   W ".hidden: must be an array of integers, not a number");
	assert_msg("pretrain", "{\"hidden\": []}", W ".hidden: must have 1 to 4 items, not 0");
	assert_msg("pretrain", "{\"hidden\": [1, 2, 3, 4, 5]}",
		   W ".hidden: must have 1 to 4 items, not 5");
	assert_msg("pretrain", "{\"hidden\": [64, 0]}",
		   W ".hidden[1]: must be an integer >= 1, not 0");
	assert_msg("pretrain", "{\"hidden\": [\"a\"]}",
		   W ".hidden[0]: must be an integer, not a string");
}

static void test_config__rewards(void **state)
{
	(void)state;
	assert_ok("rl", "{\"rewards\": {}}");
	assert_ok("rl", "{\"rewards\": {\"hard\": {\"correct\": 1, \"teacher\": 0.5}}}");
	assert_msg("rl", "{\"rewards\": []}", W ".rewards: must be an object, not an array");
	assert_msg("rl", "{\"rewards\": {\"eazy\": {}}}",
		   W ".rewards.eazy: unknown task type (did you mean 'easy'?)");
	assert_msg("rl", "{\"rewards\": {\"medium\": {}}}",
		   W ".rewards.medium: unknown task type (expected one of: easy, hard)");
	assert_msg("rl", "{\"rewards\": {\"easy\": 1}}",
		   W ".rewards.easy: must be an object, not a number");
	assert_msg("rl", "{\"rewards\": {\"easy\": {\"corect\": 1}}}",
		   W ".rewards.easy.corect: unknown reward source (did you mean 'correct'?)");
	assert_msg("rl", "{\"rewards\": {\"easy\": {\"style\": 1}}}",
		   W ".rewards.easy.style: unknown reward source "
		   "(expected one of: correct, format, length, teacher)");
	assert_msg("rl", "{\"rewards\": {\"hard\": {\"format\": \"x\"}}}",
		   W ".rewards.hard.format: must be a number, not a string");
	assert_msg("rl", "{\"rewards\": {\"hard\": {\"format\": 1000}}}",
		   W ".rewards.hard.format: must be <= 100, not 1000");
	assert_msg("rl", "{\"rewards\": {\"hard\": {}, \"hard\": {}}}",
		   W ".rewards.hard: given twice");
}

static void test_config__rules_across_keys(void **state)
{
	(void)state;
	assert_ok("pretrain", "{\"lr\": 0.001, \"lr_min\": 0.001}");
	assert_msg("pretrain", "{\"lr\": 0.001, \"lr_min\": 0.01}",
		   W ".lr_min: must be <= lr (0.001), not 0.01");
	/* Against the default lr (0.003). */
	assert_msg("pretrain", "{\"lr_min\": 0.5}", W ".lr_min: must be <= lr (0.003), not 0.5");
	assert_msg("distill", "{\"select_low\": 0.8, \"select_high\": 0.2}",
		   W ".select_low: must be <= select_high (0.2), not 0.8");
	assert_msg("dual-sft", "{\"fast\": 0, \"slow\": 0, \"auto\": 0}",
		   W ".auto: fast, slow and auto shares are all 0");
	assert_ok("dual-sft", "{\"fast\": 0, \"slow\": 0, \"auto\": 1}");
}

static void test_config__no_where(void **state)
{
	struct jnode *n = parse("{\"stpes\": 1}");
	struct err err;
	(void)state;

	assert_int_equal(ecfg_check(ecfg_find("sft"), n, "", &err), ERR_INVALID);
	assert_string_equal(err.msg, "stpes: unknown key (did you mean 'steps'?)");
	json_free(n);
}

static void test_config__typed_access_with_defaults(void **state)
{
	const struct ecfg_cmd *pre = ecfg_find("pretrain"), *sft = ecfg_find("sft");
	struct jnode *cfg = parse("{\"steps\": 7, \"lr\": 0.5, \"loss\": \"completion\", "
				  "\"hidden\": [8, 4], \"batch\": 2e1}");
	int hidden[4] = { 0 };
	(void)state;

	assert_int_equal(ecfg_int(pre, NULL, "window"), 48);
	assert_int_equal(ecfg_int(pre, cfg, "window"), 48);
	assert_int_equal(ecfg_int(pre, cfg, "steps"), 7);
	assert_int_equal(ecfg_int(pre, cfg, "batch"), 20);
	assert_true(ecfg_num(pre, NULL, "lr") == 0.003);
	assert_true(ecfg_num(pre, cfg, "lr") == 0.5);
	assert_string_equal(ecfg_enum(pre, NULL, "loss"), "all");
	assert_string_equal(ecfg_enum(pre, cfg, "loss"), "completion");
	assert_string_equal(ecfg_enum(sft, NULL, "loss"), "completion");
	/* Twice: the default comes back the same. */
	assert_ptr_equal(ecfg_enum(sft, NULL, "loss"), ecfg_enum(sft, NULL, "loss"));
	assert_int_equal(ecfg_intlist(pre, NULL, "hidden", hidden, 4), 1);
	assert_int_equal(hidden[0], 256);
	assert_int_equal(ecfg_intlist(pre, cfg, "hidden", hidden, 4), 2);
	assert_int_equal(hidden[0], 8);
	assert_int_equal(hidden[1], 4);
	assert_int_equal(ecfg_intlist(pre, cfg, "hidden", hidden, 1), 1);
	json_free(cfg);
}

static void test_config__reward_weights(void **state)
{
	const struct ecfg_cmd *rl = ecfg_find("rl");
	struct jnode *cfg = parse("{\"rewards\": {\"hard\": {\"correct\": 2, \"length\": 0.3}}}");
	(void)state;

	/* The table's defaults. */
	assert_true(ecfg_reward(rl, NULL, "easy", "correct") == 1);
	assert_true(ecfg_reward(rl, NULL, "easy", "format") == 0.2);
	assert_true(ecfg_reward(rl, NULL, "easy", "length") == 0.2);
	assert_true(ecfg_reward(rl, NULL, "easy", "teacher") == 0);
	assert_true(ecfg_reward(rl, NULL, "hard", "format") == 0.5);
	assert_true(ecfg_reward(rl, NULL, "hard", "teacher") == 0.1);
	assert_true(ecfg_reward(rl, NULL, "hard", "length") == 0);
	/* A given type replaces that type whole; the other keeps its default. */
	assert_true(ecfg_reward(rl, cfg, "hard", "correct") == 2);
	assert_true(ecfg_reward(rl, cfg, "hard", "length") == 0.3);
	assert_true(ecfg_reward(rl, cfg, "hard", "format") == 0);
	assert_true(ecfg_reward(rl, cfg, "hard", "teacher") == 0);
	assert_true(ecfg_reward(rl, cfg, "easy", "format") == 0.2);
	json_free(cfg);
	/* correct defaults to 1 in a given type. */
	cfg = parse("{\"rewards\": {\"easy\": {\"format\": 1}}}");
	assert_true(ecfg_reward(rl, cfg, "easy", "correct") == 1);
	assert_true(ecfg_reward(rl, cfg, "easy", "length") == 0);
	json_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config__finds_subcommands_in_pipeline_order),
		cmocka_unit_test(test_config__defaults_pass_their_own_checks),
		cmocka_unit_test(test_config__empty_and_null_configs_are_valid),
		cmocka_unit_test(test_config__unknown_key_suggests_the_nearest),
		cmocka_unit_test(test_config__duplicate_key),
		cmocka_unit_test(test_config__integers),
		cmocka_unit_test(test_config__numbers),
		cmocka_unit_test(test_config__enums),
		cmocka_unit_test(test_config__hidden_sizes),
		cmocka_unit_test(test_config__rewards),
		cmocka_unit_test(test_config__rules_across_keys),
		cmocka_unit_test(test_config__no_where),
		cmocka_unit_test(test_config__typed_access_with_defaults),
		cmocka_unit_test(test_config__reward_weights),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
