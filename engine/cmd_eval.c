/* engine/cmd_eval.c — `anneal-engine eval`: greedy decoding of every
 * problem of an eval dataset in fast, slow and auto modes, checked by
 * rule; report.json with accuracy, mean completion length and accuracy by
 * digit count per mode, and in auto mode how often the model chose to
 * think slowly and how often it chose as the rule auto_slow_digits /
 * auto_slow_carries would (rule_agreement).
 *
 * The report has its keys in a fixed order and its numbers rounded to 4
 * decimals, so the same model and data give the same bytes. */
#include "engine/cmd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/hash.h"
#include "base/log.h"
#include "engine/config.h"
#include "engine/contract.h"
#include "engine/data.h"
#include "engine/gen.h"
#include "engine/nn.h"
#include "engine/task.h"

#define STRIDE (TASK_MAX_LEN + 16)

struct tally {
	long long n, correct, slow, well_formed, agree;
	double length;
	long long bn[TASK_MAX_DIGITS + 1], bcorrect[TASK_MAX_DIGITS + 1],
		bslow[TASK_MAX_DIGITS + 1];
	double blength[TASK_MAX_DIGITS + 1];
};

static double ratio(long long a, long long b)
{
	return b ? (double)a / (double)b : 0;
}

static void num4(struct buf *b, double v)
{
	buf_add_num(b, round(v * 1e4) / 1e4);
}

/* Decodes every problem of d in mode m (greedy) and tallies the verdicts. */
static int eval_mode(struct gen *g, const struct dataset *d, enum task_mode m,
		     const struct task_auto_rule *rule, int max_len, struct tally *t,
		     struct err *err)
{
	uint8_t *seqs = xmalloc(d->n * STRIDE);
	size_t *len = xmalloc(d->n * sizeof(size_t)), *plen = xmalloc(d->n * sizeof(size_t));
	char text[STRIDE + 1];
	int rc;

	memset(t, 0, sizeof(*t));
	for (size_t i = 0; i < d->n; i++) {
		size_t n = task_prompt(&d->lines[i].p, m, text, sizeof(text));
		task_encode(text, n, seqs + i * STRIDE);
		len[i] = plen[i] = n;
	}
	rc = gen_decode(g, d->n, seqs, STRIDE, len, max_len, 0, 0, 0);
	for (size_t i = 0; !rc && i < d->n; i++) {
		const struct problem *p = &d->lines[i].p;
		size_t n = len[i] - plen[i];
		struct verdict v;
		int b = p->digits;

		for (size_t k = 0; k < n; k++)
			text[k] = task_decode_char(seqs[i * STRIDE + plen[i] + k]);
		task_check(p, m, text, n, &v);
		/* Auto mode: did the model choose as the rule would? ('=' is
		 * fast, '|' slow, anything else no choice.) */
		if (n && (text[0] == '=' || text[0] == '|'))
			t->agree += (text[0] == '|') == !!task_auto_slow(p, rule);
		t->n++;
		t->correct += v.correct;
		t->slow += v.chose_slow;
		t->well_formed += v.well_formed;
		t->length += (double)n;
		t->bn[b]++;
		t->bcorrect[b] += v.correct;
		t->bslow[b] += v.chose_slow;
		t->blength[b] += (double)n;
	}
	free(seqs);
	free(len);
	free(plen);
	return rc ? err_set(err, rc, "interrupted") : 0;
}

static void report_mode(struct buf *b, enum task_mode m, const struct tally *t)
{
	int first = 1;

	buf_printf(b, "    \"%s\": {\"accuracy\": ", task_mode_name(m));
	num4(b, ratio(t->correct, t->n));
	buf_adds(b, ", \"mean_length\": ");
	num4(b, t->n ? t->length / (double)t->n : 0);
	buf_adds(b, ", \"well_formed\": ");
	num4(b, ratio(t->well_formed, t->n));
	buf_adds(b, ", \"buckets\": {");
	for (int d = 1; d <= TASK_MAX_DIGITS; d++) {
		if (!t->bn[d])
			continue;
		buf_printf(b, "%s\"%d\": ", first ? "" : ", ", d);
		num4(b, ratio(t->bcorrect[d], t->bn[d]));
		first = 0;
	}
	buf_adds(b, "}, \"buckets_length\": {");
	first = 1;
	for (int d = 1; d <= TASK_MAX_DIGITS; d++) {
		if (!t->bn[d])
			continue;
		buf_printf(b, "%s\"%d\": ", first ? "" : ", ", d);
		num4(b, t->blength[d] / (double)t->bn[d]);
		first = 0;
	}
	buf_adds(b, "}");
	if (m == MODE_AUTO) {
		buf_adds(b, ", \"slow_rate\": ");
		num4(b, ratio(t->slow, t->n));
		buf_adds(b, ", \"rule_agreement\": ");
		num4(b, ratio(t->agree, t->n));
		buf_adds(b, ", \"buckets_slow_rate\": {");
		first = 1;
		for (int d = 1; d <= TASK_MAX_DIGITS; d++) {
			if (!t->bn[d])
				continue;
			buf_printf(b, "%s\"%d\": ", first ? "" : ", ", d);
			num4(b, ratio(t->bslow[d], t->bn[d]));
			first = 0;
		}
		buf_adds(b, "}");
	}
	buf_adds(b, "}");
}

