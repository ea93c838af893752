/* tests/pipeline/test_json.c — the JSON tree: types, integers, duplicate
 * keys, comments (and comment-like text in strings), strictness, and the
 * line/column of every kind of syntax error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "pipeline/json.h"

static struct jnode *parse_ok(const char *text, int flags)
{
	struct jnode *n = NULL;
	struct err err;

	err_clear(&err);
	if (json_parse(text, strlen(text), flags, &n, &err)) {
		print_error("unexpected error: %s\n", err.msg);
		fail();
	}
	assert_non_null(n);
	return n;
}

/* The error message for text (a static buffer). */
static const char *parse_err(const char *text, size_t len, int flags)
{
	static struct err err;
	struct jnode *n = (struct jnode *)1;

	err_clear(&err);
	assert_int_equal(json_parse(text, len, flags, &n, &err), ERR_INVALID);
	assert_null(n);
	assert_int_equal(err.code, ERR_INVALID);
	return err.msg;
}

#define ERR_OF(text) parse_err(text, strlen(text), JSON_COMMENTS)

static char *write_str(const struct jnode *n)
{
	struct buf b = BUF_INIT;
	json_write(&b, n);
	return buf_detach(&b);
}

static void test_json__parses_every_type(void **state)
{
	struct jnode *n = parse_ok(
		"{\"n\": null, \"t\": true, \"f\": false, \"i\": -42, \"x\": 2.5,"
		" \"s\": \"h\\u00e9\\n\", \"a\": [1, [2]], \"o\": {\"k\": \"v\"}}", 0);

	assert_int_equal(n->type, J_OBJECT);
	assert_int_equal(n->nkids, 8);
	assert_string_equal(n->kids[0].key, "n");
	assert_int_equal(n->kids[0].type, J_NULL);
	assert_int_equal(json_get(n, "t")->boolean, 1);
	assert_int_equal(json_get(n, "f")->type, J_BOOL);
	assert_int_equal(json_get(n, "f")->boolean, 0);
	assert_true(json_get(n, "i")->is_int);
	assert_int_equal(json_get(n, "i")->inum, -42);
	assert_false(json_get(n, "x")->is_int);
	assert_true(json_get(n, "x")->num == 2.5);
	assert_string_equal(json_get(n, "s")->str, "h\xc3\xa9\n");
	assert_int_equal(json_get(n, "a")->nkids, 2);
	assert_null(json_get(n, "a")->kids[0].key);
	assert_int_equal(json_get(n, "a")->kids[1].kids[0].inum, 2);
	assert_string_equal(json_get(json_get(n, "o"), "k")->str, "v");
	assert_null(json_get(n, "missing"));
	assert_null(json_get(json_get(n, "a"), "x"));
	json_free(n);
}

static void test_json__tells_integers_from_other_numbers(void **state)
{
	struct jnode *n = parse_ok(
		"[0, 9223372036854775807, 99999999999999999999, 1e3, 1.0, -0, 0.1]", 0);

	assert_true(n->kids[0].is_int);
	assert_true(n->kids[1].is_int);
	assert_true(n->kids[1].inum == 9223372036854775807LL);
	assert_false(n->kids[2].is_int);       /* does not fit long long */
	assert_true(n->kids[2].num == 1e20);
	assert_false(n->kids[3].is_int);       /* written with 'e' */
	assert_true(n->kids[3].num == 1000.0);
	assert_false(n->kids[4].is_int);       /* written with '.' */
	assert_true(n->kids[5].is_int);
	assert_true(n->kids[6].num == 0.1);
	json_free(n);
}

static void test_json__keeps_duplicate_keys_in_order(void **state)
{
	struct jnode *n = parse_ok("{\"a\": 1, \"b\": 2, \"a\": 3}", 0);

	assert_int_equal(n->nkids, 3);
	assert_string_equal(n->kids[0].key, "a");
	assert_string_equal(n->kids[1].key, "b");
	assert_string_equal(n->kids[2].key, "a");
	assert_int_equal(n->kids[2].inum, 3);
	assert_int_equal(json_get(n, "a")->inum, 1);   /* the first one */
	json_free(n);
}

