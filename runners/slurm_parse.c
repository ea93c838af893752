/* runners/slurm_parse.c — the Slurm runner's pure pieces: the words it
 * writes (the batch script, sbatch's argv, shell quoting) and the words it
 * reads (sbatch --parsable, squeue, scontrol -o, sacct -c, exit codes),
 * turned into enums once, here. No I/O, so that tests cover every format
 * without a cluster (see slurm.h; the formats are those of Slurm 22.05,
 * recorded in tests/runners/test_slurm.c). */
#include "runners/slurm.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/util.h"

/* --- quoting ------------------------------------------------------------- */

void slurm_quote(const char *s, struct buf *out)
{
	buf_addc(out, '\'');
	for (; *s; s++) {
		if (*s == '\'')
			buf_adds(out, "'\\''");
		else if (*s == '\r')
			buf_adds(out, "'\"$(printf '\\r')\"'");
		else
			buf_addc(out, *s);
	}
	buf_addc(out, '\'');
}

/* --- states --------------------------------------------------------------- */

static const struct {
	const char *name, *code;
	enum slurm_state state;
} states[] = {
	{ "PENDING", "PD", SLURM_PENDING },
	{ "RUNNING", "R", SLURM_RUNNING },
	{ "COMPLETED", "CD", SLURM_COMPLETED },
	{ "FAILED", "F", SLURM_FAILED },
	{ "CANCELLED", "CA", SLURM_CANCELLED },
	{ "TIMEOUT", "TO", SLURM_TIMEOUT },
	{ "NODE_FAIL", "NF", SLURM_NODE_FAIL },
	{ "PREEMPTED", "PR", SLURM_PREEMPTED },
	{ "OUT_OF_MEMORY", "OOM", SLURM_OUT_OF_MEMORY },
	{ "BOOT_FAIL", "BF", SLURM_BOOT_FAIL },
	{ "DEADLINE", "DL", SLURM_DEADLINE },
	{ "CONFIGURING", "CF", SLURM_CONFIGURING },
	{ "POWER_UP_NODE", "PU", SLURM_CONFIGURING },
	{ "COMPLETING", "CG", SLURM_COMPLETING },
	{ "STAGE_OUT", "SO", SLURM_COMPLETING },
	{ "SUSPENDED", "S", SLURM_SUSPENDED },
	{ "STOPPED", "ST", SLURM_SUSPENDED },
	{ "REQUEUED", "RQ", SLURM_REQUEUED },
	{ "REQUEUE_HOLD", "RH", SLURM_REQUEUED },
	{ "REQUEUE_FED", "RF", SLURM_REQUEUED },
	{ "SPECIAL_EXIT", "SE", SLURM_REQUEUED },
	{ "RESV_DEL_HOLD", "RD", SLURM_PENDING },
	{ "SIGNALING", "SI", SLURM_RUNNING },
	{ "RESIZING", "RS", SLURM_RUNNING },
	{ "UPDATE_DB", "UD", SLURM_RUNNING },
};

enum slurm_state slurm_state_parse(const char *s)
{
	size_t n = 0;

	if (!s)
		return SLURM_UNKNOWN;
	while (*s == ' ' || *s == '\t')
		s++;
	/* "CANCELLED by 0" (sacct), "CANCELLED+" (sacct, truncated column). */
	while (s[n] && s[n] != ' ' && s[n] != '\t' && s[n] != '\n' &&
	       s[n] != '\r' && s[n] != '+')
		n++;
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		if ((strlen(states[i].name) == n && !strncmp(states[i].name, s, n)) ||
		    (strlen(states[i].code) == n && !strncmp(states[i].code, s, n)))
			return states[i].state;
	return SLURM_UNKNOWN;
}

const char *slurm_state_name(enum slurm_state s)
{
	if (s == SLURM_UNKNOWN)
		return "UNKNOWN";
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++)
		if (states[i].state == s)
			return states[i].name;
	return "UNKNOWN";
}

int slurm_state_final(enum slurm_state s)
{
	switch (s) {
	case SLURM_COMPLETED: case SLURM_FAILED: case SLURM_CANCELLED:
	case SLURM_TIMEOUT: case SLURM_NODE_FAIL: case SLURM_PREEMPTED:
	case SLURM_OUT_OF_MEMORY: case SLURM_BOOT_FAIL: case SLURM_DEADLINE:
		return 1;
	default:
		return 0;
	}
}

/* --- small parsers --------------------------------------------------------- */

