/* tests/pipeline/test_recipe.c — recipes: what a good one becomes (steps,
 * params, --set typing, digest) and the exact one-line message of each
 * kind of bad one, including files that are not regular files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"
#include "pipeline/json.h"
#include "pipeline/recipe.h"

#define F "r.json"

static struct recipe *load_text(const char *text, const char *const *sets)
{
	struct strv sv = STRV_INIT;
	struct recipe *r = NULL;
	struct err err;

	for (size_t i = 0; sets && sets[i]; i++)
		strv_push(&sv, sets[i]);
	err_clear(&err);
	if (recipe_parse(F, text, strlen(text), &sv, &r, &err)) {
		print_error("unexpected error: %s\n", err.msg);
		fail();
	}
	strv_free(&sv);
	assert_non_null(r);
	return r;
}

/* The message for a bad recipe (static buffer); checks it is one line. */
static const char *bad_text(const char *text, const char *const *sets)
{
	static struct err err;
	struct strv sv = STRV_INIT;
	struct recipe *r = (struct recipe *)1;

	for (size_t i = 0; sets && sets[i]; i++)
		strv_push(&sv, sets[i]);
	err_clear(&err);
	assert_int_equal(recipe_parse(F, text, strlen(text), &sv, &r, &err), ERR_INVALID);
	strv_free(&sv);
	assert_null(r);
	assert_int_equal(err.code, ERR_INVALID);
	assert_null(strchr(err.msg, '\n'));
	return err.msg;
}

#define BAD(text) bad_text(text, NULL)

/* A recipe with one exec stage whose body is `stage` (JSON members). */
static const char *one_stage(const char *stage)
{
	static char buf[4096];
	snprintf(buf, sizeof(buf),
		 "{\"name\": \"t\", \"params\": {\"lr\": 0.5, \"n\": 3},"
		 " \"stages\": [{\"id\": \"a\", \"kind\": \"exec\", %s}]}", stage);
	return buf;
}

static const char good[] =
	"// a recipe\n"
	"{\n"
	"  \"name\": \"demo\",\n"
	"  \"params\": {\"lr\": 0.0003, \"steps\": 100, \"tag\": \"x // not /* a comment */\",\n"
	"             \"on\": true, \"opt\": {\"beta\": [0.9, 0.99], \"eps\": 1e-8}, \"none\": null},\n"
	"  \"engine\": {\"type\": \"reference\", \"threads\": 2},\n"
	"  \"resources\": {\"cpus\": 2, \"mem_mb\": 512},  /* defaults */\n"
	"  \"stages\": [\n"
	"    {\"id\": \"eval\", \"kind\": \"exec\", \"command\": [\"ev\", \"${inputs.m}\"],\n"
	"     \"inputs\": {\"m\": \"train.model\"}, \"after\": [\"prep\", \"train\", \"prep\"]},\n"
	"    {\"id\": \"prep\", \"kind\": \"exec\", \"command\": [\"p\", \"${outputs.data}\"],\n"
	"     \"outputs\": {\"data\": \"dataset\"}},\n"
	"    {\"id\": \"train\", \"kind\": \"exec\",\n"
	"     \"command\": [\"tr\", \"--lr=${params.lr}\", \"${params.steps}\", \"${params.tag}\",\n"
	"                 \"${params.on}\", \"${params.opt}\", \"${params.opt.beta}\",\n"
	"                 \"${params.none}\", \"$${literal}\", \"${inputs.d}\", \"${outputs.model}\"],\n"
	"     \"inputs\": {\"d\": \"prep.data\"}, \"outputs\": {\"model\": \"checkpoint\", \"log\": \"report\"},\n"
	"     \"env\": {\"LR\": \"${params.lr}\", \"HOME_X\": \"/h\"},\n"
	"     \"resources\": {\"gpus\": 1, \"cpus\": 8}, \"retries\": {\"max\": 3, \"backoff\": \"2m\"},\n"
	"     \"timeout\": \"1h30m\"}\n"
	"  ]\n"
	"}\n";

