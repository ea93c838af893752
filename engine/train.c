/* engine/train.c — see train.h. No allocation per update: the batch,
 * gradient and scratch space are sized once from the source's
 * max_windows; a backward pass takes TRAIN_CHUNK windows at a time and
 * the gradient accumulates across chunks (in a fixed order). */
#include "engine/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/log.h"
#include "engine/contract.h"
#include "engine/data.h"
#include "engine/gen.h"
#include "engine/rng.h"
#include "pipeline/json.h"

#define STATE_FILE "state.json"
#define MODEL_FILE "model.safetensors"
#define OPTIM_FILE "optim.safetensors"
/* Checkpoints kept in ANNEAL_CKPT_DIR: the newest two, so that one is
 * whole while the next is being written. */
#define KEEP_CKPTS 2

void train_rng(struct rng *r, uint64_t seed, uint64_t stream, long long u)
{
	rng_seed(r, rng_hash(seed, stream, (uint64_t)u), stream);
}

int train_batch_add(struct train_batch *b, const uint8_t *seq, size_t len,
		    size_t from, float w)
{
	if (from >= len)
		return 0;
	if (b->n + (len - from) > b->cap)
		return -1;
	for (size_t pos = from; pos < len; pos++) {
		gen_window(b->ctx + b->n * (size_t)b->window, seq, pos, b->window);
		b->target[b->n] = seq[pos];
		b->weight[b->n] = w;
		b->n++;
	}
	return 0;
}

int train_init(struct trainer *t, struct nn_model *m, const struct train_opts *o,
	       size_t max_windows, struct contract *ct, struct err *err)
{
	int rc;

	memset(t, 0, sizeof(*t));
	t->o = *o;
	t->m = m;
	t->ct = ct;
	rc = nn_adam_init(&t->adam, m->nparams, err);
	if (rc)
		return rc;
	t->adam.weight_decay = o->weight_decay;
	t->adam.clip = o->clip;
	if (!ct->ckpt_dir && o->ckpt_every > 0) {
		log_warn("%s: ANNEAL_CKPT_DIR is not set: no checkpoints", o->cmd);
		t->o.ckpt_every = 0;
	}
	t->grad = xcalloc(m->nparams, sizeof(float));
	t->work = nn_work_new(&m->cfg, TRAIN_CHUNK);
	if (max_windows < 1)
		max_windows = 1;
	t->b.window = m->cfg.window;
	t->b.cap = max_windows;
	t->b.ctx = xmalloc(max_windows * (size_t)m->cfg.window);
	t->b.target = xmalloc(max_windows);
	t->b.weight = xmalloc(max_windows * sizeof(float));
	return 0;
}

void train_free(struct trainer *t)
{
	if (!t)
		return;
	nn_adam_free(&t->adam);
	free(t->grad);
	nn_work_free(t->work);
	free(t->b.ctx);
	free(t->b.target);
	free(t->b.weight);
	memset(t, 0, sizeof(*t));
}

static int same_arch(const struct nn_config *a, const struct nn_config *b)
{
	if (a->window != b->window || a->vocab != b->vocab || a->nlayers != b->nlayers)
		return 0;
	for (int i = 0; i < a->nlayers; i++)
		if (a->hidden[i] != b->hidden[i])
			return 0;
	return 1;
}

int train_resume(struct trainer *t, const char *dir, struct err *err)
{
	char *mp = fs_join(dir, MODEL_FILE), *op = fs_join(dir, OPTIM_FILE);
	char *sp = fs_join(dir, STATE_FILE), *text = NULL;
	struct nn_model m2;
	struct jnode *st = NULL;
	const struct jnode *v;
	size_t len;
	int rc;

	memset(&m2, 0, sizeof(m2));
	rc = nn_model_load(&m2, mp, err);
	if (!rc && !same_arch(&m2.cfg, &t->m->cfg))
		rc = err_set(err, ERR_INVALID,
			     "'%s': not the architecture of the model being trained", mp);
	if (!rc)
		memcpy(t->m->params, m2.params, m2.nparams * sizeof(float));
	if (!rc)
		rc = nn_adam_load(&t->adam, t->m, op, err);
	if (!rc) {
		t->adam.weight_decay = t->o.weight_decay;
		t->adam.clip = t->o.clip;
		rc = fs_read_file(sp, 1 << 20, &text, &len, err);
	}
	if (!rc)
		rc = json_parse(text, len, 0, &st, err);
	if (!rc) {
		v = json_get(st, "cmd");
		if (!v || v->type != J_STRING || strcmp(v->str, t->o.cmd))
			rc = err_set(err, ERR_INVALID, "'%s': not a '%s' checkpoint", sp,
				     t->o.cmd);
	}
	if (!rc) {
		v = json_get(st, "update");
		if (!v || v->type != J_NUMBER || !v->is_int || v->inum < 0 ||
		    v->inum > t->o.steps)
			rc = err_set(err, ERR_INVALID, "'%s': update must be 0..%lld", sp,
				     t->o.steps);
		else
			t->done = t->started = v->inum;
	}
	if (rc)
		err_prefix(err, "resume from '%s'", dir);
	nn_model_free(&m2);
	json_free(st);
	free(text);
	free(mp);
	free(op);
	free(sp);
	return rc;
}

int train_checkpoint(struct trainer *t, const struct train_source *src,
		     struct err *err)
{
	char *tmp = NULL, *p = NULL;
	struct buf state = BUF_INIT;
	int rc;

