/* engine/cmd_distill.c — `anneal-engine distill`: one iteration of
 * model-aware iterative distillation.
 *
 *  1. draw `prompts` problems of the prompts dataset without replacement,
 *     from a generator seeded by (seed, iteration): each iteration sees a
 *     fresh slice;
 *  2. the teacher samples `samples` completions per prompt (batched, at
 *     `temperature`, in `mode`);
 *  3. rule-based verification keeps, per prompt, the shortest completion
 *     that is correct and well formed (ties: the first sampled);
 *  4. each kept example's complexity score is the current student's mean
 *     per-character cross-entropy on its completion; the examples whose
 *     score lies within the [select_low, select_high] quantiles are kept
 *     (neither mastered nor hopeless for this student);
 *  5. the selection is written as output `data` (data.txt, scores.tsv) and
 *     the student trains on it, loss on the completion.
 *
 * Steps 1-4 are a pure function of the inputs and config. The selection
 * is also stored in every checkpoint, so a resumed attempt skips them and
 * trains on exactly the same lines.
 *
 * inputs init (student), teacher, data (prompts); outputs model, data. */
#include "engine/cmd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
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
#define SCORES_FILE "scores.tsv"
#define GEN_BATCH 1024

struct selection {
	struct buf data;     /* data.txt */
	struct buf scores;   /* scores.tsv */
};

static int save_selection(void *ctx, const char *dir, struct err *err)
{
	struct selection *sel = ctx;
	int rc = contract_write(dir, DATA_FILE, sel->data.ptr, sel->data.len, err);

	return rc ? rc : contract_write(dir, SCORES_FILE, sel->scores.ptr, sel->scores.len, err);
}