static void test_recipe__parses_a_good_recipe(void **state)
{
	struct recipe *r = load_text(good, NULL);
	struct digest d;
	char hex[DIGEST_HEX_LEN + 1];
	const struct step *s;
	struct buf b = BUF_INIT;

	assert_string_equal(r->path, F);
	assert_string_equal(r->name, "demo");
	assert_int_equal(r->text_len, strlen(good));
	assert_memory_equal(r->text, good, strlen(good));
	sha256_buf(good, strlen(good), &d);
	digest_hex(&d, hex);
	assert_string_equal(r->digest, hex);
	assert_string_equal(r->params_json,
			    "{\"lr\":0.0003,\"steps\":100,\"tag\":\"x // not /* a comment */\","
			    "\"on\":true,\"opt\":{\"beta\":[0.9,0.99],\"eps\":1e-08},\"none\":null}");
	assert_non_null(r->engine);
	json_write(&b, r->engine);
	assert_string_equal(buf_str(&b), "{\"type\":\"reference\",\"threads\":2}");
	buf_free(&b);
	assert_int_equal(r->defaults.cpus, 2);
	assert_int_equal(r->defaults.mem_mb, 512);

	/* Recipe order, not dependency order. */
	assert_int_equal(r->nsteps, 3);
	assert_string_equal(r->steps[0].id, "eval");
	assert_string_equal(r->steps[1].id, "prep");
	assert_string_equal(r->steps[2].id, "train");
	assert_int_equal(recipe_find_step(r, "train"), 2);
	assert_int_equal(recipe_find_step(r, "nope"), -1);

	s = &r->steps[2];
	assert_string_equal(s->kind, "exec");
	assert_string_equal(s->stage, "train");
	assert_int_equal(s->argc, 11);
	assert_null(s->argv[11]);
	assert_string_equal(s->argv[0], "tr");
	assert_string_equal(s->argv[1], "--lr=0.0003");
	assert_string_equal(s->argv[2], "100");
	assert_string_equal(s->argv[3], "x // not /* a comment */");
	assert_string_equal(s->argv[4], "true");
	assert_string_equal(s->argv[5], "{\"beta\":[0.9,0.99],\"eps\":1e-08}");
	assert_string_equal(s->argv[6], "[0.9,0.99]");
	assert_string_equal(s->argv[7], "null");
	assert_string_equal(s->argv[8], "$${literal}");   /* still a template */
	assert_string_equal(s->argv[9], "${inputs.d}");
	assert_string_equal(s->argv[10], "${outputs.model}");
	assert_int_equal(s->nenv, 2);
	assert_string_equal(s->env[0].key, "LR");
	assert_string_equal(s->env[0].value, "0.0003");
	assert_string_equal(s->env[1].key, "HOME_X");
	assert_int_equal(s->ninputs, 1);
	assert_string_equal(s->inputs[0].role, "d");
	assert_string_equal(s->inputs[0].from_step, "prep");
	assert_string_equal(s->inputs[0].from_output, "data");
	assert_int_equal(s->noutputs, 2);
	assert_string_equal(s->outputs[0].name, "model");
	assert_int_equal(s->outputs[0].type, ART_CHECKPOINT);
	assert_int_equal(s->outputs[1].type, ART_REPORT);
	assert_int_equal(s->res.cpus, 8);
	assert_int_equal(s->res.gpus, 1);
	assert_int_equal(s->res.mem_mb, 512);      /* from the defaults */
	assert_int_equal(s->retry.max, 3);
	assert_true(s->retry.backoff_s == 120.0);
	assert_int_equal(s->timeout_s, 5400);

	s = &r->steps[1];
	assert_int_equal(s->res.cpus, 2);
	assert_int_equal(s->retry.max, 0);
	assert_true(s->retry.backoff_s == 1.0);
	assert_int_equal(s->timeout_s, 0);
	assert_int_equal(s->nafter, 0);

	/* "after" names stages; it becomes their steps, once each. */
	s = &r->steps[0];
	assert_int_equal(s->nafter, 2);
	assert_string_equal(s->after[0], "prep");
	assert_string_equal(s->after[1], "train");
	assert_string_equal(s->inputs[0].from_step, "train");
	assert_string_equal(s->inputs[0].from_output, "model");
	recipe_free(r);
	recipe_free(NULL);
}

