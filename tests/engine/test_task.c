/* tests/engine/test_task.c — the addition task: exact strings in every
 * mode, reproducible generation with the promised distribution, parsing,
 * and a checker that survives whatever a model writes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/task.h"

static const struct task_auto_rule rule = { 3, 1 };   /* the notes' rule */

static struct problem mk(uint32_t a, uint32_t b)
{
	struct problem p;

	task_problem_set(&p, a, b);
	return p;
}

/* The checker and the parser get exactly len bytes on the heap, without a
 * terminator, so that ASan sees any read past the end. */
static void check(const struct problem *p, enum task_mode m, const char *s,
		  struct verdict *v)
{
	size_t n = strlen(s);
	char *copy = malloc(n ? n : 1);

	memcpy(copy, s, n);
	task_check(p, m, copy, n, v);
	free(copy);
}

static int parse(const char *s, size_t n, struct problem *p, enum task_mode *m,
		 int *has_mode, size_t *plen)
{
	char *copy = malloc(n ? n : 1);
	int rc;

	memcpy(copy, s, n);
	rc = task_parse(copy, n, p, m, has_mode, plen);
	free(copy);
	return rc;
}

static void assert_format(uint32_t a, uint32_t b, enum task_mode m, const char *want)
{
	struct problem p = mk(a, b);
	char buf[TASK_MAX_LEN + 1], prompt[TASK_MAX_LEN + 1], comp[TASK_MAX_LEN + 1];
	size_t n = task_format(&p, m, &rule, buf, sizeof(buf));
	size_t np = task_prompt(&p, m, prompt, sizeof(prompt));
	size_t nc = task_completion(&p, m, &rule, comp, sizeof(comp));

	assert_string_equal(buf, want);
	assert_int_equal(n, strlen(want));
	assert_int_equal(np + nc, n);
	assert_memory_equal(buf, prompt, np);
	assert_string_equal(buf + np, comp);
	assert_true(comp[0] == '=' || comp[0] == '|');
}

static void test_task__formats_exact(void **state)
{
	assert_format(347, 58, MODE_FAST, "F:347+58=405;");
	assert_format(347, 58, MODE_SLOW, "S:347+58|7+8+0=15,4+5+1=10,3+0+1=04|405;");
	assert_format(58, 347, MODE_SLOW, "S:58+347|8+7+0=15,5+4+1=10,0+3+1=04|405;");
	assert_format(347, 58, MODE_AUTO, "A:347+58|7+8+0=15,4+5+1=10,3+0+1=04|405;");
	assert_format(999, 1, MODE_FAST, "F:999+1=1000;");
	assert_format(999, 1, MODE_SLOW, "S:999+1|9+1+0=10,9+0+1=10,9+0+1=10|1000;");
	assert_format(0, 0, MODE_FAST, "F:0+0=0;");
	assert_format(0, 0, MODE_SLOW, "S:0+0|0+0+0=00|0;");
	assert_format(0, 0, MODE_AUTO, "A:0+0=0;");
	assert_format(5, 5, MODE_SLOW, "S:5+5|5+5+0=10|10;");
	assert_format(5, 5, MODE_AUTO, "A:5+5|5+5+0=10|10;");          /* a carry */
	assert_format(12, 34, MODE_AUTO, "A:12+34=46;");                /* 2 digits, none */
	assert_format(120, 4, MODE_AUTO, "A:120+4|0+4+0=04,2+0+0=02,1+0+0=01|124;");
	assert_format(999999, 999999, MODE_SLOW,
		      "S:999999+999999|9+9+0=18,9+9+1=19,9+9+1=19,9+9+1=19,"
		      "9+9+1=19,9+9+1=19|1999998;");
	assert_format(100000, 0, MODE_FAST, "F:100000+0=100000;");
}

