/* engine/train.h — the training loop every training subcommand shares
 * (pretrain, sft, distill, rl, dual-sft): per update, a batch source fills
 * the windows to train on, then one backward pass and one Adam step; events
 * every log_every updates; a checkpoint every ckpt_every updates and on
 * SIGTERM; exact resume from a checkpoint.
 *
 * Exactness: what update u trains on is a function of (seed, u) and the
 * model alone (train_rng gives each update a generator of its own), and
 * a checkpoint holds the model, Adam's moments and step count, and the
 * update index. So a run resumed from step N computes the same updates
 * N+1.. as the uninterrupted one, in the same order: the final model has
 * the same bytes. */
#ifndef ANNEAL_ENGINE_TRAIN_H
#define ANNEAL_ENGINE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "engine/nn.h"

struct buf;
struct contract;
struct err;
struct rng;
struct seqs;

struct train_opts {
	const char *cmd;                 /* written into state.json, checked on resume */
	uint64_t seed;
	long long steps, warmup, ckpt_every, log_every;
	float lr, lr_min, weight_decay, clip;
};

/* The windows of one update. */
struct train_batch {
	int window;
	size_t n, cap;
	uint8_t *ctx;                    /* cap * window */
	uint8_t *target;                 /* cap */
	float *weight;                   /* cap */
	double denom;                    /* the loss is sum(weight * CE) / denom */
};

/* Adds the windows predicting seq[from .. len) with weight w (denom is the
 * caller's). Returns -1, adding nothing, when they do not fit. */
int train_batch_add(struct train_batch *b, const uint8_t *seq, size_t len,
		    size_t from, float w);

/* Where an update's windows come from. */
struct train_source {
	/* Fills b (emptied by the caller) for update u (0-based) of model m.
	 * Sets b->denom (0: nothing to learn from; the step still runs). */
	int (*fill)(void *ctx, const struct nn_model *m, long long u,
		    struct train_batch *b, struct err *err);
	/* Optional: appends ,"name":value members to a metric event and
	 * resets the sums behind them. */
	void (*metrics)(void *ctx, struct buf *line);
	/* Optional: writes files of its own into a checkpoint dir. */
	int (*save)(void *save_ctx, const char *dir, struct err *err);
	void *ctx;
	void *save_ctx;
	size_t max_windows;              /* the most windows one fill adds */
};

struct trainer {
	struct train_opts o;
	struct nn_model *m;              /* borrowed: trained in place */
	struct contract *ct;             /* borrowed */
	struct nn_adam adam;
	float *grad;
	struct nn_work *work;
	struct train_batch b;
	long long done;                  /* updates done */
	long long started;               /* done when this process began */
	double loss_sum;                 /* since the last metric event */
	long long loss_n;
	double last_loss;                /* mean loss of the last logged span */
};

/* Windows per backward pass (nn_work's size). */
#define TRAIN_CHUNK 1024

int train_init(struct trainer *t, struct nn_model *m, const struct train_opts *o,
	       size_t max_windows, struct contract *ct, struct err *err);
void train_free(struct trainer *t);   /* NULL-safe; not the model */

/* Loads dir's model.safetensors (its shapes must match t's model),
 * optim.safetensors and state.json. */
int train_resume(struct trainer *t, const char *dir, struct err *err);

/* Runs updates t->done .. steps-1. 0 when all are done; ERR_INTERRUPTED
 * after SIGTERM, with a checkpoint of the progress written. */
int train_run(struct trainer *t, const struct train_source *src, struct err *err);

/* Writes checkpoint step-<t->done> (model, optimizer, state, the source's
 * files) and announces it. */
int train_checkpoint(struct trainer *t, const struct train_source *src,
		     struct err *err);

/* A generator for update u of stream: rng_seed(rng_hash(seed, stream, u)). */
void train_rng(struct rng *r, uint64_t seed, uint64_t stream, long long u);

/* The stock source: `batch` sequences drawn uniformly (with replacement)
 * from s at each update; the loss on every position after the first
 * (completion == 0) or on the completion only. */
struct seq_source {
	const struct seqs *s;
	uint64_t seed;
	int batch;
	int completion;
};
int seq_source_fill(void *ctx, const struct nn_model *m, long long u,
		    struct train_batch *b, struct err *err);
/* A train_source over ss (max_windows from the longest sequence). */
struct train_source seq_source(struct seq_source *ss);

/* Random streams: one per purpose, so draws in one never shift another. */
enum {
	STREAM_INIT = 1, STREAM_BATCH, STREAM_CORPUS, STREAM_REASONING,
	STREAM_PROMPTS, STREAM_EVAL, STREAM_PICK, STREAM_TEACHER, STREAM_RL,
	STREAM_DUAL, STREAM_PROBLEMS,
};

#endif