static void test_recipe__defaults_when_optional_fields_are_absent(void **state)
{
	struct recipe *r = load_text(
		"{\"name\": \"m\", \"stages\": [{\"id\": \"x\", \"kind\": \"exec\", \"command\": [\"true\"]}]}",
		NULL);

	assert_string_equal(r->params_json, "{}");
	assert_int_equal(r->params->type, J_OBJECT);
	assert_null(r->engine);
	assert_int_equal(r->defaults.cpus, 1);
	assert_int_equal(r->steps[0].res.cpus, 1);
	assert_int_equal(r->steps[0].res.gpus, 0);
	assert_int_equal(r->steps[0].res.mem_mb, 0);
	assert_int_equal(r->steps[0].argc, 1);
	assert_null(r->steps[0].argv[1]);
	recipe_free(r);
}

static void test_recipe__set_overrides_are_typed(void **state)
{
	const char *const sets[] = {
		"lr=0.25", "steps=7", "tag=hello world", "on=false",
		"opt.beta=[1, 2]", "opt.eps=1", "none={\"a\":1}", "steps=8", NULL,
	};
	struct recipe *r = load_text(good, sets);
	const struct step *s = &r->steps[2];

	assert_string_equal(r->params_json,
			    "{\"lr\":0.25,\"steps\":8,\"tag\":\"hello world\",\"on\":false,"
			    "\"opt\":{\"beta\":[1,2],\"eps\":1},\"none\":{\"a\":1}}");
	/* Substitution sees the overridden values. */
	assert_string_equal(s->argv[1], "--lr=0.25");
	assert_string_equal(s->argv[2], "8");
	assert_string_equal(s->argv[3], "hello world");
	assert_string_equal(s->argv[4], "false");
	assert_string_equal(s->argv[6], "[1,2]");
	assert_string_equal(s->env[0].value, "0.25");
	/* The digest is of the file, whatever the overrides. */
	{
		struct recipe *plain = load_text(good, NULL);
		assert_string_equal(r->digest, plain->digest);
		recipe_free(plain);
	}
	recipe_free(r);
}

static void test_recipe__rejects_bad_set(void **state)
{
#define SET_ERR(kv) bad_text(good, (const char *const[]){ kv, NULL })
	assert_string_equal(SET_ERR("lrr=0.1"), F ": --set 'lrr': no such param (did you mean 'lr'?)");
	assert_string_equal(SET_ERR("zzzzzz=1"), F ": --set 'zzzzzz': no such param");
	assert_string_equal(SET_ERR("opt.bta=1"),
			    F ": --set 'opt.bta': no such param (did you mean 'opt.beta'?)");
	assert_string_equal(SET_ERR("lr.x=1"), F ": --set 'lr.x': no such param");
	assert_string_equal(SET_ERR("lr=abc"), F ": --set 'lr=abc': not a number");
	assert_string_equal(SET_ERR("lr="), F ": --set 'lr=': not a number");
	assert_string_equal(SET_ERR("lr=1e999"), F ": --set 'lr=1e999': not a number");
	assert_string_equal(SET_ERR("steps=1.5"), F ": --set 'steps=1.5': not an integer");
	assert_string_equal(SET_ERR("steps=ten"), F ": --set 'steps=ten': not an integer");
	assert_string_equal(SET_ERR("on=yes"), F ": --set 'on=yes': not a boolean (true or false)");
	assert_string_equal(SET_ERR("opt.beta=[1,"),
			    F ": --set 'opt.beta=[1,': not a JSON array (line 1, column 4: expected a value, found end of input)");
	assert_string_equal(SET_ERR("opt.beta={}"), F ": --set 'opt.beta={}': not a JSON array (got object)");
	assert_string_equal(SET_ERR("opt={\"a\":1,\"a\":2}"),
			    F ": --set 'opt={\"a\":1,\"a\":2}': duplicate key 'a'");
	assert_string_equal(SET_ERR("lr"), F ": --set 'lr': expected KEY=VALUE");
	assert_string_equal(SET_ERR("=1"), F ": --set '=1': expected KEY=VALUE");
	assert_string_equal(SET_ERR("tag=a\xff"), F ": --set 'tag=a\xff': not valid UTF-8");
#undef SET_ERR
}

