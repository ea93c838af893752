/* engine/gen.c — see gen.h. Each pass gathers the windows of the live
 * sequences into one batch; sequences that finish drop out, so the last
 * passes (long slow traces) are small. */
#include "engine/gen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "engine/contract.h"
#include "engine/nn.h"
#include "engine/rng.h"
#include "engine/task.h"

void gen_init(struct gen *g, const struct nn_model *m, size_t cap)
{
	memset(g, 0, sizeof(*g));
	g->m = m;
	g->cap = cap;
	g->w = nn_work_new(&m->cfg, cap);
	g->ctx = xmalloc(cap * (size_t)m->cfg.window);
	g->tgt = xmalloc(cap);
	g->lp = xmalloc(cap * (size_t)m->cfg.vocab * sizeof(float));
	g->idx = xmalloc(cap * sizeof(size_t));
	g->start = xmalloc(cap * sizeof(size_t));
	g->rngs = xmalloc(cap * sizeof(struct rng));
}

void gen_free(struct gen *g)
{
	if (!g)
		return;
	nn_work_free(g->w);
	free(g->ctx);
	free(g->tgt);
	free(g->lp);
	free(g->idx);
	free(g->start);
	free(g->rngs);
	memset(g, 0, sizeof(*g));
}

void gen_window(uint8_t *dst, const uint8_t *seq, size_t pos, int window)
{
	size_t w = (size_t)window;

	if (pos >= w) {
		memcpy(dst, seq + pos - w, w);
	} else {
		memset(dst, 0, w - pos);
		memcpy(dst + w - pos, seq, pos);
	}
}

/* The argmax over ids 1..vocab-1, lowest id on ties. */
static int pick_greedy(const float *lp, int vocab)
{
	int best = 1;

	for (int c = 2; c < vocab; c++)
		if (lp[c] > lp[best])
			best = c;
	return best;
}

/* A draw from softmax(lp / temp) over ids 1..vocab-1, in double. */
static int pick_sample(const float *lp, int vocab, double temp, struct rng *r)
{
	double mx = -INFINITY, sum = 0, e[NN_MAX_VOCAB], u;

	for (int c = 1; c < vocab; c++)
		if (lp[c] > mx)
			mx = lp[c];
	for (int c = 1; c < vocab; c++) {
		e[c] = exp(((double)lp[c] - mx) / temp);
		sum += e[c];
	}
	u = rng_double(r) * sum;
	for (int c = 1; c < vocab; c++) {
		u -= e[c];
		if (u < 0)
			return c;
	}
	/* Rounding left u >= 0: the last id with any mass. */
	for (int c = vocab - 1; c > 1; c--)
		if (e[c] > 0)
			return c;
	return 1;
}

int gen_decode(struct gen *g, size_t n, uint8_t *seqs, size_t stride,
	       size_t *len, int max_len, float temp, uint64_t seed,
	       uint64_t first)
{
	const int window = g->m->cfg.window, vocab = g->m->cfg.vocab;
	const uint8_t end = (uint8_t)task_encode_char(';');
	struct rng *rngs = temp > 0 ? g->rngs : NULL;
	size_t *start = g->start;
	int rc = 0;

	/* Chunks of cap sequences, each decoded to the end. */
	for (size_t c0 = 0; c0 < n && !rc; c0 += g->cap) {
		size_t cn = n - c0 < g->cap ? n - c0 : g->cap, live;

		for (size_t i = 0; i < cn; i++) {
			start[i] = len[c0 + i];
			if (rngs)
				rng_seed(&rngs[i], seed, first + c0 + i);
		}
		for (;;) {
			if (contract_stop) {
				rc = ERR_INTERRUPTED;
				break;
			}
			live = 0;
			for (size_t i = 0; i < cn; i++) {
				size_t s = c0 + i, L = len[s];
				const uint8_t *q = seqs + s * stride;

				if (L > start[i] && q[L - 1] == end)
					continue;
				if (L - start[i] >= (size_t)max_len || L >= stride)
					continue;
				gen_window(g->ctx + live * (size_t)window, q, L, window);
				g->idx[live++] = i;
			}
			if (!live)
				break;
			nn_logprobs(g->m, live, g->ctx, g->lp, g->w);
			for (size_t k = 0; k < live; k++) {
				size_t i = g->idx[k], s = c0 + i;
				const float *lp = g->lp + k * (size_t)vocab;
				int id = rngs ? pick_sample(lp, vocab, temp, &rngs[i])
					      : pick_greedy(lp, vocab);

				seqs[s * stride + len[s]] = (uint8_t)id;
				len[s]++;
			}
		}
	}
	return rc;
}

void gen_score(struct gen *g, size_t n, const uint8_t *seqs, size_t stride,
	       const size_t *len, const size_t *from, double *lp_sum,
	       double *p_sum)
{
	const int window = g->m->cfg.window, vocab = g->m->cfg.vocab;
	size_t s = 0, pos = n ? from[0] : 0;

	for (size_t i = 0; i < n; i++) {
		lp_sum[i] = 0;
		if (p_sum)
			p_sum[i] = 0;
	}
	/* Fill passes of up to cap windows across sequence boundaries. */
	while (s < n) {
		size_t k = 0;

		while (s < n && k < g->cap) {
			if (pos >= len[s]) {
				if (++s < n)
					pos = from[s];
				continue;
			}
			gen_window(g->ctx + k * (size_t)window, seqs + s * stride, pos, window);
			g->tgt[k] = seqs[s * stride + pos];
			g->idx[k++] = s;
			pos++;
		}
		if (!k)
			break;
		nn_logprobs(g->m, k, g->ctx, g->lp, g->w);
		for (size_t j = 0; j < k; j++) {
			float lp = g->lp[j * (size_t)vocab + g->tgt[j]];
			lp_sum[g->idx[j]] += lp;
			if (p_sum)
				p_sum[g->idx[j]] += exp((double)lp);
		}
	}
}