static int all_digits(const char *s, size_t n)
{
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* A job id: 1 to 19 digits, copied into id. */
static int take_jobid(const char *s, size_t n, char *id, size_t size)
{
	if (!all_digits(s, n) || n > 19 || n + 1 > size)
		return ERR_INVALID;
	memcpy(id, s, n);
	id[n] = '\0';
	return 0;
}

int slurm_handle_jobid(const char *handle, char *id, size_t size)
{
	if (!handle)
		return ERR_INVALID;
	if (!strncmp(handle, "slurm:", 6))
		handle += 6;
	return take_jobid(handle, strlen(handle), id, size);
}

/* The last line of text with something in it, as [*start, *start + *len). */
static int last_line(const char *text, const char **start, size_t *len)
{
	const char *best = NULL, *p = text;
	size_t best_len = 0;

	while (*p) {
		const char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		size_t m = n;
		while (m > 0 && (p[m - 1] == '\r' || p[m - 1] == ' ' || p[m - 1] == '\t'))
			m--;
		if (m > 0) {
			best = p;
			best_len = m;
		}
		p += n;
		if (*p)
			p++;
	}
	*start = best;
	*len = best_len;
	return best ? 0 : ERR_NOTFOUND;
}

int slurm_parse_sbatch(const char *out, char *id, size_t size)
{
	const char *line, *semi;
	size_t n;

	if (!out || last_line(out, &line, &n))
		return ERR_INVALID;
	semi = memchr(line, ';', n);
	if (semi)
		n = (size_t)(semi - line);
	return take_jobid(line, n, id, size);
}

int slurm_sbatch_error_code(const char *text)
{
	/* The request never reached a decision: try again later. */
	static const char *const transient[] = {
		"Unable to contact slurm controller", "Socket timed out",
		"Zero Bytes were transmitted", "temporarily unavailable",
		"Slurm temporarily unable", "Connection refused", "connect failure",
		"Communication connection failure", "Connection timed out",
		"Transport endpoint", "Connection reset", "No route to host",
		"Network is unreachable", "authentication", "Munge", "munge",
		"Slurm backup controller in standby mode",
	};

	if (!text)
		return ERR_SYSTEM;
	for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
		if (strstr(text, transient[i]))
			return ERR_SYSTEM;
	if (strstr(text, "error:") || strstr(text, "unrecognized option") ||
	    strstr(text, "invalid option"))
		return ERR_INVALID;
	return ERR_SYSTEM;
}

int slurm_parse_exit_code(const char *s, int *code, int *sig)
{
	char *end;
	long c, g;

	if (!s || *s < '0' || *s > '9')
		return ERR_INVALID;
	c = strtol(s, &end, 10);
	if (*end != ':' || end[1] < '0' || end[1] > '9')
		return ERR_INVALID;
	g = strtol(end + 1, &end, 10);
	if ((*end && *end != ' ' && *end != '\n' && *end != '\t' && *end != '\r') ||
	    c > 255 || g > 127)
		return ERR_INVALID;
	*code = (int)c;
	*sig = (int)g;
	return 0;
}

static void copy_trunc(char *dst, size_t size, const char *src, size_t n)
{
	if (!dst || size == 0)
		return;
	if (n >= size)
		n = size - 1;
	memcpy(dst, src, n);
	dst[n] = '\0';
}

int slurm_parse_squeue_exit_line(const char *line, char *id, size_t id_size,
				 enum slurm_state *state, int *code, int *sig,
				 char *reason, size_t reason_size)
{
	const char *bar1 = strchr(line, '|'), *bar2, *bar3;
	char *endp;
	long ws;

	if (!bar1 || !(bar2 = strchr(bar1 + 1, '|')) || !(bar3 = strchr(bar2 + 1, '|')))
		return ERR_INVALID;
	ws = strtol(bar2 + 1, &endp, 10);
	if (endp == bar2 + 1 || endp != bar3 || ws < 0 || ws > 0xffff)
		return ERR_INVALID;
	/* A wait status: exit code in the high byte, signal in the low bits. */
	*code = (int)((ws >> 8) & 0xff);
	*sig = (int)(ws & 0x7f);
	{
		/* id|state|reason from the same line without the status */
		char buf[512];
		size_t head = (size_t)(bar2 - line) + 1;
		if (head + strlen(bar3 + 1) + 1 > sizeof(buf))
			return ERR_INVALID;
		memcpy(buf, line, head);
		strcpy(buf + head, bar3 + 1);
		return slurm_parse_squeue_line(buf, id, id_size, state, reason, reason_size);
	}
}

int slurm_parse_squeue_line(const char *line, char *id, size_t id_size,
			    enum slurm_state *state, char *reason,
			    size_t reason_size)
{
	const char *bar1 = strchr(line, '|'), *bar2, *end;
	char word[32];

	if (!bar1 || !(bar2 = strchr(bar1 + 1, '|')))
		return ERR_INVALID;
	if (take_jobid(line, (size_t)(bar1 - line), id, id_size))
		return ERR_INVALID;
	if ((size_t)(bar2 - bar1 - 1) >= sizeof(word))
		return ERR_INVALID;
	copy_trunc(word, sizeof(word), bar1 + 1, (size_t)(bar2 - bar1 - 1));
	*state = slurm_state_parse(word);
	end = bar2 + 1 + strcspn(bar2 + 1, "\r\n");
	copy_trunc(reason, reason_size, bar2 + 1, (size_t)(end - bar2 - 1));
	return 0;
}

/* The value of field NAME= in scontrol's one-line output: the first
 * occurrence at the start or after a blank, up to the next blank. */
static const char *field(const char *text, const char *name, size_t *len)
{
	size_t n = strlen(name);

	for (const char *p = text; (p = strstr(p, name)); p++) {
		if (p != text && p[-1] != ' ' && p[-1] != '\n' && p[-1] != '\t')
			continue;
		if (p[n] != '=')
			continue;
		p += n + 1;
		*len = strcspn(p, " \t\r\n");
		return p;
	}
	return NULL;
}

int slurm_parse_scontrol(const char *text, enum slurm_state *state,
			 int *code, int *sig, char *reason, size_t reason_size)
{
	const char *v;
	size_t n;
	char word[32];

	if (!text || !(v = field(text, "JobState", &n)) || n == 0 || n >= sizeof(word))
		return ERR_INVALID;
	copy_trunc(word, sizeof(word), v, n);
	*state = slurm_state_parse(word);
	if (*state == SLURM_UNKNOWN)
		return ERR_INVALID;
	if (!(v = field(text, "ExitCode", &n)) || n >= sizeof(word))
		return ERR_INVALID;
	copy_trunc(word, sizeof(word), v, n);
	if (slurm_parse_exit_code(word, code, sig))
		return ERR_INVALID;
	if (reason) {
		v = field(text, "Reason", &n);
		copy_trunc(reason, reason_size, v ? v : "", v ? n : 0);
	}
	return 0;
}

int slurm_parse_sacct(const char *text, enum slurm_state *state, int *code,
		      int *sig)
{
	const char *line, *bar;
	size_t n;
	char word[64];

	if (!text || last_line(text, &line, &n))
		return ERR_NOTFOUND;
	bar = memchr(line, '|', n);
	if (!bar || (size_t)(bar - line) >= sizeof(word) ||
	    (size_t)(line + n - bar - 1) >= sizeof(word))
		return ERR_INVALID;
	copy_trunc(word, sizeof(word), line, (size_t)(bar - line));
	*state = slurm_state_parse(word);
	if (*state == SLURM_UNKNOWN)
		return ERR_INVALID;
	copy_trunc(word, sizeof(word), bar + 1, (size_t)(line + n - bar - 1));
	return slurm_parse_exit_code(word, code, sig) ? ERR_INVALID : 0;
}

/* --- outcomes ------------------------------------------------------------- */

void slurm_outcome(enum slurm_state state, int code, int sig,
		   const char *jobid, struct job_done *d)
{
	const char *name = slurm_state_name(state);

	d->exit_code = 0;
	d->signal = 0;
	d->time_limit = 0;
	switch (state) {
	case SLURM_COMPLETED:
		d->end = JOB_EXITED;
		snprintf(d->detail, sizeof(d->detail), "COMPLETED (slurm job %s)", jobid);
		return;
	case SLURM_FAILED:
		if (sig > 0) {
			d->end = JOB_SIGNALED;
			d->signal = sig;
		} else if (code > 0) {
			d->end = JOB_EXITED;
			d->exit_code = code;
		} else {
			/* It never ran: the batch script could not start
			 * (output file, working directory, the node). */
			d->end = JOB_SPAWN_FAILED;
			snprintf(d->detail, sizeof(d->detail),
				 "FAILED without an exit status (slurm job %s did not start; "
				 "see its output.log and the slurmd log)", jobid);
			return;
		}
		snprintf(d->detail, sizeof(d->detail), "FAILED (slurm job %s, ExitCode %d:%d)",
			 jobid, code, sig);
		return;
	case SLURM_CANCELLED:
	case SLURM_TIMEOUT:
	case SLURM_DEADLINE:
	case SLURM_OUT_OF_MEMORY:
		d->time_limit = state == SLURM_TIMEOUT || state == SLURM_DEADLINE;
		d->end = JOB_SIGNALED;
		d->signal = sig > 0 ? sig :
			    state == SLURM_OUT_OF_MEMORY ? SIGKILL : SIGTERM;
		snprintf(d->detail, sizeof(d->detail), "%s (slurm job %s, ExitCode %d:%d)",
			 name, jobid, code, sig);
		return;
	case SLURM_NODE_FAIL:
	case SLURM_PREEMPTED:
	case SLURM_BOOT_FAIL:
		/* Not the step's fault: anneal requeues it from its latest
		 * checkpoint, as for an engine's own exit 75. */
		d->end = JOB_EXITED;
		d->exit_code = 75;
		snprintf(d->detail, sizeof(d->detail), "%s (slurm job %s)", name, jobid);
		return;
	default:
		d->end = JOB_LOST;
		snprintf(d->detail, sizeof(d->detail), "slurm job %s: not ended (%s)",
			 jobid, name);
		return;
	}
}

int slurm_backoff_next(int cur_ms, int changed, int min_ms, int max_ms)
{
	if (changed || cur_ms < min_ms)
		return min_ms;
	if (cur_ms > max_ms / 2)
		return max_ms;
	return cur_ms * 2;
}

/* --- the batch script ------------------------------------------------------ */

static int shell_name(const char *s, size_t n)
{
	if (n == 0 || (s[0] >= '0' && s[0] <= '9'))
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_'))
			return 0;
	}
	return 1;
}

