/* tests/fuzz/fuzz_ref.c — libFuzzer target for artifact references, the
 * REF of `anneal show/lineage/export/audit/merge`: catalog_ref_parse (the
 * grammar) and catalog_resolve / catalog_tag (pipeline/catalog.c) against
 * a real state store (":memory:") holding student@1..3, data-set@1, an
 * intermediate and the alias "best" (student@2).
 *
 * Input: byte 0 picks the mode (bit 0: tag), the rest up to a NUL is the
 * REF (an argv word cannot hold a NUL).
 *
 * Invariants. Parsing: "" and NAME@<not a positive number> are refused
 * with one printable line; NAME@N comes back as exactly the text it was
 * parsed from ("%s@%d"); any other REF is a word, a digest prefix exactly
 * when it is 6 to 64 lowercase hex digits. Resolving agrees with the
 * catalog both ways: what it finds is that name at that version, or the
 * latest version of the name, or the artifact the alias names, or the one
 * artifact whose digest or lineage digest starts with the prefix; and each
 * of those present in the catalog is found. A refusal is ERR_NOTFOUND or
 * ERR_INVALID with one printable line (control characters of the REF are
 * escaped). Tagging: an alias catalog_tag accepts resolves to the artifact
 * it was set on (then the store is rebuilt, so that inputs stay
 * independent). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/hash.h"
#include "pipeline/catalog.h"
#include "pipeline/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct state *st;

/* Every artifact of the fixture, as catalog_each gives it. */
#define MAX_ARTS 8
static struct artifact_info arts[MAX_ARTS];
static size_t narts;
static int64_t data_set_id, best_id;

static int64_t reg(const char *name, const char *word)
{
	char digest[DIGEST_HEX_LEN + 1], fhex[DIGEST_HEX_LEN + 1], manifest[200];
	struct artifact_new a = { 0 };
	struct digest d;
	struct err e;
	int64_t id = 0;
	int v, c;

	sha256_buf(word, strlen(word), &d);
	digest_hex(&d, fhex);
	snprintf(manifest, sizeof(manifest), "%s %zu 644 data.bin\n", fhex, strlen(word));
	sha256_buf(manifest, strlen(manifest), &d);
	digest_hex(&d, digest);
	a.kind = name ? AK_OUTPUT : AK_INTERMEDIATE;
	a.name = name;
	a.type = ART_CHECKPOINT;
	a.digest = digest;
	a.manifest = manifest;
	a.bytes = strlen(word);
	a.files = 1;
	a.step_key = "key";
	a.recipe_digest = "recipe";
	a.engine_step = -1;
	if (catalog_register(st, &a, &id, &v, &c, &e))
		abort();
	return id;
}

static int keep(void *ctx, const struct artifact_info *a)
{
	struct artifact_info *dst;

	(void)ctx;
	if (narts == MAX_ARTS)
		abort();
	dst = &arts[narts++];
	*dst = *a;
	/* Borrowed strings: keep only what the checks use. */
	dst->name = a->name ? xstrdup(a->name) : NULL;
	dst->aliases = NULL;
	dst->naliases = 0;
	dst->step = dst->step_key = dst->recipe_digest = NULL;
	dst->git_commit = dst->git_dirty = dst->origin = dst->path = NULL;
	return 0;
}

static void fixture(void)
{
	struct err e;

	for (size_t i = 0; i < narts; i++)
		free(arts[i].name);
	narts = 0;
	state_close(st);
	if (state_open(":memory:", &st, &e))
		abort();
	reg("student", "one");
	best_id = reg("student", "two");
	reg("student", "three");
	data_set_id = reg("data-set", "rows");
	reg(NULL, "intermediate");
	if (catalog_tag(st, "best", best_id, &e) || catalog_each(st, keep, NULL, &e))
		abort();
}

/* One printable line: control characters must have been escaped. */
static void check_msg(const struct err *e)
{
	if (!e->msg[0])
		abort();
	for (const unsigned char *p = (const unsigned char *)e->msg; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			abort();
}

static int is_lower_hex(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

/* The id ref must resolve to by the fixture, 0 for none, -1 for an
 * ambiguous prefix. Names first, then aliases, then digest prefixes. */
static int64_t expected(const struct catalog_ref *r, const char *ref)
{
	int64_t hit = 0;
	int v = 0;

	if (r->form == REF_VERSION) {
		for (size_t i = 0; i < narts; i++)
			if (arts[i].name && !strcmp(arts[i].name, r->name) &&
			    arts[i].version == r->version)
				return arts[i].id;
		return 0;
	}
	for (size_t i = 0; i < narts; i++)
		if (arts[i].name && !strcmp(arts[i].name, ref) && arts[i].version > v) {
			v = arts[i].version;
			hit = arts[i].id;
		}
	if (hit)
		return hit;
	if (!strcmp(ref, "best"))
		return best_id;
	if (!r->digest_prefix)
		return 0;
	for (size_t i = 0; i < narts; i++)
		if (!strncmp(arts[i].digest, ref, strlen(ref)) ||
		    !strncmp(arts[i].lineage, ref, strlen(ref))) {
			if (hit)
				return -1;
			hit = arts[i].id;
		}
	return hit;
}

static void check_resolve(const char *ref)
{
	struct catalog_ref r;
	struct err e, e2;
	int64_t id = 0, want;
	int rc, rc2;
	size_t len = strlen(ref);

	err_clear(&e);
	err_clear(&e2);
	rc = catalog_ref_parse(ref, &r, &e);
	rc2 = catalog_resolve(st, ref, &id, &e2);
	if (rc) {
		if (rc != ERR_INVALID || r.name || rc2 != rc || id)
			abort();
		check_msg(&e);
		check_msg(&e2);
		return;
	}
	if (r.form == REF_VERSION) {
		char again[4200];
		if (!r.name || !*r.name || r.version < 1 || r.digest_prefix ||
		    len >= sizeof(again) - 16)
			abort();
		snprintf(again, sizeof(again), "%s@%d", r.name, r.version);
		if (strcmp(again, ref))
			abort();
	} else {
		if (r.form != REF_WORD || !r.name || strcmp(r.name, ref) ||
		    r.digest_prefix != (len >= 6 && len <= DIGEST_HEX_LEN && is_lower_hex(ref)))
			abort();
	}
	want = expected(&r, ref);
	if (want > 0) {
		if (rc2 || id != want)
			abort();
	} else if (want < 0) {
		if (rc2 != ERR_INVALID)
			abort();
		check_msg(&e2);
	} else {
		if (rc2 != ERR_NOTFOUND || id)
			abort();
		check_msg(&e2);
	}
	catalog_ref_clear(&r);
}

static void check_tag(const char *alias)
{
	struct err e;
	int64_t id = 0;

	err_clear(&e);
	if (catalog_tag(st, alias, data_set_id, &e)) {
		check_msg(&e);
		return;
	}
	err_clear(&e);
	if (catalog_resolve(st, alias, &id, &e) || id != data_set_id)
		abort();
	fixture();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *ref;

	if (size == 0)
		return 0;
	if (!st)
		fixture();
	ref = xstrndup((const char *)data + 1, size - 1);
	if (data[0] & 1)
		check_tag(ref);
	else
		check_resolve(ref);
	free(ref);
	return 0;
}
