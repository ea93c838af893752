/* runners/slurm.c — the Slurm runner: see slurm.h for the mapping of steps
 * to batch jobs; the words it writes and reads are in slurm_parse.c.
 *
 * The attempt directory holds:
 *   slurm.sh     the batch script (written before sbatch runs)
 *   slurm.jobid  "ID\n", written atomically once sbatch has answered: its
 *                presence means "submitted", and attach goes by it
 *   output.log   the job's stdout and stderr (Slurm writes it)
 * A crash between sbatch's answer and slurm.jobid leaves slurm.sh alone:
 * attach then looks for a job of ours whose comment (--comment) is the
 * attempt directory, so that the job is adopted, not submitted twice.
 *
 * Workload: a run watches tens to hundreds of jobs for hours. Each poll
 * interval costs one squeue for all of them (never one command per job);
 * the interval starts at poll_min_ms and doubles while nothing changes, up
 * to poll_max_ms; a change (a state, a reason, a submit, a cancel) brings
 * it back to the minimum. The scheduler calls poll every 250 ms or so: the
 * interval is kept here, across calls, not per call. An ended job costs
 * one scontrol (one sacct -c more if scontrol forgot it).
 *
 * Slurm commands are children of this process: each runs with stdin from
 * /dev/null, stdout and stderr into pipes, in a process group of its own
 * (a Ctrl-C at the terminal is anneal's to handle, not sbatch's: an sbatch
 * killed half-way leaves a job we know nothing of), under a time limit
 * after which its group is SIGKILLed. They are waited for by pid.
 *
 * A squeue that fails (controller restarting, network) is not fatal: jobs
 * keep their last known state and the failure shows as their reason;
 * only after FAIL_LIMIT_S of consecutive failures does poll return an
 * error (the jobs run on; `anneal resume` re-attaches). */
#include "pipeline/json.h"
#include "runners/slurm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "base/util.h"
#include "runners/spawn.h"

extern char **environ;

#define FAIL_LIMIT_S 600.0
#define OUT_MAX (16u << 20)    /* squeue of thousands of jobs fits */
#define ERRTEXT_MAX (64u << 10)
#define JOBID_MAX 24

struct sjob {
	char id[JOBID_MAX];
	char *dir;                  /* absolute attempt directory */
	void *cookie;
	enum slurm_state state;
	char reason[96];
	int unknown;                /* checks in a row no command knew it */
	int ended;                  /* done is filled, to be reported */
	struct job_done done;
};

struct slurm_runner {
	struct runner base;         /* first: a struct runner * is one of these */
	struct slurm_options o;     /* strings below are our copies */
	struct strv extra;
	struct sjob **jobs;         /* watched, in submit order; ended ones until reported */
	size_t n, cap, n_ended;
	int interval_ms;
	double next_check;          /* monotonic; 0: at the next poll */
	double fail_since;          /* first of consecutive failed squeues; 0: none */
};

static const struct runner_ops slurm_ops;

/* --- running one Slurm command ---------------------------------------------- */

struct cmd {
	struct buf out, errb;
	int status;                 /* shell-style: exit code or 128+signal */
	int timed_out;              /* it ran past the limit and was killed */
};

static void cmd_init(struct cmd *c)
{
	buf_init(&c->out);
	buf_init(&c->errb);
	c->status = -1;
	c->timed_out = 0;
}

static void cmd_free(struct cmd *c)
{
	buf_free(&c->out);
	buf_free(&c->errb);
}

/* The first non-empty line of s (for messages), at most 300 bytes. */
static void first_line(const char *s, char *out, size_t size)
{
	size_t n;

	while (*s == '\n' || *s == '\r' || *s == ' ')
		s++;
	n = strcspn(s, "\r\n");
	if (n > 300)
		n = 300;
	if (n >= size)
		n = size - 1;
	memcpy(out, s, n);
	out[n] = '\0';
}

/* Appends what fd has to b (up to max bytes kept; the rest is read and
 * dropped). Returns 1 at EOF, 0 if more may come. */
static int drain(int fd, struct buf *b, size_t max)
{
	char chunk[8192];
	ssize_t n;

	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n > 0) {
			if (b->len < max)
				buf_add(b, chunk, (size_t)n < max - b->len ? (size_t)n : max - b->len);
			continue;
		}
		if (n == 0)
			return 1;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 0 : 1;
	}
}

/* Runs argv (argv[0] a Slurm command's name, looked up in bin_dir or
 * PATH), capturing stdout and stderr. 0 when it ran to an end (whatever
 * its status, in c->status); ERR_SYSTEM when it could not start or
 * outlived the time limit (then it is killed). */