int cmd_eval(const struct cmd_ctx *x, struct err *err)
{
	const char *mdir = NULL, *ddir = NULL;
	char *out = NULL, *mpath = NULL, hex[DIGEST_HEX_LEN + 1];
	struct nn_model m;
	struct dataset d;
	struct gen g;
	struct tally t[3];
	struct digest dg;
	uint64_t size = 0;
	struct buf rep = BUF_INIT;
	int max_len = (int)ecfg_int(x->c, x->cfg, "max_len");
	struct task_auto_rule rule;
	int rc;

	rule.slow_digits = (int)ecfg_int(x->c, x->cfg, "auto_slow_digits");
	rule.slow_carries = (int)ecfg_int(x->c, x->cfg, "auto_slow_carries");

	memset(&m, 0, sizeof(m));
	memset(&d, 0, sizeof(d));
	memset(&g, 0, sizeof(g));
	rc = contract_input("model", 1, &mdir, err);
	if (!rc)
		rc = contract_input("data", 1, &ddir, err);
	if (!rc)
		rc = cmd_load_model("model", mdir, &m, err);
	if (!rc)
		rc = dataset_load(&d, ddir, err);
	if (!rc && !d.n)
		rc = err_set(err, ERR_INVALID, "'%s': no problems", d.path);
	if (!rc) {
		mpath = fs_join(mdir, MODEL_FILE_NAME);
		rc = sha256_file(mpath, &dg, &size, err);
	}
	if (!rc)
		rc = contract_output("report", &out, err);
	if (!rc)
		gen_init(&g, &m, (size_t)ecfg_int(x->c, x->cfg, "batch"));
	for (int mode = MODE_FAST; !rc && mode <= MODE_AUTO; mode++) {
		rc = eval_mode(&g, &d, (enum task_mode)mode, &rule, max_len, &t[mode], err);
		contract_progress(x->ct, mode + 1, 3);
		if (!rc)
			log_info("eval: %s accuracy %.4f mean length %.2f", task_mode_name(mode),
				 ratio(t[mode].correct, t[mode].n),
				 t[mode].length / (double)t[mode].n);
	}
	if (!rc) {
		digest_hex(&dg, hex);
		buf_printf(&rep, "{\n  \"model\": {\"file\": \"%s\", \"bytes\": %llu, "
			   "\"sha256\": \"%s\"},\n  \"problems\": %zu,\n  \"modes\": {\n",
			   MODEL_FILE_NAME, (unsigned long long)size, hex, d.n);
		for (int mode = MODE_FAST; mode <= MODE_AUTO; mode++) {
			report_mode(&rep, (enum task_mode)mode, &t[mode]);
			buf_adds(&rep, mode < MODE_AUTO ? ",\n" : "\n");
		}
		buf_adds(&rep, "  }\n}\n");
		rc = contract_write(out, "report.json", rep.ptr, rep.len, err);
	}
	if (!rc) {
		const char *names[] = { "fast.accuracy", "slow.accuracy", "auto.accuracy",
					"auto.slow_rate", "fast.mean_length",
					"slow.mean_length", "auto.mean_length",
					"auto.rule_agreement" };
		double v[8];

		for (int mode = 0; mode < 3; mode++) {
			v[mode] = round(ratio(t[mode].correct, t[mode].n) * 1e4) / 1e4;
			v[4 + mode] = round(t[mode].length / (double)t[mode].n * 1e4) / 1e4;
		}
		v[3] = round(ratio(t[MODE_AUTO].slow, t[MODE_AUTO].n) * 1e4) / 1e4;
		v[7] = round(ratio(t[MODE_AUTO].agree, t[MODE_AUTO].n) * 1e4) / 1e4;
		cmd_metrics(x, names, v, 8);
	}
	gen_free(&g);
	buf_free(&rep);
	dataset_free(&d);
	nn_model_free(&m);
	free(out);
	free(mpath);
	return rc;
}