static void test_task__longest_fits(void **state)
{
	struct problem p = mk(999999, 999999);
	char buf[TASK_MAX_LEN + 1];

	for (int m = MODE_FAST; m <= MODE_AUTO; m++)
		assert_true(task_format(&p, (enum task_mode)m, &rule, buf, sizeof(buf)) <=
			    TASK_MAX_LEN);
}

static void test_task__truncates_like_snprintf(void **state)
{
	struct problem p = mk(347, 58);
	char buf[8];

	memset(buf, 'x', sizeof(buf));
	assert_int_equal(task_format(&p, MODE_FAST, NULL, buf, sizeof(buf)), 13);
	assert_string_equal(buf, "F:347+5");
	assert_int_equal(task_completion(&p, MODE_SLOW, NULL, NULL, 0), 32);
	assert_int_equal(task_prompt(&p, MODE_FAST, buf, 1), 8);
	assert_string_equal(buf, "");
}

static void test_task__problem_set(void **state)
{
	struct { uint32_t a, b; int digits, carries; } c[] = {
		{ 347, 58, 3, 2 }, { 58, 347, 3, 2 }, { 999, 1, 3, 3 }, { 0, 0, 1, 0 },
		{ 5, 5, 1, 1 }, { 12, 34, 2, 0 }, { 999999, 999999, 6, 6 },
		{ 100000, 9, 6, 0 }, { 91, 9, 2, 2 }, { 90, 10, 2, 1 },
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct problem p = mk(c[i].a, c[i].b);

		assert_int_equal(p.a, c[i].a);
		assert_int_equal(p.b, c[i].b);
		assert_int_equal(p.digits, c[i].digits);
		assert_int_equal(p.carries, c[i].carries);
	}
}

static int len10(uint32_t x)
{
	int n = 1;

	while (x >= 10) {
		x /= 10;
		n++;
	}
	return n;
}

static void test_task__gen_deterministic(void **state)
{
	int differ = 0;

	for (int d = 1; d <= TASK_MAX_DIGITS; d++)
		for (uint64_t i = 0; i < 500; i++) {
			struct problem p, q, r, s;

			task_problem_gen(42, i, d, &p);
			task_problem_gen(42, i, d, &q);
			task_problem_gen(43, i, d, &r);
			assert_int_equal(p.a, q.a);
			assert_int_equal(p.b, q.b);
			differ += p.a != r.a || p.b != r.b;
			/* digits and carries are those of (a, b) */
			s = mk(p.a, p.b);
			assert_int_equal(p.digits, d);
			assert_int_equal(s.digits, d);
			assert_int_equal(p.carries, s.carries);
			assert_true(len10(p.a) <= d && len10(p.b) <= d);
			assert_true(len10(p.a) == d || len10(p.b) == d);
		}
	assert_true(differ > 2500);
}

static void test_task__gen_distribution(void **state)
{
	enum { N = 30000 };

	for (int d = 1; d <= TASK_MAX_DIGITS; d++) {
		int pairs[TASK_MAX_DIGITS + 1][TASK_MAX_DIGITS + 1] = { { 0 } };
		int lead[10] = { 0 }, npairs = 2 * d - 1;
		double want = (double)N / npairs;

		for (uint64_t i = 0; i < N; i++) {
			struct problem p;

			task_problem_gen(7, i, d, &p);
			pairs[len10(p.a)][len10(p.b)]++;
			lead[len10(p.a) == 1 ? p.a : p.a / (uint32_t)pow(10, len10(p.a) - 1)]++;
		}
		/* every pair of lengths whose max is d, equally often */
		for (int la = 1; la <= d; la++)
			for (int lb = 1; lb <= d; lb++) {
				if (la != d && lb != d) {
					assert_int_equal(pairs[la][lb], 0);
					continue;
				}
				assert_true(fabs(pairs[la][lb] - want) < 5 * sqrt(want));
			}
		/* leading digits: 0 only for one-digit numbers, else uniform */
		for (int k = 1; k < 10; k++)
			assert_true(lead[k] > N / 10 * 0.8);
		if (d == 1)
			assert_true(lead[0] > N / 10 * 0.8);
	}
}

