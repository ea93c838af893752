/* tests/stages/test_train_kinds.c — the engine-running kinds (data,
 * pretrain, sft, distill, rl, dual_sft, eval) through the recipe parser:
 * the steps they expand to, their inputs and lineage roles, the distill
 * iteration chain with its merges, "stage[K].output" references, configs
 * with params, and their errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/buf.h"
#include "base/util.h"
#include "pipeline/recipe.h"
#include "pipeline/step.h"

#define HEAD "{\"name\": \"p\", \"params\": {\"steps\": 300, \"lr\": 0.001, \"n\": 2}, \"stages\": ["
#define DATA "{\"id\": \"data\", \"kind\": \"data\"}"
#define PRE "{\"id\": \"pre\", \"kind\": \"pretrain\", \"inputs\": {\"data\": \"data.corpus\"}," \
	    " \"config\": {\"steps\": \"${params.steps}\", \"hidden\": [64]}}"
#define TEACHER "{\"id\": \"teacher\", \"kind\": \"pretrain\", \"inputs\": {\"data\": \"data.reasoning\"}}"

static struct recipe *load(const char *stages)
{
	struct recipe *r = NULL;
	struct err err;
	char *text = xasprintf(HEAD "%s]}", stages);

	err_clear(&err);
	if (recipe_parse("r.json", text, strlen(text), NULL, &r, &err))
		fail_msg("unexpected error: %s", err.msg);
	free(text);
	return r;
}

static const char *bad(const char *stages)
{
	static struct err err;
	struct recipe *r = NULL;
	char *text = xasprintf(HEAD "%s]}", stages);

	err_clear(&err);
	assert_int_equal(recipe_parse("r.json", text, strlen(text), NULL, &r, &err), ERR_INVALID);
	assert_null(r);
	free(text);
	return err.msg;
}

static const struct step *step(const struct recipe *r, const char *id)
{
	long i = recipe_find_step(r, id);

	if (i < 0)
		fail_msg("no step '%s'", id);
	return &r->steps[i];
}

static const struct step_input *input(const struct step *s, const char *role)
{
	for (size_t i = 0; i < s->ninputs; i++)
		if (!strcmp(s->inputs[i].role, role))
			return &s->inputs[i];
	fail_msg("step '%s' has no input '%s'", s->id, role);
	return NULL;
}

static void test_kinds__one_step_kinds(void **state)
{
	struct recipe *r = load(DATA "," PRE ","
				"{\"id\": \"rl\", \"kind\": \"rl\", \"inputs\": {\"policy\": \"pre.model\","
				" \"data\": \"data.prompts\", \"reward\": \"pre.model\"}, \"name\": \"policy\"},"
				"{\"id\": \"dual\", \"kind\": \"dual_sft\", \"inputs\": {\"init\": \"rl.model\", \"data\": \"data.prompts\"}}");
	const struct step *s;
	(void)state;

	assert_int_equal(r->nsteps, 4);
	s = step(r, "data");
	assert_string_equal(s->kind, "data");
	assert_true(strstr(s->argv[0], "anneal-engine") != NULL);
	assert_string_equal(s->argv[1], "gen-data");
	assert_int_equal(s->noutputs, 4);
	assert_string_equal(s->outputs[0].name, "corpus");
	assert_string_equal(s->outputs[0].artifact, "data.corpus");
	assert_int_equal(s->outputs[3].type, ART_DATASET);
	assert_string_equal(s->params_json, "{}");

	s = step(r, "pre");
	assert_string_equal(s->argv[1], "pretrain");
	/* "${params.steps}" takes the param's value and type */
	assert_string_equal(s->params_json, "{\"steps\":300,\"hidden\":[64]}");
	assert_string_equal(input(s, "data")->from_step, "data");
	assert_string_equal(input(s, "data")->from_output, "corpus");
	assert_string_equal(s->outputs[0].artifact, "pre.model");
	assert_int_equal(s->outputs[0].type, ART_CHECKPOINT);

	s = step(r, "rl");
	assert_string_equal(s->argv[1], "rl");
	assert_string_equal(input(s, "policy")->from_step, "pre");
	assert_string_equal(input(s, "reward")->from_output, "model");
	assert_string_equal(s->outputs[0].artifact, "policy");

	s = step(r, "dual");
	assert_string_equal(s->argv[1], "dual-sft");
	assert_string_equal(input(s, "init")->from_step, "rl");
	recipe_free(r);
}

