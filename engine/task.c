/* engine/task.c — the synthetic addition task: generating problems,
 * writing them in the three answering modes, reading dataset lines back,
 * and checking what a model generated.
 *
 * The checker reads model output: any bytes, of any length, possibly cut
 * off. It compares digit strings with the reference strings and never
 * turns generated text into a number, so nothing can overflow, and it
 * never reads past the length it was given (no NUL is assumed).
 *
 * What the verdict means, precisely: only the text up to the first ';' is
 * read, and `finished` says there was one; bytes after it make the output
 * ill-formed. `answered` is a complete answer (digits, then ';'). The mode
 * taken is the mode asked for, except in auto mode where '|' first takes
 * slow; a trace asked for in fast mode, or '=' in slow mode, is neither
 * correct nor well formed. A well-formed trace has exactly `digits`
 * steps, each shaped D+D+D=DD, and an answer without leading zeros. */
#include <assert.h>
#include <string.h>

#include "engine/rng.h"
#include "engine/task.h"

/* A uint32 operand has at most 10 digits, so a trace has at most 10
 * steps and a sum at most 11 digits. */
#define POS_MAX 10
#define SUM_MAX 11
/* "7+8+0=15" */
#define STEP_LEN 8

_Static_assert(sizeof(TASK_CHARS) == TASK_VOCAB, "TASK_CHARS and TASK_VOCAB disagree");

static const char mode_chars[] = {
	[MODE_FAST] = 'F', [MODE_SLOW] = 'S', [MODE_AUTO] = 'A',
};
static const char *const mode_names[] = {
	[MODE_FAST] = "fast", [MODE_SLOW] = "slow", [MODE_AUTO] = "auto",
};

char task_mode_char(enum task_mode m)
{
	assert(m >= MODE_FAST && m <= MODE_AUTO);
	return mode_chars[m];
}

const char *task_mode_name(enum task_mode m)
{
	assert(m >= MODE_FAST && m <= MODE_AUTO);
	return mode_names[m];
}

int task_mode_parse(const char *name, enum task_mode *out)
{
	for (int m = MODE_FAST; name && m <= MODE_AUTO; m++)
		if (!strcmp(name, mode_names[m])) {
			*out = (enum task_mode)m;
			return 0;
		}
	return -1;
}

static int mode_from_char(char c, enum task_mode *out)
{
	for (int m = MODE_FAST; m <= MODE_AUTO; m++)
		if (c == mode_chars[m]) {
			*out = (enum task_mode)m;
			return 0;
		}
	return -1;
}

int task_encode_char(char c)
{
	/* strchr() would find the terminator for '\0'. */
	const char *s = c ? strchr(TASK_CHARS, c) : NULL;

	return s ? (int)(s - TASK_CHARS) + 1 : -1;
}

char task_decode_char(int id)
{
	return id >= 1 && id < TASK_VOCAB ? TASK_CHARS[id - 1] : '\0';
}