static void assert_parses(const char *line, uint32_t a, uint32_t b,
			  enum task_mode m, int hm, size_t plen)
{
	struct problem p;
	enum task_mode got;
	int has;
	size_t n;

	assert_int_equal(parse(line, strlen(line), &p, &got, &has, &n), 0);
	assert_int_equal(p.a, a);
	assert_int_equal(p.b, b);
	assert_int_equal(got, m);
	assert_int_equal(has, hm);
	assert_int_equal(n, plen);
	assert_int_equal(p.digits, mk(a, b).digits);
	assert_int_equal(p.carries, mk(a, b).carries);
}

static void test_task__parse_forms(void **state)
{
	assert_parses("F:347+58=405;", 347, 58, MODE_FAST, 1, 8);
	assert_parses("S:347+58|7+8+0=15,4+5+1=10,3+0+1=04|405;", 347, 58, MODE_SLOW, 1, 8);
	assert_parses("A:347+58|7+8+0=15,4+5+1=10,3+0+1=04|405;", 347, 58, MODE_AUTO, 1, 8);
	assert_parses("A:347+58=405;", 347, 58, MODE_AUTO, 1, 8);
	assert_parses("A:347+58", 347, 58, MODE_AUTO, 1, 8);
	assert_parses("F:0+0", 0, 0, MODE_FAST, 1, 5);
	assert_parses("347+58", 347, 58, MODE_SLOW, 0, 6);
	assert_parses("0+0", 0, 0, MODE_SLOW, 0, 3);
	assert_parses("999999+999999", 999999, 999999, MODE_SLOW, 0, 13);
	/* well formed but wrong: datasets may hold a weak teacher's mistakes */
	assert_parses("F:347+58=406;", 347, 58, MODE_FAST, 1, 8);
	assert_parses("S:347+58|7+8+0=15,4+5+1=11,3+0+1=04|415;", 347, 58, MODE_SLOW, 1, 8);
}

static void test_task__parse_rejects(void **state)
{
	const char *bad[] = {
		"", ":", "F:", "F:1", "F:1+", "+1", "1+", "1", "01+2", "1+02", "00+1",
		"1234567+1", "1+1234567", "X:1+2", "f:1+2", "F1+2", "F:1+2=3", "F:1+2=",
		"F:1+2=3;x", "F:1+2=3;;", "1+2=3;", "F:1+2|1+2+0=03|3;", "S:1+2=3;",
		"S:1+2|1+2+0=03|3", "S:1+2|1+2+0=03,0+0+0=00|3;", "S:1+2||3;",
		"S:12+3|2+3+0=05|15;", "F:1+2=03;", "F:1+2\n", "1+2+3", "-1+2",
		"F:1 +2", "F:+1+2", "A:1+2x", "A:1+2;", "FF:1+2",
	};
	struct problem p;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], strlen(bad[i]), &p, NULL, NULL, NULL) == 0)
			fail_msg("accepted '%s'", bad[i]);
	}
	/* the NUL after a length is not part of the line */
	assert_int_equal(task_parse("1+23", 3, &p, NULL, NULL, NULL), 0);
	assert_int_equal(p.b, 2);
	assert_int_equal(task_parse("12+3", 3, &p, NULL, NULL, NULL), -1);
}

