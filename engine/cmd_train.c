/* engine/cmd_train.c — `anneal-engine pretrain` and `sft`: next-character
 * training on a dataset of full examples.
 *
 *   pretrain  inputs data [, init]   output model   loss on all positions
 *   sft       inputs init, data      output model   loss on the completion
 *
 * Without init, pretrain starts from a fresh model (hidden, window, seed);
 * with one, the architecture is the init's. */
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
#include "pipeline/json.h"

static int fresh_model(const struct cmd_ctx *x, struct nn_model *m,
		       struct err *err)
{
	struct nn_config cfg;
	struct rng r;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	cfg.window = (int)ecfg_int(x->c, x->cfg, "window");
	cfg.vocab = TASK_VOCAB;
	cfg.nlayers = (int)ecfg_intlist(x->c, x->cfg, "hidden", cfg.hidden, NN_MAX_LAYERS);
	rc = nn_config_check(&cfg, err);
	if (!rc) {
		rng_seed(&r, (uint64_t)ecfg_int(x->c, x->cfg, "seed"), STREAM_INIT);
		rc = nn_model_init(m, &cfg, &r, err);
	}
	return rc;
}

int cmd_train(const struct cmd_ctx *x, struct nn_model *m,
	      const struct train_source *src, struct err *err)
{
	struct train_opts o;
	struct trainer t;
	int rc;

	cmd_train_opts(x, &o);
	rc = train_init(&t, m, &o, src->max_windows, x->ct, err);
	if (!rc && x->ct->resume) {
		rc = train_resume(&t, x->ct->resume, err);
		if (!rc)
			log_info("%s: resumed at update %lld", o.cmd, t.done);
	}
	if (!rc)
		rc = train_run(&t, src, err);
	if (!rc)
		rc = cmd_save_model("model", m, err);
	train_free(&t);
	return rc;
}

static int run(const struct cmd_ctx *x, int init_required, struct err *err)
{
	struct nn_model m;
	struct dataset d;
	struct seqs s;
	struct seq_source ss;
	struct train_source src;
	const char *init = NULL, *data = NULL;
	int rc;

	memset(&m, 0, sizeof(m));
	memset(&d, 0, sizeof(d));
	memset(&s, 0, sizeof(s));
	rc = contract_input("data", 1, &data, err);
	if (!rc)
		rc = contract_input("init", init_required, &init, err);
	if (!rc)
		rc = init ? cmd_load_model("init", init, &m, err) : fresh_model(x, &m, err);
	if (!rc && init && ecfg_key(x->c, "hidden") && x->cfg &&
	    (json_get(x->cfg, "hidden") || json_get(x->cfg, "window")))
		log_warn("%s: hidden and window come from the init model; the config's are ignored",
			 x->c->name);
	if (!rc)
		rc = dataset_load(&d, data, err);
	if (!rc)
		rc = seqs_from_examples(&s, &d, err);
	if (!rc) {
		log_info("%s: %zu examples, %zu parameters (window %d, %d layer(s) of %d)",
			 x->c->name, s.n, m.nparams, m.cfg.window, m.cfg.nlayers,
			 m.cfg.hidden[0]);
		ss.s = &s;
		ss.seed = (uint64_t)ecfg_int(x->c, x->cfg, "seed");
		ss.batch = (int)ecfg_int(x->c, x->cfg, "batch");
		ss.completion = !strcmp(ecfg_enum(x->c, x->cfg, "loss"), "completion");
		src = seq_source(&ss);
		rc = cmd_train(x, &m, &src, err);
	}
	seqs_free(&s);
	dataset_free(&d);
	nn_model_free(&m);
	return rc;
}

int cmd_pretrain(const struct cmd_ctx *x, struct err *err)
{
	return run(x, 0, err);
}

int cmd_sft(const struct cmd_ctx *x, struct err *err)
{
	return run(x, 1, err);
}