static void test_recipe__rejects_malformed_json_with_line_and_column(void **state)
{
	assert_string_equal(BAD("{\n  \"name\": \"x\",\n  \"stages\": [1 2]\n}"),
			    F ": line 3, column 16: expected ',' or ']', found '2'");
	assert_string_equal(BAD("/* c */ {\"name\": \"x\" // c\n ,}"),
			    F ": line 2, column 2: trailing comma before '}'");
	assert_string_equal(BAD(""), F ": empty file");
	assert_string_equal(BAD("// only a comment\n"),
			    F ": line 2, column 1: expected a value, found end of input");
	assert_string_equal(BAD("[1]"), F ": must be a JSON object at the top level, not array");
}

static void test_recipe__rejects_top_level_problems(void **state)
{
	const char *st = "[{\"id\": \"a\", \"kind\": \"exec\", \"command\": [\"x\"]}]";
	char buf[512];

	snprintf(buf, sizeof(buf), "{\"name\": \"x\", \"stages\": %s, \"stages\": []}", st);
	assert_string_equal(BAD(buf), F ": duplicate key 'stages'");
	snprintf(buf, sizeof(buf), "{\"nme\": \"x\", \"stages\": %s}", st);
	assert_string_equal(BAD(buf), F ": unknown field 'nme' (did you mean 'name'?)");
	snprintf(buf, sizeof(buf), "{\"name\": \"x\", \"stages\": %s, \"zzz\": 1}", st);
	assert_string_equal(BAD(buf),
			    F ": unknown field 'zzz' (expected one of: name, params, stages, engine, resources, runner)");
	snprintf(buf, sizeof(buf), "{\"stages\": %s}", st);
	assert_string_equal(BAD(buf), F ": missing field 'name'");
	snprintf(buf, sizeof(buf), "{\"name\": \"\", \"stages\": %s}", st);
	assert_string_equal(BAD(buf), F ": name: must not be empty");
	assert_string_equal(BAD("{\"name\": \"x\"}"), F ": missing field 'stages'");
	assert_string_equal(BAD("{\"name\": \"x\", \"stages\": []}"), F ": stages: must not be empty");
	assert_string_equal(BAD("{\"name\": \"x\", \"stages\": \"a\"}"),
			    F ": stages: must be an array of stage objects, not string");
	snprintf(buf, sizeof(buf), "{\"name\": \"x\", \"params\": [], \"stages\": %s}", st);
	assert_string_equal(BAD(buf), F ": params: must be an object, not array");
	snprintf(buf, sizeof(buf), "{\"name\": \"x\", \"params\": {\"o\": {\"a.b\": 1}}, \"stages\": %s}", st);
	assert_string_equal(BAD(buf),
			    F ": params.o: invalid param name 'a.b' (names cannot be empty or contain '.')");
	snprintf(buf, sizeof(buf), "{\"name\": \"x\", \"params\": {\"o\": {\"k\": 1, \"k\": 2}}, \"stages\": %s}", st);
	assert_string_equal(BAD(buf), F ": params.o: duplicate key 'k'");
	snprintf(buf, sizeof(buf), "{\"name\": \"x\", \"resources\": {\"cpus\": 0}, \"stages\": %s}", st);
	assert_string_equal(BAD(buf), F ": resources.cpus: must be an integer >= 1, not 0");
	snprintf(buf, sizeof(buf), "{\"name\": \"x\", \"resources\": {\"gpu\": 1}, \"stages\": %s}", st);
	assert_string_equal(BAD(buf), F ": resources: unknown field 'gpu' (did you mean 'gpus'?)");
}

static void test_recipe__rejects_duplicate_id(void **state)
{
	assert_string_equal(BAD("{\"name\": \"x\", \"stages\": ["
				"{\"id\": \"prep\", \"kind\": \"exec\", \"command\": [\"a\"]},"
				"{\"id\": \"train\", \"kind\": \"exec\", \"command\": [\"a\"]},"
				"{\"id\": \"prep\", \"kind\": \"exce\", \"command\": [\"a\"]},"
				"{\"id\": \"train\", \"kind\": \"exec\", \"command\": [\"a\"]}]}"),
			    F ": stages[2]: duplicate id 'prep' (first at stages[0])");
}

