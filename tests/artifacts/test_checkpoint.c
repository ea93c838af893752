/* tests/artifacts/test_checkpoint.c — sharded checkpoints: a small maximum
 * size gives three shards and an index read back equal; one file when it
 * fits; threads writing at once give the same bytes; indexes that lie
 * (missing tensors, extra tensors, a tensor in two shards, paths out of
 * the directory) are refused; a lone shard without its index is refused;
 * what a killed writer left is replaced by the next write. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifacts/checkpoint.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"

#include "tests/tmpdir.h"

#define NT 10
#define ELEMS 16   /* F32: 64 bytes a tensor */

static void tensor_name(char *out, size_t i)
{
	snprintf(out, 32, "layer.%02u", (unsigned)(i % 100));
}

static void tensor_data(float *v, size_t i)
{
	for (size_t k = 0; k < ELEMS; k++)
		v[k] = (float)(i * 100 + k) * 0.5f;
}

struct job {
	struct ckpt_writer *w;
	size_t first, step;
	int rc;
};

static void *write_some(void *arg)
{
	struct job *j = arg;
	struct err e;

	for (size_t i = j->first; i < NT && !j->rc; i += j->step) {
		char name[32];
		float v[ELEMS];
		tensor_name(name, i);
		tensor_data(v, i);
		/* Two pieces, second first. */
		j->rc = ckpt_writer_write(j->w, name, 32, (char *)v + 32, 32, &e);
		if (!j->rc)
			j->rc = ckpt_writer_write(j->w, name, 0, v, 32, &e);
	}
	return NULL;
}

/* Writes NT tensors into dir with max bytes a shard, nthreads at once. */
static size_t write_ckpt(const char *dir, size_t max, int nthreads)
{
	size_t shape[] = { 4, 4 }, n;
	struct ckpt_writer *w;
	pthread_t th[8];
	struct job jobs[8];
	struct err e;

	assert_int_equal(ckpt_writer_new(dir, max, &w, &e), 0);
	for (size_t i = NT; i-- > 0;) {
		char name[32];
		tensor_name(name, i);
		assert_int_equal(ckpt_writer_add(w, name, ST_F32, shape, 2, &e), 0);
	}
	assert_int_equal(ckpt_writer_set_metadata(w, "format", "pt", &e), 0);
	if (ckpt_writer_begin(w, &e))
		fail_msg("%s", e.msg);
	for (int t = 0; t < nthreads; t++) {
		jobs[t] = (struct job){ w, (size_t)t, (size_t)nthreads, 0 };
		assert_int_equal(pthread_create(&th[t], NULL, write_some, &jobs[t]), 0);
	}
	for (int t = 0; t < nthreads; t++) {
		assert_int_equal(pthread_join(th[t], NULL), 0);
		assert_int_equal(jobs[t].rc, 0);
	}
	if (ckpt_writer_commit(w, &e))
		fail_msg("%s", e.msg);
	n = ckpt_writer_nshards(w);
	ckpt_writer_free(w);
	return n;
}

static void check_ckpt(const char *path, size_t nfiles)
{
	struct ckpt *c;
	struct err e;

	if (ckpt_open(path, &c, &e))
		fail_msg("%s", e.msg);
	assert_int_equal(ckpt_nfiles(c), nfiles);
	assert_int_equal(ckpt_count(c), NT);
	assert_int_equal(ckpt_data_size(c), NT * ELEMS * 4);
	for (size_t i = 0; i < NT; i++) {
		char name[32];
		float v[ELEMS];
		const struct st_tensor *t;
		tensor_name(name, i);
		tensor_data(v, i);
		t = ckpt_find(c, name);
		assert_non_null(t);
		assert_ptr_equal(ckpt_tensor(c, i), t);   /* sorted by name */
		assert_int_equal(t->nbytes, sizeof(v));
		assert_memory_equal(t->data, v, sizeof(v));
		assert_string_equal(st_metadata_get(ckpt_tensor_file(c, i), "format"), "pt");
	}
	assert_null(ckpt_find(c, "layer.10"));
	ckpt_close(c);
}

static char *path_in(const char *dir, const char *name)
{
	return fs_join(dir, name);
}

static char *read_text(const char *path)
{
	char *s;
	size_t len;
	struct err e;

	assert_int_equal(fs_read_file(path, 1 << 20, &s, &len, &e), 0);
	return s;
}

static void put_text(const char *path, const char *s)
{
	struct err e;

	assert_int_equal(fs_write_atomic(path, s, strlen(s), 0644, &e), 0);
}