static void test_task__parse_round_trips(void **state)
{
	for (int d = 1; d <= TASK_MAX_DIGITS; d++)
		for (uint64_t i = 0; i < 300; i++) {
			struct problem p, q;
			char buf[TASK_MAX_LEN + 1];
			enum task_mode got;
			size_t n, np, plen;
			int has;

			task_problem_gen(1, i, d, &p);
			for (int m = MODE_FAST; m <= MODE_AUTO; m++) {
				n = task_format(&p, (enum task_mode)m, &rule, buf, sizeof(buf));
				np = task_prompt(&p, (enum task_mode)m, NULL, 0);
				assert_int_equal(parse(buf, n, &q, &got, &has, &plen), 0);
				assert_int_equal(q.a, p.a);
				assert_int_equal(q.b, p.b);
				assert_int_equal(q.digits, p.digits);
				assert_int_equal(q.carries, p.carries);
				assert_int_equal(got, m);
				assert_int_equal(has, 1);
				assert_int_equal(plen, np);
				/* the prompt alone, and every cut: never past len */
				assert_int_equal(parse(buf, np, &q, &got, &has, &plen), 0);
				assert_int_equal(plen, np);
				for (size_t k = 0; k < n; k++)
					if (parse(buf, k, &q, NULL, NULL, NULL) == 0)
						assert_true(k <= np);
				/* the bare problem */
				assert_int_equal(parse(buf + 2, np - 2, &q, &got, &has, &plen), 0);
				assert_int_equal(got, MODE_SLOW);
				assert_int_equal(has, 0);
				assert_int_equal(plen, np - 2);
			}
		}
}

static void test_task__check_fast(void **state)
{
	struct problem p = mk(347, 58);
	struct verdict v;

	check(&p, MODE_FAST, "=405;", &v);
	assert_true(v.finished && v.answered && v.correct && v.well_formed);
	assert_false(v.chose_slow);
	assert_int_equal(v.steps_total, 0);
	assert_int_equal(v.len, 5);

	check(&p, MODE_FAST, "=406;", &v);
	assert_true(v.finished && v.answered && v.well_formed);
	assert_false(v.correct);

	check(&p, MODE_FAST, "=0405;", &v);     /* leading zero: not the answer */
	assert_true(v.answered);
	assert_false(v.correct || v.well_formed);

	check(&p, MODE_FAST, "=405", &v);       /* truncated */
	assert_false(v.finished || v.answered || v.correct || v.well_formed);

	check(&p, MODE_FAST, "=405;7", &v);     /* text after ';' */
	assert_true(v.finished && v.correct);
	assert_false(v.well_formed);

	check(&p, MODE_FAST, "=4+05;", &v);
	assert_false(v.answered || v.correct || v.well_formed);

	check(&p, MODE_FAST, "=;", &v);
	assert_false(v.answered || v.correct || v.well_formed);

	/* a trace in fast mode is not a fast answer */
	check(&p, MODE_FAST, "|7+8+0=15,4+5+1=10,3+0+1=04|405;", &v);
	assert_true(v.chose_slow && v.finished);
	assert_false(v.correct || v.well_formed);

	/* far beyond any integer type */
	check(&p, MODE_FAST, "=99999999999999999999999999999999999999999405;", &v);
	assert_true(v.answered && v.well_formed);
	assert_false(v.correct);
}

