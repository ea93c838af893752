/* cli/cmd_run.c — anneal run RECIPE / anneal resume [RUN]
 *
 * Both end in the scheduler; they differ in where the plan comes from: run
 * parses the recipe and records a new run (one transaction), resume takes
 * a run's stored plan. On a terminal a live progress line is redrawn in
 * place; piped, output is one line per event, for logs and for tests. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fault.h"
#include "base/fs.h"
#include "base/util.h"
#include "cli/cli.h"
#include "artifacts/provenance.h"
#include "pipeline/catalog.h"
#include "pipeline/json.h"
#include "pipeline/recipe.h"
#include "pipeline/sched.h"
#include "pipeline/state.h"
#include "pipeline/workspace.h"
#include "runners/runner.h"

struct progress {
	int tty;
	int line_shown;    /* a live line is on screen */
	double start;
	size_t ran, cached;
};

static void clear_live(struct progress *p)
{
	if (p->line_shown) {
		fputs("\r\033[K", stdout);
		p->line_shown = 0;
	}
}

static void on_report(void *ctx, const struct sched_report *r)
{
	struct progress *p = ctx;
	char el[32];
	const char *word = NULL;

	format_duration(r->elapsed, el, sizeof(el));
	switch (r->kind) {
	case SR_TICK:
		if (!p->tty || !r->step)
			return;
		printf("\r\033[K[%zu/%zu] %s running %s", r->done, r->total, r->step, el);
		if (r->has_metric)
			printf(" %s=%.6g", r->metric_name, r->metric_value);
		if (r->running > 1)
			printf(" (+%zu more)", r->running - 1);
		fflush(stdout);
		p->line_shown = 1;
		return;
	case SR_START: word = "start"; break;
	case SR_CACHED: word = "cached"; p->cached++; break;
	case SR_SUCCEEDED: word = "done"; p->ran++; break;
	case SR_RETRY: word = "retry"; break;
	case SR_REQUEUED: word = "requeue"; break;
	case SR_FAILED: word = "FAILED"; break;
	case SR_STOPPED: word = "stopped"; break;
	case SR_ATTACHED: word = "attach"; break;
	case SR_WARNING: word = "warning"; break;
	}
	clear_live(p);
	printf("[%zu/%zu] %-8s %s", r->done, r->total, word, r->step ? r->step : "");
	if (r->kind == SR_START)
		printf(" (attempt %d%s%s)", r->attempt, r->text ? ", resuming from " : "",
		       r->text ? r->text : "");
	else if (r->kind == SR_SUCCEEDED)
		printf(" in %s", el);
	else if (r->text)
		printf(": %s", r->text);
	putchar('\n');
	fflush(stdout);
}

struct run_opts {
	struct sched_opts so;
	struct strv sets;
	int jobs_set;
	int require_clean;
	const char *runner;   /* --runner, or NULL */
	int detach;           /* --detach: drive from the background */
};

enum { OPT_GPUS = 256, OPT_NPUS, OPT_CPUS, OPT_KEEP, OPT_NOCACHE, OPT_GRACE, OPT_SET,
       OPT_CLEAN, OPT_RUNNER, OPT_DETACH };