int task_encode(const char *s, size_t n, uint8_t *ids)
{
	for (size_t i = 0; i < n; i++) {
		int id = task_encode_char(s[i]);

		if (id < 0)
			return -1;
		ids[i] = (uint8_t)id;
	}
	return 0;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int ndigits(uint64_t x)
{
	int n = 1;

	while (x >= 10) {
		x /= 10;
		n++;
	}
	return n;
}

/* Writes x in decimal (no NUL) into s, which has room for 20 digits;
 * returns the length. */
static int dec(uint64_t x, char *s)
{
	int n = ndigits(x);

	for (int i = n - 1; i >= 0; i--, x /= 10)
		s[i] = (char)('0' + x % 10);
	return n;
}

void task_problem_set(struct problem *p, uint32_t a, uint32_t b)
{
	int la = ndigits(a), lb = ndigits(b), carry = 0;

	p->a = a;
	p->b = b;
	p->digits = la > lb ? la : lb;
	p->carries = 0;
	for (int i = 0; i < p->digits; i++, a /= 10, b /= 10) {
		carry = a % 10 + b % 10 + (uint32_t)carry >= 10;
		p->carries += carry;
	}
}

/* A number of exactly len digits, uniform (0..9 for one digit). */
static uint32_t draw_number(struct rng *r, int len)
{
	uint32_t p10 = 1, lo;

	for (int i = 1; i < len; i++)
		p10 *= 10;
	lo = len == 1 ? 0 : p10;
	return lo + (uint32_t)rng_below(r, 10 * (uint64_t)p10 - lo);
}

void task_problem_gen(uint64_t seed, uint64_t index, int digits,
		      struct problem *p)
{
	struct rng r;
	uint32_t a, b;
	int la, lb, k;

	assert(digits >= 1 && digits <= TASK_MAX_DIGITS);
	rng_seed(&r, rng_hash(seed, (uint64_t)digits, index), 0);
	/* The 2*digits-1 pairs of lengths whose longer one is `digits`,
	 * equally likely: the same as drawing both lengths uniformly and
	 * keeping only the pairs that reach `digits`. */
	k = (int)rng_below(&r, (uint64_t)(2 * digits - 1));
	if (k < digits) {
		la = digits;
		lb = k + 1;
	} else {
		la = k - digits + 1;
		lb = digits;
	}
	a = draw_number(&r, la);
	b = draw_number(&r, lb);
	task_problem_set(p, a, b);
}

/* The reference trace steps of a + b, least significant position first;
 * returns their number (the longer operand's length). */
static int ref_steps(const struct problem *p, char steps[POS_MAX][STEP_LEN])
{
	uint32_t a = p->a, b = p->b;
	int n = ndigits(a > b ? a : b), carry = 0;

	for (int i = 0; i < n; i++, a /= 10, b /= 10) {
		int da = (int)(a % 10), db = (int)(b % 10), s = da + db + carry;

		steps[i][0] = (char)('0' + da);
		steps[i][1] = '+';
		steps[i][2] = (char)('0' + db);
		steps[i][3] = '+';
		steps[i][4] = (char)('0' + carry);
		steps[i][5] = '=';
		steps[i][6] = (char)('0' + s / 10);
		steps[i][7] = (char)('0' + s % 10);
		carry = s / 10;
	}
	return n;
}

/* An snprintf-like writer: counts everything, stores what fits. */
struct out {
	char *s;
	size_t cap, n;
};

static void put(struct out *o, char c)
{
	if (o->n + 1 < o->cap)
		o->s[o->n] = c;
	o->n++;
}

static void put_mem(struct out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		put(o, s[i]);
}

static size_t finish(struct out *o)
{
	if (o->cap)
		o->s[o->n < o->cap ? o->n : o->cap - 1] = '\0';
	return o->n;
}

int task_auto_slow(const struct problem *p, const struct task_auto_rule *rule)
{
	return p->digits >= rule->slow_digits || p->carries >= rule->slow_carries;
}

static void write_prompt(struct out *o, const struct problem *p, enum task_mode m)
{
	char num[SUM_MAX];

	put(o, task_mode_char(m));
	put(o, ':');
	put_mem(o, num, (size_t)dec(p->a, num));
	put(o, '+');
	put_mem(o, num, (size_t)dec(p->b, num));
}

static void write_completion(struct out *o, const struct problem *p,
			     enum task_mode m, const struct task_auto_rule *rule)
{
	char steps[POS_MAX][STEP_LEN], num[SUM_MAX];

	if (m == MODE_AUTO) {
		assert(rule);
		m = task_auto_slow(p, rule) ? MODE_SLOW : MODE_FAST;
	}
	if (m == MODE_FAST) {
		put(o, '=');
	} else {
		int n = ref_steps(p, steps);

		put(o, '|');
		for (int i = 0; i < n; i++) {
			if (i)
				put(o, ',');
			put_mem(o, steps[i], STEP_LEN);
		}
		put(o, '|');
	}
	put_mem(o, num, (size_t)dec((uint64_t)p->a + p->b, num));
	put(o, ';');
}

size_t task_prompt(const struct problem *p, enum task_mode m, char *out, size_t cap)
{
	struct out o = { out, cap, 0 };

	write_prompt(&o, p, m);
	return finish(&o);
}

size_t task_completion(const struct problem *p, enum task_mode m,
		       const struct task_auto_rule *rule, char *out, size_t cap)
{
	struct out o = { out, cap, 0 };

	write_completion(&o, p, m, rule);
	return finish(&o);
}

size_t task_format(const struct problem *p, enum task_mode m,
		   const struct task_auto_rule *rule, char *out, size_t cap)
{
	struct out o = { out, cap, 0 };

	write_prompt(&o, p, m);
	write_completion(&o, p, m, rule);
	return finish(&o);
}

/* An operand at s[*i..len): 1..TASK_MAX_DIGITS digits, no leading zero. */
static int parse_operand(const char *s, size_t len, size_t *i, uint32_t *out)
{
	size_t start = *i;
	uint32_t x = 0;

	for (; *i < len && is_digit(s[*i]); (*i)++) {
		if (*i - start == TASK_MAX_DIGITS)
			return -1;
		x = x * 10 + (uint32_t)(s[*i] - '0');
	}
	if (*i == start || (*i - start > 1 && s[start] == '0'))
		return -1;
	*out = x;
	return 0;
}

int task_parse(const char *line, size_t len, struct problem *p,
	       enum task_mode *mode, int *has_mode, size_t *prompt_len)
{
	enum task_mode m = MODE_SLOW;
	struct problem q;
	struct verdict v;
	uint32_t a, b;
	size_t i = 0;
	int hm = 0;

	if (len >= 2 && line[1] == ':') {
		if (mode_from_char(line[0], &m) < 0)
			return -1;
		hm = 1;
		i = 2;
	}
	if (parse_operand(line, len, &i, &a) < 0 || i >= len || line[i++] != '+' ||
	    parse_operand(line, len, &i, &b) < 0)
		return -1;
	task_problem_set(&q, a, b);
	/* A completion must follow a mode and be well formed for it; it
	 * need not be right (datasets keep a weak teacher's wrong traces). */
	if (i < len) {
		if (!hm)
			return -1;
		task_check(&q, m, line + i, len - i, &v);
		if (!v.well_formed)
			return -1;
	}
	*p = q;
	if (mode)
		*mode = m;
	if (has_mode)
		*has_mode = hm;
	if (prompt_len)
		*prompt_len = i;
	return 0;
}

static int all_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_digit(s[i]))
			return 0;
	return n > 0;
}

