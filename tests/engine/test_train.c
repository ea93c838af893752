/* tests/engine/test_train.c — the reference engine's training loop and
 * its contract side: windows, datasets, checkpoints (atomic, announced,
 * pruned), exact resume after a checkpoint or a SIGTERM, and batched
 * decoding that does not depend on how many sequences go at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "engine/contract.h"
#include "engine/data.h"
#include "engine/gen.h"
#include "engine/nn.h"
#include "engine/rng.h"
#include "engine/task.h"
#include "engine/train.h"

static char tmpdir[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/anneal-test-train.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	assert_non_null(mkdtemp(tmpdir));
	return 0;
}

static int teardown(void **state)
{
	struct err err;
	(void)state;
	fs_remove_tree(tmpdir, &err);
	unsetenv("ANNEAL_CKPT_DIR");
	unsetenv("ANNEAL_EVENTS");
	unsetenv("ANNEAL_RESUME_FROM");
	contract_stop = 0;
	return 0;
}

static char *tpath(const char *name)
{
	return fs_join(tmpdir, name);
}

/* A contract over tmpdir/ckpt and tmpdir/events.jsonl. */
static void open_contract(struct contract *ct)
{
	char *ck = tpath("ckpt"), *ev = tpath("events.jsonl");
	struct err err;

	setenv("ANNEAL_CKPT_DIR", ck, 1);
	setenv("ANNEAL_EVENTS", ev, 1);
	unsetenv("ANNEAL_RESUME_FROM");
	assert_int_equal(contract_open(ct, "pretrain", &err), 0);
	free(ck);
	free(ev);
}

static char *read_events(void)
{
	char *ev = tpath("events.jsonl"), *text = NULL;
	size_t len;
	struct err err;

	if (fs_read_file(ev, 1 << 20, &text, &len, &err))
		text = xstrdup("");
	free(ev);
	return text;
}

static const char *const lines[] = {
	"S:12+9|2+9+0=11,1+0+1=02|21;", "F:3+4=7;", "S:5+5|5+5+0=10|10;",
	"F:40+2=42;", "S:7+1|7+1+0=08|8;", "F:99+1=100;",
};

static void make_seqs(struct seqs *s)
{
	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		struct problem p;
		enum task_mode m;
		int hm;
		size_t pl;

		assert_int_equal(task_parse(lines[i], strlen(lines[i]), &p, &m, &hm, &pl), 0);
		assert_int_equal(seqs_add(s, lines[i], strlen(lines[i]), pl), 0);
	}
}

static void make_model(struct nn_model *m)
{
	struct nn_config cfg = { 8, TASK_VOCAB, 1, { 16 } };
	struct rng r;
	struct err err;

	rng_seed(&r, 3, STREAM_INIT);
	assert_int_equal(nn_model_init(m, &cfg, &r, &err), 0);
}

static struct train_opts opts(long long steps, long long ckpt_every)
{
	struct train_opts o;

	memset(&o, 0, sizeof(o));
	o.cmd = "pretrain";
	o.seed = 11;
	o.steps = steps;
	o.warmup = 2;
	o.ckpt_every = ckpt_every;
	o.log_every = 5;
	o.lr = 0.01f;
	o.lr_min = 0.001f;
	o.clip = 1;
	return o;
}

/* A source that raises the SIGTERM flag while filling update stop_at
 * (after filling: that update still runs), or fails the fill as an
 * interrupted generation would (before filling: it does not). */
struct stopper {
	struct seq_source ss;
	long long stop_at;
	int before;
};

static int stopper_fill(void *ctx, const struct nn_model *m, long long u,
			struct train_batch *b, struct err *err)
{
	struct stopper *s = ctx;

	if (u == s->stop_at) {
		contract_stop = 1;
		if (s->before)
			return err_set(err, ERR_INTERRUPTED, "interrupted");
	}
	return seq_source_fill(&s->ss, m, u, b, err);
}

/* Trains a fresh model for steps updates (resuming from resume_dir when
 * not NULL, stopping as st says when not NULL); returns train_run's code
 * and leaves the trained params in *out. */