static void test_ckpt__three_shards_and_index(void **state)
{
	char *dir = fs_join(tmpdir, "sharded"), *p, *idx;

	/* 64-byte tensors, 256-byte shards: 4 + 4 + 2. */
	assert_int_equal(write_ckpt(dir, 256, 1), 3);
	for (int k = 1; k <= 3; k++) {
		char name[64];
		snprintf(name, sizeof(name), "model-%05d-of-00003.safetensors", k);
		p = path_in(dir, name);
		assert_true(fs_exists(p));
		free(p);
	}
	p = path_in(dir, "model.safetensors");
	assert_false(fs_exists(p));
	free(p);
	p = path_in(dir, CKPT_INDEX);
	idx = read_text(p);
	assert_non_null(strstr(idx, "\"total_size\": 640"));
	assert_non_null(strstr(idx, "\"layer.03\": \"model-00001-of-00003.safetensors\""));
	assert_non_null(strstr(idx, "\"layer.04\": \"model-00002-of-00003.safetensors\""));
	assert_non_null(strstr(idx, "\"layer.09\": \"model-00003-of-00003.safetensors\""));
	free(idx);
	check_ckpt(dir, 3);
	check_ckpt(p, 3);   /* the index itself */
	free(p);
	p = path_in(dir, "model-00002-of-00003.safetensors");
	{
		struct ckpt *c;
		struct err e;
		assert_int_equal(ckpt_open(p, &c, &e), 0);   /* one shard as a file */
		assert_int_equal(ckpt_count(c), 4);
		ckpt_close(c);
	}
	free(p);
	free(dir);
}

static void test_ckpt__threads_give_the_same_bytes(void **state)
{
	char *a = fs_join(tmpdir, "one"), *b = fs_join(tmpdir, "four");

	assert_int_equal(write_ckpt(a, 300, 1), 3);
	assert_int_equal(write_ckpt(b, 300, 4), 3);
	for (int k = 1; k <= 4; k++) {
		char name[64], *pa, *pb, *da, *db;
		size_t la, lb;
		struct err e;
		if (k == 4)
			snprintf(name, sizeof(name), CKPT_INDEX);
		else
			snprintf(name, sizeof(name), "model-%05d-of-00003.safetensors", k);
		pa = path_in(a, name);
		pb = path_in(b, name);
		assert_int_equal(fs_read_file(pa, 1 << 20, &da, &la, &e), 0);
		assert_int_equal(fs_read_file(pb, 1 << 20, &db, &lb, &e), 0);
		assert_int_equal(la, lb);
		assert_memory_equal(da, db, la);
		free(da), free(db), free(pa), free(pb);
	}
	free(a);
	free(b);
}

static void test_ckpt__one_file_when_it_fits(void **state)
{
	char *dir = fs_join(tmpdir, "single"), *p;
	struct ckpt_writer *w;
	struct err e;

	assert_int_equal(write_ckpt(dir, 1 << 20, 2), 1);
	p = path_in(dir, CKPT_INDEX);
	assert_false(fs_exists(p));
	free(p);
	p = path_in(dir, CKPT_SINGLE);
	check_ckpt(p, 1);
	free(p);
	check_ckpt(dir, 1);

	/* A directory that already holds a checkpoint is refused. */
	assert_int_equal(ckpt_writer_new(dir, 0, &w, &e), 0);
	assert_int_equal(ckpt_writer_begin(w, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "already holds a checkpoint"));
	ckpt_writer_free(w);
	free(dir);
}

static void test_ckpt__oversized_tensor_gets_its_own_shard(void **state)
{
	char *dir = fs_join(tmpdir, "big");
	size_t small[] = { 2 }, big[] = { 100 };
	unsigned char data[400] = { 0 };
	struct ckpt_writer *w;
	struct ckpt *c;
	struct err e;

	assert_int_equal(ckpt_writer_new(dir, 16, &w, &e), 0);
	assert_int_equal(ckpt_writer_add(w, "a", ST_F32, small, 1, &e), 0);
	assert_int_equal(ckpt_writer_add(w, "b", ST_F32, big, 1, &e), 0);
	assert_int_equal(ckpt_writer_add(w, "c", ST_F32, small, 1, &e), 0);
	assert_int_equal(ckpt_writer_add(w, "d", ST_F32, small, 1, &e), 0);
	assert_int_equal(ckpt_writer_begin(w, &e), 0);
	assert_int_equal(ckpt_writer_nshards(w), 3);   /* a | b | c d */
	assert_int_equal(ckpt_writer_write(w, "a", 0, data, 8, &e), 0);
	assert_int_equal(ckpt_writer_write(w, "b", 0, data, 400, &e), 0);
	assert_int_equal(ckpt_writer_write(w, "c", 0, data, 8, &e), 0);
	assert_int_equal(ckpt_writer_write(w, "e", 0, data, 8, &e), ERR_INVALID);
	/* d never written: nothing stays, not even the shards committed. */
	assert_int_equal(ckpt_writer_commit(w, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "tensor 'd': 0 of 8 bytes written"));
	ckpt_writer_free(w);
	assert_int_equal(ckpt_open(dir, &c, &e), ERR_NOTFOUND);
	free(dir);
}

