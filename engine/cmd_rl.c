/* engine/cmd_rl.c — `anneal-engine rl`: group-normalised policy gradient
 * (GRPO-style, no critic, no KL term) with multi-source rewards whose
 * weights depend on the task type (MARS).
 *
 * Each update draws prompts_per_step problems of the prompts dataset and
 * samples `group` completions of each from the current policy (batched,
 * at `temperature`, in `mode`). A completion's reward is task_reward()'s
 * weighted sum of its sources — correct, format, length and, with a reward
 * model given as input `reward`, teacher: that model's mean per-character
 * probability of the completion — with the weights of its task type
 * (easy below hard_digits digits, else hard). Advantages are normalised
 * within the group, A = (r - mean) / (std + 1e-6), 0 when all rewards of
 * the group are equal; the loss is -sum A * log pi(completion chars) over
 * the total number of completion characters.
 *
 * inputs policy, data (prompts) [, reward]; output model. */
#include "engine/cmd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "engine/config.h"
#include "engine/contract.h"
#include "engine/data.h"
#include "engine/gen.h"
#include "engine/nn.h"
#include "engine/rng.h"
#include "engine/task.h"
#include "engine/train.h"

#define STRIDE (TASK_MAX_LEN + 16)

struct rl {
	const struct dataset *d;
	uint64_t seed;
	size_t prompts, group, n;       /* n = prompts * group */
	float temp;
	enum task_mode mode;
	int hard_digits, max_len;
	struct reward_weights w[2];     /* easy, hard */
	struct task_auto_rule rule;
	const struct nn_model *reward;  /* NULL: teacher source is 0 */
	struct gen pol, rew;
	/* Per sample, allocated once. */
	uint8_t *seqs;
	size_t *len, *plen;
	const struct problem **prob;
	double *r, *lp, *ps;
	/* Sums since the last metric event. */
	double s_reward, s_correct, s_len, s_slow, s_teacher;
	long long s_n;
};

static int rl_fill(void *ctx, const struct nn_model *m, long long u,
		   struct train_batch *b, struct err *err)
{
	struct rl *s = ctx;
	char text[STRIDE + 1];
	struct rng r;
	uint64_t sseed;
	int rc;

	(void)m;   /* s->pol decodes with it */
	train_rng(&r, s->seed, STREAM_RL, u);
	for (size_t i = 0; i < s->prompts; i++) {
		const struct problem *p = &s->d->lines[rng_below(&r, s->d->n)].p;
		size_t pl = task_prompt(p, s->mode, text, sizeof(text));

		for (size_t g = 0; g < s->group; g++) {
			size_t k = i * s->group + g;
			task_encode(text, pl, s->seqs + k * STRIDE);
			s->len[k] = s->plen[k] = pl;
			s->prob[k] = p;
		}
	}
	sseed = rng_next(&r);
	rc = gen_decode(&s->pol, s->n, s->seqs, STRIDE, s->len, s->max_len, s->temp, sseed, 0);
	if (rc)
		return err_set(err, rc, "interrupted while sampling");
	if (s->reward)
		gen_score(&s->rew, s->n, s->seqs, STRIDE, s->len, s->plen, s->lp, s->ps);
	for (size_t k = 0; k < s->n; k++) {
		size_t n = s->len[k] - s->plen[k];
		double teacher = s->reward && n ? s->ps[k] / (double)n : 0;
		const char *type = task_type(s->prob[k], s->hard_digits);
		struct verdict v;

		for (size_t q = 0; q < n; q++)
			text[q] = task_decode_char(s->seqs[k * STRIDE + s->plen[k] + q]);
		task_check(s->prob[k], s->mode, text, n, &v);
		s->r[k] = task_reward(s->prob[k], s->mode, &s->rule, &v,
				      &s->w[strcmp(type, "easy") ? 1 : 0], teacher);
		s->s_reward += s->r[k];
		s->s_correct += v.correct;
		s->s_len += (double)n;
		s->s_slow += v.chose_slow;
		s->s_teacher += teacher;
		s->s_n++;
		b->denom += (double)n;
	}
	for (size_t i = 0; i < s->prompts; i++) {
		double mean = 0, var = 0, sd;
		const double *rg = s->r + i * s->group;

		for (size_t g = 0; g < s->group; g++)
			mean += rg[g];
		mean /= (double)s->group;
		for (size_t g = 0; g < s->group; g++)
			var += (rg[g] - mean) * (rg[g] - mean);
		sd = sqrt(var / (double)s->group);
		if (sd == 0)
			continue;   /* nothing to prefer within this group */
		for (size_t g = 0; g < s->group; g++) {
			size_t k = i * s->group + g;
			float a = (float)((rg[g] - mean) / (sd + 1e-6));

			if (a != 0 && train_batch_add(b, s->seqs + k * STRIDE, s->len[k],
						      s->plen[k], a) < 0)
				return err_set(err, ERR_SYSTEM, "batch overflow");
		}
	}
	return 0;
}