static int train(struct nn_model *out, long long steps, long long ckpt_every,
		 const char *resume_dir, struct stopper *st)
{
	struct contract ct;
	struct trainer t;
	struct seqs s;
	struct seq_source ss = { NULL, 11, 4, 0 };
	struct train_source src;
	struct train_opts o = opts(steps, ckpt_every);
	struct err err;
	int rc;

	make_seqs(&s);
	make_model(out);
	open_contract(&ct);
	ss.s = &s;
	src = seq_source(&ss);
	if (st) {
		st->ss = ss;
		src.fill = stopper_fill;
		src.ctx = st;
	}
	assert_int_equal(train_init(&t, out, &o, src.max_windows, &ct, &err), 0);
	if (resume_dir) {
		rc = train_resume(&t, resume_dir, &err);
		if (rc)
			fail_msg("resume: %s", err.msg);
	}
	rc = train_run(&t, &src, &err);
	train_free(&t);
	contract_close(&ct);
	seqs_free(&s);
	contract_stop = 0;
	return rc;
}

static void test_train__windows_are_left_padded(void **state)
{
	uint8_t seq[5] = { 1, 2, 3, 4, 5 }, w[4];
	uint8_t ctx[64], tgt[16];
	float wt[16];
	struct train_batch b = { 4, 0, 6, ctx, tgt, wt, 0 };
	(void)state;

	gen_window(w, seq, 0, 4);
	assert_memory_equal(w, ((uint8_t[]){ 0, 0, 0, 0 }), 4);
	gen_window(w, seq, 2, 4);
	assert_memory_equal(w, ((uint8_t[]){ 0, 0, 1, 2 }), 4);
	gen_window(w, seq, 5, 4);
	assert_memory_equal(w, ((uint8_t[]){ 2, 3, 4, 5 }), 4);

	assert_int_equal(train_batch_add(&b, seq, 5, 1, 0.5f), 0);
	assert_int_equal(b.n, 4);
	assert_memory_equal(tgt, ((uint8_t[]){ 2, 3, 4, 5 }), 4);
	assert_memory_equal(ctx, ((uint8_t[]){ 0, 0, 0, 1 }), 4);
	assert_memory_equal(ctx + 12, ((uint8_t[]){ 1, 2, 3, 4 }), 4);
	assert_true(wt[3] == 0.5f);
	/* Three more do not fit in 6: nothing is added. */
	assert_int_equal(train_batch_add(&b, seq, 5, 2, 1), -1);
	assert_int_equal(b.n, 4);
	assert_int_equal(train_batch_add(&b, seq, 5, 5, 1), 0);
	assert_int_equal(b.n, 4);
}

static void test_train__dataset_lines_and_errors(void **state)
{
	const char *text = "F:1+2=3;\n\nS:1+2|1+2+0=03|3;\r\n12+30\nA:5+5\n";
	struct dataset d;
	struct seqs s;
	struct err err;
	(void)state;

	assert_int_equal(dataset_parse(&d, "x/data.txt", text, strlen(text), &err), 0);
	assert_int_equal(d.n, 4);
	assert_int_equal(d.lines[1].lineno, 3);
	assert_int_equal(d.lines[1].len, strlen("S:1+2|1+2+0=03|3;"));
	assert_int_equal(d.lines[2].has_mode, 0);
	assert_int_equal(d.lines[3].mode, MODE_AUTO);
	memset(&s, 0, sizeof(s));
	assert_int_equal(seqs_from_examples(&s, &d, &err), ERR_INVALID);
	assert_string_equal(err.msg, "'x/data.txt' line 4: a prompt or a bare problem, "
			    "not a full example");
	seqs_free(&s);
	dataset_free(&d);

	text = "F:1+2=3;\nF:1+2=3;junk\n";
	assert_int_equal(dataset_parse(&d, "y.txt", text, strlen(text), &err), ERR_INVALID);
	assert_string_equal(err.msg, "'y.txt' line 2: not an example, prompt or problem: "
			    "'F:1+2=3;junk'");
	dataset_free(&d);
}

