/* engine/data.h — datasets as the reference engine stores them: a
 * directory with data.txt, one example per line in task.h's formats (a
 * full example "S:347+58|...;", a prompt "A:347+58" or a bare problem
 * "347+58"), and training sequences: examples encoded to token ids, with
 * where their completion starts. */
#ifndef ANNEAL_ENGINE_DATA_H
#define ANNEAL_ENGINE_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "engine/task.h"

struct err;

#define DATA_FILE "data.txt"
/* data.txt larger than this is refused (the task's lines are short). */
#define DATA_MAX_BYTES ((size_t)1 << 31)

struct dline {
	const char *s;          /* into the dataset's text; not NUL-terminated */
	size_t len;
	struct problem p;
	enum task_mode mode;    /* MODE_SLOW for a bare problem */
	int has_mode;
	size_t plen;            /* prompt length within s (len: no completion) */
	size_t lineno;          /* 1-based, in the file */
};

struct dataset {
	char *path;             /* DIR/data.txt, for messages */
	char *text;
	struct dline *lines;
	size_t n;
};

/* Reads DIR/data.txt and parses every non-empty line; ERR_INVALID naming
 * the file and line number of the first line that is not in a task format. */
int dataset_load(struct dataset *d, const char *dir, struct err *err);
/* The same from a buffer (text is copied); name is used in messages. */
int dataset_parse(struct dataset *d, const char *name, const char *text,
		  size_t len, struct err *err);
void dataset_free(struct dataset *d);   /* NULL-safe */

/* Encoded training sequences (token ids). */
struct seqs {
	uint8_t *ids;
	size_t *off;            /* sequence i is ids[off[i] .. off[i] + len[i]) */
	uint32_t *len, *plen;   /* length, prompt length */
	size_t n, cap, nids, capids;
	size_t maxlen;
};

void seqs_free(struct seqs *s);   /* zeroes s */
/* Appends text[0..len) with prompt length plen; -1 if a character is
 * outside the vocabulary. */
int seqs_add(struct seqs *s, const char *text, size_t len, size_t plen);
/* The dataset's full examples (lines with a completion) as sequences;
 * ERR_INVALID naming the file and line of a line that is not one (a
 * prompt or a bare problem). */
int seqs_from_examples(struct seqs *s, const struct dataset *d, struct err *err);

#endif
