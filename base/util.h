/* base/util.h — small helpers shared by every module: "did you mean",
 * durations, clocks, string vectors. */
#ifndef ANNEAL_UTIL_H
#define ANNEAL_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The candidate closest to word by edit distance, if close enough to be a
 * plausible typo (distance <= max(1, len/3)); else NULL. Borrowed from
 * cands. */
const char *did_you_mean(const char *word, const char *const *cands, size_t n);

/* Parses "90", "90s", "1h30m", "2d", "1h 5m 3s" into seconds. Returns 0 or
 * ERR_INVALID (empty, unknown unit, overflow past max_s). */
int parse_duration(const char *s, long long max_s, long long *out);

/* Formats seconds as "0:42", "1:02:03" into out (size >= 32). */
void format_duration(double secs, char *out, size_t size);

/* Wall clock, seconds since the epoch, with sub-second precision. */
double now_wall(void);
/* Monotonic clock in seconds. */
double now_mono(void);

/* Parses a decimal integer in [min, max]; whole string. 0 or ERR_INVALID. */
int parse_int(const char *s, long long min, long long max, long long *out);

/* NULL-terminated vector of malloc'd strings. */
struct strv {
	char **v;
	size_t n;
	size_t cap;
};
#define STRV_INIT { NULL, 0, 0 }
void strv_push(struct strv *sv, const char *s);        /* copies s */
void strv_push_owned(struct strv *sv, char *s);        /* takes s */
void strv_free(struct strv *sv);
/* Index of s in sv, or -1. */
long strv_find(const struct strv *sv, const char *s);

#endif