/* Variables that are Slurm's to set in the job, not the step's: every
 * SLURM* (a step run from inside an allocation would otherwise pass on the
 * outer job's ids), and with GPUs granted the device lists that Slurm's
 * gres plugins set for the allocation. */
static int slurm_owned(const char *name, size_t n, int gpus)
{
	static const char *const gpu_vars[] = {
		"CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
		"GPU_DEVICE_ORDINAL", "ZE_AFFINITY_MASK",
	};

	if (n >= 5 && !strncmp(name, "SLURM", 5))
		return 1;
	if (gpus > 0)
		for (size_t i = 0; i < sizeof(gpu_vars) / sizeof(gpu_vars[0]); i++)
			if (strlen(gpu_vars[i]) == n && !strncmp(gpu_vars[i], name, n))
				return 1;
	return 0;
}

static size_t name_len(const char *entry)
{
	const char *eq = strchr(entry, '=');

	return eq ? (size_t)(eq - entry) : strlen(entry);
}

/* 1 if env[0..upto) (or all of env, upto == SIZE_MAX) has a variable
 * called name[0..n). */
static int env_has(char *const *env, size_t upto, const char *name, size_t n)
{
	for (size_t i = 0; env && env[i] && i < upto; i++)
		if (name_len(env[i]) == n && !strncmp(env[i], name, n))
			return 1;
	return 0;
}