static int load_selection(struct selection *sel, const char *dir, struct err *err)
{
	char *p = fs_join(dir, DATA_FILE), *q = fs_join(dir, SCORES_FILE), *text = NULL;
	size_t len = 0;
	int rc;

	rc = fs_read_file(p, DATA_MAX_BYTES, &text, &len, err);
	if (!rc) {
		buf_add(&sel->data, text, len);
		free(text);
		text = NULL;
		rc = fs_read_file(q, DATA_MAX_BYTES, &text, &len, err);
	}
	if (!rc)
		buf_add(&sel->scores, text, len);
	if (rc)
		err_prefix(err, "resume");
	free(text);
	free(p);
	free(q);
	return rc;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Steps 1-4: fills sel. */
static int select_data(const struct cmd_ctx *x, const struct nn_model *student,
		       const struct nn_model *teacher, const struct dataset *d,
		       struct selection *sel, struct err *err)
{
	const struct ecfg_cmd *c = x->c;
	uint64_t seed = (uint64_t)ecfg_int(c, x->cfg, "seed");
	uint64_t it = (uint64_t)ecfg_int(c, x->cfg, "iteration");
	size_t np = (size_t)ecfg_int(c, x->cfg, "prompts");
	size_t ns = (size_t)ecfg_int(c, x->cfg, "samples");
	int max_len = (int)ecfg_int(c, x->cfg, "max_len");
	float temp = (float)ecfg_num(c, x->cfg, "temperature");
	double qlo = ecfg_num(c, x->cfg, "select_low"), qhi = ecfg_num(c, x->cfg, "select_high");
	enum task_mode mode;
	size_t *perm = NULL, *len = NULL, *plen = NULL, *kept = NULL, nk = 0, nsel = 0, ok = 0;
	uint8_t *seqs = NULL;
	double *score = NULL, *sorted = NULL, lo = 0, hi = 0, sum = 0, selsum = 0;
	char text[STRIDE + 1];
	struct gen g;
	struct rng r;
	int rc;

	task_mode_parse(ecfg_enum(c, x->cfg, "mode"), &mode);
	if (np > d->n)
		np = d->n;
	/* 1. A partial Fisher-Yates shuffle: np distinct problems. */
	perm = xmalloc(d->n * sizeof(size_t));
	for (size_t i = 0; i < d->n; i++)
		perm[i] = i;
	rng_seed(&r, rng_hash(seed, STREAM_PICK, it), STREAM_PICK);
	for (size_t i = 0; i < np; i++) {
		size_t j = i + (size_t)rng_below(&r, d->n - i), t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	/* 2. The teacher's samples: sequence i*ns+k is sample k of prompt i. */
	seqs = xmalloc(np * ns * STRIDE);
	len = xmalloc(np * ns * sizeof(size_t));
	plen = xmalloc(np * sizeof(size_t));
	for (size_t i = 0; i < np; i++) {
		plen[i] = task_prompt(&d->lines[perm[i]].p, mode, text, sizeof(text));
		for (size_t k = 0; k < ns; k++) {
			task_encode(text, plen[i], seqs + (i * ns + k) * STRIDE);
			len[i * ns + k] = plen[i];
		}
	}
	gen_init(&g, teacher, GEN_BATCH);
	rc = gen_decode(&g, np * ns, seqs, STRIDE, len, max_len, temp,
			rng_hash(seed, STREAM_TEACHER, it), 0);
	gen_free(&g);
	if (rc) {
		rc = err_set(err, rc, "interrupted while the teacher samples");
		goto done;
	}
	/* 3. Verification: the shortest correct, well-formed sample, moved to
	 * the front of the kept list (kept[j] = its sequence). */
	kept = xmalloc((np ? np : 1) * sizeof(size_t));
	for (size_t i = 0; i < np; i++) {
		const struct problem *p = &d->lines[perm[i]].p;
		size_t best = SIZE_MAX;

		for (size_t k = 0; k < ns; k++) {
			size_t s = i * ns + k, n = len[s] - plen[i];
			struct verdict v;

			for (size_t q = 0; q < n; q++)
				text[q] = task_decode_char(seqs[s * STRIDE + plen[i] + q]);
			task_check(p, mode, text, n, &v);
			if (v.correct && v.well_formed &&
			    (best == SIZE_MAX || len[s] < len[best]))
				best = s;
		}
		if (best != SIZE_MAX)
			kept[nk++] = best;
	}
	ok = nk;
	/* 4. The student's loss on each kept completion. Kept sequences are
	 * compacted to the front so one scoring pass covers them. */
	{
		size_t *from = xmalloc((nk ? nk : 1) * sizeof(size_t));
		size_t *klen = xmalloc((nk ? nk : 1) * sizeof(size_t));
		double *lp = xmalloc((nk ? nk : 1) * sizeof(double));

		for (size_t j = 0; j < nk; j++) {
			size_t s = kept[j];
			memmove(seqs + j * STRIDE, seqs + s * STRIDE, STRIDE);
			from[j] = plen[s / ns];
			klen[j] = len[s];
		}
		score = xmalloc((nk ? nk : 1) * sizeof(double));
		gen_init(&g, student, GEN_BATCH);
		gen_score(&g, nk, seqs, STRIDE, klen, from, lp, NULL);
		gen_free(&g);
		for (size_t j = 0; j < nk; j++) {
			score[j] = -lp[j] / (double)(klen[j] - from[j]);
			sum += score[j];
			len[j] = klen[j];   /* len is free from here on */
		}
		free(from);
		free(klen);
		free(lp);
	}
	if (nk) {
		sorted = xmalloc(nk * sizeof(double));
		memcpy(sorted, score, nk * sizeof(double));
		qsort(sorted, nk, sizeof(double), cmp_double);
		lo = sorted[(size_t)floor(qlo * (double)(nk - 1))];
		hi = sorted[(size_t)ceil(qhi * (double)(nk - 1))];
	}
	buf_adds(&sel->scores, "example\tstudent_loss\n");
	for (size_t j = 0; j < nk; j++) {
		if (score[j] < lo || score[j] > hi)
			continue;
		for (size_t q = 0; q < len[j]; q++)
			text[q] = task_decode_char(seqs[j * STRIDE + q]);
		buf_add(&sel->data, text, len[j]);
		buf_addc(&sel->data, '\n');
		buf_add(&sel->scores, text, len[j]);
		buf_printf(&sel->scores, "\t%.6f\n", score[j]);
		selsum += score[j];
		nsel++;
	}
	{
		const char *names[] = { "teacher_accuracy", "prompts", "kept", "selected",
					"score_mean", "selected_score_mean", "score_low",
					"score_high" };
		double v[] = { np ? (double)ok / (double)np : 0, (double)np, (double)nk,
			       (double)nsel, nk ? sum / (double)nk : 0,
			       nsel ? selsum / (double)nsel : 0, lo, hi };
		for (size_t i = 4; i < 8; i++)
			v[i] = round(v[i] * 1e6) / 1e6;
		v[0] = round(v[0] * 1e6) / 1e6;
		cmd_metrics(x, names, v, 8);
		log_info("distill: iteration %llu: %zu prompts, teacher accuracy %.4f, "
			 "%zu kept, %zu selected (loss %.4f..%.4f)", (unsigned long long)it,
			 np, v[0], nk, nsel, lo, hi);
	}
	if (!nsel)
		rc = err_set(err, ERR_STEP, "no example selected: the teacher solved none "
			     "of %zu prompts", np);
done:
	free(perm);
	free(seqs);
	free(len);
	free(plen);
	free(kept);
	free(score);
	free(sorted);
	return rc;
}

int cmd_distill(const struct cmd_ctx *x, struct err *err)
{
	struct nn_model student, teacher;
	struct dataset d, sd;
	struct seqs s;
	struct seq_source ss;
	struct train_source src;
	struct selection sel = { BUF_INIT, BUF_INIT };
	const char *data = NULL;
	char *out = NULL;
	int rc;

	memset(&student, 0, sizeof(student));
	memset(&teacher, 0, sizeof(teacher));
	memset(&d, 0, sizeof(d));
	memset(&sd, 0, sizeof(sd));
	memset(&s, 0, sizeof(s));
	rc = cmd_input_model("init", &student, err);
	if (!rc)
		rc = cmd_input_model("teacher", &teacher, err);
	if (!rc)
		rc = contract_input("data", 1, &data, err);
	if (!rc)
		rc = dataset_load(&d, data, err);
	if (!rc && !d.n)
		rc = err_set(err, ERR_INVALID, "'%s': no prompts", d.path);
	if (!rc) {
		if (x->ct->resume)
			rc = load_selection(&sel, x->ct->resume, err);
		else
			rc = select_data(x, &student, &teacher, &d, &sel, err);
	}
	if (!rc)
		rc = contract_output("data", &out, err);
	if (!rc)
		rc = save_selection(&sel, out, err);
	if (!rc)
		rc = dataset_parse(&sd, DATA_FILE " (selected)", sel.data.ptr, sel.data.len, err);
	if (!rc)
		rc = seqs_from_examples(&s, &sd, err);
	if (!rc) {
		ss.s = &s;
		ss.seed = (uint64_t)ecfg_int(x->c, x->cfg, "seed") ^
			  rng_hash(0, STREAM_BATCH, (uint64_t)ecfg_int(x->c, x->cfg, "iteration"));
		ss.batch = (int)ecfg_int(x->c, x->cfg, "batch");
		ss.completion = 1;
		src = seq_source(&ss);
		src.save = save_selection;
		src.ctx = &ss;
		src.save_ctx = &sel;
		rc = cmd_train(x, &student, &src, err);
	}
	buf_free(&sel.data);
	buf_free(&sel.scores);
	seqs_free(&s);
	dataset_free(&sd);
	dataset_free(&d);
	nn_model_free(&teacher);
	nn_model_free(&student);
	free(out);
	return rc;
}