/* The answer region s[0..n), followed by ';' when `finished`: sets
 * answered and correct; returns whether it is also canonical (no
 * leading zero). */
static int check_answer(const char *s, size_t n, int finished,
			const struct problem *p, struct verdict *v)
{
	char ans[SUM_MAX];
	size_t na = (size_t)dec((uint64_t)p->a + p->b, ans);

	v->answered = finished && all_digits(s, n);
	v->correct = finished && n == na && !memcmp(s, ans, na);
	return v->answered && (n == 1 || s[0] != '0');
}

/* A trace step's shape: D+D+D=DD. */
static int step_shape(const char *s, size_t n)
{
	return n == STEP_LEN && is_digit(s[0]) && s[1] == '+' && is_digit(s[2]) &&
	       s[3] == '+' && is_digit(s[4]) && s[5] == '=' && is_digit(s[6]) &&
	       is_digit(s[7]);
}

/* The slow grammar: '|' step (',' step)^(digits-1) '|' answer ';'. The
 * body c[0..n) excludes the ';'. */
static void check_slow(const struct problem *p, const char *c, size_t n,
		       int tail_ok, struct verdict *v)
{
	char steps[POS_MAX][STEP_LEN];
	size_t bar = 1, seg;
	int nsteps = ref_steps(p, steps), k = 0, shape_ok = 1, canon = 0;

	v->steps_total = nsteps;
	if (!v->chose_slow)
		return;
	while (bar < n && c[bar] != '|')
		bar++;
	/* Steps are the ','-separated pieces of c[1..bar); a piece that was
	 * cut off simply fails to match its reference step. */
	for (seg = 1; seg <= bar; k++) {
		size_t e = seg;

		while (e < bar && c[e] != ',')
			e++;
		if (k < nsteps && e - seg == STEP_LEN && !memcmp(c + seg, steps[k], STEP_LEN))
			v->steps_right++;
		shape_ok = shape_ok && step_shape(c + seg, e - seg);
		seg = e + 1;
	}
	if (bar < n)
		canon = check_answer(c + bar + 1, n - bar - 1, v->finished, p, v);
	v->well_formed = shape_ok && k == nsteps && bar < n && canon && tail_ok;
}

void task_check(const struct problem *p, enum task_mode m,
		const char *completion, size_t len, struct verdict *v)
{
	const char *c = completion, *semi;
	size_t n;
	int slow, tail_ok;

	memset(v, 0, sizeof(*v));
	v->len = len;
	if (len == 0) {
		if (m == MODE_SLOW)
			check_slow(p, c, 0, 0, v);
		return;
	}
	/* Only the text up to the first ';' is read; anything after it
	 * breaks the grammar. */
	semi = memchr(c, ';', len);
	n = semi ? (size_t)(semi - c) : len;
	tail_ok = semi && n + 1 == len;
	v->finished = semi != NULL;
	v->chose_slow = c[0] == '|';
	slow = m == MODE_SLOW || (m == MODE_AUTO && v->chose_slow);
	if (slow) {
		check_slow(p, c, n, tail_ok, v);
	} else if (c[0] == '=') {
		int canon = check_answer(c + 1, n - 1, v->finished, p, v);

		v->well_formed = canon && tail_ok;
	}
}

double task_reward(const struct problem *p, enum task_mode m,
		   const struct task_auto_rule *rule, const struct verdict *v,
		   const struct reward_weights *w, double teacher_score)
{
	double format = 0, length = 0, teacher = teacher_score;

	if (v->well_formed)
		format = v->steps_total > 0 ?
			 (double)v->steps_right / v->steps_total : 1.0;
	if (v->len > 0) {
		/* In auto mode, against the reference of the mode the model
		 * took: the length source rewards brevity within a mode, the
		 * choice itself is left to the other sources. */
		enum task_mode ref = m;
		size_t rl;

		if (m == MODE_AUTO)
			ref = v->chose_slow ? MODE_SLOW : MODE_FAST;
		rl = task_completion(p, ref, rule, NULL, 0);
		length = (double)rl / (double)v->len;
		if (length > 1.0)
			length = 1.0;
	}
	if (!(teacher >= 0.0))        /* NaN too */
		teacher = 0.0;
	if (teacher > 1.0)
		teacher = 1.0;
	return w->correct * (v->correct ? 1.0 : 0.0) + w->format * format +
	       w->length * length + w->teacher * teacher;
}

const char *task_type(const struct problem *p, int hard_digits)
{
	return p->digits < hard_digits ? "easy" : "hard";
}