static void test_recipe__rejects_bad_ids(void **state)
{
	assert_string_equal(BAD("{\"name\": \"x\", \"stages\": [{\"id\": \"d.2\", \"kind\": \"exec\"}]}"),
			    F ": stages[0].id: invalid id 'd.2' (use 1 to 64 letters, digits, '_' or '-'; no dots)");
	assert_string_equal(BAD("{\"name\": \"x\", \"stages\": [{\"id\": \"a\\nb\", \"kind\": \"exec\"}]}"),
			    F ": stages[0].id: invalid id 'a\\nb' (use 1 to 64 letters, digits, '_' or '-'; no dots)");
	assert_string_equal(BAD("{\"name\": \"x\", \"stages\": [{\"id\": \"\", \"kind\": \"exec\"}]}"),
			    F ": stages[0].id: invalid id '' (use 1 to 64 letters, digits, '_' or '-'; no dots)");
	assert_string_equal(BAD("{\"name\": \"x\", \"stages\": [{\"id\": 7, \"kind\": \"exec\"}]}"),
			    F ": stages[0].id: must be a string, not number");
	assert_string_equal(BAD("{\"name\": \"x\", \"stages\": [{\"kind\": \"exec\"}]}"),
			    F ": stages[0]: missing field 'id'");
	assert_string_equal(BAD("{\"name\": \"x\", \"stages\": [null]}"),
			    F ": stages[0]: must be an object, not null");
	/* 64 characters is the limit. */
	{
		char buf[512], id[80];
		memset(id, 'a', 65);
		id[65] = '\0';
		snprintf(buf, sizeof(buf), "{\"name\": \"x\", \"stages\": [{\"id\": \"%s\", \"kind\": \"exec\", \"command\": [\"a\"]}]}", id);
		assert_non_null(strstr(BAD(buf), ": stages[0].id: invalid id 'aaaa"));
		id[64] = '\0';
		snprintf(buf, sizeof(buf), "{\"name\": \"x\", \"stages\": [{\"id\": \"%s\", \"kind\": \"exec\", \"command\": [\"a\"]}]}", id);
		recipe_free(load_text(buf, NULL));
	}
}

static void test_recipe__rejects_unknown_kind(void **state)
{
	assert_string_equal(BAD(one_stage("\"command\": [\"x\"]}, {\"id\": \"b\", \"kind\": \"exce\"")),
			    F ": stages[1] (\"b\").kind: unknown kind 'exce' (did you mean 'exec'?)");
	assert_string_equal(BAD(one_stage("\"command\": [\"x\"]}, {\"id\": \"b\", \"kind\": \"pretrain-xl\"")),
			    F ": stages[1] (\"b\").kind: unknown kind 'pretrain-xl' (did you mean 'pretrain'?)");
	assert_string_equal(BAD(one_stage("\"command\": [\"x\"]}, {\"id\": \"b\", \"kind\": \"finetune\"")),
			    F ": stages[1] (\"b\").kind: unknown kind 'finetune' (known kinds: exec, data, pretrain, sft, distill, merge, rl, dual_sft, eval)");
	assert_string_equal(BAD("{\"name\": \"x\", \"stages\": [{\"id\": \"a\"}]}"),
			    F ": stages[0] (\"a\"): missing field 'kind'");
	assert_string_equal(BAD("{\"name\": \"x\", \"stages\": [{\"id\": \"a\", \"kind\": [\"exec\"]}]}"),
			    F ": stages[0] (\"a\").kind: must be a string, not array");
}