static int run_cmd(struct slurm_runner *sr, char *const *argv, struct cmd *c,
		   struct err *err)
{
	struct spawn_opts so = SPAWN_OPTS_INIT;
	char *path = NULL;
	char **av = NULL;
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 };
	int rc = 0, ws;
	int out_eof = 0, err_eof = 0;
	pid_t pid = -1;
	double deadline = now_mono() + sr->o.cmd_timeout_s;
	size_t n = 0;

	if (pipe2(po, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(pe, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = err_sys(err, errno, "%s: pipe", argv[0]);
		goto done;
	}
	if (sr->o.bin_dir) {
		/* The same argv, run from bin_dir. */
		while (argv[n])
			n++;
		av = xcalloc(n + 1, sizeof(*av));
		memcpy(av, argv, n * sizeof(*av));
		av[0] = path = fs_join(sr->o.bin_dir, argv[0]);
	}
	so.stdin_null = 1;
	so.new_pgroup = 1;
	so.stdout_fd = po[1];
	so.stderr_fd = pe[1];
	rc = spawn_start(av ? av : argv, &so, &pid, err);
	if (rc) {
		pid = -1;
		if (rc == ERR_NOTFOUND)
			rc = err_set(err, ERR_SYSTEM, "%s: not found in %s (is Slurm's client "
				     "installed?)", argv[0], path ? sr->o.bin_dir : "PATH");
		goto done;
	}
	close(po[1]);
	close(pe[1]);
	po[1] = pe[1] = -1;

	while (!out_eof || !err_eof) {
		struct pollfd pfd[2];
		nfds_t nf = 0;
		double left = deadline - now_mono();
		int prc;

		if (left <= 0) {
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			c->timed_out = 1;
			rc = err_set(err, ERR_SYSTEM, "%s: no answer within %d s (killed)",
				     argv[0], sr->o.cmd_timeout_s);
			break;
		}
		if (!out_eof)
			pfd[nf++] = (struct pollfd){ po[0], POLLIN, 0 };
		if (!err_eof)
			pfd[nf++] = (struct pollfd){ pe[0], POLLIN, 0 };
		prc = poll(pfd, nf, (int)(left * 1000.0) + 1);
		if (prc < 0) {
			if (errno == EINTR)
				continue;   /* a signal is the caller's business */
			rc = err_sys(err, errno, "%s: poll", argv[0]);
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
			break;
		}
		if (!out_eof)
			out_eof = drain(po[0], &c->out, OUT_MAX);
		if (!err_eof)
			err_eof = drain(pe[0], &c->errb, ERRTEXT_MAX);
	}
	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR) {
			if (!rc)
				rc = err_sys(err, errno, "%s: wait", argv[0]);
			goto done;
		}
	}
	c->status = WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) :
		    WIFEXITED(ws) ? WEXITSTATUS(ws) : 255;
done:
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	free(av);
	free(path);
	return rc;
}

/* "CMD failed (exit N): first line of stderr" into err, with code. */
static int cmd_failed(struct err *err, int code, const char *name,
		      const struct cmd *c)
{
	char line[320];

	first_line(buf_str(&c->errb), line, sizeof(line));
	if (!line[0])
		first_line(buf_str(&c->out), line, sizeof(line));
	return err_set(err, code, "%s failed (exit %d): %s", name, c->status,
		       line[0] ? line : "no message");
}

/* Slurm's words for "no such job (any more)". */
static int says_unknown_job(const struct cmd *c)
{
	return strstr(buf_str(&c->errb), "Invalid job id specified") != NULL;
}

/* --- asking about jobs ------------------------------------------------------ */

static int squeue_run(struct slurm_runner *sr, char **argv, struct cmd *c,
		      struct err *err);

/* One squeue for the listed ids (comma-separated). *ran is 0 when squeue
 * could not answer (err set), 1 when c->out holds its lines (none when
 * it knows none of the jobs). */
static int squeue_ids(struct slurm_runner *sr, const char *ids, struct cmd *c,
		      struct err *err)
{
	char *argv[] = { "squeue", "-h", "-t", "all", "-j", (char *)ids,
			 "-o", "%i|%T|%r", NULL };

	return squeue_run(sr, argv, c, err);
}

/* The poll's one command: state, reason and, for jobs that ended (while
 * slurmctld remembers them, MinJobAge), their exit status. */
static int squeue_poll(struct slurm_runner *sr, const char *ids, struct cmd *c,
		       struct err *err)
{
	char *argv[] = { "squeue", "-h", "-t", "all", "-j", (char *)ids,
			 "-O", "JobID:|,State:|,exit_code:|,Reason:", NULL };

	return squeue_run(sr, argv, c, err);
}

static int squeue_run(struct slurm_runner *sr, char **argv, struct cmd *c,
		      struct err *err)
{
	int rc = run_cmd(sr, argv, c, err);

	if (rc)
		return rc;
	if (c->status != 0) {
		/* squeue -j with ids it no longer knows says so and fails. */
		if (says_unknown_job(c)) {
			buf_reset(&c->out);
			return 0;
		}
		return cmd_failed(err, ERR_SYSTEM, "squeue", c);
	}
	return 0;
}

struct final {
	int known;                  /* 0: neither scontrol nor sacct -c knows it */
	enum slurm_state state;
	int code, sig;
	char reason[96];
};

/* What scontrol (while Slurm remembers the job), else sacct -c (its
 * completion record), says of job id. Fails only when scontrol could not
 * be asked: an unknown job is f->known == 0. */
