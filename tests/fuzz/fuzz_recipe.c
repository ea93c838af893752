/* tests/fuzz/fuzz_recipe.c — libFuzzer target for the recipe parser and
 * validator: the whole path `anneal validate` takes on a recipe's bytes
 * (pipeline/recipe.c recipe_parse: JSON with comments, the top level,
 * --set, every stage kind's expansion, references, the DAG).
 *
 * Input: the recipe file's bytes. A line "//set KEY=VALUE" (a comment to
 * the parser) also becomes a --set KEY=VALUE override, so that the fuzzer
 * mutates overrides along with the recipe they apply to.
 *
 * Invariants: a refused recipe gives ERR_INVALID and one line naming the
 * file ("fuzz.json: ..."), and nothing else; an accepted one keeps what
 * validation promises the scheduler: its text and digest are the input's,
 * params_json is a JSON object, every step has a unique id that
 * recipe_find_step finds and an argv, every input names an earlier-checked
 * step and one of its declared outputs (or a catalog "@REF" that
 * catalog_ref_parse accepts: run must not refuse what validate passed),
 * no two inputs (outputs) of a step share an $ANNEAL_INPUT_<ROLE>
 * ($ANNEAL_OUTPUT_<NAME>) variable, every
 * "after" names a step, and every argv word and env value expands when
 * the step starts (subst_expand with the step's own inputs and outputs,
 * as pipeline/sched.c does) with no name left unknown and no params
 * reference left over. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"
#include "pipeline/catalog.h"
#include "pipeline/json.h"
#include "pipeline/recipe.h"
#include "pipeline/subst.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PATH "fuzz.json"

/* What the scheduler's lookup resolves: the step's inputs and outputs. */
static enum subst_result step_lookup(void *ctx, const char *ns, const char *name,
				     struct buf *out, char *hint, size_t hint_size)
{
	const struct step *st = ctx;

	if (!strcmp(ns, "params"))
		abort();   /* resolved at expansion: must not survive */
	if (!strcmp(ns, "inputs")) {
		for (size_t i = 0; i < st->ninputs; i++)
			if (!strcmp(st->inputs[i].role, name)) {
				buf_adds(out, "/in/");
				buf_adds(out, name);
				return SUBST_OK;
			}
	} else if (!strcmp(ns, "outputs")) {
		for (size_t i = 0; i < st->noutputs; i++)
			if (!strcmp(st->outputs[i].name, name)) {
				buf_adds(out, "/out/");
				buf_adds(out, name);
				return SUBST_OK;
			}
	}
	return SUBST_UNKNOWN;
}

static void expands(const struct step *st, const char *tmpl)
{
	struct buf b = BUF_INIT;
	struct err e;

	err_clear(&e);
	if (!tmpl || subst_expand(tmpl, step_lookup, (void *)st, &b, &e))
		abort();
	buf_free(&b);
}

static void check_recipe(const struct recipe *r, const uint8_t *data, size_t size)
{
	struct jnode *params = NULL;
	struct err e;
	struct digest d;
	char hex[DIGEST_HEX_LEN + 1];

	if (r->text_len != size || memcmp(r->text, data, size) || !r->name || !*r->name)
		abort();
	sha256_buf(data, size, &d);
	digest_hex(&d, hex);
	if (strcmp(hex, r->digest))
		abort();
	if (!r->params || r->params->type != J_OBJECT || !r->params_json ||
	    json_parse(r->params_json, strlen(r->params_json), 0, &params, &e) ||
	    params->type != J_OBJECT)
		abort();
	json_free(params);
	if (r->nsteps == 0)
		abort();
	for (size_t i = 0; i < r->nsteps; i++) {
		const struct step *st = &r->steps[i];

		if (!st->id || !*st->id || recipe_find_step(r, st->id) != (long)i ||
		    !st->kind || !st->argv || st->argc == 0 || st->argv[st->argc])
			abort();
		for (size_t k = 0; k < st->argc; k++)
			expands(st, st->argv[k]);
		for (size_t k = 0; k < st->nenv; k++)
			if (!st->env[k].key || !*st->env[k].key)
				abort();
			else
				expands(st, st->env[k].value);
		for (size_t k = 0; k < st->ninputs; k++) {
			const struct step_input *in = &st->inputs[k];
			long from;
			size_t o;

			if (!in->role)
				abort();
			if (in->ref) {
				struct catalog_ref ref;
				struct err re;

				/* What run would refuse is refused here. */
				if (in->from_step || catalog_ref_parse(in->ref, &ref, &re))
					abort();
				catalog_ref_clear(&ref);
				continue;
			}
			if (!in->from_step || !in->from_output ||
			    (from = recipe_find_step(r, in->from_step)) < 0 ||
			    (size_t)from == i)
				abort();
			for (o = 0; o < r->steps[from].noutputs; o++)
				if (!strcmp(r->steps[from].outputs[o].name, in->from_output))
					break;
			if (o == r->steps[from].noutputs)
				abort();
		}
		/* $ANNEAL_INPUT_<ROLE> and $ANNEAL_OUTPUT_<NAME>: one each. */
		for (size_t k = 0; k < st->ninputs; k++)
			for (size_t j = 0; j < k; j++)
				if (!strcasecmp(st->inputs[j].role, st->inputs[k].role))
					abort();
		for (size_t k = 0; k < st->noutputs; k++)
			for (size_t j = 0; j < k; j++)
				if (!strcasecmp(st->outputs[j].name, st->outputs[k].name))
					abort();
		for (size_t k = 0; k < st->nafter; k++)
			if (recipe_find_step(r, st->after[k]) < 0)
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strv sets = STRV_INIT;
	struct recipe *r = NULL;
	const char *p = (const char *)data, *end = p + size;
	struct err e;
	int rc;

	/* "//set KEY=VALUE" lines: --set overrides (at most 8). */
	while (p < end && sets.n < 8) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;

		if (eol - p > 6 && !memcmp(p, "//set ", 6)) {
			char *kv = xstrndup(p + 6, (size_t)(eol - p - 6));
			strv_push(&sets, kv);
			free(kv);
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	err_clear(&e);
	rc = recipe_parse(PATH, (const char *)data, size, &sets, &r, &e);
	if (rc) {
		if (rc != ERR_INVALID || r || e.code != ERR_INVALID ||
		    strncmp(e.msg, PATH ": ", strlen(PATH ": ")) || strchr(e.msg, '\n'))
			abort();
	} else {
		if (!r)
			abort();
		check_recipe(r, data, size);
	}
	recipe_free(r);
	strv_free(&sets);
	return 0;
}
