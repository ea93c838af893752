/* pipeline/subst.c — see subst.h.
 *
 * One scanner serves both modes. Literal text (template text, "$${"
 * unescaped, values the lookup resolves) collects in a pending buffer that
 * is flushed before each kept reference and at the end: as is for
 * subst_expand, with every "${" re-escaped for subst_expand_template. */
#include "pipeline/subst.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"
#include "pipeline/json.h"

static const char *const namespaces[] = { "params", "inputs", "outputs" };
#define NNAMESPACES (sizeof(namespaces) / sizeof(*namespaces))

static void flush(struct buf *out, struct buf *lit, int template)
{
	const char *s = buf_str(lit);

	if (!template) {
		buf_add(out, s, lit->len);
	} else {
		for (size_t i = 0; i < lit->len; i++) {
			if (s[i] == '$' && s[i + 1] == '{')
				buf_addc(out, '$');
			buf_addc(out, s[i]);
		}
	}
	buf_reset(lit);
}

static int is_namespace(const char *ns)
{
	for (size_t i = 0; i < NNAMESPACES; i++)
		if (!strcmp(ns, namespaces[i]))
			return 1;
	return 0;
}

static int expand(const char *tmpl, subst_lookup_fn fn, void *ctx,
		  struct buf *out, struct err *err, int template)
{
	struct buf lit = BUF_INIT, val = BUF_INIT;
	char *ref = NULL, *ns = NULL;
	char show[JSON_SHOW_MAX], hint[128];
	const char *p = tmpl;
	int rc = 0;

	while (*p) {
		const char *close, *dot, *name;
		enum subst_result r;

		if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
			buf_add(&lit, "${", 2);
			p += 3;
			continue;
		}
		if (p[0] != '$' || p[1] != '{') {
			buf_addc(&lit, *p++);
			continue;
		}
		close = strchr(p + 2, '}');
		if (!close) {
			rc = err_set(err, ERR_INVALID, "unterminated '${' at offset %zu",
				     (size_t)(p - tmpl));
			goto done;
		}
		free(ref);
		free(ns);
		ns = NULL;
		ref = xstrndup(p, (size_t)(close - p + 1));
		json_show(ref, show, sizeof(show));
		dot = memchr(p + 2, '.', (size_t)(close - (p + 2)));
		ns = xstrndup(p + 2, (size_t)((dot ? dot : close) - (p + 2)));
		if (!is_namespace(ns)) {
			const char *dym = did_you_mean(ns, namespaces, NNAMESPACES);
			char nshow[JSON_SHOW_MAX];

			json_show(ns, nshow, sizeof(nshow));
			if (dym)
				rc = err_set(err, ERR_INVALID,
					     "unknown namespace '%s' in '%s' (did you mean '%s'?)",
					     nshow, show, dym);
			else
				rc = err_set(err, ERR_INVALID,
					     "unknown namespace '%s' in '%s' (use params, inputs or outputs)",
					     nshow, show);
			goto done;
		}
		name = dot ? dot + 1 : close;
		if (name == close) {
			rc = err_set(err, ERR_INVALID, "empty name in '%s'", show);
			goto done;
		}
		/* The lookup gets "name" NUL-terminated: cut ref's copy. */
		ref[close - p] = '\0';
		buf_reset(&val);
		hint[0] = '\0';
		r = fn(ctx, ns, ref + (name - p), &val, hint, sizeof(hint));
		ref[close - p] = '}';
		if (r == SUBST_OK) {
			buf_add(&lit, buf_str(&val), val.len);
		} else if (r == SUBST_KEEP) {
			if (template && lit.len && buf_str(&lit)[lit.len - 1] == '$') {
				rc = err_set(err, ERR_INVALID,
					     "a literal '$' right before '%s' cannot be kept", show);
				goto done;
			}
			flush(out, &lit, template);
			buf_adds(out, ref);
		} else {
			char hshow[JSON_SHOW_MAX];

			if (hint[0])
				rc = err_set(err, ERR_INVALID,
					     "unknown name '%s' (did you mean '%s'?)", show,
					     json_show(hint, hshow, sizeof(hshow)));
			else
				rc = err_set(err, ERR_INVALID, "unknown name '%s'", show);
			goto done;
		}
		p = close + 1;
	}
	flush(out, &lit, template);
done:
	buf_free(&lit);
	buf_free(&val);
	free(ref);
	free(ns);
	return rc;
}

int subst_expand(const char *tmpl, subst_lookup_fn fn, void *ctx,
		 struct buf *out, struct err *err)
{
	return expand(tmpl, fn, ctx, out, err, 0);
}

int subst_expand_template(const char *tmpl, subst_lookup_fn fn, void *ctx,
			  struct buf *out, struct err *err)
{
	return expand(tmpl, fn, ctx, out, err, 1);
}