static void test_task__check_slow(void **state)
{
	const char *ref = "|7+8+0=15,4+5+1=10,3+0+1=04|405;";
	struct problem p = mk(347, 58);
	struct verdict v;

	check(&p, MODE_SLOW, ref, &v);
	assert_true(v.finished && v.answered && v.correct && v.well_formed && v.chose_slow);
	assert_int_equal(v.steps_total, 3);
	assert_int_equal(v.steps_right, 3);

	check(&p, MODE_SLOW, "|7+8+0=15,4+5+1=11,3+0+1=04|405;", &v);   /* wrong step */
	assert_true(v.correct && v.well_formed);
	assert_int_equal(v.steps_right, 2);

	check(&p, MODE_SLOW, "|7+8+0=15,4+5+1=10,3+0+1=04|415;", &v);   /* wrong answer */
	assert_true(v.answered && v.well_formed);
	assert_false(v.correct);
	assert_int_equal(v.steps_right, 3);

	check(&p, MODE_SLOW, "|7+8+0=15,3+0+1=04|405;", &v);           /* missing step */
	assert_true(v.correct);
	assert_false(v.well_formed);
	assert_int_equal(v.steps_right, 1);

	check(&p, MODE_SLOW, "|7+8+0=15,4+5+1=10,3+0+1=04,0+0+0=00|405;", &v);
	assert_true(v.correct);
	assert_false(v.well_formed);
	assert_int_equal(v.steps_right, 3);

	check(&p, MODE_SLOW, "|7+8+0=15,4+5+1=10,3+0+1=4|405;", &v);   /* bad shape */
	assert_false(v.well_formed);
	assert_int_equal(v.steps_right, 2);

	check(&p, MODE_SLOW, "|7+8+0=15,4+5+1=10,3+0+1=04|405|405;", &v);
	assert_false(v.answered || v.correct || v.well_formed);

	check(&p, MODE_SLOW, "=405;", &v);     /* a fast answer in slow mode */
	assert_false(v.chose_slow || v.correct || v.well_formed);
	assert_int_equal(v.steps_total, 3);
	assert_int_equal(v.steps_right, 0);

	/* every cut of the reference: steps count up, never correct unfinished */
	for (size_t k = 0; k < strlen(ref); k++) {
		char cut[64];

		memcpy(cut, ref, k);
		cut[k] = '\0';
		check(&p, MODE_SLOW, cut, &v);
		assert_false(v.finished || v.answered || v.correct || v.well_formed);
		assert_int_equal(v.steps_right, k < 9 ? 0 : k < 18 ? 1 : k < 27 ? 2 : 3);
	}

	p = mk(999, 1);
	check(&p, MODE_SLOW, "|9+1+0=10,9+0+1=10,9+0+1=10|1000;", &v);
	assert_true(v.correct && v.well_formed);
	assert_int_equal(v.steps_right, 3);
	p = mk(0, 0);
	check(&p, MODE_SLOW, "|0+0+0=00|0;", &v);
	assert_true(v.correct && v.well_formed);
	assert_int_equal(v.steps_total, 1);
	check(&p, MODE_SLOW, "||0;", &v);
	assert_true(v.correct);
	assert_false(v.well_formed);
	assert_int_equal(v.steps_right, 0);
}

static void test_task__check_auto(void **state)
{
	struct problem p = mk(347, 58);
	struct verdict v;

	check(&p, MODE_AUTO, "=405;", &v);
	assert_true(v.correct && v.well_formed);
	assert_false(v.chose_slow);
	assert_int_equal(v.steps_total, 0);

	check(&p, MODE_AUTO, "|7+8+0=15,4+5+1=10,3+0+1=04|405;", &v);
	assert_true(v.correct && v.well_formed && v.chose_slow);
	assert_int_equal(v.steps_total, 3);
	assert_int_equal(v.steps_right, 3);

	check(&p, MODE_AUTO, "|405;", &v);     /* chose slow, skipped the trace */
	assert_true(v.chose_slow);
	assert_false(v.correct || v.well_formed);

	check(&p, MODE_AUTO, "405;", &v);
	assert_false(v.chose_slow || v.answered || v.correct || v.well_formed);
}

