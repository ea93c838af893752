/* tests/runners/test_slurm.c — the Slurm runner.
 *
 * Three layers:
 *   - the pure pieces (runners/slurm_parse.c): quoting through the real
 *     /bin/sh, the batch script and sbatch's argv as golden text, states,
 *     exit codes, and the outputs of squeue / scontrol -o / sacct -c /
 *     sbatch as recorded on a real Slurm 22.05 cluster (tests/slurm/start.sh);
 *   - the runner's ops against fake Slurm commands (small sh scripts in a
 *     bin_dir that log how they were called and answer from files): one
 *     squeue per poll interval, backoff, failures and their messages,
 *     attach, cancel, a signal ending a wait;
 *   - the same ops against a real cluster when SLURM_CONF is set and
 *     `scontrol ping` answers (skipped otherwise): exit 0 and 3, a job
 *     killed by a signal, scancel, attach after the runner is gone.
 *
 * The test binary doubles as the step of the quoting tests: run as
 * `test_slurm --print-argv ...` it prints its cwd, argv and a few
 * variables NUL-separated, so that what the batch script execs is compared
 * byte for byte. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "runners/runner.h"
#include "runners/slurm.h"
#include "runners/spawn.h"

extern char **environ;

#define DEADLINE_S 60.0

static char *tmp;
static char *self;   /* this binary, absolute */

static int setup(void **state)
{
	const char *base = getenv("TMPDIR");
	char *tmpl = xasprintf("%s/anneal-test-slurm.XXXXXX", base && *base ? base : "/tmp");

	if (!mkdtemp(tmpl)) {
		free(tmpl);
		return -1;
	}
	tmp = tmpl;
	return 0;
}

static int teardown(void **state)
{
	struct err err;

	fs_remove_tree(tmp, &err);
	free(tmp);
	tmp = NULL;
	return 0;
}

static char *slurp(const char *path)
{
	struct err err;
	char *data = NULL;
	size_t len;

	if (fs_read_file(path, 1 << 20, &data, &len, &err))
		return NULL;
	return data;
}

/* Reads a file that may hold NULs; *len set. */
static char *slurp_bin(const char *path, size_t *len)
{
	struct err err;
	char *data = NULL;

	if (fs_read_file(path, 1 << 20, &data, len, &err))
		fail_msg("%s", err.msg);
	return data;
}

static void put(const char *path, const char *text, mode_t mode)
{
	struct err err;

	if (fs_write_replace(path, text, strlen(text), mode, &err))
		fail_msg("%s", err.msg);
}

/* ---- quoting through the real /bin/sh -------------------------------------- */

static const char *const hostile[] = {
	"", " ", "a b", "  two  spaces  ", "'", "''", "it's", "'\\''", "\"", "\"\"",
	"$HOME", "${HOME}", "$(echo pwned)", "`echo pwned`", "\\", "\\\\", "\\n",
	"\n", "a\nb", "\n\n", "*", "?", "[a]", "~", "~root", "-n", "-e", "--", "#",
	"#SBATCH --time=1", ";", "&", "|", "!", "<x", ">x", "a=b", "%s%n", "\t",
	"\r", "\r\n", "a\r\nb", "\x01\x02\x7f", "\xff\xfe\x80", "\xc3\xa9t\xc3\xa9",
	"end'", "'start",
};
#define NHOSTILE (sizeof(hostile) / sizeof(hostile[0]))

static void test_slurm__quote_simple(void **state)
{
	struct buf b = BUF_INIT;

	buf_init(&b);
	slurm_quote("", &b);
	assert_string_equal(b.ptr, "''");
	buf_reset(&b);
	slurm_quote("a b", &b);
	assert_string_equal(b.ptr, "'a b'");
	buf_reset(&b);
	slurm_quote("it's", &b);
	assert_string_equal(b.ptr, "'it'\\''s'");
	buf_reset(&b);
	slurm_quote("a\r\nb", &b);
	assert_string_equal(b.ptr, "'a'\"$(printf '\\r')\"'\nb'");
	assert_null(strstr(b.ptr, "\r"));
	buf_free(&b);
}

/* Runs /bin/sh on text (a script file in tmp), stdout into a file; returns
 * the output and its length. */
static char *run_sh(const char *text, size_t *len, int *status)
{
	char *script = fs_join(tmp, "t.sh"), *outp = fs_join(tmp, "t.out"), *out;
	char *errp = fs_join(tmp, "t.err");
	char *argv[] = { "/bin/sh", script, NULL };
	struct spawn_opts so = SPAWN_OPTS_INIT;
	struct err err;

	unlink(outp);
	put(script, text, 0700);
	so.stdin_null = 1;
	so.stdout_path = outp;
	so.stderr_path = errp;   /* sh's own complaints, kept out of the report */
	if (spawn_run(argv, &so, status, &err))
		fail_msg("%s", err.msg);
	out = slurp_bin(outp, len);
	free(errp);
	free(script);
	free(outp);
	return out;
}

/* Every hostile word, quoted, reaches a program's argv unchanged. */
static void test_slurm__quote_roundtrips_through_sh(void **state)
{
	struct buf script = BUF_INIT, want = BUF_INIT;
	size_t len;
	int status;
	char *out;

	buf_init(&script);
	buf_init(&want);
	buf_adds(&script, "#!/bin/sh\nexec ");
	slurm_quote(self, &script);
	buf_adds(&script, " '--print-argv'");
	for (size_t i = 0; i < NHOSTILE; i++) {
		buf_addc(&script, ' ');
		slurm_quote(hostile[i], &script);
		buf_add(&want, hostile[i], strlen(hostile[i]) + 1);
	}
	buf_addc(&script, '\n');
	out = run_sh(script.ptr, &len, &status);
	assert_int_equal(status, 0);
	/* Output: cwd NUL, argv[2..] each NUL, then variables. */
	{
		size_t cwd_len = strlen(out) + 1;
		assert_true(len >= cwd_len + want.len);
		assert_memory_equal(out + cwd_len, want.ptr, want.len);
	}
	free(out);
	buf_free(&script);
	buf_free(&want);
}

/* The batch script itself: hostile values in the environment, the working
 * directory and argv arrive exactly; an unset variable is gone. */
static void test_slurm__batch_script_roundtrips(void **state)
{
	char *cwd = fs_join(tmp, "it's a $dir\n`x`");
	struct strv argv = STRV_INIT, env = STRV_INIT, sub = STRV_INIT;
	struct job_spec spec;
	struct buf script = BUF_INIT, want = BUF_INIT;
	struct err err;
	size_t len;
	int status;
	char *out;

	assert_int_equal(mkdir(cwd, 0755), 0);
	strv_push(&argv, self);
	strv_push(&argv, "--print-argv");
	for (size_t i = 0; i < NHOSTILE; i++)
		strv_push(&argv, hostile[i]);
	strv_push(&env, "PATH=/usr/bin:/bin");
	strv_push_owned(&env, xasprintf("V1=%s", "it's \"$HOME\" `id` \\ *\n\r\n"));
	strv_push(&env, "V2=");
	strv_push(&env, "V3=\xff\xfe a=b");
	strv_push(&env, "IFS=x");
	strv_push(&env, "V1=second, ignored as getenv would");
	strv_push(&sub, "GONE=1");
	strv_push(&sub, "V2=from sbatch");

	memset(&spec, 0, sizeof(spec));
	spec.run_id = "1";
	spec.step_id = "s";
	spec.argv = argv.v;
	spec.envp = env.v;
	spec.cwd = cwd;
	buf_init(&script);
	assert_int_equal(slurm_batch_script(&spec, sub.v, &script, &err), 0);
	assert_null(strstr(script.ptr, "\r\n"));

	/* What sbatch would hand over: its own environment. */
	{
		struct buf wrapped = BUF_INIT;
		buf_init(&wrapped);
		buf_adds(&wrapped, "#!/bin/sh\nexport GONE=1 V2='from sbatch'\n");
		buf_adds(&wrapped, strchr(script.ptr, '\n') + 1);
		out = run_sh(wrapped.ptr, &len, &status);
		buf_free(&wrapped);
	}
	assert_int_equal(status, 0);
	buf_init(&want);
	buf_add(&want, cwd, strlen(cwd) + 1);
	for (size_t i = 0; i < NHOSTILE; i++)
		buf_add(&want, hostile[i], strlen(hostile[i]) + 1);
	buf_adds(&want, "V1=it's \"$HOME\" `id` \\ *\n\r\n");
	buf_addc(&want, '\0');
	buf_adds(&want, "V2=");
	buf_addc(&want, '\0');
	buf_adds(&want, "V3=\xff\xfe a=b");
	buf_addc(&want, '\0');
	buf_adds(&want, "GONE unset");
	buf_addc(&want, '\0');
	assert_int_equal(len, want.len);
	assert_memory_equal(out, want.ptr, len);
	free(out);
	buf_free(&script);
	buf_free(&want);
	strv_free(&argv);
	strv_free(&env);
	strv_free(&sub);
	free(cwd);
}

static void test_slurm__batch_script_bad_cwd_exits_126(void **state)
{
	char *argv[] = { "/bin/true", NULL };
	char *envp[] = { NULL };
	struct job_spec spec;
	struct buf script = BUF_INIT;
	struct err err;
	size_t len;
	int status;
	char *out;

	memset(&spec, 0, sizeof(spec));
	spec.argv = argv;
	spec.envp = envp;
	spec.cwd = "/nonexistent/anneal/dir";
	buf_init(&script);
	assert_int_equal(slurm_batch_script(&spec, NULL, &script, &err), 0);
	out = run_sh(script.ptr, &len, &status);
	assert_int_equal(status, 126);
	free(out);
	buf_free(&script);

	spec.cwd = "relative";
	assert_int_equal(slurm_batch_script(&spec, NULL, &script, &err), ERR_INVALID);
	spec.cwd = "/";
	argv[0] = NULL;
	assert_int_equal(slurm_batch_script(&spec, NULL, &script, &err), ERR_INVALID);
	buf_free(&script);
}