static void test_kinds__distill_chain_with_merges(void **state)
{
	struct recipe *r = load(DATA "," PRE "," TEACHER ","
				"{\"id\": \"d\", \"kind\": \"distill\", \"inputs\": {\"init\": \"pre.model\","
				" \"teacher\": \"teacher.model\", \"data\": \"data.prompts\"},"
				" \"iterations\": \"${params.n}\", \"merge\": {\"method\": \"linear\", \"weights\": [0.7, 0.3]},"
				" \"config\": {\"steps\": 50}},"
				"{\"id\": \"after2\", \"kind\": \"sft\", \"inputs\": {\"init\": \"d[1].model\", \"data\": \"d[2].data\"}},"
				"{\"id\": \"last\", \"kind\": \"sft\", \"inputs\": {\"init\": \"d.model\", \"data\": \"d.data\"}}");
	const struct step *s;
	(void)state;

	assert_int_equal(r->nsteps, 3 + 4 + 2);
	s = step(r, "d.1");
	assert_string_equal(s->kind, "distill");
	assert_string_equal(s->stage, "d");
	assert_string_equal(s->params_json, "{\"steps\":50,\"iteration\":1}");
	assert_string_equal(input(s, "init")->from_step, "pre");
	assert_string_equal(input(s, "teacher")->from_step, "teacher");
	assert_string_equal(input(s, "data")->from_output, "prompts");
	assert_string_equal(s->outputs[0].artifact, "d.1.student");
	assert_string_equal(s->outputs[1].name, "data");
	assert_string_equal(s->outputs[1].artifact, "d.1.data");

	/* merge 1: the fresh student and init, weighted, no base for linear */
	s = step(r, "d.merge.1");
	assert_string_equal(s->kind, "merge");
	assert_int_equal(s->ninputs, 2);
	assert_string_equal(s->inputs[0].from_step, "d.1");
	assert_string_equal(s->inputs[0].edge_role, "merge-input");
	assert_true(s->inputs[0].has_weight);
	assert_true(s->inputs[0].weight == 0.7);
	assert_string_equal(s->inputs[1].from_step, "pre");
	assert_true(s->inputs[1].weight == 0.3);
	assert_string_equal(s->outputs[0].artifact, "d.1.model");

	/* iteration 2 starts from merge 1; merge 2 takes merge 1 as predecessor */
	s = step(r, "d.2");
	assert_string_equal(s->params_json, "{\"steps\":50,\"iteration\":2}");
	assert_string_equal(input(s, "init")->from_step, "d.merge.1");
	s = step(r, "d.merge.2");
	assert_string_equal(s->inputs[0].from_step, "d.2");
	assert_string_equal(s->inputs[1].from_step, "d.merge.1");

	/* references to iterations and to the stage's last outputs */
	s = step(r, "after2");
	assert_string_equal(input(s, "init")->from_step, "d.merge.1");
	assert_string_equal(input(s, "data")->from_step, "d.2");
	assert_string_equal(input(s, "data")->from_output, "data");
	s = step(r, "last");
	assert_string_equal(input(s, "init")->from_step, "d.merge.2");
	assert_string_equal(input(s, "data")->from_step, "d.2");
	recipe_free(r);
}

