/* engine/cmd_dual_sft.c — `anneal-engine dual-sft`: dual-system (fast /
 * slow) fine-tuning. Each sequence of an update is a problem of the
 * prompts dataset written, by ground truth, as a fast answer (F:), a slow
 * trace (S:) or an auto example (A:, whose completion is fast or slow by
 * the rule auto_slow_digits / auto_slow_carries), in the configured
 * shares. The loss is on the completion, so the first character of an
 * auto completion — '=' or '|', the choice of mode — is learned too.
 *
 * inputs init, data (problems; modes in the lines are ignored); output
 * model. */
#include "engine/cmd.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"
#include "engine/config.h"
#include "engine/contract.h"
#include "engine/data.h"
#include "engine/nn.h"
#include "engine/rng.h"
#include "engine/task.h"
#include "engine/train.h"

struct dual {
	const struct dataset *d;
	uint64_t seed;
	int batch;
	double fast, slow, total;
	struct task_auto_rule rule;
};

static int dual_fill(void *ctx, const struct nn_model *m, long long u,
		     struct train_batch *b, struct err *err)
{
	struct dual *s = ctx;
	char text[TASK_MAX_LEN + 8];
	uint8_t ids[TASK_MAX_LEN + 8];
	struct rng r;

	(void)m;
	train_rng(&r, s->seed, STREAM_DUAL, u);
	for (int i = 0; i < s->batch; i++) {
		const struct problem *p = &s->d->lines[rng_below(&r, s->d->n)].p;
		double pick = rng_double(&r) * s->total;
		enum task_mode mode = pick < s->fast ? MODE_FAST
				    : pick < s->fast + s->slow ? MODE_SLOW : MODE_AUTO;
		size_t plen = task_prompt(p, mode, text, sizeof(text));
		size_t n = task_format(p, mode, &s->rule, text, sizeof(text));
		size_t n0 = b->n;

		task_encode(text, n, ids);
		if (train_batch_add(b, ids, n, plen, 1.0f) < 0)
			return err_set(err, ERR_SYSTEM, "batch overflow");
		b->denom += (double)(b->n - n0);
	}
	return 0;
}

int cmd_dual_sft(const struct cmd_ctx *x, struct err *err)
{
	const struct ecfg_cmd *c = x->c;
	struct nn_model m;
	struct dataset d;
	struct dual s;
	struct train_source src;
	const char *data = NULL;
	int rc;

	memset(&m, 0, sizeof(m));
	memset(&d, 0, sizeof(d));
	rc = cmd_input_model("init", &m, err);
	if (!rc)
		rc = contract_input("data", 1, &data, err);
	if (!rc)
		rc = dataset_load(&d, data, err);
	if (!rc && !d.n)
		rc = err_set(err, ERR_INVALID, "'%s': no problems", d.path);
	if (!rc) {
		memset(&s, 0, sizeof(s));
		s.d = &d;
		s.seed = (uint64_t)ecfg_int(c, x->cfg, "seed");
		s.batch = (int)ecfg_int(c, x->cfg, "batch");
		s.fast = ecfg_num(c, x->cfg, "fast");
		s.slow = ecfg_num(c, x->cfg, "slow");
		s.total = s.fast + s.slow + ecfg_num(c, x->cfg, "auto");
		s.rule.slow_digits = (int)ecfg_int(c, x->cfg, "auto_slow_digits");
		s.rule.slow_carries = (int)ecfg_int(c, x->cfg, "auto_slow_carries");
		memset(&src, 0, sizeof(src));
		src.fill = dual_fill;
		src.ctx = &s;
		src.max_windows = (size_t)s.batch * TASK_MAX_LEN;
		log_info("dual-sft: %zu problems, shares fast %g slow %g auto %g", d.n,
			 s.fast / s.total, s.slow / s.total, 1 - (s.fast + s.slow) / s.total);
		rc = cmd_train(x, &m, &src, err);
	}
	dataset_free(&d);
	nn_model_free(&m);
	return rc;
}