static int parse_opts(const char *cmd, int argc, char **argv, struct run_opts *ro,
		      int allow_set, int *help)
{
	static const struct option opts[] = {
		{ "jobs", required_argument, NULL, 'j' },
		{ "gpus", required_argument, NULL, OPT_GPUS },
		{ "npus", required_argument, NULL, OPT_NPUS },
		{ "cpus", required_argument, NULL, OPT_CPUS },
		{ "keep-going", no_argument, NULL, OPT_KEEP },
		{ "no-cache", no_argument, NULL, OPT_NOCACHE },
		{ "grace", required_argument, NULL, OPT_GRACE },
		{ "set", required_argument, NULL, OPT_SET },
		{ "require-clean", no_argument, NULL, OPT_CLEAN },
		{ "runner", required_argument, NULL, OPT_RUNNER },
		{ "detach", no_argument, NULL, OPT_DETACH },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long long v;
	int c;

	*help = 0;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "j:kh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			if (parse_int(optarg, 1, 4096, &v))
				return cli_usage("%s: --jobs must be an integer in 1..4096, not '%s'", cmd, optarg);
			ro->so.jobs = (int)v;
			ro->jobs_set = 1;
			break;
		case OPT_GPUS:
		case OPT_NPUS:
		case OPT_CPUS:
			if (parse_int(optarg, c == OPT_CPUS ? 1 : 0, 4096, &v))
				return cli_usage("%s: --%s must be an integer in %d..4096, not '%s'", cmd,
						 c == OPT_GPUS ? "gpus" : c == OPT_NPUS ? "npus" : "cpus",
						 c == OPT_CPUS, optarg);
			*(c == OPT_GPUS ? &ro->so.gpus : c == OPT_NPUS ? &ro->so.npus : &ro->so.cpus) = (int)v;
			break;
		case 'k':
		case OPT_KEEP:
			ro->so.keep_going = 1;
			break;
		case OPT_NOCACHE:
			ro->so.no_cache = 1;
			break;
		case OPT_GRACE:
			if (parse_duration(optarg, 86400, &v))
				return cli_usage("%s: --grace must be a duration like 30s, not '%s'", cmd, optarg);
			ro->so.grace_s = (double)v;
			break;
		case OPT_CLEAN:
			ro->require_clean = 1;
			break;
		case OPT_DETACH:
			ro->detach = 1;
			break;
		case OPT_RUNNER:
			if (!allow_set)
				return cli_usage("%s: --runner is fixed when a run starts; a resumed run keeps its runner", cmd);
			if (strcmp(optarg, "local") && strcmp(optarg, "slurm"))
				return cli_usage("%s: --runner must be local or slurm, not '%s'", cmd, optarg);
			ro->runner = optarg;
			break;
		case OPT_SET:
			if (!allow_set)
				return cli_usage("%s: --set is fixed when a run starts; a resumed run keeps its params", cmd);
			strv_push(&ro->sets, optarg);
			break;
		case 'h':
			*help = 1;
			return 0;
		default:
			return cli_usage("%s: unknown option '%s' (see 'anneal %s --help')", cmd,
					 argv[optind - 1], cmd);
		}
	}
	return 0;
}

/* Capacity: what the machine has, what the workspace declares, what the
 * command line says — the last one given wins. */
static void settle_capacity(struct run_opts *ro, const struct workspace *ws,
			    int cluster)
{
	int ncpu = get_nprocs();

	/* On a cluster the scheduler (Slurm) decides what fits: anneal only
	 * bounds how many jobs it keeps submitted at once. */
	if (cluster) {
		ro->so.cluster = 1;
		ro->so.cpus = 1 << 20;
		ro->so.gpus = ro->so.npus = 0;
		if (!ro->jobs_set)
			ro->so.jobs = ws->jobs > 0 ? ws->jobs : 256;
		if (ro->so.grace_s <= 0)
			ro->so.grace_s = 10;
		ro->so.max_requeues = 100;
		return;
	}

	if (ro->so.cpus <= 0)
		ro->so.cpus = ncpu > 0 ? ncpu : 1;
	if (!ro->jobs_set)
		ro->so.jobs = ws->jobs > 0 ? ws->jobs : ro->so.cpus;
	if (ro->so.gpus < 0)
		ro->so.gpus = ws->gpus;
	if (ro->so.npus < 0)
		ro->so.npus = ws->npus;
	if (ro->so.grace_s <= 0)
		ro->so.grace_s = 10;
	ro->so.max_requeues = 100;
}

/* Steps that can never fit are refused before the run is recorded. */
static int check_fits(const struct step *steps, size_t n, const struct sched_opts *so,
		      struct err *err)
{
	if (so->cluster)
		return 0;   /* the cluster's scheduler decides (sbatch refuses the impossible) */
	for (size_t i = 0; i < n; i++)
		if (steps[i].res.nodes > 1)
			return err_set(err, ERR_INVALID,
				       "step '%s' needs %d nodes; the local runner has this machine "
				       "only (run it with --runner slurm)", steps[i].id, steps[i].res.nodes);
	for (size_t i = 0; i < n; i++) {
		const struct step *s = &steps[i];
		if (s->res.gpus > so->gpus)
			return err_set(err, ERR_INVALID,
				       "step '%s' needs %d gpus; %d available (declare them with --gpus N or \"gpus\" in .anneal/config.json)",
				       s->id, s->res.gpus, so->gpus);
		if (s->res.npus > so->npus)
			return err_set(err, ERR_INVALID,
				       "step '%s' needs %d npus; %d available (declare them with --npus N or \"npus\" in .anneal/config.json)",
				       s->id, s->res.npus, so->npus);
		if (so->mem_mb && s->res.mem_mb > so->mem_mb)
			return err_set(err, ERR_INVALID, "step '%s' needs %ld MB of memory; this machine has %ld",
				       s->id, s->res.mem_mb, so->mem_mb);
	}
	return 0;
}

