/* base/fault.c — see fault.h. */
#include "base/fault.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *spec;   /* getenv's string: lives as long as the process */

static void parse(void)
{
	spec = getenv("ANNEAL_FAULT");
}

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
	static struct { const char *name; long seen; } counts[64];
	long want;

	pthread_once(&once, parse);
	if (!spec || !*spec)
		return;
	want = hits_for(name);
	if (want <= 0)
		return;
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < sizeof(counts) / sizeof(*counts); i++) {
		if (!counts[i].name)
			counts[i].name = name;
		if (counts[i].name == name || !strcmp(counts[i].name, name)) {
			if (++counts[i].seen == want)
				kill(getpid(), SIGKILL);
			break;
		}
	}
	pthread_mutex_unlock(&lock);
}