static void test_json__blanks_comments_but_not_strings(void **state)
{
	struct jnode *n = parse_ok(
		"// leading comment\n"
		"{ /* block\n comment */ \"url\": \"http://x/*y*/z\", // trailing\n"
		"  \"c\": \"a // b /* c */\", \"q\": \"\\\"//\" /* after an escaped quote */,\n"
		"  \"star\": \"*/\" }\n/* final */", JSON_COMMENTS);

	assert_string_equal(json_get(n, "url")->str, "http://x/*y*/z");
	assert_string_equal(json_get(n, "c")->str, "a // b /* c */");
	assert_string_equal(json_get(n, "q")->str, "\"//");
	assert_string_equal(json_get(n, "star")->str, "*/");
	json_free(n);
}

static void test_json__rejects_comments_without_the_flag(void **state)
{
	assert_string_equal(parse_err("// x\n{}", 7, 0),
			    "line 1, column 1: expected a value, found '/'");
}

static void test_json__comments_keep_line_numbers(void **state)
{
	/* The error is on line 4, after a block comment spanning lines. */
	assert_string_equal(ERR_OF("{\n  /* one\n     two */\n  \"a\" 1\n}"),
			    "line 4, column 7: expected ':' after the key, found '1'");
	assert_string_equal(ERR_OF("{ // c\n\"a\": 1,\n}"),
			    "line 2, column 7: trailing comma before '}'");
}

static void test_json__reports_line_and_column(void **state)
{
	assert_string_equal(ERR_OF("{\"a\": [1, 2,]}"),
			    "line 1, column 12: trailing comma before ']'");
	assert_string_equal(ERR_OF("{\n  \"a\": 1\n  \"b\": 2\n}"),
			    "line 3, column 3: expected ',' or '}', found '\"'");
	assert_string_equal(ERR_OF("{\"a\": 1"),
			    "line 1, column 8: expected ',' or '}', found end of input");
	assert_string_equal(ERR_OF("{\"a\": tru}"),
			    "line 1, column 7: expected a value, found 'tru'");
	assert_string_equal(ERR_OF("[NaN]"),
			    "line 1, column 2: expected a value, found 'NaN'");
	assert_string_equal(ERR_OF("{'a': 1}"),
			    "line 1, column 2: expected a string key, found \"'\" (JSON strings use double quotes)");
	assert_string_equal(ERR_OF("{a: 1}"),
			    "line 1, column 2: expected a string key, found 'a'");
	assert_string_equal(ERR_OF("{}\n}"),
			    "line 2, column 1: unexpected '}' after the end of the JSON value");
	assert_string_equal(ERR_OF("  \n"),
			    "line 2, column 1: expected a value, found end of input");
	assert_string_equal(ERR_OF("[1,\r\n 2,\r\n ]"),
			    "line 2, column 3: trailing comma before ']'");
}

static void test_json__columns_count_characters(void **state)
{
	/* "é" is two bytes but one column. */
	assert_string_equal(ERR_OF("{\"\xc3\xa9\xc3\xa9\": x}"),
			    "line 1, column 8: expected a value, found 'x'");
}

static void test_json__rejects_bad_strings(void **state)
{
	assert_string_equal(ERR_OF("[\"abc"), "line 1, column 2: unterminated string");
	assert_string_equal(ERR_OF("{\n\"a\": \"x\n\"}"),
			    "line 2, column 6: unterminated string (a string cannot span lines)");
	assert_string_equal(ERR_OF("[\"a\\u0000b\"]"),
			    "line 1, column 4: \\u0000 is not allowed in strings");
	assert_string_equal(ERR_OF("[\"a\\qb\"]"),
			    "line 1, column 4: invalid escape '\\q'");
	assert_string_equal(ERR_OF("[\"\\u12\"]"),
			    "line 1, column 3: invalid \\u escape (expected 4 hex digits)");
	assert_string_equal(ERR_OF("[\"\\ud800x\"]"),
			    "line 1, column 3: unpaired surrogate \\uD800");
	assert_string_equal(ERR_OF("[\"\\udc00\"]"),
			    "line 1, column 3: unpaired surrogate \\uDC00");
	assert_string_equal(ERR_OF("[\"a\tb\"]"),
			    "line 1, column 4: control character U+0009 in a string (write it as an escape)");
}