static void test_slurm__batch_script_golden(void **state)
{
	char *argv[] = { "/opt/engine/bin/train", "--lr", "0.1", "it's", NULL };
	char *envp[] = {
		"PATH=/usr/bin:/bin", "ANNEAL_RUN_ID=7", "SLURM_JOB_ID=99",
		"SLURMD_NODENAME=n1", "BASH_FUNC_ml%%=() {  :\n}", "EMPTY=",
		"CUDA_VISIBLE_DEVICES=3", "PATH=/dup", "NOEQUALS", NULL,
	};
	char *sub[] = {
		"PATH=/usr/bin:/bin", "OLD_VAR=1", "ANNEAL_STALE=2", "OLD_VAR=dup",
		"SLURM_CONF=/etc/slurm.conf", "ROCR_VISIBLE_DEVICES=1",
		"BASH_FUNC_x%%=() { :; }", NULL,
	};
	struct job_spec spec;
	struct buf b = BUF_INIT;
	struct err err;

	memset(&spec, 0, sizeof(spec));
	spec.run_id = "7";
	spec.step_id = "train";
	spec.argv = argv;
	spec.envp = envp;
	spec.cwd = "/work/it's here";
	spec.gpus = 2;
	buf_init(&b);
	assert_int_equal(slurm_batch_script(&spec, sub, &b, &err), 0);
	assert_string_equal(b.ptr,
		"#!/bin/sh\n"
		"# Written by anneal for one attempt of a step (runners/slurm.c).\n"
		"# No `set -e`: the step's exit status is its own.\n"
		"unset 'OLD_VAR'\n"
		"unset 'ANNEAL_STALE'\n"
		"export 'PATH'='/usr/bin:/bin'\n"
		"export 'ANNEAL_RUN_ID'='7'\n"
		"export 'EMPTY'=''\n"
		"cd -- '/work/it'\\''s here' || exit 126\n"
		"exec '/opt/engine/bin/train' '--lr' '0.1' 'it'\\''s'\n");

	/* Without GPUs the device lists are the step's own business. */
	spec.gpus = 0;
	buf_reset(&b);
	assert_int_equal(slurm_batch_script(&spec, sub, &b, &err), 0);
	assert_non_null(strstr(b.ptr, "unset 'ROCR_VISIBLE_DEVICES'\n"));
	assert_non_null(strstr(b.ptr, "export 'CUDA_VISIBLE_DEVICES'='3'\n"));
	buf_free(&b);
}

static void test_slurm__sbatch_argv_golden(void **state)
{
	char *extra[] = { "--constraint=a100", "--exclusive", NULL };
	struct slurm_options o;
	struct job_spec spec;
	struct strv sv = STRV_INIT;
	struct buf b = BUF_INIT;

	memset(&o, 0, sizeof(o));
	o.partition = "gpu";
	o.account = "proj";
	o.qos = "high";
	o.gres = "npu";
	o.signal_grace_s = 120;
	o.requeue = 1;
	o.sbatch_extra = extra;
	memset(&spec, 0, sizeof(spec));
	spec.run_id = "12";
	spec.step_id = "distill.2/x y";
	spec.cwd = "/ws";
	spec.attempt_dir = "/ws/.anneal/runs/12/distill.2/a1%j";
	spec.cpus = 8;
	spec.npus = 4;
	spec.gpus = 1;
	spec.mem_mb = 32000;
	spec.timeout_s = 3600;
	slurm_sbatch_argv(&o, &spec, "/ws/.anneal/runs/12/distill.2/a1%j/slurm.sh", &sv);
	buf_init(&b);
	for (size_t i = 0; i < sv.n; i++) {
		buf_adds(&b, sv.v[i]);
		buf_addc(&b, '\n');
	}
	assert_null(sv.v[sv.n]);
	assert_string_equal(b.ptr,
		"sbatch\n--parsable\n--job-name=anneal.12.distill.2_x_y\n"
		"--output=/ws/.anneal/runs/12/distill.2/a1%%j/output.log\n"
		"--open-mode=append\n--chdir=/ws\n"
		"--comment=/ws/.anneal/runs/12/distill.2/a1%j\n--export=ALL\n"
		"--partition=gpu\n--account=proj\n--qos=high\n--nodes=1\n--ntasks-per-node=1\n"
		"--cpus-per-task=8\n--gres=npu:4\n--gpus=1\n--mem=32000\n"
		/* 3600 s: the per-job limit, whole minutes */
		"--time=60\n--signal=B:TERM@120\n--requeue\n"
		"--constraint=a100\n--exclusive\n"
		"/ws/.anneal/runs/12/distill.2/a1%j/slurm.sh\n");
	strv_free(&sv);

	/* A multi-node step: nodes and tasks per node; srun in the script. */
	spec.nodes = 4;
	spec.tasks_per_node = 8;
	slurm_sbatch_argv(&o, &spec, "/ws/s.sh", &sv);
	buf_reset(&b);
	for (size_t i = 0; i < sv.n; i++) {
		buf_adds(&b, sv.v[i]);
		buf_addc(&b, ' ');
	}
	assert_non_null(strstr(b.ptr, " --nodes=4 --ntasks-per-node=8 "));
	strv_free(&sv);
	{
		char *argv[] = { "python3", "train.py", NULL };
		char *envp[] = { "A=1", NULL };
		struct err err;

		spec.argv = argv;
		spec.envp = envp;
		buf_reset(&b);
		assert_int_equal(slurm_batch_script(&spec, NULL, &b, &err), 0);
		assert_non_null(strstr(b.ptr, "\nexec srun --kill-on-bad-exit=1 'python3' 'train.py'\n"));
		spec.nodes = spec.tasks_per_node = 1;
		buf_reset(&b);
		assert_int_equal(slurm_batch_script(&spec, NULL, &b, &err), 0);
		assert_non_null(strstr(b.ptr, "\nexec 'python3' 'train.py'\n"));
	}

	/* The minimum: no optional option. */
	memset(&o, 0, sizeof(o));
	o.gres = "npu";
	o.signal_grace_s = 30;
	memset(&spec, 0, sizeof(spec));
	spec.run_id = "1";
	spec.step_id = "s";
	spec.cwd = "/w";
	spec.attempt_dir = "/w/a";
	slurm_sbatch_argv(&o, &spec, "/w/a/slurm.sh", &sv);
	buf_reset(&b);
	for (size_t i = 0; i < sv.n; i++) {
		buf_adds(&b, sv.v[i]);
		buf_addc(&b, ' ');
	}
	assert_string_equal(b.ptr,
		"sbatch --parsable --job-name=anneal.1.s --output=/w/a/output.log "
		"--open-mode=append --chdir=/w --comment=/w/a --export=ALL --nodes=1 "
		"--ntasks-per-node=1 --cpus-per-task=1 --signal=B:TERM@30 --no-requeue /w/a/slurm.sh ");
	strv_free(&sv);
	buf_free(&b);
}

/* Recipe-given Slurm options with shell and sbatch syntax in them stay one
 * argv word each (no shell reads them), and nothing a step's argv or
 * environment holds can become an #SBATCH directive of the script. */
static void test_slurm__hostile_options_stay_words(void **state)
{
	char *extra[] = { "--comment=x\n#SBATCH --wrap=id", "$(id)", NULL };
	char *argv[] = { "/bin/true", "\n#SBATCH --wrap='touch /tmp/x'\n", NULL };
	char *envp[] = { "V=\n#SBATCH --uid=0\n", NULL };
	struct slurm_options o;
	struct job_spec spec;
	struct strv sv = STRV_INIT, plain = STRV_INIT;
	struct buf b = BUF_INIT;
	struct err err;

	memset(&o, 0, sizeof(o));
	o.gres = "npu";
	o.signal_grace_s = 30;
	memset(&spec, 0, sizeof(spec));
	spec.run_id = "1";
	spec.step_id = "s";
	spec.cwd = "/w";
	spec.attempt_dir = "/w/a";
	slurm_sbatch_argv(&o, &spec, "/w/a/slurm.sh", &plain);
	o.partition = "gpu --wrap=id";
	o.account = "a\nb; rm -rf /";
	o.qos = "`id` $(id) 'q'";
	o.sbatch_extra = extra;
	slurm_sbatch_argv(&o, &spec, "/w/a/slurm.sh", &sv);
	/* The plain argv, plus exactly one word per option given. */
	assert_int_equal(sv.n, plain.n + 5);
	assert_string_equal(sv.v[8], "--partition=gpu --wrap=id");
	assert_string_equal(sv.v[9], "--account=a\nb; rm -rf /");
	assert_string_equal(sv.v[10], "--qos=`id` $(id) 'q'");
	assert_string_equal(sv.v[sv.n - 3], extra[0]);
	assert_string_equal(sv.v[sv.n - 2], extra[1]);
	assert_string_equal(sv.v[sv.n - 1], "/w/a/slurm.sh");
	spec.argv = argv;
	spec.envp = envp;
	/* sbatch reads #SBATCH lines only up to the first command line; that
	 * line is anneal's own, before any value a recipe or step gave (a
	 * quoted newline may start a later line with "#SBATCH": ignored). */
	for (int k = 0; k < 2; k++) {
		const char *l;

		buf_init(&b);
		if (k == 1) {
			spec.envp = NULL;
			spec.cwd = "/w\n#SBATCH --uid=0\n";
		}
		assert_int_equal(slurm_batch_script(&spec, NULL, &b, &err), 0);
		for (l = b.ptr; *l == '#' || *l == '\n'; l = strchr(l, '\n') + 1)
			assert_false(!strncmp(l, "#SBATCH", 7));
		assert_true(!strncmp(l, k ? "cd -- '/w\n" : "export 'V'='\n", k ? 9 : 13));
		buf_free(&b);
	}
	strv_free(&sv);
	strv_free(&plain);
}

/* ---- the words Slurm prints -------------------------------------------------- */