static void test_recipe__reports_stage_field_errors_with_path(void **state)
{
	assert_string_equal(BAD(one_stage("\"comand\": [\"x\"]")),
			    F ": stages[0] (\"a\"): unknown field 'comand' (did you mean 'command'?)");
	assert_string_equal(BAD(one_stage("\"outputs\": {}")),
			    F ": stages[0] (\"a\"): missing field 'command'");
	assert_string_equal(BAD(one_stage("\"command\": \"python train.py\"")),
			    F ": stages[0] (\"a\").command: must be an array of strings (argv), not a shell string");
	assert_string_equal(BAD(one_stage("\"command\": 5")),
			    F ": stages[0] (\"a\").command: must be an array of strings, not number");
	assert_string_equal(BAD(one_stage("\"command\": [\"x\"], \"resources\": {\"cpus\": -2}")),
			    F ": stages[0] (\"a\").resources.cpus: must be an integer >= 1, not -2");
	assert_string_equal(BAD(one_stage("\"command\": [\"x\"], \"resources\": {\"cpus\": 1.5}")),
			    F ": stages[0] (\"a\").resources.cpus: must be an integer, not 1.5");
	assert_string_equal(BAD(one_stage("\"command\": [\"x\"], \"resources\": {\"gpus\": 1e300}")),
			    F ": stages[0] (\"a\").resources.gpus: must be an integer <= 4096, not 1e+300");
	assert_string_equal(BAD(one_stage("\"command\": [\"x\"], \"resources\": {\"mem_mb\": -1e300}")),
			    F ": stages[0] (\"a\").resources.mem_mb: must be an integer >= 0, not -1e+300");
	assert_string_equal(BAD(one_stage("\"command\": [\"x\"], \"env\": {\"A\": 1, \"A\": 2}")),
			    F ": stages[0] (\"a\").env: duplicate key 'A'");
	assert_string_equal(BAD(one_stage("\"command\": [\"${params.lrr}\"]")),
			    F ": stages[0] (\"a\").command[0]: unknown name '${params.lrr}' (did you mean 'lr'?)");
	/* A key with a newline is shown escaped: messages stay one line. */
	assert_string_equal(BAD(one_stage("\"command\": [\"x\"], \"bad\\nkey\": 1")),
			    F ": stages[0] (\"a\"): unknown field 'bad\\nkey' (expected one of: id, kind, command, after, inputs, outputs, env, resources, retries, timeout, params)");
}

static void test_recipe__rejects_dangling_references(void **state)
{
	const char *head = "{\"name\": \"x\", \"stages\": ["
		"{\"id\": \"teacher\", \"kind\": \"exec\", \"command\": [\"t\"], \"outputs\": {\"model\": \"checkpoint\"}},";
	char buf[1024];

	snprintf(buf, sizeof(buf), "%s{\"id\": \"distill\", \"kind\": \"exec\", \"command\": [\"d\"],"
		 " \"inputs\": {\"teacher\": \"teachr.model\"}}]}", head);
	assert_string_equal(BAD(buf),
			    F ": stages[1] (\"distill\").inputs.teacher: no stage 'teachr' (did you mean 'teacher'?)");
	snprintf(buf, sizeof(buf), "%s{\"id\": \"distill\", \"kind\": \"exec\", \"command\": [\"d\"],"
		 " \"inputs\": {\"teacher\": \"teacher.modl\"}}]}", head);
	assert_string_equal(BAD(buf),
			    F ": stages[1] (\"distill\").inputs.teacher: stage 'teacher' has no output 'modl' (did you mean 'model'?)");
	snprintf(buf, sizeof(buf), "%s{\"id\": \"distill\", \"kind\": \"exec\", \"command\": [\"d\"],"
		 " \"inputs\": {\"x\": \"distill.model\"}}]}", head);
	assert_string_equal(BAD(buf),
			    F ": stages[1] (\"distill\").inputs.x: stage 'distill' has no outputs (asked for 'model')");
	snprintf(buf, sizeof(buf), "%s{\"id\": \"distill\", \"kind\": \"exec\", \"command\": [\"d\"],"
		 " \"after\": [\"teacher\", \"zzz\"]}]}", head);
	assert_string_equal(BAD(buf), F ": stages[1] (\"distill\").after[1]: no stage 'zzz'");
	snprintf(buf, sizeof(buf), "%s{\"id\": \"distill\", \"kind\": \"exec\", \"command\": [\"d\"],"
		 " \"after\": [\"teacher\", 3]}]}", head);
	assert_string_equal(BAD(buf), F ": stages[1] (\"distill\").after[1]: must be a string, not number");
}

