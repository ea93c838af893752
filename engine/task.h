/* engine/task.h — the reference engine's synthetic reasoning task:
 * multi-digit addition, in three answering modes.
 *
 *   fast   F:347+58=405;
 *   slow   S:347+58|7+8+0=15,4+5+1=10,3+0+1=04|405;
 *   auto   A:347+58=405;   or   A:347+58|7+8+0=15,...|405;
 *
 * The prompt is everything before the first '=' or '|' ("F:347+58"); the
 * completion is the rest, ';' included. A slow trace has one step per
 * digit position of the longer operand, least significant first: the two
 * digits (0 past an operand's end), the carry in, '=', and the two-digit
 * sum (carry out, digit); then '|', the answer, ';'. In auto mode the
 * model's first character chooses: '=' answers fast, '|' starts a trace.
 *
 * Difficulty: `digits` = the longer operand's length (1..TASK_MAX_DIGITS),
 * `carries` = positions with a carry out. Everything here is a pure
 * function of its arguments: datasets are reproducible from a seed. */
#ifndef ANNEAL_ENGINE_TASK_H
#define ANNEAL_ENGINE_TASK_H

#include <stddef.h>
#include <stdint.h>

#define TASK_MAX_DIGITS 6
/* Token ids: 0 is padding (never generated), then these characters. */
#define TASK_CHARS "0123456789+=|,;:FSA"
#define TASK_VOCAB 20
/* Longest string any mode produces for TASK_MAX_DIGITS (with margin). */
#define TASK_MAX_LEN 96

enum task_mode { MODE_FAST, MODE_SLOW, MODE_AUTO };

struct problem {
	uint32_t a, b;
	int digits;   /* max(len(a), len(b)) */
	int carries;  /* positions whose sum is >= 10 */
};

/* 'F', 'S', 'A' <-> mode; "fast"/"slow"/"auto" names. */
char task_mode_char(enum task_mode m);
const char *task_mode_name(enum task_mode m);
int task_mode_parse(const char *name, enum task_mode *out);   /* 0 or -1 */

/* Token id of a character in TASK_CHARS (1..TASK_VOCAB-1), -1 otherwise;
 * and back (0 -> '\0'... never printed). */
int task_encode_char(char c);
char task_decode_char(int id);
/* Encodes s (n chars) into ids; -1 if a character is not in the vocab. */
int task_encode(const char *s, size_t n, uint8_t *ids);

/* Fills digits and carries from a and b. */
void task_problem_set(struct problem *p, uint32_t a, uint32_t b);

/* The index-th problem of difficulty `digits` for seed: the longer
 * operand has exactly `digits` digits (each length uniform in 1..digits,
 * at least one equal to it; values uniform over numbers of that length,
 * 0..9 for one digit). Deterministic: rng_hash(seed, digits, index). */
void task_problem_gen(uint64_t seed, uint64_t index, int digits,
		      struct problem *p);

/* Writes the prompt ("S:347+58") / the reference completion in mode m
 * ("|7+8+0=15,...|405;") / both, NUL-terminated; returns the length.
 * auto mode's reference completion is slow when task_auto_slow() says so.
 * cap >= TASK_MAX_LEN + 1 always suffices. */
struct task_auto_rule {
	int slow_digits;   /* slow when digits >= this ... */
	int slow_carries;  /* ... or carries >= this */
};
int task_auto_slow(const struct problem *p, const struct task_auto_rule *rule);
size_t task_prompt(const struct problem *p, enum task_mode m, char *out, size_t cap);
size_t task_completion(const struct problem *p, enum task_mode m,
		       const struct task_auto_rule *rule, char *out, size_t cap);
size_t task_format(const struct problem *p, enum task_mode m,
		   const struct task_auto_rule *rule, char *out, size_t cap);

/* Parses a dataset line: a full example ("S:347+58|...;"), a prompt
 * ("A:347+58") or a bare problem ("347+58"). Sets *p, *mode (MODE_SLOW
 * for a bare problem; *has_mode 0) and *prompt_len (the length of the
 * prompt part within line). Returns 0, or -1 if the line is not one of
 * these (operands of 1..TASK_MAX_DIGITS digits, no leading zeros). */
int task_parse(const char *line, size_t len, struct problem *p,
	       enum task_mode *mode, int *has_mode, size_t *prompt_len);

/* Rule-based verification of a generated completion (the text after the
 * prompt, up to and including ';' if it was produced). */
struct verdict {
	int finished;      /* ended with ';' */
	int answered;      /* an answer could be read */
	int correct;       /* the answer is a + b exactly */
	int chose_slow;    /* first character '|' */
	int well_formed;   /* matches the grammar of the mode it took */
	int steps_total;   /* slow: steps expected (digits) */
	int steps_right;   /* slow: steps present and exactly right */
	size_t len;        /* characters generated */
};
void task_check(const struct problem *p, enum task_mode m,
		const char *completion, size_t len, struct verdict *v);

/* Multi-source reward (MARS: weights per task type). Sources, each in
 * [0, 1]: correct (exact answer), format (well-formed, scaled by the share
 * of right steps in a trace), length (reference completion length /
 * generated length, at most 1; 0 if nothing was generated), teacher (a
 * reward model's score, given by the caller). Reward = sum of weight *
 * source. */
struct reward_weights {
	double correct, format, length, teacher;
};
double task_reward(const struct problem *p, enum task_mode m,
		   const struct task_auto_rule *rule, const struct verdict *v,
		   const struct reward_weights *w, double teacher_score);

/* Task types for per-type reward weights: "easy" when digits < hard_digits,
 * else "hard". */
const char *task_type(const struct problem *p, int hard_digits);

#endif