static void test_slurm__state_names(void **state)
{
	static const struct { const char *word; enum slurm_state st; int final; } cases[] = {
		{ "PENDING", SLURM_PENDING, 0 }, { "PD", SLURM_PENDING, 0 },
		{ "RUNNING", SLURM_RUNNING, 0 }, { "R", SLURM_RUNNING, 0 },
		{ "CONFIGURING", SLURM_CONFIGURING, 0 }, { "CF", SLURM_CONFIGURING, 0 },
		{ "COMPLETING", SLURM_COMPLETING, 0 }, { "CG", SLURM_COMPLETING, 0 },
		{ "COMPLETED", SLURM_COMPLETED, 1 }, { "CD", SLURM_COMPLETED, 1 },
		{ "FAILED", SLURM_FAILED, 1 }, { "F", SLURM_FAILED, 1 },
		{ "CANCELLED", SLURM_CANCELLED, 1 }, { "CANCELLED by 0", SLURM_CANCELLED, 1 },
		{ "CANCELLED by 1000", SLURM_CANCELLED, 1 }, { "CANCELLED+", SLURM_CANCELLED, 1 },
		{ "CA", SLURM_CANCELLED, 1 },
		{ "TIMEOUT", SLURM_TIMEOUT, 1 }, { "TO", SLURM_TIMEOUT, 1 },
		{ "NODE_FAIL", SLURM_NODE_FAIL, 1 }, { "NF", SLURM_NODE_FAIL, 1 },
		{ "PREEMPTED", SLURM_PREEMPTED, 1 }, { "PR", SLURM_PREEMPTED, 1 },
		{ "OUT_OF_MEMORY", SLURM_OUT_OF_MEMORY, 1 }, { "OOM", SLURM_OUT_OF_MEMORY, 1 },
		{ "BOOT_FAIL", SLURM_BOOT_FAIL, 1 }, { "BF", SLURM_BOOT_FAIL, 1 },
		{ "DEADLINE", SLURM_DEADLINE, 1 }, { "DL", SLURM_DEADLINE, 1 },
		{ "SUSPENDED", SLURM_SUSPENDED, 0 }, { "STOPPED", SLURM_SUSPENDED, 0 },
		{ "REQUEUED", SLURM_REQUEUED, 0 }, { "REQUEUE_HOLD", SLURM_REQUEUED, 0 },
		{ "REQUEUE_FED", SLURM_REQUEUED, 0 }, { "SPECIAL_EXIT", SLURM_REQUEUED, 0 },
		{ "RESV_DEL_HOLD", SLURM_PENDING, 0 }, { "SIGNALING", SLURM_RUNNING, 0 },
		{ "STAGE_OUT", SLURM_COMPLETING, 0 }, { "RESIZING", SLURM_RUNNING, 0 },
		{ "POWER_UP_NODE", SLURM_CONFIGURING, 0 },
		{ " RUNNING\n", SLURM_RUNNING, 0 },
		{ "", SLURM_UNKNOWN, 0 }, { "running", SLURM_UNKNOWN, 0 },
		{ "REVOKED", SLURM_UNKNOWN, 0 }, { "PENDINGX", SLURM_UNKNOWN, 0 },
		{ "COMPLETE", SLURM_UNKNOWN, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum slurm_state st = slurm_state_parse(cases[i].word);
		if (st != cases[i].st)
			fail_msg("'%s': got %s", cases[i].word, slurm_state_name(st));
		assert_int_equal(slurm_state_final(st), cases[i].final);
	}
	assert_int_equal(slurm_state_parse(NULL), SLURM_UNKNOWN);
	assert_string_equal(slurm_state_name(SLURM_OUT_OF_MEMORY), "OUT_OF_MEMORY");
	assert_string_equal(slurm_state_name(SLURM_REQUEUED), "REQUEUED");
	assert_string_equal(slurm_state_name(SLURM_UNKNOWN), "UNKNOWN");
	/* Names read back as themselves. */
	for (int s = SLURM_PENDING; s <= SLURM_REQUEUED; s++)
		assert_int_equal(slurm_state_parse(slurm_state_name((enum slurm_state)s)), s);
}

static void test_slurm__exit_codes(void **state)
{
	int code = -1, sig = -1;

	assert_int_equal(slurm_parse_exit_code("3:0", &code, &sig), 0);
	assert_int_equal(code, 3);
	assert_int_equal(sig, 0);
	assert_int_equal(slurm_parse_exit_code("0:9", &code, &sig), 0);
	assert_int_equal(code, 0);
	assert_int_equal(sig, 9);
	assert_int_equal(slurm_parse_exit_code("0:0", &code, &sig), 0);
	assert_int_equal(code + sig, 0);
	assert_int_equal(slurm_parse_exit_code("255:0\n", &code, &sig), 0);
	assert_int_equal(code, 255);
	assert_int_equal(slurm_parse_exit_code("256:0", &code, &sig), ERR_INVALID);
	assert_int_equal(slurm_parse_exit_code("0:128", &code, &sig), ERR_INVALID);
	assert_int_equal(slurm_parse_exit_code("3", &code, &sig), ERR_INVALID);
	assert_int_equal(slurm_parse_exit_code(":0", &code, &sig), ERR_INVALID);
	assert_int_equal(slurm_parse_exit_code("3:", &code, &sig), ERR_INVALID);
	assert_int_equal(slurm_parse_exit_code("-1:0", &code, &sig), ERR_INVALID);
	assert_int_equal(slurm_parse_exit_code("3:0x", &code, &sig), ERR_INVALID);
	assert_int_equal(slurm_parse_exit_code("", &code, &sig), ERR_INVALID);
}

static void test_slurm__sbatch_output(void **state)
{
	char id[24];

	assert_int_equal(slurm_parse_sbatch("123\n", id, sizeof(id)), 0);
	assert_string_equal(id, "123");
	assert_int_equal(slurm_parse_sbatch("123;cluster\n", id, sizeof(id)), 0);
	assert_string_equal(id, "123");
	assert_int_equal(slurm_parse_sbatch("456", id, sizeof(id)), 0);
	assert_string_equal(id, "456");
	assert_int_equal(slurm_parse_sbatch("sbatch: warning: x\n789;anneal\n\n", id, sizeof(id)), 0);
	assert_string_equal(id, "789");
	assert_int_equal(slurm_parse_sbatch("", id, sizeof(id)), ERR_INVALID);
	assert_int_equal(slurm_parse_sbatch("\n\n", id, sizeof(id)), ERR_INVALID);
	assert_int_equal(slurm_parse_sbatch("Submitted batch job 12\n", id, sizeof(id)), ERR_INVALID);
	assert_int_equal(slurm_parse_sbatch("12a\n", id, sizeof(id)), ERR_INVALID);
	assert_int_equal(slurm_parse_sbatch(";cluster\n", id, sizeof(id)), ERR_INVALID);
	assert_int_equal(slurm_parse_sbatch("12345678901234567890\n", id, sizeof(id)), ERR_INVALID);
	assert_int_equal(slurm_parse_sbatch("123", id, 3), ERR_INVALID);

	assert_int_equal(slurm_handle_jobid("slurm:42", id, sizeof(id)), 0);
	assert_string_equal(id, "42");
	assert_int_equal(slurm_handle_jobid("42", id, sizeof(id)), 0);
	assert_int_equal(slurm_handle_jobid("pid:42", id, sizeof(id)), ERR_INVALID);
	assert_int_equal(slurm_handle_jobid("slurm:", id, sizeof(id)), ERR_INVALID);
	assert_int_equal(slurm_handle_jobid("slurm:4 2", id, sizeof(id)), ERR_INVALID);
}

/* Recorded from Slurm 22.05.8 (tests/slurm/start.sh's cluster): -p nosuch,
 * --gres=npu:9, --bogus, --gres=gpu:1, --mem=99999999, a script with CRLF;
 * then the transient kinds (the first three seen while that cluster was
 * being restarted). */
static const char sbatch_errors[][200] = {
	"sbatch: error: Batch job submission failed: Invalid partition name specified\n",
	"sbatch: error: Batch job submission failed: Requested node configuration is not available\n",
	"sbatch: error: Invalid generic resource (gres) specification\n",
	"sbatch: unrecognized option '--bogus'\nTry \"sbatch --help\" for more information\n",
	"sbatch: error: Memory specification can not be satisfied\n"
	"sbatch: error: Batch job submission failed: Requested node configuration is not available\n",
	"sbatch: error: Batch script contains DOS line breaks (\\r\\n)\n"
	"sbatch: error: instead of expected UNIX line breaks (\\n).\n",
	"sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n",
	"sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n",
	"sbatch: error: Batch job submission failed: Connection reset by peer\n",
	"sbatch: error: Invalid user for SlurmUser slurm, ignored\n"
	"sbatch: error: Munge encode failed: Failed to access \"/run/munge/munge.socket.2\"\n",
	"",
};

static void test_slurm__sbatch_errors(void **state)
{
	static const int want[] = {
		ERR_INVALID, ERR_INVALID, ERR_INVALID, ERR_INVALID, ERR_INVALID, ERR_INVALID,
		ERR_SYSTEM, ERR_SYSTEM, ERR_SYSTEM, ERR_SYSTEM, ERR_SYSTEM,
	};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (slurm_sbatch_error_code(sbatch_errors[i]) != want[i])
			fail_msg("'%s': want %d", sbatch_errors[i], want[i]);
	assert_int_equal(slurm_sbatch_error_code(NULL), ERR_SYSTEM);
}

/* `squeue -h -t all -j 1,2,... -o '%i|%T|%r'`, recorded (exit 3, kill -9
 * $$, sleep, two --gres=npu:8, /nonexistent, a trapped TERM, a cancelled
 * pending job); the COMPLETING and TIMEOUT lines are of the same format,
 * not seen in these runs. */
static const char squeue_sample[] =
	"1|FAILED|NonZeroExitCode\n"
	"2|FAILED|JobLaunchFailure\n"
	"5|PENDING|Resources\n"
	"3|RUNNING|None\n"
	"15|COMPLETED|None\n"
	"18|FAILED|NonZeroExitCode\n"
	"20|CANCELLED|Resources\n"
	"6|COMPLETING|NonZeroExitCode\n"
	"9|TIMEOUT|TimeLimit\n";

static void test_slurm__squeue_lines(void **state)
{
	static const struct { const char *id; enum slurm_state st; const char *reason; } want[] = {
		{ "1", SLURM_FAILED, "NonZeroExitCode" }, { "2", SLURM_FAILED, "JobLaunchFailure" },
		{ "5", SLURM_PENDING, "Resources" }, { "3", SLURM_RUNNING, "None" },
		{ "15", SLURM_COMPLETED, "None" }, { "18", SLURM_FAILED, "NonZeroExitCode" },
		{ "20", SLURM_CANCELLED, "Resources" },
		{ "6", SLURM_COMPLETING, "NonZeroExitCode" }, { "9", SLURM_TIMEOUT, "TimeLimit" },
	};
	char *text = xstrdup(squeue_sample), *line = text;
	char id[24], reason[20];
	enum slurm_state st;
	size_t k = 0;

	while (line && *line) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		assert_int_equal(slurm_parse_squeue_line(line, id, sizeof(id), &st,
							 reason, sizeof(reason)), 0);
		assert_true(k < sizeof(want) / sizeof(want[0]));
		assert_string_equal(id, want[k].id);
		assert_int_equal(st, want[k].st);
		assert_string_equal(reason, want[k].reason);
		k++;
		line = nl ? nl + 1 : NULL;
	}
	assert_int_equal(k, sizeof(want) / sizeof(want[0]));
	free(text);

	/* A reason is truncated to its buffer; the reason may be empty. */
	assert_int_equal(slurm_parse_squeue_line("1|PENDING|ReqNodeNotAvail,_UnavailableNodes:n[1-4]",
						 id, sizeof(id), &st, reason, 8), 0);
	assert_string_equal(reason, "ReqNode");
	assert_int_equal(slurm_parse_squeue_line("1|RUNNING|\r", id, sizeof(id), &st,
						 reason, sizeof(reason)), 0);
	assert_string_equal(reason, "");
	{
		/* squeue -O with the wait status: 768 is exit 3, 9 is SIGKILL */
		int code = -1, sig = -1;
		assert_int_equal(slurm_parse_squeue_exit_line("12|FAILED|768|NonZeroExitCode", id, sizeof(id),
							      &st, &code, &sig, reason, sizeof(reason)), 0);
		assert_string_equal(id, "12");
		assert_int_equal(st, SLURM_FAILED);
		assert_int_equal(code, 3);
		assert_int_equal(sig, 0);
		assert_string_equal(reason, "NonZeroExitCode");
		assert_int_equal(slurm_parse_squeue_exit_line("13|FAILED|9|JobLaunchFailure", id, sizeof(id),
							      &st, &code, &sig, reason, sizeof(reason)), 0);
		assert_int_equal(code, 0);
		assert_int_equal(sig, 9);
		assert_int_equal(slurm_parse_squeue_exit_line("14|RUNNING|None", id, sizeof(id),
							      &st, &code, &sig, reason, sizeof(reason)), ERR_INVALID);
		assert_int_equal(slurm_parse_squeue_exit_line("14|RUNNING|x|None", id, sizeof(id),
							      &st, &code, &sig, reason, sizeof(reason)), ERR_INVALID);
	}
	assert_int_equal(slurm_parse_squeue_line("1|RUNNING", id, sizeof(id), &st,
						 reason, sizeof(reason)), ERR_INVALID);
	assert_int_equal(slurm_parse_squeue_line("x|RUNNING|None", id, sizeof(id), &st,
						 reason, sizeof(reason)), ERR_INVALID);
	assert_int_equal(slurm_parse_squeue_line("slurm_load_jobs error: Invalid job id specified",
						 id, sizeof(id), &st, reason, sizeof(reason)), ERR_INVALID);
}

