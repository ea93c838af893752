/* engine/cmd_common.c — helpers the subcommands share: models in and out
 * of artifact directories, training options from the config, metric
 * events. */
#include "engine/cmd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "engine/config.h"
#include "engine/contract.h"
#include "engine/nn.h"
#include "engine/task.h"
#include "engine/train.h"

int cmd_load_model(const char *role, const char *dir, struct nn_model *m,
		   struct err *err)
{
	char *p = fs_join(dir, MODEL_FILE_NAME);
	int rc;

	if (!fs_exists(p))
		rc = err_set(err, ERR_INVALID, "input '%s': no %s in '%s' (not a model?)",
			     role, MODEL_FILE_NAME, dir);
	else
		rc = nn_model_load(m, p, err);
	if (!rc && m->cfg.vocab != TASK_VOCAB)
		rc = err_set(err, ERR_INVALID, "input '%s': '%s' has a vocabulary of %d, not %d",
			     role, p, m->cfg.vocab, TASK_VOCAB);
	free(p);
	return rc;
}

int cmd_input_model(const char *role, struct nn_model *m, struct err *err)
{
	const char *dir;
	int rc = contract_input(role, 1, &dir, err);

	return rc ? rc : cmd_load_model(role, dir, m, err);
}

int cmd_save_model(const char *output, const struct nn_model *m, struct err *err)
{
	char *dir = NULL, *p;
	int rc = contract_output(output, &dir, err);

	if (rc)
		return rc;
	p = fs_join(dir, MODEL_FILE_NAME);
	rc = nn_model_save(m, p, err);
	free(p);
	free(dir);
	return rc;
}

static long long opt_int(const struct cmd_ctx *x, const char *name, long long def)
{
	return ecfg_key(x->c, name) ? ecfg_int(x->c, x->cfg, name) : def;
}

static double opt_num(const struct cmd_ctx *x, const char *name, double def)
{
	return ecfg_key(x->c, name) ? ecfg_num(x->c, x->cfg, name) : def;
}

void cmd_train_opts(const struct cmd_ctx *x, struct train_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->cmd = x->c->name;
	o->seed = (uint64_t)opt_int(x, "seed", 1);
	o->steps = opt_int(x, "steps", 1);
	o->warmup = opt_int(x, "warmup", 0);
	o->ckpt_every = opt_int(x, "ckpt_every", 0);
	o->log_every = opt_int(x, "log_every", 50);
	o->lr = (float)opt_num(x, "lr", 1e-3);
	o->lr_min = (float)opt_num(x, "lr_min", 0);
	o->weight_decay = (float)opt_num(x, "weight_decay", 0);
	o->clip = (float)opt_num(x, "clip", 1);
}

void cmd_metrics(const struct cmd_ctx *x, const char *const *names,
		 const double *values, size_t n)
{
	struct buf line = BUF_INIT;

	buf_adds(&line, "{\"event\":\"metric\"");
	for (size_t i = 0; i < n; i++) {
		buf_addc(&line, ',');
		buf_add_json_str(&line, names[i]);
		buf_addc(&line, ':');
		if (values[i] == (double)(long long)values[i] && fabs(values[i]) < 9e15)
			buf_printf(&line, "%lld", (long long)values[i]);
		else
			buf_add_num(&line, values[i]);
	}
	buf_addc(&line, '}');
	contract_event(x->ct, line.ptr);
	buf_free(&line);
}
