/* cli/cli.h — what the subcommands share: error printing, workspace and
 * state opening, option helpers. Only cli/ prints or exits. */
#ifndef ANNEAL_CLI_H
#define ANNEAL_CLI_H

#include <stdint.h>
#include <stdio.h>

struct err;
struct state;
struct workspace;

struct cli {
	const char *dir;      /* -C DIR, or NULL */
	int is_tty;           /* stdout is a terminal */
};

typedef int (*cmd_fn)(struct cli *cli, int argc, char **argv);

int cmd_init(struct cli *cli, int argc, char **argv);
int cmd_validate(struct cli *cli, int argc, char **argv);
int cmd_plan(struct cli *cli, int argc, char **argv);
int cmd_run(struct cli *cli, int argc, char **argv);
int cmd_resume(struct cli *cli, int argc, char **argv);
int cmd_status(struct cli *cli, int argc, char **argv);
int cmd_logs(struct cli *cli, int argc, char **argv);
int cmd_cancel(struct cli *cli, int argc, char **argv);
int cmd_add(struct cli *cli, int argc, char **argv);
int cmd_ls(struct cli *cli, int argc, char **argv);
int cmd_show(struct cli *cli, int argc, char **argv);
int cmd_tag(struct cli *cli, int argc, char **argv);
int cmd_lineage(struct cli *cli, int argc, char **argv);
int cmd_gc(struct cli *cli, int argc, char **argv);
int cmd_export(struct cli *cli, int argc, char **argv);
int cmd_import(struct cli *cli, int argc, char **argv);
int cmd_audit(struct cli *cli, int argc, char **argv);
int cmd_merge(struct cli *cli, int argc, char **argv);
int cmd_report(struct cli *cli, int argc, char **argv);

/* Prints "anneal: MSG" to stderr; returns the exit status for err. */
int cli_fail(const struct err *err);
/* Prints "anneal: <printf>" to stderr and returns 2 (usage). */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Opens the workspace (found from -C or the cwd) and its state store. */
int cli_open(struct cli *cli, struct workspace **ws, struct state **st,
	     struct err *err);

/* The workspace found from -C or the cwd, or a new one there when there
 * is none (what run, add and import do). */
int cli_find_or_init(struct cli *cli, struct workspace **ws, struct err *err);

/* Parses a RUN argument ("3"); ERR_INVALID otherwise. */
int cli_parse_run(const char *s, int64_t *run, struct err *err);

/* The run arg names (arg not NULL), else the latest run (the latest
 * unfinished one with unfinished_only); ERR_NOTFOUND with none_msg when
 * there is none. */
int cli_pick_run(struct state *st, const char *arg, int unfinished_only,
		 const char *none_msg, int64_t *run, struct err *err);

/* Installs SIGINT/SIGTERM/SIGHUP handlers that ask the scheduler to stop
 * (no SA_RESTART, so waits return at once). */
void cli_install_stop_handlers(void);

/* Path of the anneal-shim binary next to this one (or ANNEAL_SHIM). */
char *cli_shim_path(void);

/* Installs the log sink that prints library warnings to stderr. */
void cli_install_log_sink(void);

#endif