/* `scontrol show job -o 1` after `sbatch --wrap 'exit 3'`, recorded. */
static const char scontrol_real[] =
	"JobId=1 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A "
	"Priority=4294901759 Nice=0 Account=(null) QOS=(null) JobState=FAILED "
	"Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 "
	"Reboot=0 ExitCode=3:0 RunTime=00:00:00 TimeLimit=UNLIMITED TimeMin=N/A "
	"SubmitTime=2026-11-29T06:02:44 EligibleTime=2026-11-29T06:02:44 "
	"AccrueTime=2026-11-29T06:02:44 StartTime=2026-11-29T06:02:46 "
	"EndTime=2026-11-29T06:02:46 Deadline=N/A SuspendTime=None SecsPreSuspend=0 "
	"LastSchedEval=2026-11-29T06:02:46 Scheduler=Main Partition=debug "
	"AllocNode:Sid=localhost:31253 ReqNodeList=(null) ExcNodeList=(null) "
	"NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 "
	"ReqB:S:C:T=0:0:*:* TRES=cpu=1,node=1,billing=1 Socks/Node=* "
	"NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 MinMemoryNode=0 "
	"MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 OverSubscribe=OK "
	"Contiguous=0 Licenses=(null) Network=(null) Command=(null) WorkDir=/tmp/sl "
	"StdErr=/tmp/sl/1.out StdIn=/dev/null StdOut=/tmp/sl/1.out Power= \n";

/* The same format with a job name and comment made hostile on purpose:
 * only whole fields count, the first of each. */
static const char scontrol_failed[] =
	"JobId=3 JobName=anneal.1.JobState=RUNNING UserId=root(0) GroupId=root(0) "
	"MCS_label=N/A Priority=4294901757 Nice=0 Account=(null) QOS=(null) "
	"JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=0 "
	"Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0 RunTime=00:00:00 "
	"TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2024-11-29T06:10:01 "
	"EligibleTime=2024-11-29T06:10:01 AccrueTime=2024-11-29T06:10:01 "
	"StartTime=2024-11-29T06:10:02 EndTime=2024-11-29T06:10:02 Deadline=N/A "
	"SuspendTime=None SecsPreSuspend=0 LastSchedEval=2024-11-29T06:10:02 "
	"Scheduler=Main Partition=debug AllocNode:Sid=vm:1234 ReqNodeList=(null) "
	"ExcNodeList=(null) NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 NumTasks=1 "
	"CPUs/Task=1 ReqB:S:C:T=0:0:*:* TRES=cpu=1,node=1,billing=1 "
	"Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* MinCPUsNode=1 "
	"MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 "
	"OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) "
	"Command=/tmp/x/slurm.sh WorkDir=/tmp/x Comment=/tmp/x ExitCode=0:0 JobState=COMPLETED "
	"StdErr=/tmp/x/output.log StdIn=/dev/null StdOut=/tmp/x/output.log Power=\n";

static void test_slurm__scontrol(void **state)
{
	enum slurm_state st;
	int code = -1, sig = -1;
	char reason[64];

	assert_int_equal(slurm_parse_scontrol(scontrol_real, &st, &code, &sig,
					      reason, sizeof(reason)), 0);
	assert_int_equal(st, SLURM_FAILED);
	assert_int_equal(code, 3);
	assert_int_equal(sig, 0);
	assert_string_equal(reason, "NonZeroExitCode");
	code = sig = -1;
	assert_int_equal(slurm_parse_scontrol(scontrol_failed, &st, &code, &sig,
					      reason, sizeof(reason)), 0);
	assert_int_equal(st, SLURM_FAILED);
	assert_int_equal(code, 3);
	assert_int_equal(sig, 0);
	assert_string_equal(reason, "NonZeroExitCode");

	assert_int_equal(slurm_parse_scontrol("JobId=4 JobName=wrap JobState=FAILED Reason=NonZeroExitCode "
					      "DerivedExitCode=1:0 ExitCode=0:9 RunTime=00:00:01",
					      &st, &code, &sig, NULL, 0), 0);
	assert_int_equal(st, SLURM_FAILED);
	assert_int_equal(code, 0);
	assert_int_equal(sig, 9);
	assert_int_equal(slurm_parse_scontrol("JobId=5 JobState=CANCELLED Reason=None ExitCode=0:15",
					      &st, &code, &sig, reason, sizeof(reason)), 0);
	assert_int_equal(st, SLURM_CANCELLED);
	assert_int_equal(sig, 15);
	assert_int_equal(slurm_parse_scontrol("JobId=6 JobState=RUNNING Reason=None ExitCode=0:0",
					      &st, &code, &sig, reason, sizeof(reason)), 0);
	assert_int_equal(st, SLURM_RUNNING);
	assert_int_equal(slurm_parse_scontrol("JobId=6 JobState=RUNNING Reason=None", &st, &code,
					      &sig, NULL, 0), ERR_INVALID);
	assert_int_equal(slurm_parse_scontrol("JobId=6 XJobState=RUNNING ExitCode=0:0", &st, &code,
					      &sig, NULL, 0), ERR_INVALID);
	assert_int_equal(slurm_parse_scontrol("slurm_load_jobs error: Invalid job id specified\n",
					      &st, &code, &sig, NULL, 0), ERR_INVALID);
	assert_int_equal(slurm_parse_scontrol("", &st, &code, &sig, NULL, 0), ERR_INVALID);
}

static void test_slurm__sacct(void **state)
{
	enum slurm_state st;
	int code = -1, sig = -1;

	/* Recorded: exit 3, kill -9, exec of a missing program, a trapped TERM
	 * (exit 75), scancel (0:0: written before the processes die). */
	assert_int_equal(slurm_parse_sacct("FAILED|0:9\n", &st, &code, &sig), 0);
	assert_int_equal(sig, 9);
	assert_int_equal(slurm_parse_sacct("FAILED|127:0\n", &st, &code, &sig), 0);
	assert_int_equal(code, 127);
	assert_int_equal(slurm_parse_sacct("FAILED|75:0\n", &st, &code, &sig), 0);
	assert_int_equal(code, 75);
	assert_int_equal(slurm_parse_sacct("CANCELLED|0:0\n", &st, &code, &sig), 0);
	assert_int_equal(st, SLURM_CANCELLED);
	assert_int_equal(slurm_parse_sacct("FAILED|3:0\n", &st, &code, &sig), 0);
	assert_int_equal(st, SLURM_FAILED);
	assert_int_equal(code, 3);
	/* A requeued job: one record per run, the last one counts. */
	assert_int_equal(slurm_parse_sacct("NODE_FAIL|0:0\nREQUEUED|0:0\nCOMPLETED|0:0\n\n",
					   &st, &code, &sig), 0);
	assert_int_equal(st, SLURM_COMPLETED);
	assert_int_equal(slurm_parse_sacct("CANCELLED by 0|0:0\n", &st, &code, &sig), 0);
	assert_int_equal(st, SLURM_CANCELLED);
	assert_int_equal(sig, 0);
	assert_int_equal(slurm_parse_sacct("TIMEOUT|0:0\n", &st, &code, &sig), 0);
	assert_int_equal(st, SLURM_TIMEOUT);
	assert_int_equal(slurm_parse_sacct("", &st, &code, &sig), ERR_NOTFOUND);
	assert_int_equal(slurm_parse_sacct("\n", &st, &code, &sig), ERR_NOTFOUND);
	assert_int_equal(slurm_parse_sacct("FAILED\n", &st, &code, &sig), ERR_INVALID);
	assert_int_equal(slurm_parse_sacct("BOGUS|0:0\n", &st, &code, &sig), ERR_INVALID);
	assert_int_equal(slurm_parse_sacct("FAILED|x\n", &st, &code, &sig), ERR_INVALID);
}

