/* base/util.c — see util.h. */
#include "base/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/err.h"

/* Optimal string alignment distance: insertions, deletions, substitutions
 * and swaps of two adjacent characters (the commonest typo: "bsae") each
 * cost one. Three rows suffice. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *prev2, *prev, *cur, d;

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	prev2 = xcalloc(lb + 1, sizeof(size_t));
	prev = xcalloc(lb + 1, sizeof(size_t));
	cur = xcalloc(lb + 1, sizeof(size_t));
	for (size_t j = 0; j <= lb; j++)
		prev[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
			size_t m = sub < del ? sub : del;
			m = m < ins ? m : ins;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    prev2[j - 2] + 1 < m)
				m = prev2[j - 2] + 1;
			cur[j] = m;
		}
		size_t *t = prev2;
		prev2 = prev;
		prev = cur;
		cur = t;
	}
	d = prev[lb];
	free(prev2);
	free(prev);
	free(cur);
	return d;
}

const char *did_you_mean(const char *word, const char *const *cands, size_t n)
{
	size_t len = strlen(word), limit = len / 3 > 1 ? len / 3 : 1;
	size_t best = SIZE_MAX;
	const char *pick = NULL;

	for (size_t i = 0; i < n; i++) {
		size_t d = edit_distance(word, cands[i]);
		if (d < best) {
			best = d;
			pick = cands[i];
		}
	}
	return best <= limit ? pick : NULL;
}

int parse_duration(const char *s, long long max_s, long long *out)
{
	long long total = 0;
	int any = 0;

	while (*s) {
		long long v = 0, mul;
		int digits = 0;

		while (*s == ' ')
			s++;
		if (!*s)
			break;
		while (*s >= '0' && *s <= '9') {
			if (v > (LLONG_MAX - 9) / 10)
				return ERR_INVALID;
			v = v * 10 + (*s++ - '0');
			digits++;
		}
		if (!digits)
			return ERR_INVALID;
		switch (*s) {
		case 'd': mul = 86400; s++; break;
		case 'h': mul = 3600; s++; break;
		case 'm': mul = 60; s++; break;
		case 's': mul = 1; s++; break;
		case '\0': case ' ': mul = 1; break;
		default: return ERR_INVALID;
		}
		if (v > max_s / mul || total > max_s - v * mul)
			return ERR_INVALID;
		total += v * mul;
		any = 1;
	}
	if (!any)
		return ERR_INVALID;
	*out = total;
	return 0;
}

void format_duration(double secs, char *out, size_t size)
{
	long long t = secs < 0 ? 0 : (long long)secs;

	if (t >= 3600)
		snprintf(out, size, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(out, size, "%lld:%02lld", t / 60, t % 60);
}

double now_wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int parse_int(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	/* Digits with an optional '-': strtoll would also take leading
	 * space and '+', so that " 3" and "+3" named run 3. */
	if (!s || !(isdigit((unsigned char)*s) || (*s == '-' && isdigit((unsigned char)s[1]))))
		return ERR_INVALID;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return ERR_INVALID;
	*out = v;
	return 0;
}

void strv_push_owned(struct strv *sv, char *s)
{
	if (sv->n + 2 > sv->cap) {
		sv->cap = sv->cap ? sv->cap * 2 : 8;
		sv->v = xrealloc(sv->v, sv->cap * sizeof(*sv->v));
	}
	sv->v[sv->n++] = s;
	sv->v[sv->n] = NULL;
}

void strv_push(struct strv *sv, const char *s)
{
	strv_push_owned(sv, xstrdup(s));
}

void strv_free(struct strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
	sv->v = NULL;
	sv->n = sv->cap = 0;
}

long strv_find(const struct strv *sv, const char *s)
{
	for (size_t i = 0; i < sv->n; i++)
		if (!strcmp(sv->v[i], s))
			return (long)i;
	return -1;
}