static int lookup_job(struct slurm_runner *sr, const char *id, struct final *f,
		      struct err *err)
{
	char *sc[] = { "scontrol", "show", "job", "-o", (char *)id, NULL };
	char *sa[] = { "sacct", "-c", "-n", "-P", "-j", (char *)id, "-o",
		       "state,exitcode", NULL };
	struct cmd c;
	struct err e2;
	int rc;

	memset(f, 0, sizeof(*f));
	cmd_init(&c);
	rc = run_cmd(sr, sc, &c, err);
	if (rc)
		goto done;
	if (c.status == 0) {
		if (slurm_parse_scontrol(buf_str(&c.out), &f->state, &f->code, &f->sig,
					 f->reason, sizeof(f->reason))) {
			char line[320];
			first_line(buf_str(&c.out), line, sizeof(line));
			rc = err_set(err, ERR_SYSTEM, "scontrol show job %s: unexpected output '%.200s'",
				     id, line);
			goto done;
		}
		f->known = 1;
		goto done;
	}
	if (!says_unknown_job(&c)) {
		rc = cmd_failed(err, ERR_SYSTEM, "scontrol", &c);
		goto done;
	}
	/* Forgotten by slurmctld (MinJobAge): the completion record tells.
	 * A missing or failing sacct means no record, not an error. */
	cmd_free(&c);
	cmd_init(&c);
	if (run_cmd(sr, sa, &c, &e2) == 0 && c.status == 0 &&
	    slurm_parse_sacct(buf_str(&c.out), &f->state, &f->code, &f->sig) == 0)
		f->known = 1;
done:
	cmd_free(&c);
	return rc;
}

/* Looks for a job of ours whose comment is dir (see the file comment).
 * *found = 1 and id set when there is one. */