static void test_slurm__outcomes(void **state)
{
	struct job_done d;

	memset(&d, 0, sizeof(d));
	slurm_outcome(SLURM_COMPLETED, 0, 0, "5", &d);
	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 0);
	slurm_outcome(SLURM_FAILED, 3, 0, "5", &d);
	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 3);
	assert_non_null(strstr(d.detail, "slurm job 5"));
	slurm_outcome(SLURM_FAILED, 0, 9, "5", &d);
	assert_int_equal(d.end, JOB_SIGNALED);
	assert_int_equal(d.signal, 9);
	slurm_outcome(SLURM_FAILED, 0, 0, "5", &d);
	assert_int_equal(d.end, JOB_SPAWN_FAILED);
	slurm_outcome(SLURM_CANCELLED, 0, 15, "5", &d);
	assert_int_equal(d.end, JOB_SIGNALED);
	assert_int_equal(d.signal, 15);
	assert_true(!strncmp(d.detail, "CANCELLED", 9));
	slurm_outcome(SLURM_CANCELLED, 0, 0, "5", &d);   /* sacct -c: 0:0 */
	assert_int_equal(d.signal, 15);
	slurm_outcome(SLURM_CANCELLED, 0, 9, "5", &d);
	assert_int_equal(d.signal, 9);
	slurm_outcome(SLURM_TIMEOUT, 0, 0, "5", &d);
	assert_int_equal(d.end, JOB_SIGNALED);
	assert_int_equal(d.signal, 15);
	assert_true(!strncmp(d.detail, "TIMEOUT", 7));
	assert_int_equal(d.time_limit, 1);   /* requeued after a checkpoint */
	slurm_outcome(SLURM_DEADLINE, 0, 0, "5", &d);
	assert_int_equal(d.signal, 15);
	assert_int_equal(d.time_limit, 1);
	assert_true(!strncmp(d.detail, "DEADLINE", 8));
	slurm_outcome(SLURM_OUT_OF_MEMORY, 0, 0, "5", &d);
	assert_int_equal(d.end, JOB_SIGNALED);
	assert_int_equal(d.signal, 9);
	assert_int_equal(d.time_limit, 0);
	assert_true(!strncmp(d.detail, "OUT_OF_MEMORY", 13));
	for (enum slurm_state s = SLURM_NODE_FAIL; s <= SLURM_BOOT_FAIL; s++) {
		if (s == SLURM_OUT_OF_MEMORY)
			continue;
		slurm_outcome(s, 0, 0, "5", &d);
		assert_int_equal(d.end, JOB_EXITED);
		assert_int_equal(d.exit_code, 75);
		assert_true(!strncmp(d.detail, slurm_state_name(s), strlen(slurm_state_name(s))));
	}
	slurm_outcome(SLURM_RUNNING, 0, 0, "5", &d);
	assert_int_equal(d.end, JOB_LOST);
}

static void test_slurm__backoff(void **state)
{
	static const int want[] = { 500, 1000, 2000, 4000, 8000, 10000, 10000 };
	int cur = 500;

	for (size_t i = 1; i < sizeof(want) / sizeof(want[0]); i++) {
		cur = slurm_backoff_next(cur, 0, 500, 10000);
		assert_int_equal(cur, want[i]);
	}
	assert_int_equal(slurm_backoff_next(cur, 1, 500, 10000), 500);
	assert_int_equal(slurm_backoff_next(0, 0, 500, 10000), 500);
	assert_int_equal(slurm_backoff_next(700, 0, 500, 1000), 1000);
	assert_int_equal(slurm_backoff_next(INT_MAX / 2 + 1, 0, 500, INT_MAX), INT_MAX);
}

/* ---- the ops against fake Slurm commands ---------------------------------------- */

/* bin/ of fake commands under tmp; each logs "NAME ARGS" to fake/log and
 * answers from fake/ files. */
static char *fake, *fakebin;

static void fake_file(const char *name, const char *text)
{
	char *p = fs_join(fake, name);

	if (text)
		put(p, text, 0644);
	else
		unlink(p);
	free(p);
}

static void fake_cmd(const char *name, const char *body)
{
	char *p = fs_join(fakebin, name);
	char *text = xasprintf("#!/bin/sh\nF='%s'\nprintf '%%s\\n' \"%s $*\" >>\"$F/log\"\n%s",
			       fake, name, body);

	put(p, text, 0755);
	free(text);
	free(p);
}

static int fake_setup(void **state)
{
	struct err err;

	if (setup(state))
		return -1;
	fake = fs_join(tmp, "fake");
	fakebin = fs_join(tmp, "fakebin");
	if (fs_mkdir_p(fake, 0755, &err) || fs_mkdir_p(fakebin, 0755, &err))
		return -1;
	fake_cmd("sbatch",
		 "if [ -f \"$F/sbatch.err\" ]; then cat \"$F/sbatch.err\" >&2; exit 1; fi\n"
		 "if [ -f \"$F/sbatch.sleep\" ]; then sleep 30; fi\n"
		 "cat \"$F/sbatch.out\"\n");
	fake_cmd("squeue",
		 "case \" $* \" in *\" --me \"*) cat \"$F/squeue_me.out\" 2>/dev/null; exit 0;; esac\n"
		 "if [ -f \"$F/squeue.err\" ]; then cat \"$F/squeue.err\" >&2; exit 1; fi\n"
		 "cat \"$F/squeue.out\" 2>/dev/null\nexit 0\n");
	fake_cmd("scontrol",
		 "if [ -f \"$F/scontrol.$4\" ]; then cat \"$F/scontrol.$4\"; exit 0; fi\n"
		 "echo 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n");
	fake_cmd("sacct", "cat \"$F/sacct.$5\" 2>/dev/null\nexit 0\n");
	fake_cmd("scancel",
		 "if [ -f \"$F/scancel.err\" ]; then cat \"$F/scancel.err\" >&2; exit 1; fi\n");
	fake_file("sbatch.out", "41;anneal\n");
	return 0;
}

static int fake_teardown(void **state)
{
	free(fake);
	free(fakebin);
	fake = fakebin = NULL;
	return teardown(state);
}

/* Lines of fake/log that start with prefix. */
static int fake_count(const char *prefix)
{
	char *p = fs_join(fake, "log"), *text = slurp(p), *line;
	int n = 0;

	for (line = text; line && *line;) {
		char *nl = strchr(line, '\n');
		if (!strncmp(line, prefix, strlen(prefix)))
			n++;
		line = nl ? nl + 1 : NULL;
	}
	free(text);
	free(p);
	return n;
}

static char *fake_log(void)
{
	char *p = fs_join(fake, "log"), *text = slurp(p);

	free(p);
	return text ? text : xstrdup("");
}

static struct runner *fake_runner(int min_ms, int max_ms)
{
	struct slurm_options o;
	struct runner *r = NULL;
	struct err err;

	memset(&o, 0, sizeof(o));
	o.bin_dir = fakebin;
	o.poll_min_ms = min_ms;
	o.poll_max_ms = max_ms;
	o.cmd_timeout_s = 2;
	if (slurm_runner_new(&o, &r, &err))
		fail_msg("slurm_runner_new: %s", err.msg);
	return r;
}

static char *attempt_dir(const char *name)
{
	char *d = fs_join(tmp, name);

	assert_int_equal(mkdir(d, 0755), 0);
	return d;
}

static int submit_rc(struct runner *r, char **argv, const char *dir, void *cookie,
		     struct job_handle *h, struct err *err)
{
	struct job_spec spec;

	memset(&spec, 0, sizeof(spec));
	spec.run_id = "r1";
	spec.step_id = "s1";
	spec.attempt = 1;
	spec.argv = argv;
	spec.envp = environ;
	spec.cwd = tmp;
	spec.attempt_dir = dir;
	spec.cpus = 1;
	spec.cookie = cookie;
	memset(h, 0, sizeof(*h));
	return r->ops->submit(r, &spec, h, err);
}

static void submit(struct runner *r, char **argv, const char *dir, void *cookie,
		   struct job_handle *h)
{
	struct err err;

	if (submit_rc(r, argv, dir, cookie, h, &err))
		fail_msg("submit: %s", err.msg);
}

static struct job_done wait_one(struct runner *r)
{
	double end = now_mono() + DEADLINE_S;
	struct job_done d;
	struct err err;
	size_t n = 0;

	while (n == 0) {
		if (now_mono() > end)
			fail_msg("no job reported within %.0f s", DEADLINE_S);
		if (r->ops->poll(r, 250, &d, 1, &n, &err))
			fail_msg("poll: %s", err.msg);
	}
	return d;
}

static char *argv_true[] = { "/bin/true", NULL };