static void test_train__checkpoints_are_announced_and_pruned(void **state)
{
	struct nn_model m;
	struct err err;
	char *ev, *p;
	(void)state;

	/* What a killed attempt left half-written goes with the first prune. */
	p = tpath("ckpt/step-3.tmp");
	assert_int_equal(fs_mkdir_p(p, 0777, &err), 0);
	free(p);
	assert_int_equal(train(&m, 20, 4, NULL, NULL), 0);
	nn_model_free(&m);
	ev = read_events();
	assert_non_null(strstr(ev, "{\"event\":\"checkpoint\",\"step\":4,\"dir\":\"step-4\"}\n"));
	assert_non_null(strstr(ev, "{\"event\":\"checkpoint\",\"step\":16,\"dir\":\"step-16\"}\n"));
	/* None at the last update: the output follows it. */
	assert_null(strstr(ev, "\"step\":20,\"dir\""));
	assert_non_null(strstr(ev, "{\"event\":\"progress\",\"done\":20,\"total\":20}\n"));
	assert_non_null(strstr(ev, "{\"event\":\"metric\",\"step\":5,\"loss\":"));
	free(ev);
	/* The newest two are kept, complete; no temporary left. */
	p = tpath("ckpt/step-16/model.safetensors");
	assert_true(fs_exists(p));
	free(p);
	p = tpath("ckpt/step-12/optim.safetensors");
	assert_true(fs_exists(p));
	free(p);
	p = tpath("ckpt/step-12/state.json");
	assert_true(fs_exists(p));
	free(p);
	p = tpath("ckpt/step-8");
	assert_false(fs_exists(p));
	free(p);
	p = tpath("ckpt/step-16.tmp");
	assert_false(fs_exists(p));
	free(p);
	p = tpath("ckpt/step-3.tmp");
	assert_false(fs_exists(p));
	free(p);
}

static void test_train__resume_gives_the_same_bits(void **state)
{
	struct nn_model ref, res;
	char *dir;
	(void)state;

	assert_int_equal(train(&ref, 20, 4, NULL, NULL), 0);
	dir = tpath("ckpt/step-12");
	assert_int_equal(train(&res, 20, 4, dir, NULL), 0);
	assert_int_equal(ref.nparams, res.nparams);
	assert_memory_equal(ref.params, res.params, ref.nparams * sizeof(float));
	free(dir);
	nn_model_free(&ref);
	nn_model_free(&res);
}

static void test_train__sigterm_saves_and_resumes_exactly(void **state)
{
	struct nn_model ref, cut, res;
	struct stopper st;
	char *dir, *ev;
	(void)state;

	assert_int_equal(train(&ref, 20, 0, NULL, NULL), 0);
	/* The flag rises during update 7 (0-based): that update completes,
	 * then a checkpoint of 8 updates is written. */
	memset(&st, 0, sizeof(st));
	st.stop_at = 7;
	assert_int_equal(train(&cut, 20, 0, NULL, &st), ERR_INTERRUPTED);
	ev = read_events();
	assert_non_null(strstr(ev, "{\"event\":\"checkpoint\",\"step\":8,\"dir\":\"step-8\"}"));
	free(ev);
	dir = tpath("ckpt/step-8");
	assert_int_equal(train(&res, 20, 0, dir, NULL), 0);
	assert_memory_equal(ref.params, res.params, ref.nparams * sizeof(float));
	free(dir);

	/* Interrupted inside a fill (sampling): update 5 never ran. */
	memset(&st, 0, sizeof(st));
	st.stop_at = 5;
	st.before = 1;
	nn_model_free(&cut);
	assert_int_equal(train(&cut, 20, 0, NULL, &st), ERR_INTERRUPTED);
	dir = tpath("ckpt/step-5");
	assert_true(fs_is_dir(dir));
	nn_model_free(&res);
	assert_int_equal(train(&res, 20, 0, dir, NULL), 0);
	assert_memory_equal(ref.params, res.params, ref.nparams * sizeof(float));
	free(dir);
	nn_model_free(&ref);
	nn_model_free(&cut);
	nn_model_free(&res);
}