/* On Ctrl-C with jobs on a cluster: leave them running or cancel them?
 * A detached driver leaves them; on a terminal the user says (default:
 * cancel); without one, cancel, as the local runner does. */
static int ask_leave(void *ctx, size_t live)
{
	const struct run_opts *ro = ctx;
	char line[32] = "";
	FILE *tty;
	int leave = 0;

	if (ro->detach)
		return 1;
	if (!isatty(STDIN_FILENO) || !(tty = fopen("/dev/tty", "r+")))
		return 0;
	fprintf(tty, "\n%zu job%s on the cluster. Leave %s running (resume re-attaches) "
		"or cancel %s? [l/C] ", live, live == 1 ? " is" : "s are",
		live == 1 ? "it" : "them", live == 1 ? "it" : "them");
	fflush(tty);
	sched_reset_stop();   /* the question is the answer to this Ctrl-C */
	if (fgets(line, sizeof(line), tty) && (line[0] == 'l' || line[0] == 'L'))
		leave = 1;
	fclose(tty);
	if (!leave)
		sched_request_stop();
	return leave;
}

/* --detach: the driver goes on in a new session, writing to
 * runs/<run>/driver.log; the calling process exits 0 after saying so.
 * Returns 0 in the child (go on driving), < 0 when fork failed. */
static int detach(struct workspace *ws, int64_t run, struct err *err)
{
	char *dir = workspace_run_dir(ws, run), *log = fs_join(dir, "driver.log");
	pid_t pid;
	int fd, rc = 0;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		rc = err_sys(err, errno, "fork");
	} else if (pid > 0) {
		printf("run %" PRId64 " detached (driver pid %d, output in %s);\n"
		       "'anneal status %" PRId64 "' follows it, 'anneal cancel %" PRId64 "' stops it\n",
		       run, (int)pid, log, run, run);
		fflush(stdout);
		/* Nothing of this process may touch the state store any more
		 * (SQLite connections do not survive a fork): leave now. */
		_exit(0);
	} else {
		setsid();
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			dup2(fd, STDIN_FILENO);
			close(fd);
		}
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			close(fd);
		}
	}
	free(log);
	free(dir);
	return rc;
}

/* Adds the live driver's pid to the refusal of a second one. The pid is
 * what the driver recorded when it took the lock (drive, below); one that
 * no longer exists is not named. */
static void name_driver(struct state *st, int64_t run, struct err *err)
{
	struct run_info now = { 0 };
	struct err e;
	size_t n = strlen(err->msg);

	if (state_run_get(st, run, &now, &e) == 0 && now.driver_pid > 0 &&
	    (kill(now.driver_pid, 0) == 0 || errno == EPERM))
		snprintf(err->msg + n, sizeof(err->msg) - n, " (pid %d)", now.driver_pid);
	run_info_clear(&now);
}

/* Drives run to its end. lock is the run's driver lock, taken by the
 * caller before it changed or printed anything; drive closes it. */
static int drive(struct cli *cli, struct workspace *ws, struct state *st, int64_t run,
		 struct run_opts *ro, int cancel_only, int lock)
{
	struct progress p = { .tty = cli->is_tty, .start = now_mono() };
	struct runner *runner = NULL;
	struct err err;
	char *shim = cli_shim_path();
	struct run_info ri = { 0 };
	char el[32];
	int rc;