static void test_slurm__fake_submit_and_exit(void **state)
{
	struct runner *r = fake_runner(50, 200);
	char *dir = attempt_dir("a1"), *p, *log;
	struct job_handle h;
	struct job_done d;
	struct stat st;
	int cookie;

	fake_file("squeue.out", "41|PENDING|Priority\n");
	submit(r, argv_true, dir, &cookie, &h);
	assert_string_equal(h.id, "slurm:41");
	p = fs_join(dir, "slurm.jobid");
	{
		char *t = slurp(p);
		assert_string_equal(t, "41\n");
		free(t);
	}
	free(p);
	p = fs_join(dir, "slurm.sh");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	free(p);
	log = fake_log();
	p = xasprintf("sbatch --parsable --job-name=anneal.r1.s1 --output=%s/output.log "
		      "--open-mode=append --chdir=%s --comment=%s --export=ALL --nodes=1 "
		      "--ntasks-per-node=1 --cpus-per-task=1 --signal=B:TERM@120 --no-requeue %s/slurm.sh\n",
		      dir, tmp, dir, dir);
	assert_string_equal(log, p);
	free(p);
	free(log);

	/* Pending, then running: nothing to report. */
	{
		struct job_done dd;
		struct err err;
		size_t n = 9;
		enum slurm_state s;
		char reason[32];
		assert_int_equal(r->ops->poll(r, 100, &dd, 1, &n, &err), 0);
		assert_int_equal(n, 0);
		assert_int_equal(slurm_job_state(r, &h, &s, reason, sizeof(reason), &err), 0);
		assert_int_equal(s, SLURM_PENDING);
		assert_string_equal(reason, "Priority");
		fake_file("squeue.out", "41|RUNNING|None\n");
		assert_int_equal(r->ops->poll(r, 300, &dd, 1, &n, &err), 0);
		assert_int_equal(n, 0);
		assert_int_equal(slurm_job_state(r, &h, &s, reason, sizeof(reason), &err), 0);
		assert_int_equal(s, SLURM_RUNNING);
	}
	/* Ended: squeue forgets it (-t all would show it; both paths ask
	 * scontrol for the exit code). */
	fake_file("squeue.out", "41|FAILED|NonZeroExitCode\n");
	fake_file("scontrol.41", "JobId=41 JobName=anneal.r1.s1 JobState=FAILED "
		  "Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 RunTime=00:00:01\n");
	d = wait_one(r);
	assert_ptr_equal(d.cookie, &cookie);
	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 3);
	assert_int_equal(fake_count("scontrol show job -o 41"), 1);
	runner_free(r);
	free(dir);
}

/* Jobs forgotten by slurmctld: sacct -c's last record; then none at all. */
static void test_slurm__fake_sacct_and_lost(void **state)
{
	struct runner *r = fake_runner(20, 40);
	char *d1 = attempt_dir("a1"), *d2 = attempt_dir("a2");
	struct job_handle h1, h2;
	struct job_done d;
	int c1, c2;

	fake_file("sbatch.out", "50\n");
	submit(r, argv_true, d1, &c1, &h1);
	fake_file("sbatch.out", "51\n");
	submit(r, argv_true, d2, &c2, &h2);
	fake_file("sacct.50", "NODE_FAIL|0:0\nCOMPLETED|0:0\n");
	d = wait_one(r);
	assert_ptr_equal(d.cookie, &c1);
	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 0);
	d = wait_one(r);
	assert_ptr_equal(d.cookie, &c2);
	assert_int_equal(d.end, JOB_LOST);
	assert_non_null(strstr(d.detail, "slurm job 51"));
	/* Lost only after a second look. */
	assert_int_equal(fake_count("scontrol show job -o 51"), 2);
	runner_free(r);
	free(d1);
	free(d2);
}

/* Many jobs, many poll calls: one squeue per interval for all of them,
 * the interval doubling while nothing changes. */
static void test_slurm__fake_one_squeue_per_interval(void **state)
{
	struct runner *r = fake_runner(100, 400);
	struct buf sq = BUF_INIT;
	struct job_handle h;
	struct job_done d[4];
	struct err err;
	char *log, *want;
	double end;
	int n_sq;

	buf_init(&sq);
	for (int i = 0; i < 20; i++) {
		char name[16], *dir, out[32];
		snprintf(name, sizeof(name), "a%d", i);
		snprintf(out, sizeof(out), "%d\n", 100 + i);
		dir = attempt_dir(name);
		fake_file("sbatch.out", out);
		submit(r, argv_true, dir, NULL, &h);
		buf_printf(&sq, "%d|RUNNING|None\n", 100 + i);
		free(dir);
	}
	fake_file("squeue.out", sq.ptr);
	end = now_mono() + 2.0;
	while (now_mono() < end) {
		size_t n = 9;
		assert_int_equal(r->ops->poll(r, 20, d, 4, &n, &err), 0);
		assert_int_equal(n, 0);
	}
	/* Checks at about 0.1, 0.3, 0.7, 1.1, 1.5, 1.9 s: 6 (give or take the
	 * time the fake commands take), never one per job or per call. */
	n_sq = fake_count("squeue ");
	if (n_sq < 3 || n_sq > 8)
		fail_msg("%d squeue calls in 2 s", n_sq);
	assert_int_equal(fake_count("scontrol "), 0);
	log = fake_log();
	want = xasprintf("squeue -h -t all -j 100,101,102,103,104,105,106,107,108,109,110,"
			 "111,112,113,114,115,116,117,118,119 -O JobID:|,State:|,exit_code:|,Reason:\n");
	assert_non_null(strstr(log, want));
	free(want);
	free(log);

	/* A change brings the interval back to the minimum. */
	buf_reset(&sq);
	for (int i = 0; i < 20; i++)
		buf_printf(&sq, "%d|%s|None\n", 100 + i, i ? "RUNNING" : "COMPLETING");
	fake_file("squeue.out", sq.ptr);
	{
		size_t n;
		double t0 = now_mono();
		int before = fake_count("squeue ");
		while (fake_count("squeue ") < before + 3 && now_mono() - t0 < 5)
			assert_int_equal(r->ops->poll(r, 20, d, 4, &n, &err), 0);
		/* With 400 ms between checks that would take over 1 s. */
		assert_true(now_mono() - t0 < 1.0 + 0.5);
	}
	runner_free(r);
	buf_free(&sq);
}

static void test_slurm__fake_sbatch_missing(void **state)
{
	struct runner *r = fake_runner(50, 100);
	char *dir = attempt_dir("a1"), *p = fs_join(fakebin, "sbatch");
	struct job_handle h;
	struct err err;

	unlink(p);
	assert_int_equal(submit_rc(r, argv_true, dir, NULL, &h, &err), ERR_SYSTEM);
	assert_non_null(strstr(err.msg, "sbatch"));
	assert_non_null(strstr(err.msg, "not found"));
	assert_null(strchr(err.msg, '\n'));
	free(p);
	p = fs_join(dir, "slurm.jobid");
	assert_false(fs_exists(p));
	assert_string_equal(h.id, "");
	free(p);
	runner_free(r);
	free(dir);
}

static void test_slurm__fake_sbatch_rejects(void **state)
{
	struct runner *r = fake_runner(50, 100);
	char *dir = attempt_dir("a1"), *p;
	struct job_handle h;
	struct err err;

	fake_file("sbatch.err", sbatch_errors[0]);
	assert_int_equal(submit_rc(r, argv_true, dir, NULL, &h, &err), ERR_INVALID);
	assert_string_equal(err.msg, "step 's1': sbatch failed (exit 1): sbatch: error: Batch job "
			    "submission failed: Invalid partition name specified");
	p = fs_join(dir, "slurm.jobid");
	assert_false(fs_exists(p));
	free(p);
	assert_int_equal(fake_count("squeue"), 0);

	fake_file("sbatch.err", sbatch_errors[6]);
	assert_int_equal(submit_rc(r, argv_true, dir, NULL, &h, &err), ERR_SYSTEM);
	assert_non_null(strstr(err.msg, "Unable to contact slurm controller"));

	/* Output that is no job id: a job of ours may exist all the same. */
	fake_file("sbatch.err", NULL);
	fake_file("sbatch.out", "Submitted batch job 12\n");
	assert_int_equal(submit_rc(r, argv_true, dir, NULL, &h, &err), ERR_SYSTEM);
	assert_non_null(strstr(err.msg, "sbatch: unexpected output 'Submitted batch job 12'"));
	assert_int_equal(fake_count("squeue -h --me"), 1);
	p = xasprintf("12|%s\n", dir);
	fake_file("squeue_me.out", p);
	free(p);
	assert_int_equal(submit_rc(r, argv_true, dir, NULL, &h, &err), 0);
	assert_string_equal(h.id, "slurm:12");
	runner_free(r);
	free(dir);
}

static void test_slurm__fake_sbatch_hangs(void **state)
{
	struct runner *r = fake_runner(50, 100);
	char *dir = attempt_dir("a1");
	struct job_handle h;
	struct err err;
	double t0 = now_mono();

	fake_file("sbatch.sleep", "");
	assert_int_equal(submit_rc(r, argv_true, dir, NULL, &h, &err), ERR_SYSTEM);
	assert_non_null(strstr(err.msg, "sbatch: no answer within 2 s"));
	assert_true(now_mono() - t0 < 10);
	runner_free(r);
	free(dir);
}

static void test_slurm__fake_resubmit_refused(void **state)
{
	struct runner *r = fake_runner(50, 100);
	char *dir = attempt_dir("a1");
	struct job_handle h;
	struct err err;

	submit(r, argv_true, dir, NULL, &h);
	assert_int_equal(submit_rc(r, argv_true, dir, NULL, &h, &err), ERR_BUSY);
	assert_non_null(strstr(err.msg, "slurm job 41 was submitted from there already"));
	assert_int_equal(fake_count("sbatch"), 1);
	runner_free(r);
	free(dir);
}

