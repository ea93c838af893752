/* tests/stages/test_exec.c — the kind registry and the `exec` kind on its
 * own: the step and exports it builds, the references it records, and
 * each field's checks (messages start at the stage's JSON path). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "pipeline/json.h"
#include "stages/exec.h"
#include "stages/stage.h"

#define W "stages[0] (\"s\")"

static struct jnode *params;

static int setup(void **state)
{
	const char *p = "{\"lr\": 0.5, \"n\": 3, \"name\": \"run ${x}\", \"opt\": {\"b\": [1, 2]}}";
	struct err err;
	return json_parse(p, strlen(p), 0, &params, &err);
}

static int teardown(void **state)
{
	json_free(params);
	return 0;
}

static struct stage_ctx make_ctx(void)
{
	struct stage_ctx ctx = { .file = "r.json", .params = params,
		.defaults = { .cpus = 2, .gpus = 1, .mem_mb = 100 } };
	return ctx;
}

/* Expands the stage object text; returns rc, the message in err. */
static int run(const char *obj_text, struct stage_out *out, struct err *err)
{
	struct stage_ctx ctx = make_ctx();
	const struct stage_kind *k = stage_kind_find("exec");
	struct jnode *obj = NULL;
	int rc;

	err_clear(err);
	assert_int_equal(json_parse(obj_text, strlen(obj_text), 0, &obj, err), 0);
	rc = k->expand(&ctx, obj, "s", W, out, err);
	json_free(obj);
	return rc;
}

static const char *err_of(const char *fields)
{
	static struct err err;
	struct stage_out out = {0};
	char text[2048];

	snprintf(text, sizeof(text), "{\"id\": \"s\", \"kind\": \"exec\", %s}", fields);
	assert_int_equal(run(text, &out, &err), ERR_INVALID);
	assert_int_equal(out.nsteps, 0);
	stage_out_clear(&out);
	return err.msg;
}

static void test_exec__registry_lists_exec(void **state)
{
	size_t n = 0;
	const char *const *names = stage_kind_names(&n);
	const struct stage_kind *k = stage_kind_find("exec");

	assert_non_null(k);
	assert_string_equal(k->name, "exec");
	assert_ptr_equal(k->expand, exec_expand);
	assert_null(stage_kind_find("exce"));
	assert_null(stage_kind_find(""));
	assert_true(n >= 1);
	assert_string_equal(names[0], "exec");
	assert_string_equal(stage_suggest("exce", names, n), "exec");
	assert_string_equal(stage_suggest("distil", names, n), "distill");
	assert_null(stage_suggest("finetune", names, n));
	stage_out_clear(NULL);
}

static void test_exec__builds_one_step_and_exports(void **state)
{
	struct stage_out out = {0};
	struct err err;
	const struct step *s;

	assert_int_equal(run("{\"id\": \"s\", \"kind\": \"exec\","
			     " \"command\": [\"py\", \"--lr=${params.lr}\", \"${params.opt.b}\","
			     "  \"${params.name}\", \"${inputs.data}\", \"${outputs.model}\"],"
			     " \"inputs\": {\"data\": \"prep.tokens\", \"init\": \"base.model\"},"
			     " \"outputs\": {\"model\": \"checkpoint\", \"scores\": \"report\"},"
			     " \"env\": {\"N\": \"${params.n}\", \"_X1\": \"\"},"
			     " \"after\": [\"lint\"],"
			     " \"resources\": {\"cpus\": 4, \"mem_mb\": 2048},"
			     " \"retries\": 2, \"timeout\": 90}", &out, &err), 0);
	assert_int_equal(out.nsteps, 1);
	s = &out.steps[0];
	assert_string_equal(s->id, "s");
	assert_string_equal(s->stage, "s");
	assert_string_equal(s->kind, "exec");
	assert_int_equal(s->argc, 6);
	assert_null(s->argv[6]);
	assert_string_equal(s->argv[1], "--lr=0.5");
	assert_string_equal(s->argv[2], "[1,2]");
	/* A param value holding "${" is escaped for the expansion at start. */
	assert_string_equal(s->argv[3], "run $${x}");
	assert_string_equal(s->argv[4], "${inputs.data}");
	assert_string_equal(s->argv[5], "${outputs.model}");
	assert_int_equal(s->nenv, 2);
	assert_string_equal(s->env[0].value, "3");
	assert_string_equal(s->env[1].key, "_X1");
	assert_string_equal(s->env[1].value, "");
	/* References as written; the parser resolves them later. */
	assert_int_equal(s->ninputs, 2);
	assert_string_equal(s->inputs[1].role, "init");
	assert_string_equal(s->inputs[1].from_step, "base");
	assert_string_equal(s->inputs[1].from_output, "model");
	assert_int_equal(s->nafter, 1);
	assert_string_equal(s->after[0], "lint");
	assert_int_equal(out.nrefs, 3);
	assert_string_equal(out.refs[0].where, W ".inputs.data");
	assert_string_equal(out.refs[1].where, W ".inputs.init");
	assert_int_equal(out.refs[1].index, 1);
	assert_false(out.refs[1].is_after);
	assert_string_equal(out.refs[2].where, W ".after[0]");
	assert_true(out.refs[2].is_after);
	/* Resources: stage fields over the context's defaults. */
	assert_int_equal(s->res.cpus, 4);
	assert_int_equal(s->res.gpus, 1);
	assert_int_equal(s->res.mem_mb, 2048);
	assert_int_equal(s->retry.max, 2);
	assert_true(s->retry.backoff_s == 1.0);
	assert_int_equal(s->timeout_s, 90);
	/* Each output exported under its own name. */
	assert_int_equal(out.nexports, 2);
	assert_string_equal(out.exports[1].name, "scores");
	assert_string_equal(out.exports[1].step, "s");
	assert_string_equal(out.exports[1].output, "scores");
	assert_int_equal(out.exports[1].type, ART_REPORT);
	stage_out_clear(&out);
	assert_int_equal(out.nsteps, 0);
	assert_null(out.steps);
}