static void test_kinds__distill_ties_bases_on_init_and_no_merge(void **state)
{
	struct recipe *r = load(DATA "," PRE "," TEACHER ","
				"{\"id\": \"d\", \"kind\": \"distill\", \"inputs\": {\"init\": \"pre.model\","
				" \"teacher\": \"teacher.model\", \"data\": \"data.prompts\"}, \"iterations\": 2,"
				" \"merge\": {\"method\": \"ties\", \"params\": {\"density\": 0.5}}},"
				"{\"id\": \"e\", \"kind\": \"distill\", \"inputs\": {\"init\": \"pre.model\","
				" \"teacher\": \"teacher.model\", \"data\": \"data.prompts\"}, \"iterations\": 2}");
	const struct step *s;
	(void)state;

	s = step(r, "d.merge.2");
	assert_int_equal(s->ninputs, 3);
	assert_string_equal(input(s, "base")->from_step, "pre");
	assert_string_equal(input(s, "base")->edge_role, "base");
	assert_true(input(s, "model_1")->weight == 0.5);
	/* without merges each iteration starts from the previous student */
	assert_int_equal(recipe_find_step(r, "e.merge.1"), -1);
	s = step(r, "e.2");
	assert_string_equal(input(s, "init")->from_step, "e.1");
	recipe_free(r);
}

static void test_kinds__eval_one_step_per_model(void **state)
{
	struct recipe *r = load(DATA "," PRE "," TEACHER ","
				"{\"id\": \"d\", \"kind\": \"distill\", \"inputs\": {\"init\": \"pre.model\","
				" \"teacher\": \"teacher.model\", \"data\": \"data.prompts\"}, \"iterations\": 2,"
				" \"merge\": {\"method\": \"linear\"}},"
				"{\"id\": \"ev\", \"kind\": \"eval\", \"inputs\": {\"data\": \"data.eval\"},"
				" \"models\": [\"pre.model\", \"d[1].student\", \"d[2].model\", \"@base@3\", \"pre.model\"]}");
	const struct step *s;
	(void)state;

	s = step(r, "ev.pre");
	assert_string_equal(s->argv[1], "eval");
	assert_string_equal(input(s, "model")->from_step, "pre");
	assert_string_equal(input(s, "data")->from_output, "eval");
	assert_string_equal(s->outputs[0].name, "report");
	assert_string_equal(s->outputs[0].artifact, "ev.pre");
	assert_int_equal(s->outputs[0].type, ART_REPORT);
	assert_string_equal(input(step(r, "ev.d-1-student"), "model")->from_step, "d.1");
	assert_string_equal(input(step(r, "ev.d-2"), "model")->from_step, "d.merge.2");
	assert_string_equal(input(step(r, "ev.base-3"), "model")->ref, "base@3");
	assert_true(recipe_find_step(r, "ev.pre-5") >= 0);
	recipe_free(r);
}

static void test_kinds__engine_and_env(void **state)
{
	struct recipe *r = NULL;
	struct err err;
	const char *text =
		"{\"name\": \"p\", \"params\": {\"np\": 8},"
		" \"engine\": {\"command\": [\"torchrun\", \"--nproc_per_node=${params.np}\", \"train.py\"],"
		"              \"env\": {\"HCCL_TIMEOUT\": \"1800\"}, \"repo\": \".\"},"
		" \"stages\": [" DATA ","
		"  {\"id\": \"pre\", \"kind\": \"pretrain\", \"inputs\": {\"data\": \"data.corpus\"},"
		"   \"config\": {\"anything\": {\"the\": \"engine owns it\"}}, \"env\": {\"X\": \"${params.np}\"},"
		"   \"resources\": {\"npus\": 8, \"nodes\": 4, \"tasks_per_node\": 8}, \"retries\": 3, \"timeout\": \"2h\"},"
		"  {\"id\": \"ref\", \"kind\": \"sft\", \"engine\": [\"/opt/anneal-engine\"],"
		"   \"inputs\": {\"init\": \"pre.model\", \"data\": \"data.corpus\"}}]}";
	const struct step *s;
	(void)state;

	err_clear(&err);
	if (recipe_parse("r.json", text, strlen(text), NULL, &r, &err))
		fail_msg("%s", err.msg);
	s = step(r, "pre");
	assert_int_equal(s->argc, 4);
	assert_string_equal(s->argv[0], "torchrun");
	assert_string_equal(s->argv[1], "--nproc_per_node=8");
	assert_string_equal(s->argv[3], "pretrain");
	/* a custom engine's config is passed through unchecked */
	assert_string_equal(s->params_json, "{\"anything\":{\"the\":\"engine owns it\"}}");
	assert_int_equal(s->nenv, 2);
	assert_string_equal(s->env[0].key, "HCCL_TIMEOUT");
	assert_string_equal(s->env[1].value, "8");
	assert_int_equal(s->res.npus, 8);
	assert_int_equal(s->res.nodes, 4);
	assert_int_equal(s->res.tasks_per_node, 8);
	assert_int_equal(s->retry.max, 3);
	assert_int_equal(s->timeout_s, 7200);
	s = step(r, "ref");
	assert_string_equal(s->argv[0], "/opt/anneal-engine");
	assert_string_equal(s->argv[1], "sft");
	recipe_free(r);
}