static void test_task__check_garbage(void **state)
{
	struct problem p = mk(999999, 999999), small = mk(0, 0);
	struct verdict v;
	unsigned seed = 12345;

	for (int m = MODE_FAST; m <= MODE_AUTO; m++) {
		task_check(&p, (enum task_mode)m, NULL, 0, &v);   /* nothing at all */
		assert_false(v.finished || v.answered || v.correct || v.well_formed);
		assert_int_equal(v.len, 0);
		assert_int_equal(v.steps_total, m == MODE_SLOW ? 6 : 0);
		check(&p, (enum task_mode)m, ";", &v);
		assert_true(v.finished);
		assert_false(v.answered || v.correct || v.well_formed);
		check(&p, (enum task_mode)m, "\xff\x00", &v);
		assert_false(v.finished || v.correct || v.well_formed);
	}
	/* random bytes, biased toward the task's own characters */
	for (int i = 0; i < 20000; i++) {
		size_t n = (size_t)(rand_r(&seed) % 80);
		char *s = malloc(n ? n : 1);

		for (size_t k = 0; k < n; k++) {
			int r = rand_r(&seed);

			s[k] = r % 3 ? TASK_CHARS[r % (TASK_VOCAB - 1)] : (char)(r >> 8);
		}
		for (int m = MODE_FAST; m <= MODE_AUTO; m++) {
			task_check(i % 2 ? &p : &small, (enum task_mode)m, s, n, &v);
			assert_true(v.steps_right <= v.steps_total);
			assert_true(!v.correct || v.finished);
			assert_true(!v.well_formed || (v.finished && v.answered));
			assert_int_equal(v.len, n);
		}
		free(s);
	}
}

static void test_task__reward(void **state)
{
	struct problem p = mk(347, 58), easy = mk(12, 34);
	struct reward_weights all = { 1, 0.5, 0.25, 0.1 }, each = { 1, 1, 1, 0 },
			      len_only = { 0, 0, 1, 0 }, teacher_only = { 0, 0, 0, 2 };
	struct verdict v;

	check(&p, MODE_FAST, "=405;", &v);
	assert_float_equal(task_reward(&p, MODE_FAST, &rule, &v, &all, 0.4), 1.79, 1e-12);

	/* one wrong step of three: format 2/3, same length as the reference */
	check(&p, MODE_SLOW, "|7+8+0=15,4+5+1=11,3+0+1=04|405;", &v);
	assert_float_equal(task_reward(&p, MODE_SLOW, &rule, &v, &each, 0), 1 + 2.0 / 3 + 1,
			   1e-12);

	/* 36 characters where the reference has 32; nothing else right */
	check(&p, MODE_SLOW, "|7+8+0=15,4+5+1=10,3+0+1=04|405|405;", &v);
	assert_float_equal(task_reward(&p, MODE_SLOW, &rule, &v, &each, 0), 32.0 / 36,
			   1e-12);

	/* shorter than the reference: the length source stops at 1 */
	check(&p, MODE_SLOW, "=405;", &v);
	assert_float_equal(task_reward(&p, MODE_SLOW, &rule, &v, &len_only, 0), 1, 1e-12);

	/* auto: against the reference of the mode taken, either way */
	check(&p, MODE_AUTO, "=405;", &v);            /* the rule says slow */
	assert_float_equal(task_reward(&p, MODE_AUTO, &rule, &v, &each, 0), 3, 1e-12);
	check(&easy, MODE_AUTO, "|2+4+0=06,1+3+0=04|46;", &v);   /* the rule says fast */
	assert_float_equal(task_reward(&easy, MODE_AUTO, &rule, &v, &each, 0), 3, 1e-12);
	check(&easy, MODE_AUTO, "=046;", &v);         /* 4 / 5, not well formed */
	assert_float_equal(task_reward(&easy, MODE_AUTO, &rule, &v, &each, 0), 0.8, 1e-12);

	/* nothing generated: only the teacher counts, clipped to [0, 1] */
	task_check(&p, MODE_SLOW, NULL, 0, &v);
	assert_float_equal(task_reward(&p, MODE_SLOW, &rule, &v, &each, 1), 0, 1e-12);
	assert_float_equal(task_reward(&p, MODE_SLOW, &rule, &v, &teacher_only, 0.25), 0.5,
			   1e-12);
	assert_float_equal(task_reward(&p, MODE_SLOW, &rule, &v, &teacher_only, 3), 2, 1e-12);
	assert_float_equal(task_reward(&p, MODE_SLOW, &rule, &v, &teacher_only, -1), 0, 1e-12);
	assert_float_equal(task_reward(&p, MODE_SLOW, &rule, &v, &teacher_only, NAN), 0, 1e-12);
}