int slurm_batch_script(const struct job_spec *spec, char *const *submit_env,
		       struct buf *out, struct err *err)
{
	struct buf w = BUF_INIT;

	if (!spec->argv || !spec->argv[0] || !spec->argv[0][0])
		return err_set(err, ERR_INVALID, "slurm: step '%s': empty argv",
			       spec->step_id ? spec->step_id : "?");
	if (!spec->cwd || spec->cwd[0] != '/')
		return err_set(err, ERR_INVALID,
			       "slurm: step '%s': working directory must be absolute",
			       spec->step_id ? spec->step_id : "?");
	buf_init(&w);
	buf_adds(out,
		 "#!/bin/sh\n"
		 "# Written by anneal for one attempt of a step (runners/slurm.c).\n"
		 "# No `set -e`: the step's exit status is its own.\n");
	/* sbatch exports its own environment (--export=ALL): what the step's
	 * environment lacks is removed here. */
	for (size_t i = 0; submit_env && submit_env[i]; i++) {
		const char *e = submit_env[i];
		size_t n = name_len(e);
		if (!shell_name(e, n) || slurm_owned(e, n, spec->gpus) ||
		    env_has(spec->envp, SIZE_MAX, e, n) || env_has(submit_env, i, e, n))
			continue;
		buf_reset(&w);
		buf_add(&w, e, n);
		buf_adds(out, "unset ");
		slurm_quote(buf_str(&w), out);
		buf_addc(out, '\n');
	}
	for (size_t i = 0; spec->envp && spec->envp[i]; i++) {
		const char *e = spec->envp[i];
		size_t n = name_len(e);
		/* A name the shell cannot export (BASH_FUNC_x%%) still
		 * reaches the job through sbatch's --export=ALL when anneal
		 * has it; the first of duplicates is what getenv sees. */
		if (!e[n] || !shell_name(e, n) || slurm_owned(e, n, spec->gpus) ||
		    env_has(spec->envp, i, e, n))
			continue;
		buf_reset(&w);
		buf_add(&w, e, n);
		buf_adds(out, "export ");
		slurm_quote(buf_str(&w), out);
		buf_addc(out, '=');
		slurm_quote(e + n + 1, out);
		buf_addc(out, '\n');
	}
	buf_adds(out, "cd -- ");
	slurm_quote(spec->cwd, out);
	buf_adds(out, " || exit 126\n");
	/* Several nodes or tasks: srun starts the step's argv on each (the
	 * job's allocation), and a task that fails ends them all. */
	if (spec->nodes > 1 || spec->tasks_per_node > 1)
		buf_adds(out, "exec srun --kill-on-bad-exit=1");
	else
		buf_adds(out, "exec");
	for (size_t i = 0; spec->argv[i]; i++) {
		buf_addc(out, ' ');
		slurm_quote(spec->argv[i], out);
	}
	buf_addc(out, '\n');
	buf_free(&w);
	return 0;
}

