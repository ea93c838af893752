/* pipeline/json.c — see json.h.
 *
 * Parsing happens in three passes over the user's bytes: a UTF-8 check,
 * comment blanking (in a copy, byte for byte, so offsets still match the
 * file), and a strict syntax scan that knows the exact offset and reason of
 * the first error. cJSON then builds the tree; its own error position is
 * only a fallback, because it points one byte past some errors and accepts
 * things JSON does not (leading zeros, raw newlines in strings, \u0000).
 * The scan also records each number's text-level facts (written as an
 * integer or not), which cJSON loses; numbers come in document order in
 * both, so the n-th number of the scan is the n-th number of the tree. */
#include "pipeline/json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"

/* ---- UTF-8 and positions ---- */

int json_utf8_check(const char *str, size_t len, size_t *bad)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned lo = 0x80, hi = 0xBF;

		if (c == 0)
			goto invalid;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 1;
		else if (c >= 0xE0 && c <= 0xEF)
			n = 2;
		else if (c >= 0xF0 && c <= 0xF4)
			n = 3;
		else
			goto invalid;
		/* Overlong forms, UTF-16 surrogates and code points past
		 * U+10FFFF show in the second byte's range. */
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
		else if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
		if (i + n >= len)
			goto invalid;
		if (s[i + 1] < lo || s[i + 1] > hi)
			goto invalid;
		for (size_t k = 2; k <= n; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xBF)
				goto invalid;
		i += n + 1;
	}
	return 0;
invalid:
	if (bad)
		*bad = i;
	return ERR_INVALID;
}

