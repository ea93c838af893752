/* pipeline/subst.h — ${namespace.name} templates in argv and env values.
 *
 * Namespaces are params, inputs and outputs. "$${" is a literal "${".
 * A lookup callback resolves names, so the same code checks templates at
 * validation time (names must exist), resolves params at expansion time
 * (inputs/outputs kept verbatim) and resolves paths when a step starts. */
#ifndef ANNEAL_SUBST_H
#define ANNEAL_SUBST_H

#include <stddef.h>
struct buf;
struct err;

enum subst_result {
	SUBST_OK = 0,     /* value appended to out */
	SUBST_KEEP = 1,   /* leave "${ns.name}" in the output unchanged */
	SUBST_UNKNOWN = 2 /* no such name: an error (lookup may set a hint) */
};

/* Resolves ns ("params") and name ("lr"). On SUBST_UNKNOWN it may write a
 * "did you mean" candidate into hint (a buffer of hint_size bytes). */
typedef enum subst_result (*subst_lookup_fn)(void *ctx, const char *ns,
					     const char *name, struct buf *out,
					     char *hint, size_t hint_size);

/* Expands tmpl into out (appended). Errors (ERR_INVALID), without context
 * prefix: "unknown name '${params.lrr}' (did you mean 'lr'?)",
 * "unknown namespace 'parms' in '${parms.lr}' (did you mean 'params'?)",
 * "unterminated '${' at offset N", "empty name in '${params.}'". */
int subst_expand(const char *tmpl, subst_lookup_fn fn, void *ctx,
		 struct buf *out, struct err *err);

/* Like subst_expand, but out is itself a template for a later
 * subst_expand: "$${" stays "$${", a SUBST_KEEP reference stays as written,
 * and text the lookup appends (SUBST_OK) is escaped so that it comes out
 * literally later (a param value "a${b" becomes "a$${b"). This is what
 * expansion uses: params resolved now, inputs/outputs when the step starts.
 * One case cannot be written in the syntax and is an error: a literal '$'
 * right before a kept reference ("$" from a param, then ${inputs.x}). */
int subst_expand_template(const char *tmpl, subst_lookup_fn fn, void *ctx,
			  struct buf *out, struct err *err);

#endif