static void rl_metrics(void *ctx, struct buf *line)
{
	struct rl *s = ctx;
	double n = s->s_n ? (double)s->s_n : 1;
	const char *names[] = { "reward", "accuracy", "length", "slow_rate", "teacher" };
	double v[] = { s->s_reward / n, s->s_correct / n, s->s_len / n, s->s_slow / n,
		       s->s_teacher / n };

	for (size_t i = 0; i < 5; i++) {
		if (i == 4 && !s->reward)
			break;
		buf_printf(line, ",\"%s\":", names[i]);
		buf_add_num(line, round(v[i] * 1e6) / 1e6);
	}
	log_info("rl: reward %.4f accuracy %.4f length %.2f", v[0], v[1], v[2]);
	s->s_reward = s->s_correct = s->s_len = s->s_slow = s->s_teacher = 0;
	s->s_n = 0;
}

static void weights(const struct cmd_ctx *x, const char *type, struct reward_weights *w)
{
	w->correct = ecfg_reward(x->c, x->cfg, type, "correct");
	w->format = ecfg_reward(x->c, x->cfg, type, "format");
	w->length = ecfg_reward(x->c, x->cfg, type, "length");
	w->teacher = ecfg_reward(x->c, x->cfg, type, "teacher");
}

int cmd_rl(const struct cmd_ctx *x, struct err *err)
{
	const struct ecfg_cmd *c = x->c;
	struct nn_model m, rm;
	struct dataset d;
	struct rl s;
	struct train_source src;
	const char *data = NULL, *rdir = NULL;
	int rc;

	memset(&m, 0, sizeof(m));
	memset(&rm, 0, sizeof(rm));
	memset(&d, 0, sizeof(d));
	memset(&s, 0, sizeof(s));
	rc = cmd_input_model("policy", &m, err);
	if (!rc)
		rc = contract_input("reward", 0, &rdir, err);
	if (!rc && rdir)
		rc = cmd_load_model("reward", rdir, &rm, err);
	if (!rc)
		rc = contract_input("data", 1, &data, err);
	if (!rc)
		rc = dataset_load(&d, data, err);
	if (!rc && !d.n)
		rc = err_set(err, ERR_INVALID, "'%s': no prompts", d.path);
	if (rc)
		goto done;
	s.d = &d;
	s.seed = (uint64_t)ecfg_int(c, x->cfg, "seed");
	s.prompts = (size_t)ecfg_int(c, x->cfg, "prompts_per_step");
	s.group = (size_t)ecfg_int(c, x->cfg, "group");
	s.n = s.prompts * s.group;
	s.temp = (float)ecfg_num(c, x->cfg, "temperature");
	task_mode_parse(ecfg_enum(c, x->cfg, "mode"), &s.mode);
	s.hard_digits = (int)ecfg_int(c, x->cfg, "hard_digits");
	s.max_len = (int)ecfg_int(c, x->cfg, "max_len");
	s.rule.slow_digits = (int)ecfg_int(c, x->cfg, "auto_slow_digits");
	s.rule.slow_carries = (int)ecfg_int(c, x->cfg, "auto_slow_carries");
	weights(x, "easy", &s.w[0]);
	weights(x, "hard", &s.w[1]);
	s.reward = rdir ? &rm : NULL;
	gen_init(&s.pol, &m, s.n);
	if (s.reward)
		gen_init(&s.rew, &rm, 1024);
	s.seqs = xmalloc(s.n * STRIDE);
	s.len = xmalloc(s.n * sizeof(size_t));
	s.plen = xmalloc(s.n * sizeof(size_t));
	s.prob = xmalloc(s.n * sizeof(*s.prob));
	s.r = xmalloc(s.n * sizeof(double));
	s.lp = xmalloc(s.n * sizeof(double));
	s.ps = xmalloc(s.n * sizeof(double));
	memset(&src, 0, sizeof(src));
	src.fill = rl_fill;
	src.metrics = rl_metrics;
	src.ctx = &s;
	src.max_windows = s.n * (size_t)s.max_len;
	log_info("rl: %zu prompts x %zu samples per update, mode %s, reward model %s",
		 s.prompts, s.group, task_mode_name(s.mode), rdir ? "yes" : "no");
	rc = cmd_train(x, &m, &src, err);
done:
	gen_free(&s.pol);
	gen_free(&s.rew);
	free(s.seqs);
	free(s.len);
	free(s.plen);
	free(s.prob);
	free(s.r);
	free(s.lp);
	free(s.ps);
	dataset_free(&d);
	nn_model_free(&rm);
	nn_model_free(&m);
	return rc;
}
