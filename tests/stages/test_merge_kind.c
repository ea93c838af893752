/* tests/stages/test_merge_kind.c — the `merge` stage kind: the step it
 * builds (argv of `anneal merge`, inputs with lineage roles and weights)
 * and the checks it borrows from the merge library. */
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
#include "stages/merge.h"
#include "stages/stage.h"

#define W "stages[0] (\"m\")"

static int run(const char *text, struct stage_out *out, struct err *err)
{
	struct stage_ctx ctx = { .file = "r.json", .defaults = { .cpus = 2 } };
	const struct stage_kind *k = stage_kind_find("merge");
	struct jnode *obj = NULL;
	int rc;

	assert_non_null(k);
	err_clear(err);
	assert_int_equal(json_parse(text, strlen(text), 0, &obj, err), 0);
	rc = k->expand(&ctx, obj, "m", W, out, err);
	json_free(obj);
	return rc;
}

static const char *err_of(const char *fields)
{
	static struct err err;
	struct stage_out out = { 0 };
	char text[2048];

	snprintf(text, sizeof(text), "{\"id\": \"m\", \"kind\": \"merge\", %s}", fields);
	assert_int_equal(run(text, &out, &err), ERR_INVALID);
	stage_out_clear(&out);
	return err.msg;
}

static void test_merge_kind__builds_the_step(void **state)
{
	struct stage_out out = { 0 };
	struct err err;
	const struct step *s;
	(void)state;

	assert_int_equal(run("{\"id\": \"m\", \"kind\": \"merge\", \"method\": \"ties\","
			     " \"base\": \"pre.model\","
			     " \"models\": [{\"from\": \"a.model\", \"weight\": 0.6}, \"@b@2\"],"
			     " \"params\": {\"density\": 0.5, \"normalize\": true},"
			     " \"rules\": [{\"match\": \"*.mlp.*\", \"params\": {\"density\": 0.7}}],"
			     " \"seed\": 7, \"name\": \"merged\", \"resources\": {\"cpus\": 4}}",
			     &out, &err), 0);
	assert_int_equal(out.nsteps, 1);
	s = &out.steps[0];
	assert_string_equal(s->kind, "merge");
	assert_true(strstr(s->argv[0], "anneal") != NULL);
	const char *want[] = { "merge", "--method", "ties", "--base", "${inputs.base}",
			       "--model", "${inputs.model_1}:0.6", "--model", "${inputs.model_2}:1",
			       "--param", "density=0.5", "--param", "normalize=true",
			       "--rule", "*.mlp.*:density=0.7", "--seed", "7", "--threads", "4",
			       "-o", "${outputs.model}" };
	assert_int_equal(s->argc, 1 + sizeof(want) / sizeof(*want));
	for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++)
		assert_string_equal(s->argv[i + 1], want[i]);
	/* lineage: base as "base", models as weighted "merge-input" */
	assert_int_equal(s->ninputs, 3);
	assert_string_equal(s->inputs[0].role, "base");
	assert_string_equal(s->inputs[0].edge_role, "base");
	assert_false(s->inputs[0].has_weight);
	assert_string_equal(s->inputs[1].from_step, "a");
	assert_string_equal(s->inputs[1].edge_role, "merge-input");
	assert_true(s->inputs[1].has_weight && s->inputs[1].weight == 0.6);
	assert_string_equal(s->inputs[2].ref, "b@2");
	assert_true(s->inputs[2].has_weight && s->inputs[2].weight == 1.0);
	assert_int_equal(s->noutputs, 1);
	assert_string_equal(s->outputs[0].artifact, "merged");
	assert_int_equal(out.nexports, 1);
	assert_int_equal(out.nrefs, 2);   /* the two stage references, not the @REF */
	stage_out_clear(&out);
}

static void test_merge_kind__rejects_bad_fields(void **state)
{
	(void)state;
	assert_string_equal(err_of("\"models\": [\"a.m\"]"), W ": missing field 'method'");
	assert_string_equal(err_of("\"method\": \"tie\", \"models\": [\"a.m\"]"),
			    W ".method: unknown merge method 'tie' (did you mean 'ties'?)");
	assert_string_equal(err_of("\"method\": \"ties\", \"models\": [\"a.m\"]"),
			    W ": missing field 'base' (method 'ties' merges task vectors against a base)");
	assert_string_equal(err_of("\"method\": \"linear\""), W ": missing field 'models'");
	assert_string_equal(err_of("\"method\": \"linear\", \"models\": []"),
			    W ".models: must name at least one model");
	assert_string_equal(err_of("\"method\": \"linear\", \"models\": [\"am\"]"),
			    W ".models[0]: must be 'stage.output' or '@ARTIFACT', not 'am'");
	assert_string_equal(err_of("\"method\": \"linear\", \"models\": [{\"form\": \"a.m\"}]"),
			    W ".models[0]: unknown field 'form' (did you mean 'from'?)");
	assert_string_equal(err_of("\"method\": \"linear\", \"models\": [{\"from\": \"a.m\", \"weight\": \"x\"}]"),
			    W ".models[0].weight: must be a finite number, not string");
	assert_string_equal(err_of("\"method\": \"ties\", \"base\": \"b.m\", \"models\": [\"a.m\"],"
				   " \"params\": {\"densty\": 0.5}"),
			    W ".params.densty: unknown parameter 'densty' for method 'ties' (did you mean 'density'?)");
	assert_string_equal(err_of("\"method\": \"linear\", \"models\": [\"a.m\"], \"seed\": -1"),
			    W ".seed: must be an integer >= 0, not -1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_kind__builds_the_step),
		cmocka_unit_test(test_merge_kind__rejects_bad_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