static void test_recipe__rejects_cycle_naming_it(void **state)
{
	const char *msg = BAD("{\"name\": \"x\", \"stages\": ["
			      "{\"id\": \"a\", \"kind\": \"exec\", \"command\": [\"a\"], \"after\": [\"c\"]},"
			      "{\"id\": \"b\", \"kind\": \"exec\", \"command\": [\"b\"], \"after\": [\"a\"]},"
			      "{\"id\": \"c\", \"kind\": \"exec\", \"command\": [\"c\"], \"inputs\": {\"i\": \"b.o\"}},"
			      "{\"id\": \"b2\", \"kind\": \"exec\", \"command\": [\"c\"], \"outputs\": {\"o\": \"report\"}}"
			      "]}");

	/* b has no output o: references are checked before cycles. */
	assert_string_equal(msg, F ": stages[2] (\"c\").inputs.i: stage 'b' has no outputs (asked for 'o')");
	msg = BAD("{\"name\": \"x\", \"stages\": ["
		  "{\"id\": \"a\", \"kind\": \"exec\", \"command\": [\"a\"], \"after\": [\"c\"]},"
		  "{\"id\": \"b\", \"kind\": \"exec\", \"command\": [\"b\"], \"after\": [\"a\"], \"outputs\": {\"o\": \"report\"}},"
		  "{\"id\": \"c\", \"kind\": \"exec\", \"command\": [\"c\"], \"inputs\": {\"i\": \"b.o\"}}"
		  "]}");
	/* dag.c picks where the cycle starts; any rotation names it. */
	assert_true(!strcmp(msg, F ": stages: dependency cycle: a -> b -> c -> a") ||
		    !strcmp(msg, F ": stages: dependency cycle: b -> c -> a -> b") ||
		    !strcmp(msg, F ": stages: dependency cycle: c -> a -> b -> c"));
	assert_string_equal(BAD(one_stage("\"command\": [\"x\"], \"after\": [\"a\"]")),
			    F ": stages: dependency cycle: a -> a");
}

/* "@REF" inputs read as a run reads them (fuzz_recipe: "@old@1A" passed
 * validation, then every run of it failed when the run was recorded). */
static void test_recipe__rejects_refs_a_run_cannot_resolve(void **state)
{
	struct recipe *r;
	(void)state;
	assert_string_equal(BAD(one_stage("\"command\": [\"c\"], \"inputs\": {\"m\": \"@old@1A\"}")),
			    F ": stages[0] (\"a\").inputs.m: must be '@NAME', '@NAME@N', '@ALIAS' or '@DIGEST', not '@old@1A'");
	assert_string_equal(BAD(one_stage("\"command\": [\"c\"], \"inputs\": {\"m\": \"@old@03\"}")),
			    F ": stages[0] (\"a\").inputs.m: must be '@NAME', '@NAME@N', '@ALIAS' or '@DIGEST', not '@old@03'");
	assert_string_equal(BAD(one_stage("\"command\": [\"c\"], \"inputs\": {\"m\": \"@\"}")),
			    F ": stages[0] (\"a\").inputs.m: must be '@NAME', '@NAME@N', '@ALIAS' or '@DIGEST', not '@'");
	assert_string_equal(BAD("{\"name\": \"t\", \"stages\": [{\"id\": \"m\", \"kind\": \"merge\","
				" \"method\": \"linear\", \"models\": [\"@a@0\", \"@b\"]}]}"),
			    F ": stages[0] (\"m\").models[0]: must be '@NAME', '@NAME@N', '@ALIAS' or '@DIGEST', not '@a@0'");
	r = load_text(one_stage("\"command\": [\"c\"], \"inputs\": {\"m\": \"@old@12\", \"n\": \"@best\"}"), NULL);
	assert_string_equal(r->steps[0].inputs[0].ref, "old@12");
	assert_string_equal(r->steps[0].inputs[1].ref, "best");
	recipe_free(r);
}

/* A role or output name is an environment variable, upper-cased: two
 * that differ in case only would be one ($ANNEAL_INPUT_DATA twice). */
static void test_recipe__rejects_names_sharing_a_variable(void **state)
{
	(void)state;
	assert_string_equal(BAD(one_stage("\"command\": [\"c\"], \"inputs\": {\"data\": \"@a\", \"DATA\": \"@b\"}")),
			    F ": stages[0] (\"a\").inputs: roles 'data' and 'DATA' would both be $ANNEAL_INPUT_DATA");
	assert_string_equal(BAD(one_stage("\"command\": [\"c\"], \"outputs\": {\"Model\": \"checkpoint\", \"x\": \"dataset\", \"mODEL\": \"checkpoint\"}")),
			    F ": stages[0] (\"a\").outputs: outputs 'Model' and 'mODEL' would both be $ANNEAL_OUTPUT_MODEL");
}