static void test_json__decodes_surrogate_pairs(void **state)
{
	struct jnode *n = parse_ok("[\"\\ud83d\\ude00\"]", 0);

	assert_string_equal(n->kids[0].str, "\xf0\x9f\x98\x80");
	json_free(n);
}

static void test_json__rejects_bad_numbers(void **state)
{
	assert_string_equal(ERR_OF("[01]"), "line 1, column 2: invalid number '01'");
	assert_string_equal(ERR_OF("[1.]"), "line 1, column 2: invalid number '1.'");
	assert_string_equal(ERR_OF("[-]"), "line 1, column 2: invalid number '-'");
	assert_string_equal(ERR_OF("[1e]"), "line 1, column 2: invalid number '1e'");
	assert_string_equal(ERR_OF("[+1]"), "line 1, column 2: expected a value, found '+'");
	assert_string_equal(ERR_OF("[.5]"), "line 1, column 2: expected a value, found '.'");
	assert_string_equal(ERR_OF("{\"x\":\n  1e999}"),
			    "line 2, column 3: number out of range '1e999'");
	assert_string_equal(ERR_OF("[-1e400]"),
			    "line 1, column 2: number out of range '-1e400'");
}

static void test_json__rejects_invalid_utf8_and_nul(void **state)
{
	assert_string_equal(ERR_OF("{\n \"a\": \"caf\xe9\"}"),
			    "line 2, column 11: invalid UTF-8 (byte 0xe9)");
	/* Overlong encoding of '/', and a UTF-16 surrogate in UTF-8. */
	assert_string_equal(ERR_OF("[\"\xc0\xaf\"]"),
			    "line 1, column 3: invalid UTF-8 (byte 0xc0)");
	assert_string_equal(ERR_OF("[\"\xed\xa0\x80\"]"),
			    "line 1, column 3: invalid UTF-8 (byte 0xed)");
	/* Truncated sequence at the very end. */
	assert_string_equal(ERR_OF("[1] \xe2\x82"),
			    "line 1, column 5: invalid UTF-8 (byte 0xe2)");
	/* Invalid bytes inside a comment are still invalid. */
	assert_string_equal(ERR_OF("// \xff\n[]"),
			    "line 1, column 4: invalid UTF-8 (byte 0xff)");
	assert_string_equal(parse_err("[1,\0 2]", 7, 0), "line 1, column 4: NUL byte");
}

static void test_json__rejects_unterminated_comment(void **state)
{
	assert_string_equal(ERR_OF("{\"a\": 1, /* open\n\n}"),
			    "line 1, column 10: unterminated comment");
	assert_string_equal(ERR_OF("[1] /"), "line 1, column 5: unexpected '/' after the end of the JSON value");
}

static void test_json__limits_nesting(void **state)
{
	size_t n = JSON_MAX_DEPTH + 10;
	char *s = malloc(2 * n + 1);
	struct err err;
	struct jnode *j = NULL;

	memset(s, '[', n);
	memset(s + n, ']', n);
	s[2 * n] = '\0';
	err_clear(&err);
	assert_int_equal(json_parse(s, 2 * n, 0, &j, &err), ERR_INVALID);
	assert_string_equal(err.msg, "line 1, column 513: nesting deeper than 512 levels");
	/* Exactly at the limit is fine. */
	memset(s, '[', JSON_MAX_DEPTH);
	memset(s + JSON_MAX_DEPTH, ']', JSON_MAX_DEPTH);
	assert_int_equal(json_parse(s, 2 * JSON_MAX_DEPTH, 0, &j, &err), 0);
	json_free(j);
	free(s);
}

