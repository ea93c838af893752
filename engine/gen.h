/* engine/gen.h — batched decoding and scoring with the reference model.
 *
 * Many sequences advance one character per pass: the windows of every
 * unfinished sequence go through nn_logprobs together. Greedy decoding
 * takes the argmax (ties: the lowest id); sampling draws from the
 * distribution at a temperature with a generator of its own per sequence,
 * seeded from (seed, index), so what a sequence samples depends neither on
 * how many are decoded at once nor on which others are. Padding (id 0) is
 * never generated. */
#ifndef ANNEAL_ENGINE_GEN_H
#define ANNEAL_ENGINE_GEN_H

#include <stddef.h>
#include <stdint.h>

struct nn_model;
struct nn_work;
struct rng;

struct gen {
	const struct nn_model *m;   /* borrowed */
	struct nn_work *w;
	size_t cap;                 /* windows per pass */
	uint8_t *ctx;               /* cap * window */
	uint8_t *tgt;               /* cap */
	float *lp;                  /* cap * vocab */
	size_t *idx;                /* cap: which sequence each window is */
	size_t *start;              /* cap: prompt lengths of a chunk */
	struct rng *rngs;           /* cap: a chunk's generators */
};

/* Scratch for passes of up to cap windows through m. */
void gen_init(struct gen *g, const struct nn_model *m, size_t cap);
void gen_free(struct gen *g);   /* NULL-safe */

/* Sequence i is seqs[i*stride .. i*stride + len[i]) (token ids): on entry
 * its prompt, on return prompt + completion (len[i] updated). Stops a
 * sequence after ';' or max_len completion characters (stride must allow
 * prompt + max_len). temp <= 0: greedy; else sequence i samples with
 * rng_seed(seed, first + i). Returns 0, or ERR_INTERRUPTED when
 * contract_stop was set between passes. */
int gen_decode(struct gen *g, size_t n, uint8_t *seqs, size_t stride,
	       size_t *len, int max_len, float temp, uint64_t seed,
	       uint64_t first);

/* For each sequence i, over its positions from[i] .. len[i]-1: the sum of
 * the model's log-probabilities of the tokens there (lp_sum[i]) and, if
 * p_sum is not NULL, of their probabilities. */
void gen_score(struct gen *g, size_t n, const uint8_t *seqs, size_t stride,
	       const size_t *len, const size_t *from, double *lp_sum,
	       double *p_sum);

/* The window predicting seq[pos]: the `window` ids before it, left-padded
 * with 0. */
void gen_window(uint8_t *dst, const uint8_t *seq, size_t pos, int window);

#endif
