/* base/fault.c — see fault.h. */
#include "base/fault.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parsed;
static const char *spec;   /* getenv's string: lives as long as the process */

static long hits_for(const char *name)
{
	size_t n = strlen(name);

	for (const char *p = spec; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len >= n && !strncmp(p, name, n) && (len == n || p[n] == ':'))
			return len == n ? 1 : strtol(p + n + 1, NULL, 10);
		p = end ? end + 1 : NULL;
	}
	return 0;
}

void fault_point(const char *name)
{
	static struct { const char *name; long seen; } counts[32];
	long want;

	if (!parsed) {
		spec = getenv("ANNEAL_FAULT");
		parsed = 1;
	}
	if (!spec || !*spec)
		return;
	want = hits_for(name);
	if (want <= 0)
		return;
	for (size_t i = 0; i < sizeof(counts) / sizeof(*counts); i++) {
		if (!counts[i].name)
			counts[i].name = name;
		if (counts[i].name == name || !strcmp(counts[i].name, name)) {
			if (++counts[i].seen == want)
				kill(getpid(), SIGKILL);
			return;
		}
	}
}
