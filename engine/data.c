/* engine/data.c — see data.h. */
#include "engine/data.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"
#include "pipeline/json.h"

int dataset_parse(struct dataset *d, const char *name, const char *text,
		  size_t len, struct err *err)
{
	size_t cap = 0, lineno = 0;
	const char *p, *end;
	int rc = 0;

	memset(d, 0, sizeof(*d));
	d->path = xstrdup(name);
	d->text = xmalloc(len + 1);
	memcpy(d->text, text, len);
	d->text[len] = '\0';
	p = d->text;
	end = d->text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct dline *l;

		lineno++;
		if (n && p[n - 1] == '\r')
			n--;
		if (n) {
			if (d->n == cap) {
				cap = cap ? cap * 2 : 1024;
				d->lines = xrealloc(d->lines, cap * sizeof(*d->lines));
			}
			l = &d->lines[d->n];
			l->s = p;
			l->len = n;
			l->lineno = lineno;
			if (task_parse(p, n, &l->p, &l->mode, &l->has_mode, &l->plen) < 0) {
				char show[JSON_SHOW_MAX], *cut = xstrndup(p, n);
				json_show(cut, show, sizeof(show));
				free(cut);
				rc = err_set(err, ERR_INVALID,
					     "'%s' line %zu: not an example, prompt or problem: '%s'",
					     name, lineno, show);
				break;
			}
			d->n++;
		}
		p += (nl ? (size_t)(nl - p) + 1 : (size_t)(end - p));
	}
	return rc;
}

int dataset_load(struct dataset *d, const char *dir, struct err *err)
{
	char *path = fs_join(dir, DATA_FILE), *text = NULL;
	size_t len = 0;
	int rc;

	memset(d, 0, sizeof(*d));
	rc = fs_read_file(path, DATA_MAX_BYTES, &text, &len, err);
	if (rc && !fs_exists(path))
		rc = err_set(err, ERR_INVALID, "'%s': no such file (not a dataset?)", path);
	if (!rc)
		rc = dataset_parse(d, path, text, len, err);
	free(text);
	free(path);
	return rc;
}

void dataset_free(struct dataset *d)
{
	if (!d)
		return;
	free(d->path);
	free(d->text);
	free(d->lines);
	memset(d, 0, sizeof(*d));
}

void seqs_free(struct seqs *s)
{
	free(s->ids);
	free(s->off);
	free(s->len);
	free(s->plen);
	memset(s, 0, sizeof(*s));
}

int seqs_add(struct seqs *s, const char *text, size_t len, size_t plen)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->off = xrealloc(s->off, s->cap * sizeof(*s->off));
		s->len = xrealloc(s->len, s->cap * sizeof(*s->len));
		s->plen = xrealloc(s->plen, s->cap * sizeof(*s->plen));
	}
	if (s->nids + len > s->capids) {
		while (s->nids + len > s->capids)
			s->capids = s->capids ? s->capids * 2 : 65536;
		s->ids = xrealloc(s->ids, s->capids);
	}
	if (task_encode(text, len, s->ids + s->nids) < 0)
		return -1;
	s->off[s->n] = s->nids;
	s->len[s->n] = (uint32_t)len;
	s->plen[s->n] = (uint32_t)plen;
	s->nids += len;
	s->n++;
	if (len > s->maxlen)
		s->maxlen = len;
	return 0;
}

int seqs_from_examples(struct seqs *s, const struct dataset *d, struct err *err)
{
	for (size_t i = 0; i < d->n; i++) {
		const struct dline *l = &d->lines[i];

		if (!l->has_mode || l->plen >= l->len)
			return err_set(err, ERR_INVALID,
				       "'%s' line %zu: a prompt or a bare problem, "
				       "not a full example", d->path, l->lineno);
		if (l->len > TASK_MAX_LEN)
			return err_set(err, ERR_INVALID, "'%s' line %zu: longer than %d characters",
				       d->path, l->lineno, TASK_MAX_LEN);
		if (seqs_add(s, l->s, l->len, l->plen) < 0)
			return err_set(err, ERR_INVALID, "'%s' line %zu: a character outside the vocabulary",
				       d->path, l->lineno);
	}
	if (!s->n)
		return err_set(err, ERR_INVALID, "'%s': no examples", d->path);
	return 0;
}