	rc = contract_ckpt_begin(t->ct, t->done, &tmp, err);
	if (!rc) {
		p = fs_join(tmp, MODEL_FILE);
		rc = nn_model_save(t->m, p, err);
		free(p);
	}
	if (!rc) {
		p = fs_join(tmp, OPTIM_FILE);
		rc = nn_adam_save(&t->adam, t->m, p, err);
		free(p);
	}
	if (!rc) {
		buf_printf(&state, "{\"cmd\": ");
		buf_add_json_str(&state, t->o.cmd);
		buf_printf(&state, ", \"update\": %lld, \"steps\": %lld, \"seed\": %llu}\n",
			   t->done, t->o.steps, (unsigned long long)t->o.seed);
		rc = contract_write(tmp, STATE_FILE, state.ptr, state.len, err);
	}
	if (!rc && src && src->save)
		rc = src->save(src->save_ctx, tmp, err);
	if (!rc)
		rc = contract_ckpt_commit(t->ct, t->done, tmp, KEEP_CKPTS, err);
	if (rc && tmp) {
		struct err e2;
		fs_remove_tree(tmp, &e2);
	}
	buf_free(&state);
	free(tmp);
	return rc;
}

/* v to 6 significant digits, in the shortest form that reads back. */
static void add_num6(struct buf *b, double v)
{
	char s[64];

	snprintf(s, sizeof(s), "%.6g", v);
	buf_add_num(b, strtod(s, NULL));
}

static void log_events(struct trainer *t, const struct train_source *src,
		       float lr)
{
	struct buf line = BUF_INIT;

	t->last_loss = t->loss_n ? t->loss_sum / (double)t->loss_n : 0;
	contract_progress(t->ct, t->done, t->o.steps);
	buf_printf(&line, "{\"event\":\"metric\",\"step\":%lld,\"loss\":", t->done);
	add_num6(&line, t->last_loss);
	buf_adds(&line, ",\"lr\":");
	add_num6(&line, (double)lr);
	if (src->metrics)
		src->metrics(src->ctx, &line);
	buf_addc(&line, '}');
	contract_event(t->ct, line.ptr);
	log_info("%s: update %lld/%lld loss %.4f lr %.3g", t->o.cmd, t->done,
		 t->o.steps, t->last_loss, (double)lr);
	t->loss_sum = 0;
	t->loss_n = 0;
	buf_free(&line);
}

int train_run(struct trainer *t, const struct train_source *src, struct err *err)
{
	struct nn_batch nb;
	int rc = 0;

	while (t->done < t->o.steps) {
		long long u = t->done;
		double loss = 0;
		float lr;

		if (contract_stop)
			break;
		t->b.n = 0;
		t->b.denom = 0;
		rc = src->fill(src->ctx, t->m, u, &t->b, err);
		if (rc == ERR_INTERRUPTED) {
			rc = 0;
			break;   /* the update did not happen: save the ones before */
		}
		if (rc)
			return rc;
		memset(t->grad, 0, t->m->nparams * sizeof(float));
		if (t->b.denom > 0) {
			float scale = (float)(1.0 / t->b.denom);
			for (size_t c0 = 0; c0 < t->b.n; c0 += TRAIN_CHUNK) {
				nb.n = t->b.n - c0 < TRAIN_CHUNK ? t->b.n - c0 : TRAIN_CHUNK;
				nb.ctx = t->b.ctx + c0 * (size_t)t->b.window;
				nb.target = t->b.target + c0;
				nb.weight = t->b.weight + c0;
				loss += nn_train_batch(t->m, &nb, scale, t->grad, t->work);
			}
			loss /= t->b.denom;
		}
		lr = nn_lr_at(u, t->o.steps, t->o.warmup, t->o.lr, t->o.lr_min);
		nn_adam_step(&t->adam, t->m->params, t->grad, lr);
		t->done++;
		t->loss_sum += loss;
		t->loss_n++;
		if (t->done % t->o.log_every == 0 || t->done == t->o.steps)
			log_events(t, src, lr);
		if (t->o.ckpt_every > 0 && t->done % t->o.ckpt_every == 0 &&
		    t->done < t->o.steps && !contract_stop) {
			rc = train_checkpoint(t, src, err);
			if (rc)
				return rc;
		}
	}
	if (t->done < t->o.steps) {
		/* Interrupted: save what this process did (a resumed one that
		 * did nothing yet has its checkpoint already). */
		if (t->done > t->started && t->ct->ckpt_dir)
			rc = train_checkpoint(t, src, err);
		return rc ? rc : err_set(err, ERR_INTERRUPTED,
					  "interrupted at update %lld of %lld", t->done,
					  t->o.steps);
	}
	return 0;
}

/* ---- the stock source ----------------------------------------------------------- */

int seq_source_fill(void *ctx, const struct nn_model *m, long long u,
		    struct train_batch *b, struct err *err)
{
	struct seq_source *ss = ctx;
	const struct seqs *s = ss->s;
	struct rng r;

	(void)m;
	train_rng(&r, ss->seed, STREAM_BATCH, u);
	for (int i = 0; i < ss->batch; i++) {
		size_t k = (size_t)rng_below(&r, s->n);
		size_t from = ss->completion ? s->plen[k] : 1;
		size_t n0 = b->n;

		if (train_batch_add(b, s->ids + s->off[k], s->len[k], from, 1.0f) < 0)
			return err_set(err, ERR_SYSTEM, "batch overflow");
		b->denom += (double)(b->n - n0);
	}
	return 0;
}

struct train_source seq_source(struct seq_source *ss)
{
	struct train_source src;

	memset(&src, 0, sizeof(src));
	src.fill = seq_source_fill;
	src.ctx = ss;
	src.max_windows = (size_t)ss->batch * (ss->s->maxlen ? ss->s->maxlen : 1);
	return src;
}
