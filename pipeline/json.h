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

/* Parses text (strict JSON: RFC 8259 grammar, valid UTF-8, no NUL bytes, no
 * raw control characters or \u0000 in strings, finite numbers, nesting up
 * to JSON_MAX_DEPTH). On a syntax error: ERR_INVALID with
 * "line L, column C: what" (1-based; columns count characters, not bytes),
 * e.g. "line 3, column 9: expected ',' or '}', found ']'". *out is the
 * caller's (json_free). */
#define JSON_MAX_DEPTH 512
int json_parse(const char *text, size_t len, int flags, struct jnode **out,
	       struct err *err);
void json_free(struct jnode *n);   /* NULL-safe; frees a root */

/* First member named key of an object, or NULL. */
const struct jnode *json_get(const struct jnode *obj, const char *key);

/* "string", "number", "object", ... for messages. */
const char *json_type_name(enum jtype t);
/* The same with an article: "a string", "an object", "null". */
const char *json_type_article(enum jtype t);

/* Appends n as compact JSON (keys in order; integers without exponent;
 * other numbers as the shortest %.15g/%.16g/%.17g that reads back as the
 * same double, so 0.1 stays "0.1"). */
void json_write(struct buf *b, const struct jnode *n);

/* Deep copy; caller frees with json_free. */
struct jnode *json_clone(const struct jnode *n);

/* Replaces dst's value with src's, keeping dst->key; frees src. */
void json_replace(struct jnode *dst, struct jnode *src);

/* A number as json_write writes it, into out (size >= 32). */
void json_format_number(const struct jnode *n, char *out, size_t size);

/* s made fit for a one-line message: control characters escaped (\n, \t,
 * \xNN), cut on a character boundary with "..." when longer than size
 * allows. Returns out. */
const char *json_show(const char *s, char *out, size_t size);
#define JSON_SHOW_MAX 100

/* 0 if s[0..len) is valid UTF-8 without NUL bytes; else ERR_INVALID and
 * *bad (if non-NULL) gets the offset of the first bad byte. */
int json_utf8_check(const char *s, size_t len, size_t *bad);

#endif