/* A three-shard checkpoint in dir, then the index replaced by text. */
static void lie(const char *name, const char *index, const char *want)
{
	char *dir = fs_join(tmpdir, name), *p;
	struct ckpt *c = NULL;
	struct err e;
	int rc;

	write_ckpt(dir, 256, 1);
	p = path_in(dir, CKPT_INDEX);
	put_text(p, index);
	rc = ckpt_open(dir, &c, &e);
	if (rc != ERR_INVALID || !strstr(e.msg, want))
		fail_msg("rc %d, \"%s\"; wanted \"%s\"", rc, e.msg, want);
	assert_null(c);
	free(p);
	free(dir);
}

#define S1 "\"model-00001-of-00003.safetensors\""
#define S2 "\"model-00002-of-00003.safetensors\""
#define S3 "\"model-00003-of-00003.safetensors\""
#define MAP_OK "\"layer.00\":" S1 ",\"layer.01\":" S1 ",\"layer.02\":" S1 "," \
	"\"layer.03\":" S1 ",\"layer.04\":" S2 ",\"layer.05\":" S2 ",\"layer.06\":" S2 "," \
	"\"layer.07\":" S2 ",\"layer.08\":" S3

static void test_ckpt__refuses_lying_indexes(void **state)
{
	struct ckpt *c;
	struct err e;
	char *dir, *p;

	/* total_size is informational: wrong or absent is fine. */
	dir = fs_join(tmpdir, "lenient");
	write_ckpt(dir, 256, 1);
	p = path_in(dir, CKPT_INDEX);
	put_text(p, "{\"metadata\":{\"total_size\":\"lots\"},\"weight_map\":{" MAP_OK
		 ",\"layer.09\":" S3 "}}");
	assert_int_equal(ckpt_open(dir, &c, &e), 0);
	ckpt_close(c);
	put_text(p, "{\"weight_map\":{" MAP_OK ",\"layer.09\":" S3 "}}");
	assert_int_equal(ckpt_open(dir, &c, &e), 0);
	ckpt_close(c);
	free(p);
	free(dir);

	lie("l1", "{\"weight_map\":{" MAP_OK "}}",
	    "tensor 'layer.09' of shard 'model-00003-of-00003.safetensors' is not in the index");
	lie("l2", "{\"weight_map\":{" MAP_OK ",\"layer.09\":" S3 ",\"layer.10\":" S3 "}}",
	    "tensor 'layer.10': not in its shard 'model-00003-of-00003.safetensors'");
	lie("l3", "{\"weight_map\":{" MAP_OK ",\"layer.09\":" S2 "}}",
	    "tensor 'layer.09': not in its shard 'model-00002-of-00003.safetensors' "
	    "(it is in 'model-00003-of-00003.safetensors')");
	lie("l4", "{\"weight_map\":{" MAP_OK ",\"layer.09\":" S3 ",\"layer.09\":" S3 "}}",
	    "weight_map: duplicate tensor 'layer.09'");
	lie("l5", "{\"weight_map\":{" MAP_OK ",\"layer.09\":\"../x.safetensors\"}}",
	    "shard '../x.safetensors' is not a plain file name");
	lie("l6", "{\"weight_map\":{" MAP_OK ",\"layer.09\":\"sub/x.safetensors\"}}",
	    "not a plain file name");
	lie("l7", "{\"weight_map\":{" MAP_OK ",\"layer.09\":3}}",
	    "tensor 'layer.09': shard is a number, not a string");
	lie("l8", "{\"metadata\":{}}", "no \"weight_map\" object");
	lie("l9", "{\"weight_map\":{" MAP_OK ",\"layer.09\":\"gone.safetensors\"}}",
	    "shard 'gone.safetensors' does not exist");
	lie("l10", "{\"weight_map\":", "line 1");

	/* A tensor in two shards: copy shard 1 over shard 3's name... */
	dir = fs_join(tmpdir, "twice");
	write_ckpt(dir, 256, 1);
	{
		char *a = path_in(dir, "model-00001-of-00003.safetensors");
		char *b = path_in(dir, "model-00002-of-00003.safetensors");
		char *data;
		size_t len;
		assert_int_equal(fs_read_file(a, 1 << 20, &data, &len, &e), 0);
		assert_int_equal(fs_write_atomic(b, data, len, 0644, &e), 0);
		assert_int_equal(ckpt_open(dir, &c, &e), ERR_INVALID);
		assert_non_null(strstr(e.msg, "tensor 'layer.00' is in two shards"));
		free(data), free(a), free(b);
	}
	free(dir);
}

