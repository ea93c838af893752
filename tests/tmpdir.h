/* tests/tmpdir.h — a fresh directory for the unit tests that write files,
 * as CMocka setup and teardown of a group or of one test:
 *
 *   cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown)
 *
 * tmpdir is $TMPDIR/anneal-<test binary>.XXXXXX (TMPDIR unset: /tmp) in
 * between; teardown removes it and fails if it cannot.
 * Include after cmocka.h, base/err.h, base/fs.h and base/util.h. */
#ifndef ANNEAL_TESTS_TMPDIR_H
#define ANNEAL_TESTS_TMPDIR_H

#include <errno.h>
#include <stdlib.h>

static char *tmpdir;

static int tmpdir_setup(void **state)
{
	const char *base = getenv("TMPDIR");
	char *t = xasprintf("%s/anneal-%s.XXXXXX", base && *base ? base : "/tmp",
			    program_invocation_short_name);

	(void)state;
	if (!mkdtemp(t)) {
		free(t);
		return -1;
	}
	tmpdir = t;
	return 0;
}

static int tmpdir_teardown(void **state)
{
	struct err e;
	int rc = fs_remove_tree(tmpdir, &e);

	(void)state;
	free(tmpdir);
	tmpdir = NULL;
	return rc ? -1 : 0;
}

#endif