static void test_exec__retries_and_timeout_forms(void **state)
{
	struct stage_out out = {0};
	struct err err;

	assert_int_equal(run("{\"id\": \"s\", \"kind\": \"exec\", \"command\": [\"x\"],"
			     " \"retries\": {\"max\": 4, \"backoff\": \"1m30s\"}, \"timeout\": \"2d\"}",
			     &out, &err), 0);
	assert_int_equal(out.steps[0].retry.max, 4);
	assert_true(out.steps[0].retry.backoff_s == 90.0);
	assert_int_equal(out.steps[0].timeout_s, 2 * 86400);
	stage_out_clear(&out);

	assert_int_equal(run("{\"id\": \"s\", \"kind\": \"exec\", \"command\": [\"x\"],"
			     " \"retries\": {\"backoff\": 0.5}, \"timeout\": 2592000,"
			     " \"resources\": {\"cpus\": 2.0, \"mem_mb\": 1e3}}",
			     &out, &err), 0);
	assert_int_equal(out.steps[0].retry.max, 0);
	assert_true(out.steps[0].retry.backoff_s == 0.5);
	assert_int_equal(out.steps[0].timeout_s, 2592000);
	assert_int_equal(out.steps[0].res.cpus, 2);
	assert_int_equal(out.steps[0].res.mem_mb, 1000);
	stage_out_clear(&out);
}

static void test_exec__rejects_bad_command(void **state)
{
	assert_string_equal(err_of("\"command\": \"make all\""),
			    W ".command: must be an array of strings (argv), not a shell string");
	assert_string_equal(err_of("\"command\": {}"),
			    W ".command: must be an array of strings, not object");
	assert_string_equal(err_of("\"command\": []"),
			    W ".command: must not be empty (argv needs a program)");
	assert_string_equal(err_of("\"command\": [\"\"]"),
			    W ".command[0]: must not be empty (the program to run)");
	assert_string_equal(err_of("\"command\": [\"a\", true]"),
			    W ".command[1]: must be a string, not boolean");
	assert_string_equal(err_of("\"command\": [\"a\", \"${outputs.model}\"]"),
			    W ".command[1]: unknown name '${outputs.model}'");
	assert_string_equal(err_of("\"command\": [\"a\", \"${inputs.dat}\"], \"inputs\": {\"data\": \"p.d\"}"),
			    W ".command[1]: unknown name '${inputs.dat}' (did you mean 'data'?)");
	assert_string_equal(err_of("\"command\": [\"a\", \"${params.opt.c}\"]"),
			    W ".command[1]: unknown name '${params.opt.c}' (did you mean 'opt.b'?)");
	assert_string_equal(err_of("\"inputs\": {}"), W ": missing field 'command'");
	assert_string_equal(err_of("\"command\": [\"a\"], \"timout\": 5"),
			    W ": unknown field 'timout' (did you mean 'timeout'?)");
}

