/* engine/nn.h — the reference engine's model: a character-level MLP
 * language model over a fixed window, trained with backprop and Adam.
 *
 * Input: the `window` characters before the one to predict (token ids,
 * left-padded with 0). The first layer is per-position one-hot: hidden
 * pre-activation = in.bias + sum over positions p of row (p*vocab + c_p)
 * of in.weight — an embedding per (position, character), so its forward
 * cost is window*hidden adds, not a dense matmul. Then tanh, then zero or
 * more dense tanh layers, then a dense output layer to vocab logits.
 *
 *   in.weight        [window*vocab, hidden[0]]
 *   in.bias          [hidden[0]]
 *   hidden.L.weight  [hidden[L-1], hidden[L]]   L = 1 .. nlayers-1
 *   hidden.L.bias    [hidden[L]]
 *   out.weight       [hidden[nlayers-1], vocab]
 *   out.bias         [vocab]
 *
 * All parameters live in one float array (m->params) in the order above,
 * so a gradient, Adam's moments and a merge are flat arrays of the same
 * length. Row-major everywhere. Saved as F32 safetensors with these names;
 * the architecture is read back from the shapes (a merged checkpoint
 * carries no config of its own).
 *
 * Determinism: single-threaded, a fixed order of every sum, no
 * reassociation (the engine is built with -ffp-contract=off): the same
 * inputs give the same bits on any x86-64, vectorised or not. */
#ifndef ANNEAL_ENGINE_NN_H
#define ANNEAL_ENGINE_NN_H

#include <stddef.h>
#include <stdint.h>

struct err;
struct rng;

#define NN_MAX_LAYERS 4
#define NN_MAX_WINDOW 256
#define NN_MAX_HIDDEN 4096
#define NN_MAX_VOCAB 256

struct nn_config {
	int window;                    /* characters of context */
	int vocab;                     /* token ids 0..vocab-1; 0 is padding */
	int nlayers;                   /* 1..NN_MAX_LAYERS hidden layers */
	int hidden[NN_MAX_LAYERS];
};

struct nn_tensor_view {
	const char *name;              /* "in.weight", "hidden.1.bias", ... */
	size_t rows, cols;             /* cols 0 for a vector: shape [rows] */
	size_t offset;                 /* into params, in floats */
};

struct nn_model {
	struct nn_config cfg;
	float *params;                 /* nparams floats, owned */
	size_t nparams;
	struct nn_tensor_view t[2 * NN_MAX_LAYERS + 2];
	size_t ntensors;
};

/* Checks cfg (limits above); ERR_INVALID naming the field. */
int nn_config_check(const struct nn_config *cfg, struct err *err);

/* Allocates params for cfg and initialises them: weights uniform in
 * ±1/sqrt(fan_in) (fan_in of in.weight is window: one row per position
 * is active), biases 0, drawn from r. */
int nn_model_init(struct nn_model *m, const struct nn_config *cfg,
		  struct rng *r, struct err *err);
/* An exact copy (params included). */
int nn_model_copy(struct nn_model *dst, const struct nn_model *src,
		  struct err *err);
void nn_model_free(struct nn_model *m);   /* NULL-safe; zeroes m */

/* Scratch space for batches of up to max_n windows (0 counts as 1).
 * NULL if cfg fails nn_config_check, max_n is over 2^32 - 1, or memory is
 * short. One work per thread: calls write into it. */
struct nn_work;
struct nn_work *nn_work_new(const struct nn_config *cfg, size_t max_n);
void nn_work_free(struct nn_work *w);

/* A batch of n examples: ctx is n*window token ids (example i's window at
 * ctx + i*window, oldest first), target n ids, weight n floats or NULL for
 * all 1. Weights may be negative (policy gradients). */
struct nn_batch {
	size_t n;
	const uint8_t *ctx;
	const uint8_t *target;
	const float *weight;
};

/* Forward and backward over b (b->n <= the work's max_n). Returns the sum
 * over examples of weight_i * cross_entropy_i (natural log), and ADDS
 * scale * d(that sum)/d(params) into grad (nparams floats; the caller
 * zeroes it). scale is typically 1/(number of target positions).
 * Every gradient element is accumulated into grad in example order, so
 * calling it on consecutive pieces of a batch (same scale) leaves the
 * same bits in grad as one call on the whole: batches larger than max_n
 * can be split without changing the result (the returned losses then
 * add up to the whole's up to rounding). */
double nn_train_batch(const struct nn_model *m, const struct nn_batch *b,
		      float scale, float *grad, struct nn_work *w);

/* Log-probabilities of the next token for n windows (n <= max_n): out is
 * n*vocab. */
void nn_logprobs(const struct nn_model *m, size_t n, const uint8_t *ctx,
		 float *out, struct nn_work *w);

/* Adam (Kingma & Ba) with decoupled weight decay (AdamW) and optional
 * clipping of the gradient's global L2 norm. m and v are nparams floats,
 * owned; t counts steps taken. */
struct nn_adam {
	float beta1, beta2, eps, weight_decay, clip;  /* clip <= 0: none */
	long long t;
	float *m, *v;
	size_t n;
};
/* beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0, clip 1.0; zero moments. */
int nn_adam_init(struct nn_adam *a, size_t nparams, struct err *err);
void nn_adam_free(struct nn_adam *a);
/* One step at learning rate lr: t += 1, clip, update moments, update
 * params with bias correction. Returns the gradient's L2 norm before
 * clipping. grad is left as it was (the caller zeroes it). Weight decay
 * (p *= 1 - lr * weight_decay, as PyTorch's AdamW) applies to every
 * parameter, biases included. */
double nn_adam_step(struct nn_adam *a, float *params, const float *grad,
		    float lr);

/* Cosine schedule: linear warmup to lr over warmup steps, then cosine
 * decay to lr_min at total. step counts from 0: step s < warmup gets
 * lr * (s + 1) / warmup (so step 0 is not wasted at 0); from warmup on,
 * lr_min + (lr - lr_min) (1 + cos(pi * (s - warmup) / (total - warmup))) / 2,
 * lr_min from total on. */
float nn_lr_at(long long step, long long total, long long warmup, float lr,
	       float lr_min);

/* ---- Files (artifacts/safetensors: temporary name, fsync, rename) ---- */

/* Writes the model as F32 safetensors at path, with __metadata__
 * {"format": "anneal-mlp", "window": "48", "vocab": "20", ...}. */
int nn_model_save(const struct nn_model *m, const char *path, struct err *err);
/* Reads a model, inferring the config from the tensor names and shapes.
 * Accepts F32, and BF16/F16 (converted). ERR_INVALID naming the file and
 * the tensor when a name is missing or unexpected, or shapes disagree.
 * Metadata is not read (merged checkpoints carry their own). m is
 * overwritten (not freed first); zeroed on failure. */
int nn_model_load(struct nn_model *m, const char *path, struct err *err);

/* Adam state for model m: tensors "m.NAME" and "v.NAME" for each model
 * tensor, and __metadata__ "t". Load checks the shapes against m (F32
 * only) and fills a's moments and t: a is either initialised for m
 * (nn_adam_init; its hyperparameters are kept) or zeroed (then
 * initialised with the defaults). On failure a is unchanged. */
int nn_adam_save(const struct nn_adam *a, const struct nn_model *m,
		 const char *path, struct err *err);
int nn_adam_load(struct nn_adam *a, const struct nn_model *m,
		 const char *path, struct err *err);

#endif
