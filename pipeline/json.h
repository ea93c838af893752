/* pipeline/json.h — a read-only JSON tree, parsed with cJSON.
 *
 * The only module that includes cJSON.h: it converts cJSON's tree into
 * this one (ordered object members, duplicate keys kept so the validator
 * can reject them, integers told apart from other numbers) and cJSON types
 * never leave this file. Recipes may carry // and block comments; they are
 * blanked out (newlines kept) before parsing so that line and column of a
 * syntax error still point into the user's file. */
#ifndef ANNEAL_JSON_H
#define ANNEAL_JSON_H

#include <stddef.h>

struct buf;
struct err;

enum jtype { J_NULL, J_BOOL, J_NUMBER, J_STRING, J_ARRAY, J_OBJECT };

struct jnode {
	enum jtype type;
	char *key;            /* member name when inside an object, else NULL */
	int boolean;          /* J_BOOL */
	double num;           /* J_NUMBER */
	int is_int;           /* J_NUMBER written without '.', 'e' or 'E' and fits long long */
	long long inum;       /* valid when is_int */
	char *str;            /* J_STRING (UTF-8, NUL-free: strings with \u0000 are rejected) */
	struct jnode *kids;   /* J_ARRAY items / J_OBJECT members, in order */
	size_t nkids;
};

enum json_flags { JSON_COMMENTS = 1 };

/* Parses text. On a syntax error: ERR_INVALID with "line L, column C: what"
 * (1-based). *out is the caller's (json_free). */
int json_parse(const char *text, size_t len, int flags, struct jnode **out,
	       struct err *err);
void json_free(struct jnode *n);   /* NULL-safe; frees a root */

/* First member named key of an object, or NULL. */
const struct jnode *json_get(const struct jnode *obj, const char *key);

/* "string", "number", "object", ... for messages. */
const char *json_type_name(enum jtype t);

/* Appends n as compact JSON (keys in order; integers without exponent;
 * other numbers with %.17g). */
void json_write(struct buf *b, const struct jnode *n);

/* Deep copy; caller frees with json_free. */
struct jnode *json_clone(const struct jnode *n);

#endif