	err_clear(&err);
	rc = state_run_get(st, run, &ri, &err);
	if (!rc)
		rc = runner_from_spec(ri.runner, shim, &runner, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	ro->so.report = on_report;
	ro->so.report_ctx = &p;
	ro->so.cancel_only = cancel_only;
	if (ro->so.cluster || ro->detach) {
		ro->so.leave_jobs = ask_leave;
		ro->so.leave_ctx = ro;
	}
	if (ro->detach && !cancel_only) {
		rc = detach(ws, run, &err);
		if (rc) {
			rc = cli_fail(&err);
			goto done;
		}
		p.tty = 0;
	}
	/* Ours from now on (the detached process, if it detached): a
	 * second driver refused names us (name_driver). */
	if ((rc = state_run_set_driver(st, run, (int)getpid(), &err))) {
		rc = cli_fail(&err);
		goto done;
	}
	cli_install_stop_handlers();
	rc = sched_run(st, runner, ws, run, &ro->so, &err);
	clear_live(&p);
	format_duration(now_mono() - p.start, el, sizeof(el));
	if (rc == 0) {
		printf("run %" PRId64 " succeeded in %s (%zu ran, %zu cached)\n", run, el,
		       p.ran, p.cached);
	} else {
		fflush(stdout);
		rc = cli_fail(&err);
	}
done:
	runner_free(runner);
	run_info_clear(&ri);
	close(lock);
	free(shim);
	return rc;
}

/* The runner a new run uses: --runner, else the recipe's, else the
 * workspace's (.anneal/config.json), else local. A name given on the
 * command line takes the options of the recipe's or workspace's spec of
 * the same type. Returns a malloc'd spec (runners/factory.c). */
static char *runner_spec(const char *opt, const struct recipe *r, const struct workspace *ws)
{
	char *from_recipe = NULL, type[32];

	if (r->runner) {
		struct buf b = BUF_INIT;
		if (r->runner->type == J_STRING)
			buf_adds(&b, r->runner->str);
		else
			json_write(&b, r->runner);
		from_recipe = buf_detach(&b);
	}
	if (!opt) {
		if (from_recipe)
			return from_recipe;
		return xstrdup(ws->runner ? ws->runner : "local");
	}
	if (from_recipe && !runner_spec_type(from_recipe, type, sizeof(type)) && !strcmp(type, opt))
		return from_recipe;
	free(from_recipe);
	if (ws->runner && !runner_spec_type(ws->runner, type, sizeof(type)) && !strcmp(type, opt))
		return xstrdup(ws->runner);
	return xstrdup(opt);
}

static int spec_is_cluster(const char *spec)
{
	char type[32];

	return spec && !runner_spec_type(spec, type, sizeof(type)) && strcmp(type, "local");
}

/* The git state of the repository holding the recipe, recorded with the
 * run (and so with every artifact it makes). --require-clean refuses a
 * dirty tree: results that cannot be traced to a commit. */
static int check_clean(const char *recipe, const char *what, const struct provenance *p,
		       struct err *err)
{
	if (!p->found)
		return err_set(err, ERR_INVALID,
			       "%s: --require-clean: the %s is in no git repository", recipe, what);
	if (p->dirty)
		return err_set(err, ERR_INVALID,
			       "%s: --require-clean: '%s' (the %s's repository) has uncommitted "
			       "changes (%llu modified, %llu untracked); commit them or run "
			       "without --require-clean",
			       recipe, p->workdir, what, (unsigned long long)p->modified,
			       (unsigned long long)p->untracked);
	return 0;
}

/* The git state of the repository holding the recipe — and of the engine's
 * when the recipe names one ("engine": {"repo": "PATH"}, relative to the
 * recipe) — recorded with the run and so with every artifact it makes.
 * --require-clean refuses dirty trees: results that no commit explains. */
static int collect_provenance(const struct recipe *r, int require_clean,
			      struct provenance *p, struct buf *json, struct err *err)
{
	const struct jnode *repo = r->engine && r->engine->type == J_OBJECT
				   ? json_get(r->engine, "repo") : NULL;
	struct provenance ep = { 0 };
	char *engine_path = NULL;
	int rc = provenance_collect(r->path, p, err);