static void test_slurm__fake_squeue_fails(void **state)
{
	struct runner *r = fake_runner(20, 40);
	char *dir = attempt_dir("a1");
	struct job_handle h;
	struct job_done d;
	struct err err;
	enum slurm_state s;
	char reason[96];
	size_t n;

	fake_file("squeue.out", "41|RUNNING|None\n");
	submit(r, argv_true, dir, NULL, &h);
	fake_file("squeue.err", "squeue: error: Unable to contact slurm controller (connect failure)\n");
	assert_int_equal(r->ops->poll(r, 200, &d, 1, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(slurm_job_state(r, &h, &s, reason, sizeof(reason), &err), 0);
	assert_non_null(strstr(reason, "squeue failed (exit 1): squeue: error: Unable to contact"));
	fake_file("squeue.err", NULL);
	assert_int_equal(r->ops->poll(r, 200, &d, 1, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(slurm_job_state(r, &h, &s, reason, sizeof(reason), &err), 0);
	assert_int_equal(s, SLURM_RUNNING);
	assert_string_equal(reason, "None");
	runner_free(r);
	free(dir);
}

static void test_slurm__fake_cancel(void **state)
{
	struct runner *r = fake_runner(50, 100);
	char *dir = attempt_dir("a1");
	struct job_handle h, other = { "slurm:77" }, bad = { "pid:7" };
	struct job_handle pending = { "slurm:78" }, gone = { "slurm:79" };
	struct err err;

	fake_file("squeue.out", "41|RUNNING|None\n77|RUNNING|None\n78|PENDING|Priority\n");
	submit(r, argv_true, dir, NULL, &h);
	/* Not seen running yet: squeue asked first, which says it runs. */
	assert_int_equal(r->ops->cancel(r, &h, SIGTERM, &err), 0);
	assert_int_equal(fake_count("scancel --signal=TERM --full 41"), 1);
	assert_int_equal(fake_count("squeue "), 1);
	{
		struct job_done d;
		size_t n;
		assert_int_equal(r->ops->poll(r, 100, &d, 1, &n, &err), 0);
	}
	assert_int_equal(r->ops->cancel(r, &h, SIGTERM, &err), 0);
	assert_int_equal(r->ops->cancel(r, &h, SIGUSR1, &err), 0);
	assert_int_equal(r->ops->cancel(r, &h, SIGKILL, &err), 0);
	assert_int_equal(r->ops->cancel(r, &other, SIGTERM, &err), 0);
	assert_int_equal(fake_count("scancel --signal=TERM --full 41"), 2);
	assert_int_equal(fake_count("scancel --signal=USR1 --full 41"), 1);
	assert_int_equal(fake_count("scancel 41"), 1);
	assert_int_equal(fake_count("scancel --signal=TERM --full 77"), 1);
	/* Handles of jobs not watched: squeue tells their state first. */
	assert_int_equal(r->ops->cancel(r, &pending, SIGTERM, &err), 0);
	assert_int_equal(fake_count("scancel 78"), 1);
	assert_int_equal(r->ops->cancel(r, &gone, SIGTERM, &err), 0);
	assert_int_equal(fake_count("scancel --signal=TERM --full 79"), 0);
	assert_int_equal(fake_count("scancel 79"), 0);

	fake_file("scancel.err", "scancel: error: Kill job error on job id 41: Invalid job id specified\n");
	assert_int_equal(r->ops->cancel(r, &h, SIGKILL, &err), 0);
	fake_file("scancel.err", "scancel: error: Kill job error on job id 41: Job/step already completing or completed\n");
	assert_int_equal(r->ops->cancel(r, &h, SIGTERM, &err), 0);
	fake_file("scancel.err", "scancel: error: Kill job error on job id 41: Access/permission denied\n");
	assert_int_equal(r->ops->cancel(r, &h, SIGTERM, &err), ERR_SYSTEM);
	assert_string_equal(err.msg, "cancel slurm job 41: scancel failed (exit 1): scancel: error: "
			    "Kill job error on job id 41: Access/permission denied");
	assert_int_equal(r->ops->cancel(r, &bad, SIGTERM, &err), ERR_INVALID);
	runner_free(r);
	free(dir);
}

static void test_slurm__fake_attach(void **state)
{
	struct runner *r = fake_runner(20, 40);
	char *d1 = attempt_dir("a1"), *d2 = attempt_dir("a2"), *d3 = attempt_dir("a3");
	char *d4 = attempt_dir("a4"), *d5 = attempt_dir("a5"), *p;
	struct job_handle h;
	struct job_done d;
	struct err err;
	int alive = -1, cookie;

	/* Live: watched, handle filled in, reported when it ends. */
	p = fs_join(d1, "slurm.jobid");
	put(p, "77\n", 0644);
	free(p);
	fake_file("squeue.out", "77|RUNNING|None\n");
	memset(&h, 0, sizeof(h));
	assert_int_equal(r->ops->attach(r, d1, &h, &cookie, &alive, &d, &err), 0);
	assert_int_equal(alive, 1);
	assert_string_equal(h.id, "slurm:77");
	assert_int_equal(r->ops->attach(r, d1, &h, &cookie, &alive, &d, &err), ERR_INVALID);

	/* Ended and remembered by sacct -c only. */
	p = fs_join(d2, "slurm.jobid");
	put(p, "78\n", 0644);
	free(p);
	fake_file("sacct.78", "TIMEOUT|0:0\n");
	memset(&h, 0, sizeof(h));
	assert_int_equal(r->ops->attach(r, d2, &h, &cookie, &alive, &d, &err), 0);
	assert_int_equal(alive, 0);
	assert_ptr_equal(d.cookie, &cookie);
	assert_int_equal(d.end, JOB_SIGNALED);
	assert_true(!strncmp(d.detail, "TIMEOUT", 7));

	/* Known to nobody any more. */
	strcpy(h.id, "slurm:79");
	assert_int_equal(r->ops->attach(r, d3, &h, &cookie, &alive, &d, &err), 0);
	assert_int_equal(alive, 0);
	assert_int_equal(d.end, JOB_LOST);
	assert_non_null(strstr(d.detail, "slurm job 79 is unknown"));

	/* Never submitted. */
	memset(&h, 0, sizeof(h));
	assert_int_equal(r->ops->attach(r, d4, &h, &cookie, &alive, &d, &err), 0);
	assert_int_equal(alive, 0);
	assert_int_equal(d.end, JOB_LOST);
	assert_string_equal(d.detail, "never submitted");
	assert_string_equal(h.id, "");

	/* A crash between sbatch and slurm.jobid: found by its comment. */
	p = fs_join(d5, "slurm.sh");
	put(p, "#!/bin/sh\n", 0700);
	free(p);
	p = xasprintf("80|/elsewhere\n81|%s\n", d5);
	fake_file("squeue_me.out", p);
	free(p);
	fake_file("squeue.out", "77|RUNNING|None\n81|PENDING|Resources\n");
	memset(&h, 0, sizeof(h));
	assert_int_equal(r->ops->attach(r, d5, &h, &cookie, &alive, &d, &err), 0);
	assert_int_equal(alive, 1);
	assert_string_equal(h.id, "slurm:81");
	p = fs_join(d5, "slurm.jobid");
	{
		char *t = slurp(p);
		assert_string_equal(t, "81\n");
		free(t);
	}
	free(p);
	assert_int_equal(fake_count("sbatch"), 0);

	/* Both end. */
	fake_file("squeue.out", "");
	fake_file("scontrol.77", "JobId=77 JobState=COMPLETED Reason=None ExitCode=0:0\n");
	fake_file("scontrol.81", "JobId=81 JobState=CANCELLED Reason=None ExitCode=0:15\n");
	d = wait_one(r);
	assert_int_equal(d.end, JOB_EXITED);
	d = wait_one(r);
	assert_int_equal(d.end, JOB_SIGNALED);
	assert_int_equal(d.signal, 15);
	runner_free(r);
	free(d1);
	free(d2);
	free(d3);
	free(d4);
	free(d5);
}

static volatile sig_atomic_t got_alarm;
static void on_alarm(int sig)
{
	got_alarm = 1;
}

/* A handled signal ends a long wait early, with nothing reported. */
static void test_slurm__fake_poll_returns_on_signal(void **state)
{
	struct runner *r = fake_runner(5000, 10000);
	char *dir = attempt_dir("a1");
	struct itimerval it = { { 0, 0 }, { 0, 200000 } };
	struct sigaction sa, old;
	struct job_handle h;
	struct job_done d;
	struct err err;
	size_t n = 9;
	double t0;

	fake_file("squeue.out", "41|RUNNING|None\n");
	submit(r, argv_true, dir, NULL, &h);
	assert_int_equal(r->ops->poll(r, 0, &d, 1, &n, &err), 0);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, &old);
	got_alarm = 0;
	t0 = now_mono();
	setitimer(ITIMER_REAL, &it, NULL);
	assert_int_equal(r->ops->poll(r, -1, &d, 1, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_true(got_alarm);
	assert_true(now_mono() - t0 < 2.0);
	sigaction(SIGALRM, &old, NULL);
	runner_free(r);
	free(dir);
}

static void test_slurm__job_state_other_handles(void **state)
{
	struct runner *r = fake_runner(50, 100);
	struct job_handle h = { "slurm:90" }, bad = { "pid:1" };
	enum slurm_state s;
	char reason[64];
	struct err err;

	fake_file("squeue.out", "90|PENDING|Resources\n");
	assert_int_equal(slurm_job_state(r, &h, &s, reason, sizeof(reason), &err), 0);
	assert_int_equal(s, SLURM_PENDING);
	assert_string_equal(reason, "Resources");
	fake_file("squeue.out", "");
	fake_file("scontrol.90", "JobId=90 JobState=FAILED Reason=NonZeroExitCode ExitCode=2:0\n");
	assert_int_equal(slurm_job_state(r, &h, &s, reason, sizeof(reason), &err), 0);
	assert_int_equal(s, SLURM_FAILED);
	assert_string_equal(reason, "ExitCode=2:0");
	fake_file("scontrol.90", NULL);
	assert_int_equal(slurm_job_state(r, &h, &s, reason, sizeof(reason), &err), ERR_NOTFOUND);
	assert_int_equal(slurm_job_state(r, &bad, &s, reason, sizeof(reason), &err), ERR_INVALID);
	{
		/* Not a Slurm runner. */
		struct runner_ops ops = { .name = "x" };
		struct runner fake_r = { &ops };
		assert_int_equal(slurm_job_state(&fake_r, &h, &s, reason, sizeof(reason), &err),
				 ERR_INVALID);
	}
	runner_free(r);
}

/* ---- a real cluster (tests/slurm/start.sh), when there is one --------------------- */

static int have_cluster(void)
{
	static int known = -1;
	char *argv[] = { "scontrol", "ping", NULL };
	struct spawn_opts so = SPAWN_OPTS_INIT;
	struct err err;
	int status = -1;

	if (known >= 0)
		return known;
	known = 0;
	if (!getenv("SLURM_CONF"))
		return 0;
	so.stdin_null = 1;
	so.stdout_path = "/dev/null";
	so.stderr_path = "/dev/null";
	if (spawn_run(argv, &so, &status, &err) == 0 && status == 0)
		known = 1;
	return known;
}

/* Jobs the real tests submitted: cancelled by real_teardown, so that a
 * failing test leaves nothing running on the cluster. */
static char real_jobs[32][JOB_HANDLE_MAX];
static size_t n_real_jobs;

static void real_submit(struct runner *r, char **argv, const char *dir, void *cookie,
			struct job_handle *h)
{
	submit(r, argv, dir, cookie, h);
	if (n_real_jobs < sizeof(real_jobs) / sizeof(real_jobs[0]))
		snprintf(real_jobs[n_real_jobs++], JOB_HANDLE_MAX, "%s", h->id + 6);
}

static int real_teardown(void **state)
{
	for (size_t i = 0; i < n_real_jobs; i++) {
		char *argv[] = { "scancel", real_jobs[i], NULL };
		struct spawn_opts so = SPAWN_OPTS_INIT;
		struct err err;
		int status;
		so.stdin_null = 1;
		so.stdout_path = "/dev/null";
		so.stderr_path = "/dev/null";
		spawn_run(argv, &so, &status, &err);
	}
	n_real_jobs = 0;
	return teardown(state);
}

static struct runner *real_runner(void)
{
	struct slurm_options o;
	struct runner *r = NULL;
	struct err err;

	memset(&o, 0, sizeof(o));
	o.poll_min_ms = 200;
	o.poll_max_ms = 1000;
	o.signal_grace_s = 5;
	if (slurm_runner_new(&o, &r, &err))
		fail_msg("slurm_runner_new: %s", err.msg);
	return r;
}

static void test_slurm__real_exit_codes(void **state)
{
	char *a0[] = { "/bin/sh", "-c", "echo out; echo err >&2; exit 0", NULL };
	char *a3[] = { "/bin/sh", "-c", "exit 3", NULL };
	char *a9[] = { "/bin/sh", "-c", "kill -9 $$", NULL };
	char *anf[] = { "/nonexistent/engine", NULL };
	char **argvs[] = { a0, a3, a9, anf };
	struct job_handle h[4];
	int cookies[4], seen = 0;
	struct runner *r;
	char *dirs[4];
	double t0;

	if (!have_cluster())
		skip();
	r = real_runner();
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "r%d", i);
		dirs[i] = attempt_dir(name);
		real_submit(r, argvs[i], dirs[i], &cookies[i], &h[i]);
		print_message("submitted %s\n", h[i].id);
	}
	t0 = now_mono();
	while (seen != 15) {
		struct job_done d = wait_one(r);
		int i = (int)((int *)d.cookie - cookies);
		assert_true(i >= 0 && i < 4);
		seen |= 1 << i;
		print_message("%s after %.1f s: end %d exit %d signal %d: %s\n", h[i].id,
			      now_mono() - t0, d.end, d.exit_code, d.signal, d.detail);
		switch (i) {
		case 0:
			assert_int_equal(d.end, JOB_EXITED);
			assert_int_equal(d.exit_code, 0);
			{
				char *p = fs_join(dirs[0], "output.log"), *t = slurp(p);
				assert_non_null(t);
				assert_string_equal(t, "out\nerr\n");
				free(t);
				free(p);
			}
			break;
		case 1:
			assert_int_equal(d.end, JOB_EXITED);
			assert_int_equal(d.exit_code, 3);
			break;
		case 2:
			assert_int_equal(d.end, JOB_SIGNALED);
			assert_int_equal(d.signal, 9);
			break;
		case 3:
			assert_int_equal(d.end, JOB_EXITED);
			assert_int_equal(d.exit_code, 127);
			break;
		}
	}
	runner_free(r);
	for (int i = 0; i < 4; i++)
		free(dirs[i]);
}

static void test_slurm__real_cancel_and_attach(void **state)
{
	char *sleeper[] = { "/bin/sh", "-c",
			    "trap 'echo got TERM; exit 75' TERM; echo started; "
			    "while :; do sleep 1; done", NULL };
	char *plain[] = { "/bin/sleep", "300", NULL };
	struct job_handle h1, h2, h3;
	struct job_done d;
	struct runner *r;
	struct err err;
	enum slurm_state s;
	char reason[96], *d1, *d2, *d3, *p;
	int c1, c2, c3, alive = -1;
	double end;

	if (!have_cluster())
		skip();
	r = real_runner();
	d1 = attempt_dir("c1");
	d2 = attempt_dir("c2");
	d3 = attempt_dir("c3");
	real_submit(r, sleeper, d1, &c1, &h1);
	real_submit(r, plain, d2, &c2, &h2);
	/* Wait until the trap is set. */
	p = fs_join(d1, "output.log");
	end = now_mono() + DEADLINE_S;
	for (;;) {
		char *t = slurp(p);
		int ok = t && strstr(t, "started");
		free(t);
		if (ok)
			break;
		if (now_mono() > end)
			fail_msg("job %s never started", h1.id);
		usleep(100000);
	}
	assert_int_equal(slurm_job_state(r, &h1, &s, reason, sizeof(reason), &err), 0);
	print_message("%s: %s (%s)\n", h1.id, slurm_state_name(s), reason);

	/* TERM reaches the step, which saves and exits 75. */
	if (r->ops->cancel(r, &h1, SIGTERM, &err))
		fail_msg("cancel: %s", err.msg);
	d = wait_one(r);
	print_message("%s: end %d exit %d signal %d: %s\n", h1.id, d.end, d.exit_code,
		      d.signal, d.detail);
	assert_ptr_equal(d.cookie, &c1);
	assert_int_equal(d.end, JOB_EXITED);
	assert_int_equal(d.exit_code, 75);
	{
		char *t = slurp(p);
		assert_non_null(strstr(t, "got TERM"));
		free(t);
	}
	free(p);

	/* The runner goes (anneal crashed); a new one re-attaches. */
	runner_free(r);
	r = real_runner();
	memset(&h3, 0, sizeof(h3));
	assert_int_equal(r->ops->attach(r, d2, &h3, &c3, &alive, &d, &err), 0);
	assert_int_equal(alive, 1);
	assert_string_equal(h3.id, h2.id);
	/* Already ended: reported at once. */
	assert_int_equal(r->ops->attach(r, d1, &h1, &c1, &alive, &d, &err), 0);
	assert_int_equal(alive, 0);
	assert_int_equal(d.exit_code, 75);

	if (r->ops->cancel(r, &h3, SIGKILL, &err))
		fail_msg("cancel: %s", err.msg);
	d = wait_one(r);
	print_message("%s: end %d exit %d signal %d: %s\n", h3.id, d.end, d.exit_code,
		      d.signal, d.detail);
	assert_ptr_equal(d.cookie, &c3);
	assert_int_equal(d.end, JOB_SIGNALED);
	assert_true(!strncmp(d.detail, "CANCELLED", 9));
	/* Gone already: not an error. */
	assert_int_equal(r->ops->cancel(r, &h3, SIGKILL, &err), 0);
	assert_int_equal(r->ops->cancel(r, &h3, SIGTERM, &err), 0);
	runner_free(r);
	free(d1);
	free(d2);
	free(d3);
}

static void test_slurm__real_rejected(void **state)
{
	struct slurm_options o;
	struct runner *r = NULL;
	struct job_handle h;
	struct err err;
	char *dir, *p;

	if (!have_cluster())
		skip();
	memset(&o, 0, sizeof(o));
	o.partition = "nosuchpartition";
	assert_int_equal(slurm_runner_new(&o, &r, &err), 0);
	dir = attempt_dir("x1");
	assert_int_equal(submit_rc(r, argv_true, dir, NULL, &h, &err), ERR_INVALID);
	print_message("%s\n", err.msg);
	assert_non_null(strstr(err.msg, "step 's1': sbatch failed (exit 1): sbatch: error:"));
	p = fs_join(dir, "slurm.jobid");
	assert_false(fs_exists(p));
	free(p);
	runner_free(r);
	free(dir);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
#define F(f) cmocka_unit_test_setup_teardown(f, fake_setup, fake_teardown)
#define R(f) cmocka_unit_test_setup_teardown(f, setup, real_teardown)

/* The step of the quoting tests: cwd, argv[2..] and a few variables,
 * NUL-separated, on stdout. */
static int print_argv(int argc, char **argv)
{
	static const char *const vars[] = { "V1", "V2", "V3", "GONE" };
	char cwd[PATH_MAX];

	if (!getcwd(cwd, sizeof(cwd)))
		return 1;
	fwrite(cwd, 1, strlen(cwd) + 1, stdout);
	for (int i = 2; i < argc; i++)
		fwrite(argv[i], 1, strlen(argv[i]) + 1, stdout);
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);
		if (v)
			printf("%s=%s%c", vars[i], v, '\0');
		else if (!strcmp(vars[i], "GONE"))
			printf("GONE unset%c", '\0');
	}
	return fflush(stdout) ? 1 : 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		T(test_slurm__quote_simple),
		T(test_slurm__quote_roundtrips_through_sh),
		T(test_slurm__batch_script_roundtrips),
		T(test_slurm__batch_script_bad_cwd_exits_126),
		T(test_slurm__batch_script_golden),
		T(test_slurm__sbatch_argv_golden),
		T(test_slurm__hostile_options_stay_words),
		T(test_slurm__state_names),
		T(test_slurm__exit_codes),
		T(test_slurm__sbatch_output),
		T(test_slurm__sbatch_errors),
		T(test_slurm__squeue_lines),
		T(test_slurm__scontrol),
		T(test_slurm__sacct),
		T(test_slurm__outcomes),
		T(test_slurm__backoff),
		F(test_slurm__fake_submit_and_exit),
		F(test_slurm__fake_sacct_and_lost),
		F(test_slurm__fake_one_squeue_per_interval),
		F(test_slurm__fake_sbatch_missing),
		F(test_slurm__fake_sbatch_rejects),
		F(test_slurm__fake_sbatch_hangs),
		F(test_slurm__fake_resubmit_refused),
		F(test_slurm__fake_squeue_fails),
		F(test_slurm__fake_cancel),
		F(test_slurm__fake_attach),
		F(test_slurm__fake_poll_returns_on_signal),
		F(test_slurm__job_state_other_handles),
		R(test_slurm__real_exit_codes),
		R(test_slurm__real_cancel_and_attach),
		R(test_slurm__real_rejected),
	};

	if (argc >= 2 && !strcmp(argv[1], "--print-argv"))
		return print_argv(argc, argv);
	self = fs_abspath(argv[0]);
	{
		int rc = cmocka_run_group_tests(tests, NULL, NULL);
		free(self);
		return rc;
	}
}