static void test_exec__rejects_bad_inputs_and_outputs(void **state)
{
	assert_string_equal(err_of("\"command\": [\"a\"], \"inputs\": [\"p.d\"]"),
			    W ".inputs: must be an object, not array");
	assert_string_equal(err_of("\"command\": [\"a\"], \"inputs\": {\"a-b\": \"p.d\"}"),
			    W ".inputs: invalid role 'a-b' (1 to 63 letters, digits and '_')");
	assert_string_equal(err_of("\"command\": [\"a\"], \"inputs\": {\"d\": \"p\"}"),
			    W ".inputs.d: must be 'stage.output' or '@ARTIFACT', not 'p'");
	assert_string_equal(err_of("\"command\": [\"a\"], \"inputs\": {\"d\": \".x\"}"),
			    W ".inputs.d: must be 'stage.output' or '@ARTIFACT', not '.x'");
	assert_string_equal(err_of("\"command\": [\"a\"], \"inputs\": {\"d\": \"p.x.y\"}"),
			    W ".inputs.d: must be 'stage.output' or '@ARTIFACT', not 'p.x.y'");
	assert_string_equal(err_of("\"command\": [\"a\"], \"inputs\": {\"d\": 1}"),
			    W ".inputs.d: must be a string, not number");
	assert_string_equal(err_of("\"command\": [\"a\"], \"outputs\": {\"m.x\": \"checkpoint\"}"),
			    W ".outputs: invalid output name 'm.x' (1 to 63 letters, digits and '_')");
	assert_string_equal(err_of("\"command\": [\"a\"], \"outputs\": {\"m\": \"chekpoint\"}"),
			    W ".outputs.m: unknown artifact type 'chekpoint' (did you mean 'checkpoint'?)");
	assert_string_equal(err_of("\"command\": [\"a\"], \"outputs\": {\"m\": \"weights\"}"),
			    W ".outputs.m: unknown artifact type 'weights' (expected checkpoint, dataset or report)");
}

static void test_exec__rejects_bad_env(void **state)
{
	assert_string_equal(err_of("\"command\": [\"a\"], \"env\": {\"1X\": \"v\"}"),
			    W ".env: invalid variable name '1X' (use letters, digits and '_', not starting with a digit)");
	assert_string_equal(err_of("\"command\": [\"a\"], \"env\": {\"A-B\": \"v\"}"),
			    W ".env: invalid variable name 'A-B' (use letters, digits and '_', not starting with a digit)");
	assert_string_equal(err_of("\"command\": [\"a\"], \"env\": {\"ANNEAL_RUN_ID\": \"v\"}"),
			    W ".env.ANNEAL_RUN_ID: names starting with ANNEAL_ are reserved for anneal");
	assert_string_equal(err_of("\"command\": [\"a\"], \"env\": {\"X\": 1}"),
			    W ".env.X: must be a string, not number");
	assert_string_equal(err_of("\"command\": [\"a\"], \"env\": {\"X\": \"${params.nn}\"}"),
			    W ".env.X: unknown name '${params.nn}' (did you mean 'n'?)");
	assert_string_equal(err_of("\"command\": [\"a\"], \"env\": [\"X=1\"]"),
			    W ".env: must be an object, not array");
}

static void test_exec__rejects_absurd_numbers(void **state)
{
	assert_string_equal(err_of("\"command\": [\"a\"], \"resources\": {\"cpus\": 0}"),
			    W ".resources.cpus: must be an integer >= 1, not 0");
	assert_string_equal(err_of("\"command\": [\"a\"], \"resources\": {\"cpus\": 4097}"),
			    W ".resources.cpus: must be an integer <= 4096, not 4097");
	assert_string_equal(err_of("\"command\": [\"a\"], \"resources\": {\"npus\": -1}"),
			    W ".resources.npus: must be an integer >= 0, not -1");
	assert_string_equal(err_of("\"command\": [\"a\"], \"resources\": {\"mem_mb\": 1073741825}"),
			    W ".resources.mem_mb: must be an integer <= 1073741824, not 1073741825");
	assert_string_equal(err_of("\"command\": [\"a\"], \"resources\": {\"gpus\": \"2\"}"),
			    W ".resources.gpus: must be an integer, not string");
	assert_string_equal(err_of("\"command\": [\"a\"], \"resources\": {\"cpus\": 99999999999999999999}"),
			    W ".resources.cpus: must be an integer <= 4096, not 1e+20");
	assert_string_equal(err_of("\"command\": [\"a\"], \"retries\": -1"),
			    W ".retries: must be an integer >= 0, not -1");
	assert_string_equal(err_of("\"command\": [\"a\"], \"retries\": 101"),
			    W ".retries: must be an integer <= 100, not 101");
	assert_string_equal(err_of("\"command\": [\"a\"], \"retries\": \"3\""),
			    W ".retries: must be an integer or an object, not string");
	assert_string_equal(err_of("\"command\": [\"a\"], \"retries\": {\"max\": 2, \"wait\": 1}"),
			    W ".retries: unknown field 'wait' (expected one of: max, backoff)");
	assert_string_equal(err_of("\"command\": [\"a\"], \"retries\": {\"backoff\": \"2x\"}"),
			    W ".retries.backoff: invalid duration '2x' (e.g. \"10s\", \"1m30s\"; at most 1 day)");
	assert_string_equal(err_of("\"command\": [\"a\"], \"retries\": {\"backoff\": -1}"),
			    W ".retries.backoff: must be between 0 and 86400 seconds, not -1");
}