/* 1-based line and column (in characters) of byte offset off. */
static void position(const char *text, size_t off, size_t *line, size_t *col)
{
	size_t l = 1, c = 1;

	for (size_t i = 0; i < off; i++) {
		unsigned char ch = (unsigned char)text[i];
		if (ch == '\n') {
			l++;
			c = 1;
		} else if ((ch & 0xC0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*col = c;
}

static int fail_at(struct err *err, const char *text, size_t off,
		   const char *what)
{
	size_t line, col;

	position(text, off, &line, &col);
	return err_set(err, ERR_INVALID, "line %zu, column %zu: %s", line, col,
		       what);
}

/* ---- comments ---- */

/* Blanks // and block comments in t (len bytes) to spaces, keeping
 * newlines; strings are left alone. Returns 0, or ERR_INVALID with *at at
 * the start of an unterminated block comment. */
static int blank_comments(char *t, size_t len, size_t *at)
{
	size_t i = 0;

	while (i < len) {
		if (t[i] == '"') {
			for (i++; i < len && t[i] != '"'; i++)
				if (t[i] == '\\')
					i++;
			i++;
		} else if (t[i] == '/' && i + 1 < len && t[i + 1] == '/') {
			for (; i < len && t[i] != '\n'; i++)
				t[i] = ' ';
		} else if (t[i] == '/' && i + 1 < len && t[i + 1] == '*') {
			size_t start = i;
			t[i] = t[i + 1] = ' ';
			for (i += 2; ; i++) {
				if (i + 1 >= len) {
					*at = start;
					return ERR_INVALID;
				}
				if (t[i] == '*' && t[i + 1] == '/') {
					t[i] = t[i + 1] = ' ';
					i += 2;
					break;
				}
				if (t[i] != '\n')
					t[i] = ' ';
			}
		} else {
			i++;
		}
	}
	return 0;
}

/* ---- strict syntax scan ---- */

struct num {
	int is_int;
	long long inum;
	double num;
};

struct scan {
	const char *s;
	size_t len, i;
	struct num *nums;
	size_t nnums, capnums;
	size_t err_at;
	char what[256];
};

__attribute__((format(printf, 3, 4)))
static int sfail(struct scan *sc, size_t at, const char *fmt, ...)
{
	va_list ap;

	sc->err_at = at;
	va_start(ap, fmt);
	vsnprintf(sc->what, sizeof(sc->what), fmt, ap);
	va_end(ap);
	return -1;
}

static int is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* What is at offset at, for "found ..." (out >= 48 bytes). */
static const char *found(const struct scan *sc, size_t at, char *out,
			 size_t size)
{
	const unsigned char *s = (const unsigned char *)sc->s;
	size_t n = 1;

	if (at >= sc->len) {
		snprintf(out, size, "end of input");
	} else if (s[at] == '\'') {
		snprintf(out, size, "\"'\" (JSON strings use double quotes)");
	} else if (s[at] < 0x20 || s[at] == 0x7f) {
		snprintf(out, size, "control character U+%04X", s[at]);
	} else if (is_alpha(s[at])) {
		while (at + n < sc->len && n < 20 &&
		       (is_alpha(s[at + n]) || is_digit(s[at + n]) || s[at + n] == '_'))
			n++;
		snprintf(out, size, "'%.*s'", (int)n, sc->s + at);
	} else {
		while (at + n < sc->len && (s[at + n] & 0xC0) == 0x80)
			n++;
		snprintf(out, size, "'%.*s'", (int)n, sc->s + at);
	}
	return out;
}

static void skip_ws(struct scan *sc)
{
	while (sc->i < sc->len) {
		char c = sc->s[sc->i];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		sc->i++;
	}
}

static int hex4(const char *p, const char *end, unsigned *out)
{
	unsigned v = 0;

	if (end - p < 4)
		return -1;
	for (int k = 0; k < 4; k++) {
		char c = p[k];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static int scan_string(struct scan *sc)
{
	size_t start = sc->i;
	const char *end = sc->s + sc->len;

	for (sc->i++; ; ) {
		unsigned char c;
		unsigned cp, lo;

		if (sc->i >= sc->len)
			return sfail(sc, start, "unterminated string");
		c = (unsigned char)sc->s[sc->i];
		if (c == '"') {
			sc->i++;
			return 0;
		}
		if (c == '\n')
			return sfail(sc, start, "unterminated string (a string cannot span lines)");
		if (c < 0x20)
			return sfail(sc, sc->i, "control character U+%04X in a string (write it as an escape)", c);
		if (c != '\\') {
			sc->i++;
			continue;
		}
		if (sc->i + 1 >= sc->len)
			return sfail(sc, start, "unterminated string");
		c = (unsigned char)sc->s[sc->i + 1];
		if (strchr("\"\\/bfnrt", c) && c) {
			sc->i += 2;
			continue;
		}
		if (c != 'u') {
			if (c > 0x20 && c < 0x7f)
				return sfail(sc, sc->i, "invalid escape '\\%c'", c);
			return sfail(sc, sc->i, "invalid escape after '\\'");
		}
		if (hex4(sc->s + sc->i + 2, end, &cp))
			return sfail(sc, sc->i, "invalid \\u escape (expected 4 hex digits)");
		if (cp == 0)
			return sfail(sc, sc->i, "\\u0000 is not allowed in strings");
		if (cp >= 0xDC00 && cp <= 0xDFFF)
			return sfail(sc, sc->i, "unpaired surrogate \\u%04X", cp);
		if (cp >= 0xD800 && cp <= 0xDBFF) {
			if (sc->i + 7 >= sc->len || sc->s[sc->i + 6] != '\\' ||
			    sc->s[sc->i + 7] != 'u' ||
			    hex4(sc->s + sc->i + 8, end, &lo) ||
			    lo < 0xDC00 || lo > 0xDFFF)
				return sfail(sc, sc->i, "unpaired surrogate \\u%04X", cp);
			sc->i += 12;
			continue;
		}
		sc->i += 6;
	}
}

static int scan_number(struct scan *sc)
{
	const char *s = sc->s;
	size_t start = sc->i, i = sc->i, tlen = 0;
	int integral = 1;
	struct num n = {0};

	if (i < sc->len && s[i] == '-')
		i++;
	if (i < sc->len && s[i] == '0') {
		i++;
	} else if (i < sc->len && s[i] >= '1' && s[i] <= '9') {
		while (i < sc->len && is_digit(s[i]))
			i++;
	} else {
		goto invalid;
	}
	if (i < sc->len && s[i] == '.') {
		integral = 0;
		i++;
		if (i >= sc->len || !is_digit(s[i]))
			goto invalid;
		while (i < sc->len && is_digit(s[i]))
			i++;
	}
	if (i < sc->len && (s[i] == 'e' || s[i] == 'E')) {
		integral = 0;
		i++;
		if (i < sc->len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= sc->len || !is_digit(s[i]))
			goto invalid;
		while (i < sc->len && is_digit(s[i]))
			i++;
	}
	if (i < sc->len && (is_digit(s[i]) || is_alpha(s[i]) || s[i] == '.' ||
			    s[i] == '+' || s[i] == '-'))
		goto invalid;
	/* s is NUL-terminated at len (json_parse's copy): strtod stops there. */
	errno = 0;
	n.num = strtod(s + start, NULL);
	if (isinf(n.num))
		return sfail(sc, start, "number out of range '%.*s'",
			     (int)(i - start > 40 ? 40 : i - start), s + start);
	if (integral) {
		errno = 0;
		n.inum = strtoll(s + start, NULL, 10);
		n.is_int = errno != ERANGE;
		if (!n.is_int)
			n.inum = 0;
	}
	if (sc->nnums == sc->capnums) {
		sc->capnums = sc->capnums ? sc->capnums * 2 : 16;
		sc->nums = xrealloc(sc->nums, sc->capnums * sizeof(*sc->nums));
	}
	sc->nums[sc->nnums++] = n;
	sc->i = i;
	return 0;
invalid:
	while (start + tlen < sc->len && tlen < 40 &&
	       (is_digit(s[start + tlen]) || is_alpha(s[start + tlen]) ||
		strchr(".+-", s[start + tlen])))
		tlen++;
	return sfail(sc, start, "invalid number '%.*s'", (int)tlen, s + start);
}

static int scan_value(struct scan *sc, int depth);

static int scan_container(struct scan *sc, int depth, char close)
{
	char f[48];
	size_t comma;

	if (depth >= JSON_MAX_DEPTH)
		return sfail(sc, sc->i, "nesting deeper than %d levels", JSON_MAX_DEPTH);
	sc->i++;
	skip_ws(sc);
	if (sc->i < sc->len && sc->s[sc->i] == close) {
		sc->i++;
		return 0;
	}
	for (;;) {
		skip_ws(sc);
		if (close == '}') {
			if (sc->i >= sc->len || sc->s[sc->i] != '"')
				return sfail(sc, sc->i, "expected a string key, found %s",
					     found(sc, sc->i, f, sizeof(f)));
			if (scan_string(sc))
				return -1;
			skip_ws(sc);
			if (sc->i >= sc->len || sc->s[sc->i] != ':')
				return sfail(sc, sc->i, "expected ':' after the key, found %s",
					     found(sc, sc->i, f, sizeof(f)));
			sc->i++;
		}
		if (scan_value(sc, depth + 1))
			return -1;
		skip_ws(sc);
		if (sc->i < sc->len && sc->s[sc->i] == close) {
			sc->i++;
			return 0;
		}
		if (sc->i >= sc->len || sc->s[sc->i] != ',')
			return sfail(sc, sc->i, "expected ',' or '%c', found %s", close,
				     found(sc, sc->i, f, sizeof(f)));
		comma = sc->i++;
		skip_ws(sc);
		if (sc->i < sc->len && sc->s[sc->i] == close)
			return sfail(sc, comma, "trailing comma before '%c'", close);
	}
}

static int scan_value(struct scan *sc, int depth)
{
	char f[48];
	char c;

	skip_ws(sc);
	if (sc->i >= sc->len)
		return sfail(sc, sc->i, "expected a value, found end of input");
	c = sc->s[sc->i];
	if (c == '{')
		return scan_container(sc, depth, '}');
	if (c == '[')
		return scan_container(sc, depth, ']');
	if (c == '"')
		return scan_string(sc);
	if (c == '-' || is_digit(c))
		return scan_number(sc);
	if (is_alpha(c)) {
		static const char *const words[] = { "true", "false", "null" };
		size_t n = 0;
		while (sc->i + n < sc->len &&
		       (is_alpha(sc->s[sc->i + n]) || is_digit(sc->s[sc->i + n]) ||
			sc->s[sc->i + n] == '_'))
			n++;
		for (size_t k = 0; k < 3; k++)
			if (n == strlen(words[k]) && !memcmp(sc->s + sc->i, words[k], n)) {
				sc->i += n;
				return 0;
			}
	}
	return sfail(sc, sc->i, "expected a value, found %s",
		     found(sc, sc->i, f, sizeof(f)));
}

static int scan_document(struct scan *sc)
{
	char f[48];

	if (scan_value(sc, 0))
		return -1;
	skip_ws(sc);
	if (sc->i < sc->len)
		return sfail(sc, sc->i, "unexpected %s after the end of the JSON value",
			     found(sc, sc->i, f, sizeof(f)));
	return 0;
}

/* ---- tree ---- */

static void jnode_clear(struct jnode *n)
{
	free(n->key);
	free(n->str);
	for (size_t i = 0; i < n->nkids; i++)
		jnode_clear(&n->kids[i]);
	free(n->kids);
	memset(n, 0, sizeof(*n));
}

void json_free(struct jnode *n)
{
	if (!n)
		return;
	jnode_clear(n);
	free(n);
}

/* Fills n from c; numbers come from sc->nums in order. */
static int convert(const cJSON *c, struct jnode *n, const struct scan *sc,
		   size_t *ni)
{
	memset(n, 0, sizeof(*n));
	if (cJSON_IsNull(c)) {
		n->type = J_NULL;
	} else if (cJSON_IsBool(c)) {
		n->type = J_BOOL;
		n->boolean = cJSON_IsTrue(c);
	} else if (cJSON_IsNumber(c)) {
		n->type = J_NUMBER;
		if (*ni >= sc->nnums)
			return -1;
		n->num = sc->nums[*ni].num;
		n->is_int = sc->nums[*ni].is_int;
		n->inum = sc->nums[*ni].inum;
		(*ni)++;
	} else if (cJSON_IsString(c)) {
		n->type = J_STRING;
		n->str = xstrdup(c->valuestring);
	} else if (cJSON_IsArray(c) || cJSON_IsObject(c)) {
		const cJSON *k;
		size_t i = 0;

		n->type = cJSON_IsArray(c) ? J_ARRAY : J_OBJECT;
		for (k = c->child; k; k = k->next)
			n->nkids++;
		n->kids = xcalloc(n->nkids, sizeof(*n->kids));
		for (k = c->child; k; k = k->next, i++) {
			if (convert(k, &n->kids[i], sc, ni))
				return -1;
			if (n->type == J_OBJECT)
				n->kids[i].key = xstrdup(k->string ? k->string : "");
		}
	} else {
		return -1;
	}
	return 0;
}

int json_parse(const char *text, size_t len, int flags, struct jnode **out,
	       struct err *err)
{
	struct scan sc = {0};
	struct jnode *root = NULL;
	cJSON *cj = NULL;
	const char *end = NULL;
	char *copy = NULL;
	size_t at, ni = 0;
	int rc = 0;

	*out = NULL;
	if (json_utf8_check(text, len, &at)) {
		char what[64];
		if (text[at])
			snprintf(what, sizeof(what), "invalid UTF-8 (byte 0x%02x)",
				 (unsigned char)text[at]);
		else
			snprintf(what, sizeof(what), "NUL byte");
		rc = fail_at(err, text, at, what);
		goto done;
	}
	copy = xstrndup(text, len);
	if ((flags & JSON_COMMENTS) && blank_comments(copy, len, &at)) {
		rc = fail_at(err, text, at, "unterminated comment");
		goto done;
	}
	sc.s = copy;
	sc.len = len;
	if (scan_document(&sc)) {
		rc = fail_at(err, text, sc.err_at, sc.what);
		goto done;
	}
	/* len + 1: cJSON sees the terminating NUL as part of its buffer. */
	cj = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
	if (!cj) {
		rc = fail_at(err, text, end ? (size_t)(end - copy) : 0, "invalid JSON");
		goto done;
	}
	root = xcalloc(1, sizeof(*root));
	if (convert(cj, root, &sc, &ni) || ni != sc.nnums) {
		rc = err_set(err, ERR_INVALID, "invalid JSON (numbers out of step)");
		goto done;
	}
	*out = root;
	root = NULL;
done:
	json_free(root);
	cJSON_Delete(cj);
	free(sc.nums);
	free(copy);
	return rc;
}

const struct jnode *json_get(const struct jnode *obj, const char *key)
{
	if (!obj || obj->type != J_OBJECT)
		return NULL;
	for (size_t i = 0; i < obj->nkids; i++)
		if (obj->kids[i].key && !strcmp(obj->kids[i].key, key))
			return &obj->kids[i];
	return NULL;
}

const char *json_type_name(enum jtype t)
{
	switch (t) {
	case J_NULL: return "null";
	case J_BOOL: return "boolean";
	case J_NUMBER: return "number";
	case J_STRING: return "string";
	case J_ARRAY: return "array";
	case J_OBJECT: return "object";
	}
	return "?";
}

void json_format_number(const struct jnode *n, char *out, size_t size)
{
	if (n->is_int) {
		snprintf(out, size, "%lld", n->inum);
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(out, size, "%.*g", prec, n->num);
		if (prec == 17 || strtod(out, NULL) == n->num)
			return;
	}
}

void json_write(struct buf *b, const struct jnode *n)
{
	char num[64];

	switch (n->type) {
	case J_NULL:
		buf_adds(b, "null");
		break;
	case J_BOOL:
		buf_adds(b, n->boolean ? "true" : "false");
		break;
	case J_NUMBER:
		json_format_number(n, num, sizeof(num));
		buf_adds(b, num);
		break;
	case J_STRING:
		buf_add_json_str(b, n->str);
		break;
	case J_ARRAY:
	case J_OBJECT:
		buf_addc(b, n->type == J_ARRAY ? '[' : '{');
		for (size_t i = 0; i < n->nkids; i++) {
			if (i)
				buf_addc(b, ',');
			if (n->type == J_OBJECT) {
				buf_add_json_str(b, n->kids[i].key ? n->kids[i].key : "");
				buf_addc(b, ':');
			}
			json_write(b, &n->kids[i]);
		}
		buf_addc(b, n->type == J_ARRAY ? ']' : '}');
		break;
	}
}

static void clone_into(struct jnode *d, const struct jnode *s)
{
	*d = *s;
	d->key = s->key ? xstrdup(s->key) : NULL;
	d->str = s->str ? xstrdup(s->str) : NULL;
	d->kids = NULL;
	if (s->nkids) {
		d->kids = xcalloc(s->nkids, sizeof(*d->kids));
		for (size_t i = 0; i < s->nkids; i++)
			clone_into(&d->kids[i], &s->kids[i]);
	}
}

struct jnode *json_clone(const struct jnode *n)
{
	struct jnode *d;

	if (!n)
		return NULL;
	d = xmalloc(sizeof(*d));
	clone_into(d, n);
	return d;
}

void json_replace(struct jnode *dst, struct jnode *src)
{
	char *key = dst->key;

	dst->key = NULL;
	jnode_clear(dst);
	*dst = *src;
	free(dst->key);
	dst->key = key;
	free(src);
}

const char *json_show(const char *s, char *out, size_t size)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;

	if (size == 0)
		return out;
	for (; *p; p++) {
		char esc[8];
		size_t n;

		switch (*p) {
		case '\n': strcpy(esc, "\\n"); break;
		case '\r': strcpy(esc, "\\r"); break;
		case '\t': strcpy(esc, "\\t"); break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				snprintf(esc, sizeof(esc), "\\x%02x", *p);
			else {
				esc[0] = (char)*p;
				esc[1] = '\0';
			}
		}
		n = strlen(esc);
		/* Keep room for "..." and the NUL. */
		if (o + n + 4 > size) {
			/* Cutting inside a character: drop its first bytes too. */
			if ((*p & 0xC0) == 0x80) {
				while (o > 0 && ((unsigned char)out[o - 1] & 0xC0) == 0x80)
					o--;
				if (o > 0)
					o--;
			}
			if (o + 4 > size)
				o = size > 4 ? size - 4 : 0;
			snprintf(out + o, size - o, "...");
			return out;
		}
		memcpy(out + o, esc, n);
		o += n;
	}
	out[o] = '\0';
	return out;
}

const char *json_type_article(enum jtype t)
{
	switch (t) {
	case J_NULL: return "null";
	case J_BOOL: return "a boolean";
	case J_NUMBER: return "a number";
	case J_STRING: return "a string";
	case J_ARRAY: return "an array";
	case J_OBJECT: return "an object";
	}
	return "?";
}