static int find_by_comment(struct slurm_runner *sr, const char *dir, char *id,
			   size_t size, int *found, struct err *err)
{
	char *argv[] = { "squeue", "-h", "--me", "-t", "all", "-o", "%i|%k", NULL };
	struct cmd c;
	int rc;

	*found = 0;
	cmd_init(&c);
	rc = run_cmd(sr, argv, &c, err);
	if (!rc && c.status != 0)
		rc = cmd_failed(err, ERR_SYSTEM, "squeue", &c);
	for (char *line = c.out.ptr; !rc && line && *line;) {
		char *nl = strchr(line, '\n');
		char *bar = strchr(line, '|');
		if (nl)
			*nl = '\0';
		if (bar && !strcmp(bar + 1, dir)) {
			*bar = '\0';
			if (slurm_handle_jobid(line, id, size) == 0) {
				*found = 1;
				break;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	cmd_free(&c);
	return rc;
}

/* --- jobs ------------------------------------------------------------------ */

static void job_free(struct sjob *j)
{
	if (!j)
		return;
	free(j->dir);
	free(j);
}

static struct sjob *find_job(struct slurm_runner *sr, const char *id, const char *dir)
{
	for (size_t i = 0; i < sr->n; i++) {
		struct sjob *j = sr->jobs[i];
		if (j->ended)
			continue;
		if ((id && !strcmp(j->id, id)) || (dir && !strcmp(j->dir, dir)))
			return j;
	}
	return NULL;
}

static void add_job(struct slurm_runner *sr, struct sjob *j)
{
	if (sr->n == sr->cap) {
		sr->cap = sr->cap ? 2 * sr->cap : 16;
		sr->jobs = xrealloc(sr->jobs, sr->cap * sizeof(*sr->jobs));
	}
	sr->jobs[sr->n++] = j;
}

static void end_job(struct slurm_runner *sr, struct sjob *j, const struct final *f)
{
	slurm_outcome(f->state, f->code, f->sig, j->id, &j->done);
	j->state = f->state;
	snprintf(j->reason, sizeof(j->reason), "ExitCode=%d:%d", f->code, f->sig);
	j->done.cookie = j->cookie;
	j->ended = 1;
	sr->n_ended++;
}

static void end_lost(struct slurm_runner *sr, struct sjob *j)
{
	memset(&j->done, 0, sizeof(j->done));
	j->done.end = JOB_LOST;
	snprintf(j->done.detail, sizeof(j->done.detail),
		 "slurm job %s is unknown to squeue, scontrol and sacct -c "
		 "(forgotten after MinJobAge, no completion record)", j->id);
	j->done.cookie = j->cookie;
	j->ended = 1;
	sr->n_ended++;
}

static size_t live_jobs(const struct slurm_runner *sr)
{
	return sr->n - sr->n_ended;
}

/* Sooner checks: something is expected to change. */
static void hurry(struct slurm_runner *sr)
{
	double soon = now_mono() + sr->o.poll_min_ms / 1000.0;

	sr->interval_ms = sr->o.poll_min_ms;
	if (sr->next_check == 0 || sr->next_check > soon)
		sr->next_check = soon;
}

/* One look at every watched job: one squeue, then scontrol / sacct -c for
 * those that left it or ended. */
static int check_jobs(struct slurm_runner *sr, struct err *err)
{
	struct buf ids = BUF_INIT;
	struct cmd c;
	struct err qe;
	int changed = 0, rc = 0;
	char *seen = xcalloc(sr->n ? sr->n : 1, 1);

	buf_init(&ids);
	cmd_init(&c);
	for (size_t i = 0; i < sr->n; i++) {
		if (sr->jobs[i]->ended)
			continue;
		if (ids.len)
			buf_addc(&ids, ',');
		buf_adds(&ids, sr->jobs[i]->id);
	}
	if (squeue_poll(sr, buf_str(&ids), &c, &qe)) {
		double now = now_mono();
		if (sr->fail_since == 0)
			sr->fail_since = now;
		if (now - sr->fail_since > FAIL_LIMIT_S) {
			rc = err_set(err, ERR_SYSTEM, "slurm: %s (failing for %.0f s)",
				     qe.msg, now - sr->fail_since);
			goto done;
		}
		for (size_t i = 0; i < sr->n; i++)
			if (!sr->jobs[i]->ended)
				snprintf(sr->jobs[i]->reason, sizeof(sr->jobs[i]->reason),
					 "%.95s", qe.msg);
		goto next;
	}
	if (sr->fail_since) {
		sr->fail_since = 0;
		changed = 1;
	}
	for (char *line = c.out.ptr; line && *line;) {
		char *nl = strchr(line, '\n');
		char id[JOBID_MAX], reason[96];
		enum slurm_state st;
		int code = 0, sig = 0, with_status;

		if (nl)
			*nl = '\0';
		with_status = slurm_parse_squeue_exit_line(line, id, sizeof(id), &st, &code,
							   &sig, reason, sizeof(reason)) == 0;
		if (with_status || slurm_parse_squeue_line(line, id, sizeof(id), &st, reason,
							   sizeof(reason)) == 0) {
			for (size_t i = 0; i < sr->n; i++) {
				struct sjob *j = sr->jobs[i];
				if (j->ended || strcmp(j->id, id))
					continue;
				seen[i] = 1;
				if (with_status && slurm_state_final(st)) {
					/* Ended, and squeue said how: no scontrol. */
					struct final f = { 1, st, code, sig, "" };
					snprintf(f.reason, sizeof(f.reason), "%s", reason);
					end_job(sr, j, &f);
					changed = 1;
					continue;
				}
				if (j->state != st || strcmp(j->reason, reason)) {
					changed = 1;
					j->state = st;
					snprintf(j->reason, sizeof(j->reason), "%s", reason);
				}
				j->unknown = 0;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	for (size_t i = 0; i < sr->n; i++) {
		struct sjob *j = sr->jobs[i];
		struct final f;

		if (j->ended || (seen[i] && !slurm_state_final(j->state)))
			continue;
		if (lookup_job(sr, j->id, &f, &qe)) {
			snprintf(j->reason, sizeof(j->reason), "%.95s", qe.msg);
			continue;   /* scontrol failed: again next time */
		}
		if (!f.known) {
			/* Twice, so that one odd answer loses nothing. */
			if (++j->unknown >= 2) {
				end_lost(sr, j);
				changed = 1;
			}
			continue;
		}
		j->unknown = 0;
		if (slurm_state_final(f.state)) {
			end_job(sr, j, &f);
			changed = 1;
		} else if (j->state != f.state) {
			j->state = f.state;
			snprintf(j->reason, sizeof(j->reason), "%s", f.reason);
			changed = 1;
		}
	}
next:
	sr->interval_ms = slurm_backoff_next(sr->interval_ms, changed,
					     sr->o.poll_min_ms, sr->o.poll_max_ms);
	sr->next_check = now_mono() + sr->interval_ms / 1000.0;
done:
	free(seen);
	cmd_free(&c);
	buf_free(&ids);
	return rc;
}

/* --- the ops --------------------------------------------------------------- */

static int read_jobid(const char *dir, char *id, size_t size, int *present,
		      struct err *err)
{
	char *path = fs_join(dir, "slurm.jobid"), *text = NULL;
	int rc = 0;

	*present = 0;
	if (!fs_exists(path))
		goto done;
	if ((rc = fs_read_file(path, 256, &text, NULL, err)))
		goto done;
	text[strcspn(text, "\r\n")] = '\0';
	if (slurm_handle_jobid(text, id, size)) {
		rc = err_set(err, ERR_INVALID, "'%s': not a job id: '%.40s'", path, text);
		goto done;
	}
	*present = 1;
done:
	free(text);
	free(path);
	return rc;
}

static int write_jobid(const char *dir, const char *id, struct err *err)
{
	char *path = fs_join(dir, "slurm.jobid");
	char *text = xasprintf("%s\n", id);
	int rc = fs_write_atomic(path, text, strlen(text), 0644, err);

	free(text);
	free(path);
	return rc;
}

static int slurm_submit(struct runner *r, const struct job_spec *spec,
			struct job_handle *h, struct err *err)
{
	struct slurm_runner *sr = (struct slurm_runner *)r;
	struct job_spec s = *spec;
	struct buf script = BUF_INIT;
	struct strv argv = STRV_INIT;
	struct cmd c;
	struct sjob *j = NULL;
	char *dir = NULL, *cwd = NULL, *script_path = NULL;
	char id[JOBID_MAX];
	const char *step = spec->step_id ? spec->step_id : "?";
	int present = 0, rc = 0;

	if (!spec->argv || !spec->argv[0] || !spec->attempt_dir)
		return err_set(err, ERR_INVALID, "step '%s': no argv or attempt dir", step);
	buf_init(&script);
	cmd_init(&c);
	dir = fs_abspath(spec->attempt_dir);
	cwd = fs_abspath(spec->cwd ? spec->cwd : ".");
	s.attempt_dir = dir;
	s.cwd = cwd;

	/* Never a second job from one attempt directory. */
	if ((rc = read_jobid(dir, id, sizeof(id), &present, err)))
		goto done;
	if (present) {
		rc = err_set(err, ERR_BUSY, "attempt dir '%s': slurm job %s was submitted "
			     "from there already", dir, id);
		goto done;
	}
	if ((rc = slurm_batch_script(&s, environ, &script, err)))
		goto done;
	script_path = fs_join(dir, "slurm.sh");
	if ((rc = fs_write_atomic(script_path, script.ptr, script.len, 0700, err)))
		goto done;
	if (spec->runner_json) {
		/* The stage's own partition, account, qos and sbatch words
		 * (checked by the recipe parser) over the runner's. */
		struct slurm_options o = sr->o;
		struct strv extra = STRV_INIT;
		struct jnode *root = NULL;
		const struct jnode *v;

		if (!json_parse(spec->runner_json, strlen(spec->runner_json), 0, &root, err) &&
		    root->type == J_OBJECT) {
			if ((v = json_get(root, "partition")) && v->type == J_STRING)
				o.partition = v->str;
			if ((v = json_get(root, "account")) && v->type == J_STRING)
				o.account = v->str;
			if ((v = json_get(root, "qos")) && v->type == J_STRING)
				o.qos = v->str;
			for (size_t i = 0; sr->o.sbatch_extra && sr->o.sbatch_extra[i]; i++)
				strv_push(&extra, sr->o.sbatch_extra[i]);
			if ((v = json_get(root, "sbatch")) && v->type == J_ARRAY)
				for (size_t i = 0; i < v->nkids; i++)
					if (v->kids[i].type == J_STRING)
						strv_push(&extra, v->kids[i].str);
			o.sbatch_extra = extra.n ? extra.v : NULL;
			slurm_sbatch_argv(&o, &s, script_path, &argv);
		} else {
			slurm_sbatch_argv(&sr->o, &s, script_path, &argv);
		}
		err_clear(err);
		json_free(root);
		strv_free(&extra);
	} else {
		slurm_sbatch_argv(&sr->o, &s, script_path, &argv);
	}

	rc = run_cmd(sr, argv.v, &c, err);
	if (!rc && c.status != 0) {
		rc = cmd_failed(err, slurm_sbatch_error_code(buf_str(&c.errb)), "sbatch", &c);
		err_prefix(err, "step '%s'", step);
		goto done;
	}
	if (!rc && slurm_parse_sbatch(buf_str(&c.out), id, sizeof(id))) {
		char line[320];
		first_line(buf_str(&c.out), line, sizeof(line));
		rc = err_set(err, ERR_SYSTEM, "sbatch: unexpected output '%.200s'", line);
	}
	if (rc) {
		/* No answer, or one we cannot read: the job may exist all the
		 * same. Adopt it if so, rather than leave it unwatched. */
		struct err fe;
		int found = 0;
		if ((!c.timed_out && c.status != 0) ||
		    find_by_comment(sr, dir, id, sizeof(id), &found, &fe) || !found) {
			err_prefix(err, "step '%s'", step);
			goto done;
		}
		err_clear(err);
		rc = 0;
	}
	if ((rc = write_jobid(dir, id, err))) {
		/* Unrecorded, it would be a job nobody watches or cancels. */
		char *kill_argv[] = { "scancel", id, NULL };
		struct cmd kc;
		struct err ke;
		cmd_init(&kc);
		run_cmd(sr, kill_argv, &kc, &ke);
		cmd_free(&kc);
		err_prefix(err, "step '%s': slurm job %s cancelled", step, id);
		goto done;
	}
	j = xcalloc(1, sizeof(*j));
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->dir = dir;
	dir = NULL;
	j->cookie = spec->cookie;
	j->state = SLURM_PENDING;
	add_job(sr, j);
	snprintf(h->id, sizeof(h->id), "slurm:%s", id);
	hurry(sr);
done:
	cmd_free(&c);
	strv_free(&argv);
	buf_free(&script);
	free(script_path);
	free(cwd);
	free(dir);
	return rc;
}

static int slurm_poll(struct runner *r, int timeout_ms, struct job_done *done,
		      size_t cap, size_t *n, struct err *err)
{
	struct slurm_runner *sr = (struct slurm_runner *)r;
	double deadline = now_mono() + (timeout_ms > 0 ? timeout_ms / 1000.0 : 0);
	int interrupted = 0, rc;
	size_t k = 0;

	*n = 0;
	for (;;) {
		double now = now_mono(), until;
		int ms;

		if (sr->n_ended)
			break;
		if (live_jobs(sr) && now >= sr->next_check) {
			if ((rc = check_jobs(sr, err)))
				return rc;
			if (sr->n_ended)
				break;
			now = now_mono();
		}
		if (interrupted || timeout_ms == 0)
			break;
		until = timeout_ms > 0 ? deadline : -1;
		if (timeout_ms > 0 && until <= now)
			break;
		if (live_jobs(sr) && (until < 0 || sr->next_check < until))
			until = sr->next_check;
		ms = until < 0 ? -1 : (int)((until - now) * 1000.0) + 1;
		/* A wait that any handled signal ends (EINTR), as the local
		 * runner's: the caller may have a flag to check. */
		if (poll(NULL, 0, ms) < 0) {
			if (errno != EINTR)
				return err_sys(err, errno, "slurm runner: poll");
			interrupted = 1;
		}
	}

	for (size_t i = 0; i < sr->n; i++) {
		struct sjob *j = sr->jobs[i];
		if (j->ended && *n < cap) {
			done[(*n)++] = j->done;
			sr->n_ended--;
			job_free(j);
			continue;
		}
		sr->jobs[k++] = j;
	}
	sr->n = k;
	return 0;
}

/* The state of job id now: squeue, then scontrol / sacct -c. *known = 0
 * when no command knows it. Fails when squeue or scontrol could not be
 * asked. */
static int query_one(struct slurm_runner *sr, const char *id, int *known,
		     struct final *f, struct err *err)
{
	struct cmd c;
	char lid[JOBID_MAX];
	int rc;

	*known = 0;
	memset(f, 0, sizeof(*f));
	cmd_init(&c);
	rc = squeue_ids(sr, id, &c, err);
	if (rc)
		goto done;
	for (char *line = c.out.ptr; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (slurm_parse_squeue_line(line, lid, sizeof(lid), &f->state, f->reason,
					    sizeof(f->reason)) == 0 &&
		    !strcmp(lid, id) && !slurm_state_final(f->state)) {
			*known = 1;
			f->known = 1;
			goto done;
		}
		line = nl ? nl + 1 : NULL;
	}
	rc = lookup_job(sr, id, f, err);
	*known = f->known;
done:
	cmd_free(&c);
	return rc;
}

/* States in which the job's processes exist and can take a signal. */
static int running_state(enum slurm_state s)
{
	return s == SLURM_RUNNING || s == SLURM_COMPLETING || s == SLURM_SUSPENDED;
}

static const char *signal_word(int sig, char *buf, size_t size)
{
	switch (sig) {
	case SIGTERM: return "TERM";
	case SIGINT: return "INT";
	case SIGHUP: return "HUP";
	case SIGQUIT: return "QUIT";
	case SIGUSR1: return "USR1";
	case SIGUSR2: return "USR2";
	case SIGCONT: return "CONT";
	case SIGSTOP: return "STOP";
	case SIGKILL: return "KILL";
	default:
		snprintf(buf, size, "%d", sig);
		return buf;
	}
}

static int slurm_cancel(struct runner *r, const struct job_handle *h, int sig,
			struct err *err)
{
	struct slurm_runner *sr = (struct slurm_runner *)r;
	char id[JOBID_MAX], sigbuf[16], opt[32];
	char *argv[6];
	enum slurm_state state = SLURM_UNKNOWN;
	struct sjob *j;
	struct cmd c;
	int rc = 0, k = 0;

	if (slurm_handle_jobid(h->id, id, sizeof(id)))
		return err_set(err, ERR_INVALID, "cancel: '%s' is not a slurm job handle", h->id);
	cmd_init(&c);
	j = find_job(sr, id, NULL);
	if (j)
		state = j->state;
	/* What poll saw may be seconds old: a job seen pending may run now
	 * (and would be cancelled rather than signalled). One squeue tells. */
	if (sig != SIGKILL && !running_state(state)) {
		struct final f;
		int known = 0;
		if (query_one(sr, id, &known, &f, err))
			goto done;
		if (!known || slurm_state_final(f.state))
			goto done;   /* gone already; poll reports it */
		state = f.state;
	}
	argv[k++] = "scancel";
	/* SIGKILL, or a job not running yet: cancel the job outright (Slurm
	 * TERMs, then KILLs after KillWait). Any other signal goes to the
	 * whole batch step, the step's process and its children (--full), as
	 * the local runner signals a process group; the job ends when they do.
	 * Never a signal to a job that has not started: scancel would retry
	 * "Job can not be altered now" until it starts (minutes, measured). */
	if (sig != SIGKILL && running_state(state)) {
		snprintf(opt, sizeof(opt), "--signal=%s", signal_word(sig, sigbuf, sizeof(sigbuf)));
		argv[k++] = opt;
		argv[k++] = "--full";
	}
	argv[k++] = id;
	argv[k] = NULL;
	rc = run_cmd(sr, argv, &c, err);
	if (!rc && c.status != 0) {
		const char *e = buf_str(&c.errb);
		/* Gone already: not an error. */
		if (says_unknown_job(&c) || strstr(e, "already completing or completed") ||
		    strstr(e, "Job/step already"))
			goto done;
		rc = cmd_failed(err, ERR_SYSTEM, "scancel", &c);
	}
done:
	if (rc)
		err_prefix(err, "cancel slurm job %s", id);
	else
		hurry(sr);
	cmd_free(&c);
	return rc;
}

static int slurm_attach(struct runner *r, const char *attempt_dir,
			struct job_handle *h, void *cookie, int *alive,
			struct job_done *done, struct err *err)
{
	struct slurm_runner *sr = (struct slurm_runner *)r;
	struct sjob *j = NULL;
	struct final f;
	struct err qe;
	char id[JOBID_MAX], *script = NULL;
	int present = 0, known = 0, rc = 0;
	char *dir = fs_abspath(attempt_dir);

	*alive = 0;
	memset(done, 0, sizeof(*done));
	done->cookie = cookie;
	if (find_job(sr, NULL, dir)) {
		rc = err_set(err, ERR_INVALID, "attempt dir '%s': already watched", dir);
		goto done;
	}
	if ((rc = read_jobid(dir, id, sizeof(id), &present, err)))
		goto done;
	if (!present && h && h->id[0] && slurm_handle_jobid(h->id, id, sizeof(id)) == 0)
		present = 1;
	if (!present) {
		/* Crashed between sbatch and slurm.jobid, or before sbatch. */
		int found = 0;
		script = fs_join(dir, "slurm.sh");
		if (fs_exists(script) &&
		    (rc = find_by_comment(sr, dir, id, sizeof(id), &found, err)))
			goto done;
		if (!found) {
			done->end = JOB_LOST;
			snprintf(done->detail, sizeof(done->detail), "never submitted");
			goto done;
		}
		if ((rc = write_jobid(dir, id, err)))
			goto done;
	}
	if (h && !h->id[0])
		snprintf(h->id, sizeof(h->id), "slurm:%s", id);

	if (query_one(sr, id, &known, &f, &qe)) {
		/* Slurm cannot be asked now: watch the job and let poll find
		 * out. Never a second submission. */
		known = 1;
		f.state = SLURM_UNKNOWN;
		snprintf(f.reason, sizeof(f.reason), "%.95s", qe.msg);
	}
	if (!known) {
		done->end = JOB_LOST;
		snprintf(done->detail, sizeof(done->detail),
			 "slurm job %s is unknown to squeue, scontrol and sacct -c "
			 "(forgotten after MinJobAge, no completion record)", id);
		goto done;
	}
	if (slurm_state_final(f.state)) {
		slurm_outcome(f.state, f.code, f.sig, id, done);
		done->cookie = cookie;
		goto done;
	}
	j = xcalloc(1, sizeof(*j));
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->dir = dir;
	dir = NULL;
	j->cookie = cookie;
	j->state = f.state;
	snprintf(j->reason, sizeof(j->reason), "%s", f.reason);
	add_job(sr, j);
	hurry(sr);
	*alive = 1;
done:
	free(script);
	free(dir);
	return rc;
}

int slurm_jobs_state(struct runner *r, const struct job_handle *h, size_t n,
		     struct slurm_job_view *out, struct err *err)
{
	struct slurm_runner *sr = (struct slurm_runner *)r;
	struct buf ids = BUF_INIT;
	struct cmd c;
	char (*id)[JOBID_MAX] = NULL;
	int rc = 0;

	if (!r || r->ops != &slurm_ops)
		return err_set(err, ERR_INVALID, "not a slurm runner");
	id = xcalloc(n ? n : 1, sizeof(*id));
	cmd_init(&c);
	buf_init(&ids);
	for (size_t i = 0; i < n; i++) {
		struct sjob *j;

		memset(&out[i], 0, sizeof(out[i]));
		if (slurm_handle_jobid(h[i].id, id[i], sizeof(id[i]))) {
			rc = err_set(err, ERR_INVALID, "'%s' is not a slurm job handle", h[i].id);
			goto done;
		}
		if ((j = find_job(sr, id[i], NULL))) {
			/* watched: what the last poll saw, no command */
			out[i].known = 1;
			out[i].state = j->state;
			snprintf(out[i].reason, sizeof(out[i].reason), "%s", j->reason);
			continue;
		}
		if (ids.len)
			buf_addc(&ids, ',');
		buf_adds(&ids, id[i]);
	}
	if (!ids.len)
		goto done;
	/* One squeue for all the others ... */
	if ((rc = squeue_ids(sr, buf_str(&ids), &c, err)))
		goto done;
	for (char *line = c.out.ptr; line && *line;) {
		char *nl = strchr(line, '\n');
		char lid[JOBID_MAX], reason[96];
		enum slurm_state st;

		if (nl)
			*nl = '\0';
		if (slurm_parse_squeue_line(line, lid, sizeof(lid), &st, reason,
					    sizeof(reason)) == 0 && !slurm_state_final(st))
			for (size_t i = 0; i < n; i++)
				if (!out[i].known && !strcmp(lid, id[i])) {
					out[i].known = 1;
					out[i].state = st;
					snprintf(out[i].reason, sizeof(out[i].reason), "%s", reason);
				}
		line = nl ? nl + 1 : NULL;
	}
	/* ... and scontrol / sacct -c for those that ended. */
	for (size_t i = 0; i < n; i++) {
		struct final f;

		if (out[i].known || find_job(sr, id[i], NULL))
			continue;
		if ((rc = lookup_job(sr, id[i], &f, err)))
			goto done;
		if (!f.known)
			continue;
		out[i].known = 1;
		out[i].state = f.state;
		if (slurm_state_final(f.state))
			snprintf(out[i].reason, sizeof(out[i].reason), "ExitCode=%d:%d", f.code, f.sig);
		else
			snprintf(out[i].reason, sizeof(out[i].reason), "%s", f.reason);
	}
done:
	cmd_free(&c);
	buf_free(&ids);
	free(id);
	return rc;
}

int slurm_job_state(struct runner *r, const struct job_handle *h,
		    enum slurm_state *state, char *reason, size_t size,
		    struct err *err)
{
	struct slurm_job_view v;
	int rc;

	if (!h)
		return err_set(err, ERR_INVALID, "'' is not a slurm job handle");
	if ((rc = slurm_jobs_state(r, h, 1, &v, err)))
		return rc;
	if (!v.known)
		return err_set(err, ERR_NOTFOUND, "slurm job %s: unknown to squeue, "
			       "scontrol and sacct -c", h->id + (strncmp(h->id, "slurm:", 6) ? 0 : 6));
	*state = v.state;
	snprintf(reason, size, "%s", v.reason);
	return 0;
}

/* `scontrol ping`: the controller answers (UP), or the one-line reason. */
static int slurm_check(struct runner *r, struct err *err)
{
	struct slurm_runner *sr = (struct slurm_runner *)r;
	char *argv[] = { "scontrol", "ping", NULL };
	struct cmd c;
	int rc;

	cmd_init(&c);
	rc = run_cmd(sr, argv, &c, err);
	if (!rc && (c.status != 0 || !strstr(buf_str(&c.out), "UP")))
		rc = c.status != 0 ? cmd_failed(err, ERR_SYSTEM, "scontrol ping", &c)
				   : err_set(err, ERR_SYSTEM, "scontrol ping: the Slurm controller is not UP: %.200s",
					     buf_str(&c.out));
	cmd_free(&c);
	return rc;
}

static void slurm_free(struct runner *r)
{
	struct slurm_runner *sr = (struct slurm_runner *)r;

	if (!sr)
		return;
	/* Jobs keep running: stopping them is the scheduler's decision. */
	for (size_t i = 0; i < sr->n; i++)
		job_free(sr->jobs[i]);
	free(sr->jobs);
	free((char *)sr->o.partition);
	free((char *)sr->o.account);
	free((char *)sr->o.qos);
	free((char *)sr->o.gres);
	free((char *)sr->o.bin_dir);
	strv_free(&sr->extra);
	free(sr);
}

static const struct runner_ops slurm_ops = {
	.name = "slurm",
	.enforces_limits = 1,
	.check = slurm_check,
	.submit = slurm_submit,
	.poll = slurm_poll,
	.cancel = slurm_cancel,
	.attach = slurm_attach,
	.free = slurm_free,
};

static char *dup_opt(const char *s)
{
	return s && s[0] ? xstrdup(s) : NULL;
}

int slurm_runner_new(const struct slurm_options *o, struct runner **out,
		     struct err *err)
{
	static const struct slurm_options none;
	struct slurm_runner *sr;

	*out = NULL;
	if (!o)
		o = &none;
	if (o->poll_min_ms < 0 || o->poll_max_ms < 0 || o->signal_grace_s < 0 ||
	    o->cmd_timeout_s < 0)
		return err_set(err, ERR_INVALID, "slurm runner: negative interval");
	if (o->gres && strpbrk(o->gres, ":, \t\n"))
		return err_set(err, ERR_INVALID, "slurm runner: gres name '%s' has ':', ',' "
			       "or a blank", o->gres);
	sr = xcalloc(1, sizeof(*sr));
	sr->base.ops = &slurm_ops;
	sr->o = *o;
	sr->o.partition = dup_opt(o->partition);
	sr->o.account = dup_opt(o->account);
	sr->o.qos = dup_opt(o->qos);
	sr->o.gres = xstrdup(o->gres && o->gres[0] ? o->gres : "npu");
	sr->o.bin_dir = dup_opt(o->bin_dir);
	for (size_t i = 0; o->sbatch_extra && o->sbatch_extra[i]; i++)
		strv_push(&sr->extra, o->sbatch_extra[i]);
	sr->o.sbatch_extra = sr->extra.v;
	if (!sr->o.signal_grace_s)
		sr->o.signal_grace_s = 120;
	if (!sr->o.poll_min_ms)
		sr->o.poll_min_ms = 500;
	if (!sr->o.poll_max_ms)
		sr->o.poll_max_ms = 10000;
	if (sr->o.poll_max_ms < sr->o.poll_min_ms)
		sr->o.poll_max_ms = sr->o.poll_min_ms;
	if (!sr->o.cmd_timeout_s)
		sr->o.cmd_timeout_s = 60;
	sr->interval_ms = sr->o.poll_min_ms;
	*out = &sr->base;
	return 0;
}