static void test_train__resume_rejects_another_subcommand(void **state)
{
	struct nn_model m;
	struct contract ct;
	struct trainer t;
	struct train_opts o = opts(20, 4);
	struct err err;
	char *dir;
	(void)state;

	assert_int_equal(train(&m, 8, 4, NULL, NULL), 0);
	open_contract(&ct);
	o.cmd = "sft";
	assert_int_equal(train_init(&t, &m, &o, 16, &ct, &err), 0);
	dir = tpath("ckpt/step-4");
	assert_int_equal(train_resume(&t, dir, &err), ERR_INVALID);
	assert_non_null(strstr(err.msg, "not a 'sft' checkpoint"));
	free(dir);
	train_free(&t);
	contract_close(&ct);
	nn_model_free(&m);
}

static void decode(const struct nn_model *m, size_t cap, float temp, uint8_t *seqs,
		   size_t *len, size_t *plen, size_t n)
{
	struct gen g;

	for (size_t i = 0; i < n; i++) {
		char text[32];
		int k = snprintf(text, sizeof(text), "S:%zu+%zu", i % 10, (i * 7) % 100);
		task_encode(text, (size_t)k, seqs + i * 64);
		len[i] = plen[i] = (size_t)k;
	}
	gen_init(&g, m, cap);
	assert_int_equal(gen_decode(&g, n, seqs, 64, len, 20, temp, 99, 0), 0);
	gen_free(&g);
}

static void test_train__decoding_does_not_depend_on_batching(void **state)
{
	enum { N = 37 };
	struct nn_model m;
	uint8_t a[N * 64], b[N * 64];
	size_t la[N], lb[N], plen[N];
	const uint8_t semi = (uint8_t)task_encode_char(';');
	(void)state;

	make_model(&m);
	for (int sampled = 0; sampled <= 1; sampled++) {
		float temp = sampled ? 1.0f : 0.0f;

		decode(&m, 64, temp, a, la, plen, N);
		decode(&m, 5, temp, b, lb, plen, N);
		for (size_t i = 0; i < N; i++) {
			assert_int_equal(la[i], lb[i]);
			assert_memory_equal(a + i * 64, b + i * 64, la[i]);
			/* At most 20 generated, ended by ';' if fewer. */
			assert_true(la[i] - plen[i] <= 20);
			if (la[i] - plen[i] < 20)
				assert_int_equal(a[i * 64 + la[i] - 1], semi);
			for (size_t k = plen[i]; k < la[i]; k++)
				assert_true(a[i * 64 + k] >= 1 && a[i * 64 + k] < TASK_VOCAB);
		}
	}
	nn_model_free(&m);
}

static void test_train__scores_sum_log_probabilities(void **state)
{
	struct nn_model m;
	struct gen g;
	uint8_t seqs[2 * 32];
	size_t len[2] = { 6, 4 }, from[2] = { 2, 4 };
	double lp[2], ps[2];
	float all[TASK_VOCAB];
	uint8_t w[8];
	double want = 0;
	(void)state;

	make_model(&m);
	for (int i = 0; i < 6; i++)
		seqs[i] = (uint8_t)(i + 1);
	gen_init(&g, &m, 3);   /* passes cross sequence boundaries */
	gen_score(&g, 2, seqs, 32, len, from, lp, ps);
	for (size_t pos = 2; pos < 6; pos++) {
		gen_window(w, seqs, pos, 8);
		nn_logprobs(&m, 1, w, all, g.w);
		want += all[seqs[pos]];
	}
	assert_true(lp[0] == want);
	assert_true(ps[0] > 0 && ps[0] <= 4);
	assert_true(lp[1] == 0 && ps[1] == 0);   /* nothing to score */
	gen_free(&g);
	nn_model_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_train__windows_are_left_padded),
		cmocka_unit_test(test_train__dataset_lines_and_errors),
		cmocka_unit_test_setup_teardown(test_train__checkpoints_are_announced_and_pruned,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_train__resume_gives_the_same_bits,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_train__sigterm_saves_and_resumes_exactly,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_train__resume_rejects_another_subcommand,
						setup, teardown),
		cmocka_unit_test(test_train__decoding_does_not_depend_on_batching),
		cmocka_unit_test(test_train__scores_sum_log_probabilities),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