/* --- sbatch's argv ----------------------------------------------------------- */

static void push_fmt(struct strv *sv, const char *opt, const char *val)
{
	strv_push_owned(sv, xasprintf("%s=%s", opt, val));
}

void slurm_sbatch_argv(const struct slurm_options *o, const struct job_spec *spec,
		       const char *script, struct strv *out)
{
	struct buf b = BUF_INIT;
	const char *ids[2];

	buf_init(&b);
	strv_push(out, "sbatch");
	strv_push(out, "--parsable");

	ids[0] = spec->run_id ? spec->run_id : "run";
	ids[1] = spec->step_id ? spec->step_id : "step";
	buf_adds(&b, "anneal");
	for (int k = 0; k < 2; k++) {
		buf_addc(&b, '.');
		for (const char *p = ids[k]; *p; p++) {
			char c = *p;
			int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				 (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
			buf_addc(&b, ok ? c : '_');
		}
	}
	push_fmt(out, "--job-name", buf_str(&b));

	/* sbatch expands %j & co in file names: a '%' of ours is "%%". */
	buf_reset(&b);
	for (const char *p = spec->attempt_dir; *p; p++) {
		if (*p == '%')
			buf_addc(&b, '%');
		buf_addc(&b, *p);
	}
	buf_adds(&b, "/output.log");
	push_fmt(out, "--output", buf_str(&b));
	strv_push(out, "--open-mode=append");
	push_fmt(out, "--chdir", spec->cwd);
	/* Lets a later anneal find the job by its attempt directory if it
	 * crashed before slurm.jobid was written. */
	push_fmt(out, "--comment", spec->attempt_dir);
	strv_push(out, "--export=ALL");
	if (o->partition && o->partition[0])
		push_fmt(out, "--partition", o->partition);
	if (o->account && o->account[0])
		push_fmt(out, "--account", o->account);
	if (o->qos && o->qos[0])
		push_fmt(out, "--qos", o->qos);
	strv_push_owned(out, xasprintf("--nodes=%d", spec->nodes > 1 ? spec->nodes : 1));
	strv_push_owned(out, xasprintf("--ntasks-per-node=%d",
				       spec->tasks_per_node > 1 ? spec->tasks_per_node : 1));
	strv_push_owned(out, xasprintf("--cpus-per-task=%d", spec->cpus > 0 ? spec->cpus : 1));
	if (spec->npus > 0)
		strv_push_owned(out, xasprintf("--gres=%s:%d", o->gres, spec->npus));
	if (spec->gpus > 0)
		strv_push_owned(out, xasprintf("--gpus=%d", spec->gpus));
	if (spec->mem_mb > 0)
		strv_push_owned(out, xasprintf("--mem=%ld", spec->mem_mb));
	if (spec->timeout_s > 0) {
		/* The per-job wall limit, in the whole minutes Slurm counts:
		 * it TERMs the batch step GRACE seconds before (--signal) so
		 * the engine can checkpoint; anneal sets no deadline of its
		 * own (runner_ops.enforces_limits) and requeues a job that
		 * hit the limit after a checkpoint. */
		long long min = ((long long)spec->timeout_s + 59) / 60;
		strv_push_owned(out, xasprintf("--time=%lld", min));
	}
	strv_push_owned(out, xasprintf("--signal=B:TERM@%d", o->signal_grace_s));
	strv_push(out, o->requeue ? "--requeue" : "--no-requeue");
	for (size_t i = 0; o->sbatch_extra && o->sbatch_extra[i]; i++)
		strv_push(out, o->sbatch_extra[i]);
	strv_push(out, script);
	buf_free(&b);
}