static void test_kinds__errors(void **state)
{
	(void)state;
	assert_string_equal(bad(DATA ",{\"id\": \"pre\", \"kind\": \"pretrain\"}"),
			    "r.json: stages[1] (\"pre\").inputs: missing role 'data'");
	assert_string_equal(bad(DATA ",{\"id\": \"pre\", \"kind\": \"pretrain\", \"inputs\": {\"dat\": \"data.corpus\"}}"),
			    "r.json: stages[1] (\"pre\").inputs: unknown role 'dat' (did you mean 'data'?)");
	assert_string_equal(bad(DATA ",{\"id\": \"pre\", \"kind\": \"pretrain\", \"inputs\": {\"data\": \"data.corpsu\"}}"),
			    "r.json: stages[1] (\"pre\").inputs.data: stage 'data' has no output 'corpsu' (did you mean 'corpus'?)");
	assert_string_equal(bad(DATA ",{\"id\": \"pre\", \"kind\": \"pretrain\", \"inputs\": {\"data\": \"data.corpus\"}, \"comand\": 1}"),
			    "r.json: stages[1] (\"pre\"): unknown field 'comand' (expected one of: id, kind, inputs, config, engine, env, name, after, resources, retries, timeout)");
	assert_string_equal(bad(DATA ",{\"id\": \"pre\", \"kind\": \"pretrain\", \"inputs\": {\"data\": \"data.corpus\"},"
				" \"config\": {\"steps\": \"${params.stpes}\"}}"),
			    "r.json: stages[1] (\"pre\").config.steps: unknown name '${params.stpes}' (did you mean 'steps'?)");
	assert_string_equal(bad(DATA ",{\"id\": \"pre\", \"kind\": \"pretrain\", \"inputs\": {\"data\": \"data.corpus\"},"
				" \"engine\": \"python train.py\"}"),
			    "r.json: stages[1] (\"pre\").engine: must be an object {\"command\": [...], \"env\": {...}} or a command array, not string");
	assert_string_equal(bad(DATA "," PRE "," TEACHER ",{\"id\": \"d\", \"kind\": \"distill\", \"inputs\": {\"init\": \"pre.model\","
				" \"teacher\": \"teacher.model\", \"data\": \"data.prompts\"}, \"iterations\": 0}"),
			    "r.json: stages[3] (\"d\").iterations: must be an integer >= 1, not 0");
	assert_string_equal(bad(DATA "," PRE "," TEACHER ",{\"id\": \"d\", \"kind\": \"distill\", \"inputs\": {\"init\": \"pre.model\","
				" \"teacher\": \"teacher.model\", \"data\": \"data.prompts\"}, \"merge\": {\"method\": \"lienar\"}}"),
			    "r.json: stages[3] (\"d\").merge.method: unknown merge method 'lienar' (did you mean 'linear'?)");
	assert_string_equal(bad(DATA "," PRE "," TEACHER ",{\"id\": \"d\", \"kind\": \"distill\", \"inputs\": {\"init\": \"pre.model\","
				" \"teacher\": \"teacher.model\", \"data\": \"data.prompts\"}, \"merge\": {\"method\": \"linear\", \"weights\": [1]}}"),
			    "r.json: stages[3] (\"d\").merge.weights: must be two numbers: [the new student's weight, its predecessor's]");
	assert_string_equal(bad(DATA "," PRE "," TEACHER ",{\"id\": \"d\", \"kind\": \"distill\", \"inputs\": {\"init\": \"pre.model\","
				" \"teacher\": \"teacher.model\", \"data\": \"data.prompts\"}, \"iterations\": 2},"
				"{\"id\": \"s\", \"kind\": \"sft\", \"inputs\": {\"init\": \"d[3].model\", \"data\": \"data.corpus\"}}"),
			    "r.json: stages[4] (\"s\").inputs.init: stage 'd' has no output 'model' for iteration 3");
	assert_string_equal(bad(DATA "," PRE ",{\"id\": \"s\", \"kind\": \"sft\", \"inputs\": {\"init\": \"pre[0].model\", \"data\": \"data.corpus\"}}"),
			    "r.json: stages[2] (\"s\").inputs.init: bad iteration in 'pre[0]' (write 'stage[N].output', N >= 1)");
	assert_string_equal(bad(DATA ",{\"id\": \"ev\", \"kind\": \"eval\", \"inputs\": {\"data\": \"data.eval\"}}"),
			    "r.json: stages[1] (\"ev\"): missing field 'models' (the checkpoints to evaluate)");
	assert_string_equal(bad(DATA ",{\"id\": \"x\", \"kind\": \"data\", \"resources\": {\"nodes\": 0}}"),
			    "r.json: stages[1] (\"x\").resources.nodes: must be an integer >= 1, not 0");
	assert_string_equal(bad(DATA ",{\"id\": \"x\", \"kind\": \"data\", \"name\": \"d\"}"),
			    "r.json: stages[1] (\"x\"): 'name' names a single model; a data stage's outputs are versioned as 'x.corpus', ...");
}