	if (rc)
		return err_prefix(err, "%s: provenance", r->path);
	buf_init(json);
	buf_adds(json, "{\"recipe\":");
	provenance_to_json(p, json);
	if (repo && repo->type == J_STRING) {
		const char *slash = strrchr(r->path, '/');
		engine_path = repo->str[0] == '/' || !slash ? xstrdup(repo->str)
			: xasprintf("%.*s/%s", (int)(slash - r->path), r->path, repo->str);
		rc = provenance_collect(engine_path, &ep, err);
		if (rc) {
			err_prefix(err, "%s: engine.repo '%s'", r->path, repo->str);
			goto done;
		}
		buf_adds(json, ",\"engine\":");
		provenance_to_json(&ep, json);
	}
	buf_addc(json, '}');
	if (require_clean) {
		rc = check_clean(r->path, "recipe", p, err);
		if (!rc && engine_path)
			rc = check_clean(r->path, "engine", &ep, err);
	}
done:
	provenance_clear(&ep);
	free(engine_path);
	return rc;
}

/* Pins every "@REF" input to the artifact it names now: the run's plan
 * never changes, even if the name gets a new version meanwhile. */
static int resolve_artifact_inputs(struct state *st, struct recipe *r, struct err *err)
{
	for (size_t i = 0; i < r->nsteps; i++) {
		struct step *s = &r->steps[i];
		for (size_t k = 0; k < s->ninputs; k++) {
			struct step_input *in = &s->inputs[k];
			int rc;
			if (!in->ref)
				continue;
			rc = catalog_resolve(st, in->ref, &in->artifact, err);
			if (rc)
				return err_prefix(err, "%s: step '%s': input '%s'", r->path,
						  s->id, in->role);
		}
	}
	return 0;
}

static void run_usage(void)
{
	printf("usage: anneal run RECIPE [options]\n\n"
	       "Records a new run of RECIPE and drives it: ready steps run in parallel within\n"
	       "the resources; steps whose inputs and command are unchanged since an earlier\n"
	       "run reuse its intact outputs (cached). Ctrl-C stops the steps cleanly; 'anneal\n"
	       "resume' continues.\n\n"
	       "options:\n"
	       "  --set KEY=VALUE   override a recipe param (repeatable; typed like the param)\n"
	       "  -j, --jobs N      at most N steps at once (default: the CPUs)\n"
	       "  --cpus N          CPU capacity (default: detected)\n"
	       "  --gpus N, --npus N  devices to hand out (default: .anneal/config.json, else 0)\n"
	       "  -k, --keep-going  after a failure, keep running steps that do not depend on it\n"
	       "  --no-cache        run every step, reuse nothing\n"
	       "  --grace DUR       time between SIGTERM and SIGKILL when stopping a step (10s)\n"
	       "  --require-clean   refuse to start when the recipe's git repository has\n"
	       "                    uncommitted changes\n"
	       "  --runner NAME     local or slurm (default: the recipe's \"runner\", else\n"
	       "                    .anneal/config.json's, else local)\n"
	       "  --detach          drive the run from the background (output in\n"
	       "                    .anneal/runs/RUN/driver.log); interrupted, it leaves\n"
	       "                    its jobs running for 'anneal resume'\n");
}

int cmd_run(struct cli *cli, int argc, char **argv)
{
	struct run_opts ro = { .so = { .gpus = -1, .npus = -1 }, .sets = STRV_INIT };
	struct recipe *r = NULL;
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct provenance prov = { 0 };
	struct buf prov_json = BUF_INIT;
	struct err err;
	char *spec = NULL;
	int64_t run = 0;
	int rc, help, lock = -1, cluster;

	err_clear(&err);
	rc = parse_opts("run", argc, argv, &ro, 1, &help);
	if (rc || help) {
		if (help)
			run_usage();
		goto done;
	}
	if (optind != argc - 1) {
		rc = cli_usage("run: expected one RECIPE (see 'anneal run --help')");
		goto done;
	}
	/* Everything that can be refused is refused before anything is written. */
	rc = recipe_load(argv[optind], &ro.sets, &r, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	rc = cli_find_or_init(cli, &ws, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	spec = runner_spec(ro.runner, r, ws);
	cluster = spec_is_cluster(spec);
	settle_capacity(&ro, ws, cluster);
	if (!cluster) {
		struct sysinfo si;
		if (sysinfo(&si) == 0)
			ro.so.mem_mb = (long)((unsigned long long)si.totalram * si.mem_unit >> 20);
	}
	rc = check_fits(r->steps, r->nsteps, &ro.so, &err);
	if (!rc && cluster) {
		/* An absent or unreachable cluster starts nothing. */
		struct runner *probe = NULL;
		rc = runner_from_spec(spec, NULL, &probe, &err);
		if (!rc && probe->ops->check)
			rc = probe->ops->check(probe, &err);
		runner_free(probe);
	}
	if (!rc)
		rc = collect_provenance(r, ro.require_clean, &prov, &prov_json, &err);
	if (!rc)
		rc = state_open(ws->db_path, &st, &err);
	if (!rc)
		rc = resolve_artifact_inputs(st, r, &err);
	if (!rc) {
		char *abs = fs_abspath(r->path);
		struct run_new rn = {
			.recipe_path = abs,
			.recipe_name = r->name,
			.recipe_text = r->text,
			.recipe_digest = r->digest,
			.params_json = r->params_json,
			.runner = spec,
			.steps = r->steps,
			.nsteps = r->nsteps,
			.cache_keys = NULL,
		};
		rc = state_run_create(st, &rn, &run, &err);
		free(abs);
	}
	if (!rc)
		rc = catalog_set_run_provenance(st, run, buf_str(&prov_json),
						prov.found && prov.commit[0] ? prov.commit : NULL,
						prov.dirty ? prov.dirty_digest : NULL, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	fault_point("run-created");
	if ((rc = workspace_lock_run(ws, run, &lock, &err))) {
		rc = cli_fail(&err);
		goto done;
	}
	printf("run %" PRId64 ": %s, %zu step%s (recipe %s)\n", run, r->name, r->nsteps,
	       r->nsteps == 1 ? "" : "s", r->path);
	fflush(stdout);
	rc = drive(cli, ws, st, run, &ro, 0, lock);
done:
	provenance_clear(&prov);
	buf_free(&prov_json);
	state_close(st);
	workspace_free(ws);
	recipe_free(r);
	strv_free(&ro.sets);
	free(spec);
	return rc;
}

/* The newest run that has not succeeded and that no live anneal drives:
 * what "resume" means without a run id (interrupted, crashed, failed or
 * cancelled). */
static int latest_unfinished(const struct workspace *ws, struct state *st,
			     int64_t *run, struct err *err)
{
	struct run_info *runs = NULL;
	size_t n = 0;
	int rc;

	rc = state_run_list(st, &runs, &n, err);
	if (rc)
		return rc;
	rc = err_set(err, ERR_NOTFOUND, "no unfinished run to resume");
	for (size_t i = 0; i < n; i++) {
		if (rc && runs[i].state != RUN_SUCCEEDED &&
		    !workspace_run_locked(ws, runs[i].id)) {
			*run = runs[i].id;
			err_clear(err);
			rc = 0;
		}
		run_info_clear(&runs[i]);
	}
	free(runs);
	return rc;
}

int cmd_resume(struct cli *cli, int argc, char **argv)
{
	struct run_opts ro = { .so = { .gpus = -1, .npus = -1 }, .sets = STRV_INIT };
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct step *steps = NULL;
	size_t nsteps = 0;
	struct run_info ri = { 0 };
	struct err err;
	int64_t run = 0;
	int rc, help, lock = -1;

	err_clear(&err);
	rc = parse_opts("resume", argc, argv, &ro, 0, &help);
	if (rc || help) {
		if (help)
			printf("usage: anneal resume [RUN] [options]\n\n"
			       "Finishes RUN (default: the newest run that has not succeeded and that\n"
			       "no anneal process drives) from where it stopped:\n"
			       "succeeded steps are kept, steps still running from an earlier anneal\n"
			       "are re-attached, interrupted steps restart from their latest checkpoint,\n"
			       "failed steps get a fresh retry budget. Options as for 'anneal run'\n"
			       "(except --set: a run keeps its params).\n");
		goto done;
	}
	if (optind < argc - 1) {
		rc = cli_usage("resume: too many arguments");
		goto done;
	}
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc) {
		if (optind == argc - 1)
			rc = cli_parse_run(argv[optind], &run, &err);
		else
			rc = latest_unfinished(ws, st, &run, &err);
	}
	if (!rc)
		rc = state_run_get(st, run, &ri, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	if (ri.state == RUN_SUCCEEDED) {
		printf("run %" PRId64 " already succeeded; nothing to do\n", run);
		goto done;
	}
	settle_capacity(&ro, ws, spec_is_cluster(ri.runner));
	rc = state_steps_load(st, run, &steps, &nsteps, &err);
	if (!rc)
		rc = check_fits(steps, nsteps, &ro.so, &err);
	/* Refused before anything changes or is printed: a pending cancel of
	 * the live driver stays pending. */
	if (!rc && (rc = workspace_lock_run(ws, run, &lock, &err)) == ERR_BUSY)
		name_driver(st, run, &err);
	if (!rc && ri.cancel_requested)
		rc = state_run_clear_cancel(st, run, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	printf("resuming run %" PRId64 ": %s (%s)\n", run, ri.recipe_name ? ri.recipe_name : "",
	       run_state_name(ri.state));
	fflush(stdout);
	rc = drive(cli, ws, st, run, &ro, 0, lock);
	lock = -1;
done:
	if (lock >= 0)
		close(lock);
	for (size_t i = 0; i < nsteps; i++)
		step_clear(&steps[i]);
	free(steps);
	run_info_clear(&ri);
	state_close(st);
	workspace_free(ws);
	strv_free(&ro.sets);
	return rc;
}

int cmd_cancel(struct cli *cli, int argc, char **argv)
{
	struct workspace *ws = NULL;
	struct state *st = NULL;
	struct run_info ri = { 0 };
	struct err err;
	int64_t run = 0;
	int rc = 0;

	err_clear(&err);
	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		printf("usage: anneal cancel [RUN]\n\n"
		       "Stops RUN (default: the latest unfinished run): its steps get SIGTERM, then\n"
		       "SIGKILL after the grace period, and are recorded cancelled. Works whether\n"
		       "or not an anneal process is still driving the run.\n");
		return 0;
	}
	if (argc > 2)
		return cli_usage("cancel: expected at most one RUN");
	rc = cli_open(cli, &ws, &st, &err);
	if (!rc)
		rc = cli_pick_run(st, argc == 2 ? argv[1] : NULL, 1, "no unfinished run to cancel",
				  &run, &err);
	if (!rc)
		rc = state_run_get(st, run, &ri, &err);
	if (rc) {
		rc = cli_fail(&err);
		goto done;
	}
	if (ri.state != RUN_RUNNING && ri.state != RUN_INTERRUPTED) {
		printf("run %" PRId64 " is %s; nothing to cancel\n", run, run_state_name(ri.state));
		goto done;
	}
	if ((rc = state_run_request_cancel(st, run, &err))) {
		rc = cli_fail(&err);
		goto done;
	}
	if (workspace_run_locked(ws, run)) {
		/* A driver is alive: it sees the request within a second (and at
		 * once through the signal) and stops its steps itself. */
		if (ri.driver_pid > 0)
			kill(ri.driver_pid, SIGTERM);
		enum run_state s = RUN_RUNNING;
		while (workspace_run_locked(ws, run))
			usleep(100 * 1000);
		struct run_info now = { 0 };
		if (state_run_get(st, run, &now, &err)) {
			rc = cli_fail(&err);
			goto done;
		}
		s = now.state;
		run_info_clear(&now);
		if (s == RUN_CANCELLED) {
			printf("run %" PRId64 " cancelled\n", run);
		} else {
			/* It ended some other way before the request landed. */
			printf("run %" PRId64 " ended %s before it could be cancelled\n", run,
			       run_state_name(s));
			rc = s == RUN_SUCCEEDED ? 0 : 1;
		}
	} else {
		/* No driver: stop what outlived it and record the run ourselves. */
		struct run_opts ro = { .so = { .gpus = -1, .npus = -1 }, .sets = STRV_INIT };
		int lock = -1;
		settle_capacity(&ro, ws, spec_is_cluster(ri.runner));
		if ((rc = workspace_lock_run(ws, run, &lock, &err))) {
			rc = cli_fail(&err);
			goto done;
		}
		rc = drive(cli, ws, st, run, &ro, 1, lock);
		if (rc == 1) {
			rc = 0;   /* "cancelled" is what was asked for */
		}
	}
done:
	run_info_clear(&ri);
	state_close(st);
	workspace_free(ws);
	return rc;
}