static char tmpdir[] = "/tmp/test_recipe.XXXXXX";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static const char *load_err(const char *path)
{
	static struct err err;
	struct recipe *r = (struct recipe *)1;

	err_clear(&err);
	assert_int_equal(recipe_load(path, NULL, &r, &err), ERR_INVALID);
	assert_null(r);
	assert_null(strchr(err.msg, '\n'));
	return err.msg;
}

static void test_recipe__load_refuses_what_is_not_a_recipe_file(void **state)
{
	char path[256], want[512];
	struct recipe *r = NULL;
	struct err err;
	FILE *f;

	assert_non_null(mkdtemp(tmpdir));

	/* A directory. */
	snprintf(path, sizeof(path), "%s/dir.json", tmpdir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(want, sizeof(want), "%s: not a regular file (a directory)", path);
	assert_string_equal(load_err(path), want);
	rmdir(path);

	/* A FIFO: refused without blocking on open. */
	snprintf(path, sizeof(path), "%s/fifo.json", tmpdir);
	assert_int_equal(mkfifo(path, 0600), 0);
	snprintf(want, sizeof(want), "%s: not a regular file (a FIFO)", path);
	assert_string_equal(load_err(path), want);
	unlink(path);

	/* Missing. */
	snprintf(path, sizeof(path), "%s/missing.json", tmpdir);
	snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
	assert_string_equal(load_err(path), want);

	/* One byte over the limit. */
	snprintf(path, sizeof(path), "%s/big.json", tmpdir);
	f = fopen(path, "w");
	assert_non_null(f);
	for (size_t i = 0; i < RECIPE_MAX_BYTES + 1; i++)
		fputc(' ', f);
	fclose(f);
	snprintf(want, sizeof(want), "%s: too large (%u bytes, limit %u)", path,
		 RECIPE_MAX_BYTES + 1, RECIPE_MAX_BYTES);
	assert_string_equal(load_err(path), want);
	unlink(path);

	/* Unreadable (root reads anything: skip the check then). */
	if (geteuid() != 0) {
		snprintf(path, sizeof(path), "%s/secret.json", tmpdir);
		write_file(path, "{}");
		chmod(path, 0);
		snprintf(want, sizeof(want), "%s: cannot read: Permission denied", path);
		assert_string_equal(load_err(path), want);
		unlink(path);
	}

	/* A good file loads, text verbatim. */
	snprintf(path, sizeof(path), "%s/ok.json", tmpdir);
	write_file(path, good);
	err_clear(&err);
	assert_int_equal(recipe_load(path, NULL, &r, &err), 0);
	assert_string_equal(r->path, path);
	assert_string_equal(r->text, good);
	assert_int_equal(r->nsteps, 3);
	recipe_free(r);
	unlink(path);

	/* Syntax errors from a file name the file. */
	snprintf(path, sizeof(path), "%s/syntax.json", tmpdir);
	write_file(path, "{\n\t\"name\": \"x\",,\n}");
	snprintf(want, sizeof(want), "%s: line 2, column 14: expected a string key, found ','", path);
	assert_string_equal(load_err(path), want);
	unlink(path);
	rmdir(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recipe__parses_a_good_recipe),
		cmocka_unit_test(test_recipe__defaults_when_optional_fields_are_absent),
		cmocka_unit_test(test_recipe__set_overrides_are_typed),
		cmocka_unit_test(test_recipe__rejects_bad_set),
		cmocka_unit_test(test_recipe__rejects_malformed_json_with_line_and_column),
		cmocka_unit_test(test_recipe__rejects_top_level_problems),
		cmocka_unit_test(test_recipe__rejects_duplicate_id),
		cmocka_unit_test(test_recipe__rejects_bad_ids),
		cmocka_unit_test(test_recipe__rejects_unknown_kind),
		cmocka_unit_test(test_recipe__reports_stage_field_errors_with_path),
		cmocka_unit_test(test_recipe__rejects_dangling_references),
		cmocka_unit_test(test_recipe__rejects_refs_a_run_cannot_resolve),
		cmocka_unit_test(test_recipe__rejects_names_sharing_a_variable),
		cmocka_unit_test(test_recipe__rejects_cycle_naming_it),
		cmocka_unit_test(test_recipe__load_refuses_what_is_not_a_recipe_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
