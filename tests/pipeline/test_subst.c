/* tests/pipeline/test_subst.c — ${ns.name} templates: resolution, keeping,
 * escapes, errors, and templates that survive a second expansion. */
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
#include "pipeline/subst.h"

/* params: lr=0.1, tricky="a${b", dollar="$"; inputs: data (kept, or
 * resolved to /in/data when ctx is non-NULL); outputs: model (kept). */
static enum subst_result lookup(void *ctx, const char *ns, const char *name,
				struct buf *out, char *hint, size_t hint_size)
{
	if (!strcmp(ns, "params")) {
		if (!strcmp(name, "lr")) {
			buf_adds(out, "0.1");
			return SUBST_OK;
		}
		if (!strcmp(name, "tricky")) {
			buf_adds(out, "a${b");
			return SUBST_OK;
		}
		if (!strcmp(name, "dollar")) {
			buf_adds(out, "$");
			return SUBST_OK;
		}
		if (!strcmp(name, "lrr") || !strcmp(name, "l"))
			snprintf(hint, hint_size, "lr");
		return SUBST_UNKNOWN;
	}
	if (!strcmp(ns, "inputs") && !strcmp(name, "data")) {
		if (ctx) {
			buf_adds(out, "/in/data");
			return SUBST_OK;
		}
		return SUBST_KEEP;
	}
	if (!strcmp(ns, "outputs") && !strcmp(name, "model"))
		return SUBST_KEEP;
	return SUBST_UNKNOWN;
}

static char *expand(const char *tmpl, int template, void *ctx)
{
	struct buf b = BUF_INIT;
	struct err err;
	int rc;

	err_clear(&err);
	rc = template ? subst_expand_template(tmpl, lookup, ctx, &b, &err)
		      : subst_expand(tmpl, lookup, ctx, &b, &err);
	if (rc) {
		print_error("unexpected error for '%s': %s\n", tmpl, err.msg);
		fail();
	}
	return buf_detach(&b);
}

static const char *expand_err(const char *tmpl)
{
	static struct err err;
	struct buf b = BUF_INIT;

	err_clear(&err);
	assert_int_equal(subst_expand(tmpl, lookup, NULL, &b, &err), ERR_INVALID);
	buf_free(&b);
	return err.msg;
}

#define EXPECT(tmpl, template, ctx, want) do { \
		char *got_ = expand(tmpl, template, ctx); \
		assert_string_equal(got_, want); \
		free(got_); \
	} while (0)

static void test_subst__leaves_plain_text_alone(void **state)
{
	EXPECT("", 0, NULL, "");
	EXPECT("plain --flag=1", 0, NULL, "plain --flag=1");
	EXPECT("cost $5 and $$ and $x{}", 0, NULL, "cost $5 and $$ and $x{}");
}

static void test_subst__resolves_params(void **state)
{
	EXPECT("${params.lr}", 0, NULL, "0.1");
	EXPECT("--lr=${params.lr}x${params.lr}", 0, NULL, "--lr=0.1x0.1");
	EXPECT("${params.tricky}", 0, NULL, "a${b");
}

static void test_subst__keeps_inputs_and_outputs_verbatim(void **state)
{
	EXPECT("--in=${inputs.data} --out=${outputs.model}", 0, NULL,
	       "--in=${inputs.data} --out=${outputs.model}");
	EXPECT("--in=${inputs.data}", 0, (void *)1, "--in=/in/data");
}

static void test_subst__unescapes_dollar_dollar_brace(void **state)
{
	EXPECT("$${params.lr}", 0, NULL, "${params.lr}");
	EXPECT("a$$${params.lr}", 0, NULL, "a$${params.lr}");
	EXPECT("$$${params.lr}", 0, NULL, "$${params.lr}");
}

static void test_subst__reports_unknown_names(void **state)
{
	assert_string_equal(expand_err("--lr=${params.lrr}"),
			    "unknown name '${params.lrr}' (did you mean 'lr'?)");
	assert_string_equal(expand_err("${params.zzz}"), "unknown name '${params.zzz}'");
	assert_string_equal(expand_err("${inputs.dta}"), "unknown name '${inputs.dta}'");
	assert_string_equal(expand_err("${parms.lr}"),
			    "unknown namespace 'parms' in '${parms.lr}' (did you mean 'params'?)");
	assert_string_equal(expand_err("${env.HOME}"),
			    "unknown namespace 'env' in '${env.HOME}' (use params, inputs or outputs)");
	assert_string_equal(expand_err("x ${}"),
			    "unknown namespace '' in '${}' (use params, inputs or outputs)");
}

static void test_subst__reports_malformed_references(void **state)
{
	assert_string_equal(expand_err("abc ${params.lr"), "unterminated '${' at offset 4");
	assert_string_equal(expand_err("${params.}"), "empty name in '${params.}'");
	assert_string_equal(expand_err("${params}"), "empty name in '${params}'");
	/* User text in messages never carries a newline. */
	assert_string_equal(expand_err("${params.a\nb}"), "unknown name '${params.a\\nb}'");
}

static void test_subst__appends_to_out(void **state)
{
	struct buf b = BUF_INIT;
	struct err err;

	buf_adds(&b, "pre:");
	assert_int_equal(subst_expand("${params.lr}", lookup, NULL, &b, &err), 0);
	assert_string_equal(buf_str(&b), "pre:0.1");
	buf_free(&b);
}

static void test_subst__template_survives_a_second_expansion(void **state)
{
	/* Template mode: params resolved, references and escapes kept. */
	EXPECT("--lr=${params.lr} ${inputs.data} $${x}", 1, NULL,
	       "--lr=0.1 ${inputs.data} $${x}");
	/* A value holding "${" is escaped so that it stays literal later. */
	EXPECT("${params.tricky}", 1, NULL, "a$${b");
	/* "$" from a value followed by "{" from the text must not join. */
	EXPECT("${params.dollar}{x}", 1, NULL, "$${x}");
	{
		char *t = expand("v=${params.tricky} in=${inputs.data} lit=$${y} ${params.dollar}{z}",
				 1, NULL);
		char *final = expand(t, 0, (void *)1);
		assert_string_equal(final, "v=a${b in=/in/data lit=${y} ${z}");
		free(t);
		free(final);
	}
}

static void test_subst__template_rejects_dollar_before_kept_reference(void **state)
{
	struct buf b = BUF_INIT;
	struct err err;

	err_clear(&err);
	assert_int_equal(subst_expand_template("${params.dollar}${inputs.data}", lookup,
					       NULL, &b, &err), ERR_INVALID);
	assert_string_equal(err.msg,
			    "a literal '$' right before '${inputs.data}' cannot be kept");
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_subst__leaves_plain_text_alone),
		cmocka_unit_test(test_subst__resolves_params),
		cmocka_unit_test(test_subst__keeps_inputs_and_outputs_verbatim),
		cmocka_unit_test(test_subst__unescapes_dollar_dollar_brace),
		cmocka_unit_test(test_subst__reports_unknown_names),
		cmocka_unit_test(test_subst__reports_malformed_references),
		cmocka_unit_test(test_subst__appends_to_out),
		cmocka_unit_test(test_subst__template_survives_a_second_expansion),
		cmocka_unit_test(test_subst__template_rejects_dollar_before_kept_reference),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