static void test_exec__rejects_bad_timeout(void **state)
{
	assert_string_equal(err_of("\"command\": [\"a\"], \"timeout\": 0"),
			    W ".timeout: must be > 0 seconds, not 0");
	assert_string_equal(err_of("\"command\": [\"a\"], \"timeout\": -5"),
			    W ".timeout: must be > 0 seconds, not -5");
	assert_string_equal(err_of("\"command\": [\"a\"], \"timeout\": 1.5"),
			    W ".timeout: must be a whole number of seconds, not 1.5");
	assert_string_equal(err_of("\"command\": [\"a\"], \"timeout\": 1e300"),
			    W ".timeout: must be at most 30 days (2592000 seconds), not 1e+300");
	assert_string_equal(err_of("\"command\": [\"a\"], \"timeout\": \"31d\""),
			    W ".timeout: must be at most 30 days, not '31d'");
	assert_string_equal(err_of("\"command\": [\"a\"], \"timeout\": \"0s\""),
			    W ".timeout: must be > 0 seconds, not '0s'");
	assert_string_equal(err_of("\"command\": [\"a\"], \"timeout\": \"soon\""),
			    W ".timeout: invalid duration 'soon' (e.g. \"90s\", \"1h30m\", \"2d\")");
	assert_string_equal(err_of("\"command\": [\"a\"], \"timeout\": \"99999999999999999999d\""),
			    W ".timeout: invalid duration '99999999999999999999d' (e.g. \"90s\", \"1h30m\", \"2d\")");
	assert_string_equal(err_of("\"command\": [\"a\"], \"timeout\": null"),
			    W ".timeout: must be a number of seconds or a duration string, not null");
}

static void test_exec__rejects_bad_after(void **state)
{
	assert_string_equal(err_of("\"command\": [\"a\"], \"after\": \"prep\""),
			    W ".after: must be an array of stage ids, not string");
	assert_string_equal(err_of("\"command\": [\"a\"], \"after\": [\"p\", {}]"),
			    W ".after[1]: must be a string, not object");
}

/* A step sees (and its key covers) the params it names, not the others. */
static void test_exec__params_used_by_the_step(void **state)
{
	struct stage_out out = {0};
	struct err err;

	assert_int_equal(run("{\"id\": \"s\", \"kind\": \"exec\", "
			     "\"command\": [\"t\", \"${params.opt.b}\", \"${params.lr}\"], "
			     "\"env\": {\"X\": \"${params.lr}\"}}", &out, &err), 0);
	assert_int_equal(out.nsteps, 1);
	/* recipe order, whole top-level values, once each */
	assert_string_equal(out.steps[0].params_json, "{\"lr\":0.5,\"opt\":{\"b\":[1,2]}}");
	stage_out_clear(&out);

	assert_int_equal(run("{\"id\": \"s\", \"kind\": \"exec\", "
			     "\"command\": [\"t\"]}", &out, &err), 0);
	assert_string_equal(out.steps[0].params_json, "{}");
	stage_out_clear(&out);

	/* "params" lists what the program reads from $ANNEAL_PARAMS itself. */
	assert_int_equal(run("{\"id\": \"s\", \"kind\": \"exec\", "
			     "\"command\": [\"t\"], \"params\": [\"name\", \"n\"]}", &out, &err), 0);
	assert_string_equal(out.steps[0].params_json, "{\"n\":3,\"name\":\"run ${x}\"}");
	stage_out_clear(&out);

	assert_string_equal(err_of("\"command\": [\"a\"], \"params\": \"lr\""),
			    W ".params: must be an array, not string");
	assert_string_equal(err_of("\"command\": [\"a\"], \"params\": [\"lrr\"]"),
			    W ".params[0]: no param 'lrr' (did you mean 'lr'?)");
	assert_string_equal(err_of("\"command\": [\"a\"], \"params\": [3]"),
			    W ".params[0]: must be a param name, not number");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exec__registry_lists_exec),
		cmocka_unit_test(test_exec__builds_one_step_and_exports),
		cmocka_unit_test(test_exec__retries_and_timeout_forms),
		cmocka_unit_test(test_exec__rejects_bad_command),
		cmocka_unit_test(test_exec__rejects_bad_inputs_and_outputs),
		cmocka_unit_test(test_exec__rejects_bad_env),
		cmocka_unit_test(test_exec__rejects_absurd_numbers),
		cmocka_unit_test(test_exec__rejects_bad_timeout),
		cmocka_unit_test(test_exec__rejects_bad_after),
		cmocka_unit_test(test_exec__params_used_by_the_step),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