static void test_kinds__stage_slurm_options(void **state)
{
	struct recipe *r = load(DATA "," "{\"id\": \"pre\", \"kind\": \"pretrain\", \"inputs\": {\"data\": \"data.corpus\"},"
				" \"slurm\": {\"partition\": \"big\", \"qos\": \"high\", \"sbatch\": [\"--exclusive\"]}},"
				"{\"id\": \"d\", \"kind\": \"distill\", \"inputs\": {\"init\": \"pre.model\","
				" \"teacher\": \"pre.model\", \"data\": \"data.prompts\"}, \"iterations\": 2,"
				" \"merge\": {\"method\": \"linear\"}, \"slurm\": {\"account\": \"a1\"}}");
	(void)state;
	assert_null(step(r, "data")->runner_json);
	assert_string_equal(step(r, "pre")->runner_json,
			    "{\"partition\":\"big\",\"qos\":\"high\",\"sbatch\":[\"--exclusive\"]}");
	/* every step a stage expands to */
	assert_string_equal(step(r, "d.2")->runner_json, "{\"account\":\"a1\"}");
	assert_string_equal(step(r, "d.merge.1")->runner_json, "{\"account\":\"a1\"}");
	recipe_free(r);
	assert_string_equal(bad(DATA ",{\"id\": \"x\", \"kind\": \"exec\", \"command\": [\"true\"], \"slurm\": {\"partiton\": \"p\"}}"),
			    "r.json: stages[1] (\"x\").slurm: unknown field 'partiton' (did you mean 'partition'?)");
	assert_string_equal(bad(DATA ",{\"id\": \"x\", \"kind\": \"exec\", \"command\": [\"true\"], \"slurm\": {\"sbatch\": \"--exclusive\"}}"),
			    "r.json: stages[1] (\"x\").slurm.sbatch: must be an array, not string");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kinds__one_step_kinds),
		cmocka_unit_test(test_kinds__distill_chain_with_merges),
		cmocka_unit_test(test_kinds__distill_ties_bases_on_init_and_no_merge),
		cmocka_unit_test(test_kinds__eval_one_step_per_model),
		cmocka_unit_test(test_kinds__engine_and_env),
		cmocka_unit_test(test_kinds__errors),
		cmocka_unit_test(test_kinds__stage_slurm_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