static void test_ckpt__directories_without_index(void **state)
{
	char *dir = fs_join(tmpdir, "noindex"), *p;
	struct ckpt *c;
	struct err e;

	/* A dead writer's leftovers: shards, no index. */
	write_ckpt(dir, 256, 1);
	p = path_in(dir, CKPT_INDEX);
	assert_int_equal(unlink(p), 0);
	free(p);
	assert_int_equal(ckpt_open(dir, &c, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "3 .safetensors files"));
	p = path_in(dir, "model-00002-of-00003.safetensors");
	assert_int_equal(unlink(p), 0);
	free(p);
	p = path_in(dir, "model-00003-of-00003.safetensors");
	assert_int_equal(unlink(p), 0);
	free(p);
	assert_int_equal(ckpt_open(dir, &c, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "is one shard of several"));

	/* Renamed to anything else, the lone file is the checkpoint. */
	{
		char *a = path_in(dir, "model-00001-of-00003.safetensors");
		char *b = path_in(dir, "weights.safetensors");
		assert_int_equal(rename(a, b), 0);
		assert_int_equal(ckpt_open(dir, &c, &e), 0);
		assert_int_equal(ckpt_count(c), 4);
		assert_int_equal(ckpt_nfiles(c), 1);
		ckpt_close(c);
		free(a), free(b);
	}
	free(dir);

	/* Empty directory. */
	dir = fs_join(tmpdir, "empty");
	assert_int_equal(fs_mkdir_p(dir, 0755, &e), 0);
	assert_int_equal(ckpt_open(dir, &c, &e), ERR_NOTFOUND);
	assert_non_null(strstr(e.msg, "no .safetensors file"));
	free(dir);

	/* model.safetensors wins over others. */
	dir = fs_join(tmpdir, "prefer");
	write_ckpt(dir, 0, 1);
	p = path_in(dir, "other.safetensors");
	put_text(p, "not even a safetensors file");
	check_ckpt(dir, 1);
	free(p);
	free(dir);
}

/* A writer killed between its shards' renames leaves shards without an
 * index (and temporary files): readers refuse it (above), and the next
 * write into the directory replaces it, where a finished checkpoint is
 * still refused and a live writer's directory is not touched. */
static void test_ckpt__rewrites_what_a_killed_writer_left(void **state)
{
	char *dir = fs_join(tmpdir, "killed"), *p, *tmp;
	size_t shape[] = { 4, 4 };
	struct ckpt_writer *w, *w2;
	struct err e;

	write_ckpt(dir, 256, 1);
	p = path_in(dir, CKPT_INDEX);
	assert_int_equal(unlink(p), 0);
	free(p);
	p = path_in(dir, "model-00003-of-00003.safetensors");
	tmp = path_in(dir, "model-00003-of-00003.safetensors.tmp.Ab12Cd");
	assert_int_equal(rename(p, tmp), 0);
	assert_int_equal(write_ckpt(dir, 256, 1), 3);
	check_ckpt(dir, 3);
	assert_false(fs_exists(tmp));
	free(tmp);
	free(p);

	/* Finished: refused. */
	assert_int_equal(ckpt_writer_new(dir, 256, &w, &e), 0);
	assert_int_equal(ckpt_writer_add(w, "x", ST_F32, shape, 2, &e), 0);
	assert_int_equal(ckpt_writer_begin(w, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "already holds a checkpoint"));
	ckpt_writer_free(w);
	check_ckpt(dir, 3);
	free(dir);

	/* Being written: the second writer is refused, the first's files
	 * stay; once the first is gone, the directory is free again. */
	dir = fs_join(tmpdir, "busy");
	assert_int_equal(ckpt_writer_new(dir, 0, &w, &e), 0);
	assert_int_equal(ckpt_writer_add(w, "x", ST_F32, shape, 2, &e), 0);
	assert_int_equal(ckpt_writer_begin(w, &e), 0);
	assert_int_equal(ckpt_writer_new(dir, 0, &w2, &e), 0);
	assert_int_equal(ckpt_writer_add(w2, "x", ST_F32, shape, 2, &e), 0);
	assert_int_equal(ckpt_writer_begin(w2, &e), ERR_BUSY);
	assert_non_null(strstr(e.msg, "another process is writing"));
	ckpt_writer_free(w2);
	ckpt_writer_free(w);
	assert_int_equal(write_ckpt(dir, 0, 1), 1);
	check_ckpt(dir, 1);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ckpt__three_shards_and_index),
		cmocka_unit_test(test_ckpt__threads_give_the_same_bytes),
		cmocka_unit_test(test_ckpt__one_file_when_it_fits),
		cmocka_unit_test(test_ckpt__oversized_tensor_gets_its_own_shard),
		cmocka_unit_test(test_ckpt__refuses_lying_indexes),
		cmocka_unit_test(test_ckpt__directories_without_index),
		cmocka_unit_test(test_ckpt__rewrites_what_a_killed_writer_left),
	};
	return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
