/* engine/cmd_gen_data.c — `anneal-engine gen-data`: the synthetic datasets
 * of a pipeline, deterministic from the seed.
 *
 *   corpus     fast answers of every difficulty, plus a share of slow
 *              traces of small difficulty: a general "pretraining" mix in
 *              which a student meets both formats but little reasoning
 *   reasoning  slow traces of every difficulty (plus a share of fast
 *              answers): what a teacher is trained on
 *   prompts    bare problems "a+b" of every difficulty, for distill, rl
 *              and dual-sft
 *   eval       eval_per_bucket bare problems per digit count, in bucket
 *              order, drawn from a stream of their own
 *
 * Every output draws its problems from its own seed (rng_hash of the seed
 * and the output's stream), so changing one output's size never changes
 * another's lines. Difficulty is uniform over digit counts. */
#include "engine/cmd.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "engine/config.h"
#include "engine/contract.h"
#include "engine/data.h"
#include "engine/rng.h"
#include "engine/task.h"
#include "engine/train.h"

/* Appends p as a line in mode m (m < 0: the bare problem). */
static void add_line(struct buf *b, const struct problem *p, int m)
{
	char line[TASK_MAX_LEN + 8];
	size_t n;

	if (m < 0) {
		n = task_prompt(p, MODE_FAST, line, sizeof(line));
		buf_add(b, line + 2, n - 2);   /* without "F:" */
	} else {
		n = task_format(p, (enum task_mode)m, NULL, line, sizeof(line));
		buf_add(b, line, n);
	}
	buf_addc(b, '\n');
}

static int write_output(const struct cmd_ctx *x, const char *name,
			const struct buf *b, long long lines, struct err *err)
{
	char *dir = NULL;
	int rc;

	if (contract_stop)
		return err_set(err, ERR_INTERRUPTED, "interrupted");
	rc = contract_output(name, &dir, err);
	if (!rc)
		rc = contract_write(dir, DATA_FILE, b->ptr, b->len, err);
	if (!rc)
		log_info("gen-data: %s: %lld lines", name, lines);
	free(dir);
	return rc;
}

/* n lines: with probability share mode `minority` at digits 1..mdigits,
 * else mode `majority` (< 0: bare) at digits 1..max_digits. */
static void gen_mix(struct buf *b, uint64_t seed, uint64_t stream, long long n,
		    int max_digits, int majority, int minority, double share,
		    int mdigits)
{
	uint64_t pseed = rng_hash(seed, stream, 0);
	struct rng r;
	struct problem p;

	rng_seed(&r, seed, stream);
	for (long long i = 0; i < n; i++) {
		int m = majority, d;

		if (mdigits > 0 && share > 0 && rng_double(&r) < share) {
			m = minority;
			d = 1 + (int)rng_below(&r, (uint64_t)mdigits);
		} else {
			d = 1 + (int)rng_below(&r, (uint64_t)max_digits);
		}
		task_problem_gen(pseed, (uint64_t)i, d, &p);
		add_line(b, &p, m);
	}
}

int cmd_gen_data(const struct cmd_ctx *x, struct err *err)
{
	const struct ecfg_cmd *c = x->c;
	uint64_t seed = (uint64_t)ecfg_int(c, x->cfg, "seed");
	int maxd = (int)ecfg_int(c, x->cfg, "max_digits");
	long long corpus = ecfg_int(c, x->cfg, "corpus");
	long long reasoning = ecfg_int(c, x->cfg, "reasoning");
	long long prompts = ecfg_int(c, x->cfg, "prompts");
	long long per = ecfg_int(c, x->cfg, "eval_per_bucket");
	int slowd = (int)ecfg_int(c, x->cfg, "corpus_slow_digits");
	struct buf b = BUF_INIT;
	struct problem p;
	int rc;

	if (slowd > maxd)
		slowd = maxd;
	gen_mix(&b, seed, STREAM_CORPUS, corpus, maxd, MODE_FAST, MODE_SLOW,
		ecfg_num(c, x->cfg, "corpus_slow_share"), slowd);
	rc = write_output(x, "corpus", &b, corpus, err);
	contract_progress(x->ct, 1, 4);

	if (!rc) {
		buf_reset(&b);
		gen_mix(&b, seed, STREAM_REASONING, reasoning, maxd, MODE_SLOW, MODE_FAST,
			ecfg_num(c, x->cfg, "reasoning_fast_share"), maxd);
		rc = write_output(x, "reasoning", &b, reasoning, err);
		contract_progress(x->ct, 2, 4);
	}
	if (!rc) {
		buf_reset(&b);
		gen_mix(&b, seed, STREAM_PROMPTS, prompts, maxd, -1, -1, 0, 0);
		rc = write_output(x, "prompts", &b, prompts, err);
		contract_progress(x->ct, 3, 4);
	}
	if (!rc) {
		uint64_t eseed = rng_hash(seed, STREAM_EVAL, 0);

		buf_reset(&b);
		for (int d = 1; d <= maxd; d++)
			for (long long i = 0; i < per; i++) {
				task_problem_gen(eseed, (uint64_t)i, d, &p);
				add_line(&b, &p, -1);
			}
		rc = write_output(x, "eval", &b, per * maxd, err);
		contract_progress(x->ct, 4, 4);
	}
	if (!rc) {
		const char *names[] = { "corpus", "reasoning", "prompts", "eval" };
		double v[] = { (double)corpus, (double)reasoning, (double)prompts,
			       (double)(per * maxd) };
		cmd_metrics(x, names, v, 4);
	}
	buf_free(&b);
	return rc;
}