static void test_json__writes_compact_json(void **state)
{
	struct jnode *n = parse_ok(
		"{ \"b\" : [1, 2.5, 0.1, 1e20, -3, 3e-4, true, null],\n"
		"  \"a\": {\"q\\\"\": \"tab\\there\\u00e9\"}, \"e\": {}, \"z\": [] }", 0);
	char *s = write_str(n);

	assert_string_equal(s, "{\"b\":[1,2.5,0.1,1e+20,-3,0.0003,true,null],"
			    "\"a\":{\"q\\\"\":\"tab\\there\xc3\xa9\"},\"e\":{},\"z\":[]}");
	free(s);
	json_free(n);
}

static void test_json__clone_is_deep(void **state)
{
	struct jnode *n = parse_ok("{\"a\": [1, {\"b\": \"c\"}], \"d\": 0.5}", 0);
	struct jnode *c = json_clone(n);
	char *s1, *s2;

	free(n->kids[0].kids[1].kids[0].str);
	n->kids[0].kids[1].kids[0].str = strdup("changed");
	s1 = write_str(c);
	assert_string_equal(s1, "{\"a\":[1,{\"b\":\"c\"}],\"d\":0.5}");
	s2 = write_str(n);
	assert_string_equal(s2, "{\"a\":[1,{\"b\":\"changed\"}],\"d\":0.5}");
	assert_null(json_clone(NULL));
	free(s1);
	free(s2);
	json_free(c);
	json_free(n);
}

static void test_json__replace_keeps_the_key(void **state)
{
	struct jnode *n = parse_ok("{\"a\": 1, \"b\": 2}", 0);
	struct jnode *v = parse_ok("[true]", 0);
	char *s;

	json_replace(&n->kids[0], v);
	s = write_str(n);
	assert_string_equal(s, "{\"a\":[true],\"b\":2}");
	assert_string_equal(n->kids[0].key, "a");
	free(s);
	json_free(n);
}

static void test_json__show_escapes_and_truncates(void **state)
{
	char out[16], big[JSON_SHOW_MAX];
	char longs[300];

	assert_string_equal(json_show("a\nb\tc\x01", big, sizeof(big)), "a\\nb\\tc\\x01");
	memset(longs, 'x', sizeof(longs) - 1);
	longs[sizeof(longs) - 1] = '\0';
	json_show(longs, out, sizeof(out));
	assert_string_equal(out, "xxxxxxxxxxxx...");
	/* Fills the room exactly: 3 two-byte characters, "..." and NUL. */
	json_show("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", out, 10);
	assert_string_equal(out, "\xc3\xa9\xc3\xa9\xc3\xa9...");
	/* One byte less: never cuts a character in half. */
	json_show("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", out, 9);
	assert_string_equal(out, "\xc3\xa9\xc3\xa9...");
}

static void test_json__type_names(void **state)
{
	assert_string_equal(json_type_name(J_NUMBER), "number");
	assert_string_equal(json_type_name(J_OBJECT), "object");
	assert_string_equal(json_type_name(J_BOOL), "boolean");
	json_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json__parses_every_type),
		cmocka_unit_test(test_json__tells_integers_from_other_numbers),
		cmocka_unit_test(test_json__keeps_duplicate_keys_in_order),
		cmocka_unit_test(test_json__blanks_comments_but_not_strings),
		cmocka_unit_test(test_json__rejects_comments_without_the_flag),
		cmocka_unit_test(test_json__comments_keep_line_numbers),
		cmocka_unit_test(test_json__reports_line_and_column),
		cmocka_unit_test(test_json__columns_count_characters),
		cmocka_unit_test(test_json__rejects_bad_strings),
		cmocka_unit_test(test_json__decodes_surrogate_pairs),
		cmocka_unit_test(test_json__rejects_bad_numbers),
		cmocka_unit_test(test_json__rejects_invalid_utf8_and_nul),
		cmocka_unit_test(test_json__rejects_unterminated_comment),
		cmocka_unit_test(test_json__limits_nesting),
		cmocka_unit_test(test_json__writes_compact_json),
		cmocka_unit_test(test_json__clone_is_deep),
		cmocka_unit_test(test_json__replace_keeps_the_key),
		cmocka_unit_test(test_json__show_escapes_and_truncates),
		cmocka_unit_test(test_json__type_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