static void test_task__auto_rule_and_type(void **state)
{
	struct problem p = mk(12, 34), q = mk(15, 5), r = mk(123, 1);
	struct task_auto_rule never = { 99, 99 }, always = { 1, 0 };

	assert_false(task_auto_slow(&p, &rule));
	assert_true(task_auto_slow(&q, &rule));
	assert_true(task_auto_slow(&r, &rule));
	assert_false(task_auto_slow(&q, &never));
	assert_true(task_auto_slow(&p, &always));
	assert_string_equal(task_type(&p, 3), "easy");
	assert_string_equal(task_type(&r, 3), "hard");
	assert_string_equal(task_type(&r, 4), "easy");
}

static void test_task__modes(void **state)
{
	enum task_mode m;

	assert_int_equal(task_mode_char(MODE_FAST), 'F');
	assert_int_equal(task_mode_char(MODE_SLOW), 'S');
	assert_int_equal(task_mode_char(MODE_AUTO), 'A');
	assert_string_equal(task_mode_name(MODE_FAST), "fast");
	assert_string_equal(task_mode_name(MODE_SLOW), "slow");
	assert_string_equal(task_mode_name(MODE_AUTO), "auto");
	for (int i = MODE_FAST; i <= MODE_AUTO; i++) {
		assert_int_equal(task_mode_parse(task_mode_name((enum task_mode)i), &m), 0);
		assert_int_equal(m, i);
	}
	assert_int_equal(task_mode_parse("Fast", &m), -1);
	assert_int_equal(task_mode_parse("", &m), -1);
	assert_int_equal(task_mode_parse(NULL, &m), -1);
}

static void test_task__encode_decode(void **state)
{
	const char *s = "S:999+1|9+1+0=10,9+0+1=10,9+0+1=10|1000;";
	uint8_t ids[TASK_MAX_LEN];

	for (int id = 1; id < TASK_VOCAB; id++) {
		char c = task_decode_char(id);

		assert_true(c != '\0');
		assert_int_equal(task_encode_char(c), id);
	}
	for (int c = -128; c < 128; c++)
		if (c == 0 || !strchr(TASK_CHARS, c))
			assert_int_equal(task_encode_char((char)c), -1);
	assert_int_equal(task_decode_char(0), '\0');
	assert_int_equal(task_decode_char(TASK_VOCAB), '\0');
	assert_int_equal(task_decode_char(-1), '\0');

	assert_int_equal(task_encode(s, strlen(s), ids), 0);
	for (size_t i = 0; i < strlen(s); i++) {
		assert_true(ids[i] >= 1 && ids[i] < TASK_VOCAB);
		assert_int_equal(task_decode_char(ids[i]), s[i]);
	}
	assert_int_equal(task_encode("F:1+2=3\n", 8, ids), -1);
	assert_int_equal(task_encode("F:1+2", 0, ids), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_task__formats_exact),
		cmocka_unit_test(test_task__longest_fits),
		cmocka_unit_test(test_task__truncates_like_snprintf),
		cmocka_unit_test(test_task__problem_set),
		cmocka_unit_test(test_task__gen_deterministic),
		cmocka_unit_test(test_task__gen_distribution),
		cmocka_unit_test(test_task__parse_forms),
		cmocka_unit_test(test_task__parse_rejects),
		cmocka_unit_test(test_task__parse_round_trips),
		cmocka_unit_test(test_task__check_fast),
		cmocka_unit_test(test_task__check_slow),
		cmocka_unit_test(test_task__check_auto),
		cmocka_unit_test(test_task__check_garbage),
		cmocka_unit_test(test_task__reward),
		cmocka_unit_test(test_task__auto_rule_and_type),
		cmocka_unit_test(test_task__modes),
		cmocka_unit_test(test_task__encode_decode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
