/* tests/fuzz/fuzz_subst.c — libFuzzer target for ${ns.name} substitution
 * (pipeline/subst.c).
 *
 * Input: NUL-separated segments. The first is the template; each other
 * one of the form "ns.name=value" defines a name (later ones win), on top
 * of params.lr=0.1, inputs.data=/in/data and outputs.model=/out/model.
 *
 * Invariant (differential): expansion happens in two phases in anneal,
 * params when the recipe is expanded (subst_expand_template, inputs and
 * outputs kept) and paths when the step starts (subst_expand). For every
 * template, the two phases must give exactly what one subst_expand with
 * every name known gives, and fail exactly when it fails; the one
 * documented exception is a literal '$' right before a kept reference,
 * which phase one refuses. Phase two must never see a params reference
 * (they were all resolved, or escaped into literal text). Every refusal
 * carries a one-line message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "pipeline/subst.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DEFS 16

struct def {
	const char *ns, *name, *value;
};

/* Which references a lookup resolves: bit per namespace; others are kept
 * (when known) or, with strict, aborted on (phase two and params). */
enum { NS_PARAMS = 1, NS_INPUTS = 2, NS_OUTPUTS = 4 };

struct dict {
	struct def d[MAX_DEFS + 3];
	size_t n;
	unsigned resolve;
	int strict;       /* phase two: a params reference is a bug */
};

static unsigned ns_bit(const char *ns)
{
	if (!strcmp(ns, "params"))
		return NS_PARAMS;
	if (!strcmp(ns, "inputs"))
		return NS_INPUTS;
	if (!strcmp(ns, "outputs"))
		return NS_OUTPUTS;
	return 0;
}

static enum subst_result lookup(void *ctx, const char *ns, const char *name,
				struct buf *out, char *hint, size_t hint_size)
{
	const struct dict *d = ctx;
	unsigned bit = ns_bit(ns);

	/* subst.c only asks about the three namespaces, with a name. */
	if (!bit || !*name)
		abort();
	if (d->strict && bit == NS_PARAMS)
		abort();
	for (size_t i = d->n; i-- > 0;) {
		if (strcmp(d->d[i].ns, ns) || strcmp(d->d[i].name, name))
			continue;
		if (!(d->resolve & bit))
			return SUBST_KEEP;
		buf_adds(out, d->d[i].value);
		return SUBST_OK;
	}
	for (size_t i = 0; i < d->n; i++)
		if (!strcmp(d->d[i].ns, ns) && hint_size > 1) {
			strncpy(hint, d->d[i].name, hint_size - 1);
			hint[hint_size - 1] = '\0';
			break;
		}
	return SUBST_UNKNOWN;
}

static void check_err(int rc, const struct err *e)
{
	if (rc != ERR_INVALID || !e->msg[0] || strchr(e->msg, '\n'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	char *segs[MAX_DEFS + 1], *p, *end;
	size_t nsegs = 0;
	struct dict dict = { .n = 0 };
	struct buf full = BUF_INIT, tmpl = BUF_INIT, two = BUF_INIT;
	struct err e1, e2, e3;
	int rc1, rc2, rc3;

	memcpy(text, data, size);
	text[size] = '\0';
	end = text + size;
	for (p = text; nsegs <= MAX_DEFS; ) {
		segs[nsegs++] = p;
		p += strlen(p);
		if (p >= end)
			break;
		p++;
	}
	dict.d[dict.n++] = (struct def){ "params", "lr", "0.1" };
	dict.d[dict.n++] = (struct def){ "inputs", "data", "/in/data" };
	dict.d[dict.n++] = (struct def){ "outputs", "model", "/out/model" };
	for (size_t i = 1; i < nsegs; i++) {
		char *dot = strchr(segs[i], '.'), *eq;

		if (!dot || !(eq = strchr(dot + 1, '=')) || eq == dot + 1)
			continue;
		*dot = *eq = '\0';
		if (!ns_bit(segs[i]))
			continue;
		dict.d[dict.n++] = (struct def){ segs[i], dot + 1, eq + 1 };
	}

	err_clear(&e1);
	err_clear(&e2);
	err_clear(&e3);
	/* One phase, everything known. */
	dict.resolve = NS_PARAMS | NS_INPUTS | NS_OUTPUTS;
	rc1 = subst_expand(segs[0], lookup, &dict, &full, &e1);
	if (rc1)
		check_err(rc1, &e1);
	/* Phase one: params now, inputs and outputs kept. */
	dict.resolve = NS_PARAMS;
	rc2 = subst_expand_template(segs[0], lookup, &dict, &tmpl, &e2);
	if (rc2) {
		check_err(rc2, &e2);
		/* Refused only where one phase refuses, or for the '$' case. */
		if (!rc1 && !strstr(e2.msg, "cannot be kept"))
			abort();
		goto done;
	}
	if (rc1)
		abort();   /* phase one let through what must be refused */
	/* Phase two: the paths; a params reference here is a bug. */
	dict.resolve = NS_INPUTS | NS_OUTPUTS;
	dict.strict = 1;
	rc3 = subst_expand(buf_str(&tmpl), lookup, &dict, &two, &e3);
	if (rc3 || two.len != full.len || memcmp(buf_str(&two), buf_str(&full), full.len))
		abort();
done:
	buf_free(&full);
	buf_free(&tmpl);
	buf_free(&two);
	free(text);
	return 0;
}
