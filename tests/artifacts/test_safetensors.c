/* tests/artifacts/test_safetensors.c — the strict reader against a corpus
 * of malformed files built here (one per rule, each rejected with its rule
 * named), what it must accept (padding, empty files, scalars, zero-sized
 * tensors), a round trip of every dtype, writer determinism whatever the
 * call order, and atomicity: no file on failure, no temp left, a kill
 * before the rename leaves nothing that looks complete. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "artifacts/safetensors.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/fs.h"

#include "tests/tmpdir.h"

/* Writes 8-byte length (hlen, or the header's own length when hlen is
 * (uint64_t)-1), the header and ndata bytes of data. */
static char *mkfile_len(const char *name, uint64_t hlen, const char *header,
			size_t hbytes, size_t ndata)
{
	char *path = fs_join(tmpdir, name);
	struct buf b = BUF_INIT;
	struct err e;
	unsigned char len8[8];

	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)(hlen >> (8 * i));
	buf_add(&b, len8, 8);
	buf_add(&b, header, hbytes);
	for (size_t i = 0; i < ndata; i++)
		buf_addc(&b, (char)i);
	assert_int_equal(fs_write_atomic(path, b.ptr, b.len, 0644, &e), 0);
	buf_free(&b);
	return path;
}

static char *mkfile(const char *name, const char *header, size_t ndata)
{
	return mkfile_len(name, strlen(header), header, strlen(header), ndata);
}

/* st_open must fail with ERR_INVALID naming the file and saying want. */
static void rejects(const char *path, const char *want)
{
	struct st_file *f = (struct st_file *)1;
	struct err e;
	int rc;

	err_clear(&e);
	rc = st_open(path, &f, &e);
	if (rc != ERR_INVALID || !strstr(e.msg, want) || !strstr(e.msg, path))
		fail_msg("'%s': rc %d, message \"%s\"; wanted ERR_INVALID with \"%s\"",
			 path, rc, e.msg, want);
	assert_null(f);
}

static void reject_header(const char *header, size_t ndata, const char *want)
{
	char *p = mkfile("bad.safetensors", header, ndata);
	rejects(p, want);
	free(p);
}

#define T(name, dtype, shape, b, e) \
	"\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape \
	",\"data_offsets\":[" #b "," #e "]}"

static void test_st__rejects_framing(void **state)
{
	char *p;

	p = mkfile_len("short.safetensors", 0, "", 0, 0);
	assert_int_equal(truncate(p, 5), 0);
	rejects(p, "shorter than the 8-byte header length");
	free(p);
	p = mkfile_len("empty.safetensors", 0, "", 0, 0);
	assert_int_equal(truncate(p, 0), 0);
	rejects(p, "shorter than the 8-byte header length");
	free(p);
	p = mkfile_len("long.safetensors", 100000001, "{}", 2, 0);
	rejects(p, "header length 100000001 exceeds the limit of 100000000 bytes");
	free(p);
	p = mkfile_len("huge.safetensors", UINT64_MAX, "{}", 2, 0);
	rejects(p, "exceeds the limit");
	free(p);
	p = mkfile_len("beyond.safetensors", 1000, "{}", 2, 0);
	rejects(p, "header length 1000 runs beyond the end of the file (10 bytes)");
	free(p);
	p = mkfile_len("zero.safetensors", 0, "", 0, 0);
	rejects(p, "header: line 1");
	free(p);
}

static void test_st__rejects_bad_json(void **state)
{
	reject_header("{\"a\": ", 0, "header: line 1, column 7");
	reject_header("{\"a\":{}} x", 0, "header: line 1");
	reject_header("{\"\xff\":{}}", 0, "invalid UTF-8");
	reject_header("{\"a\xc3\":1}", 0, "invalid UTF-8");
	{
		char *p = mkfile_len("nul.safetensors", 12, "{\"a\":\"x\0y\"}", 12, 0);
		rejects(p, "header: line 1, column 8: NUL byte");
		free(p);
	}
	reject_header("[1, 2]", 0, "header is an array, not an object");
	reject_header("\"x\"", 0, "not an object");
}

static void test_st__rejects_bad_entries(void **state)
{
	reject_header("{" T("w", "F33", "[2]", 0, 8) "}", 8,
		      "tensor 'w': unknown dtype 'F33'");
	reject_header("{" T("w", "f32", "[2]", 0, 8) "}", 8, "unknown dtype 'f32'");
	reject_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
		      "tensor 'w': missing field 'data_offsets'");
	reject_header("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
		      "tensor 'w': missing field 'dtype'");
	reject_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],"
		      "\"extra\":1}}", 8, "tensor 'w': unexpected field 'extra'");
	reject_header("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],"
		      "\"data_offsets\":[0,8]}}", 8, "tensor 'w': duplicate field 'dtype'");
	reject_header("{\"w\":[1]}", 0, "tensor 'w': entry is an array, not an object");
	reject_header("{\"w\":3}", 0, "tensor 'w': entry is a number, not an object");
	reject_header("{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
		      "tensor 'w': dtype is a number, not a string");
	reject_header("{" T("w", "F32", "\"2\"", 0, 8) "}", 8,
		      "tensor 'w': shape is a string, not an array");
	reject_header("{" T("w", "F32", "[-2]", 0, 8) "}", 8,
		      "tensor 'w': shape[0] is not a non-negative integer");
	reject_header("{" T("w", "F32", "[1, 2.0]", 0, 8) "}", 8,
		      "tensor 'w': shape[1] is not a non-negative integer");
	reject_header("{" T("w", "F32", "[1e1]", 0, 40) "}", 40,
		      "shape[0] is not a non-negative integer");
	reject_header("{" T("w", "F32", "[99999999999999999999]", 0, 8) "}", 8,
		      "shape[0] is not a non-negative integer");
	reject_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
		      "tensor 'w': data_offsets must be an array [begin, end]");
	reject_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{}}}", 8,
		      "data_offsets must be an array [begin, end]");
	reject_header("{" T("w", "F32", "[2]", -8, 0) "}", 8,
		      "tensor 'w': data_offsets must be non-negative integers");
	reject_header("{" T("w", "F32", "[2]", 0, 8.5) "}", 8,
		      "data_offsets must be non-negative integers");
}

static void test_st__rejects_sizes(void **state)
{
	/* 2^32 · 2^32 overflows 64 bits in numel; 2^62 · 4 in bytes. */
	reject_header("{" T("w", "F32", "[4294967296, 4294967296]", 0, 8) "}", 8,
		      "tensor 'w': shape overflows");
	reject_header("{" T("w", "F32", "[4611686018427387904]", 0, 8) "}", 8,
		      "tensor 'w': shape [4611686018427387904] overflows: numel");
	reject_header("{" T("w", "F32", "[3]", 0, 8) "}", 8,
		      "tensor 'w': size mismatch: data_offsets [0, 8] hold 8 bytes, "
		      "shape [3] of F32 needs 12");
	reject_header("{" T("w", "BF16", "[2, 2]", 0, 16) "}", 16,
		      "size mismatch");
	reject_header("{" T("w", "F32", "[2]", 8, 0) "}", 8,
		      "tensor 'w': data_offsets [8, 0] run backwards");
}

static void test_st__rejects_layout(void **state)
{
	reject_header("{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 4, 12) "}",
		      12, "tensor 'b': data_offsets [4, 12] overlap tensor 'a'");
	reject_header("{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 0, 8) "}",
		      8, "overlap");
	reject_header("{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 12, 20) "}",
		      20, "tensor 'b': gap of 4 bytes before data_offsets [12, 20]");
	reject_header("{" T("a", "F32", "[2]", 4, 12) "}", 12,
		      "tensor 'a': gap of 4 bytes");
	reject_header("{" T("a", "F32", "[4]", 0, 16) "}", 8,
		      "tensor 'a': truncated data: data_offsets [0, 16] run past the end");
	reject_header("{" T("a", "F32", "[2]", 0, 8) "}", 12,
		      "4 trailing bytes after the last tensor's data");
	reject_header("{}", 1, "1 trailing bytes");
	/* A zero-sized tensor inside another one's bytes. */
	reject_header("{" T("a", "F32", "[2]", 0, 8) "," T("z", "F32", "[0]", 4, 4) ","
		      T("b", "F32", "[2]", 8, 16) "}", 16, "overlap");
}

static void test_st__rejects_duplicates_and_metadata(void **state)
{
	reject_header("{" T("w", "F32", "[2]", 0, 8) "," T("w", "F32", "[2]", 8, 16) "}",
		      16, "tensor 'w': duplicate tensor name");
	reject_header("{\"__metadata__\":{\"format\":1}}", 0,
		      "__metadata__ 'format': value is a number, not a string");
	reject_header("{\"__metadata__\":{\"a\":\"x\",\"b\":{}}}", 0,
		      "__metadata__ 'b': value is an object, not a string");
	reject_header("{\"__metadata__\":[]}", 0,
		      "__metadata__ is an array, not an object");
	reject_header("{\"__metadata__\":{},\"__metadata__\":{}}", 0,
		      "duplicate __metadata__ entry");
	reject_header("{\"__metadata__\":{\"a\":\"x\",\"a\":\"y\"}}", 0,
		      "__metadata__: duplicate key 'a'");
}

static void test_st__messages_stay_one_line(void **state)
{
	/* A hostile name: control characters shown escaped, long ones cut. */
	char header[600];
	struct err e;
	struct st_file *f;
	char *p;

	snprintf(header, sizeof(header), "{\"a\\nb%0300d\":{\"dtype\":\"X\","
		 "\"shape\":[],\"data_offsets\":[0,0]}}", 0);
	p = mkfile("ctl.safetensors", header, 0);
	assert_int_equal(st_open(p, &f, &e), ERR_INVALID);
	assert_null(strchr(e.msg, '\n'));
	assert_non_null(strstr(e.msg, "tensor 'a\\nb000"));
	assert_non_null(strstr(e.msg, "...': unknown dtype 'X'"));
	free(p);
}

static void test_st__accepts_padding_scalars_and_empty(void **state)
{
	const char *h = "   {\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
		T("s", "F64", "[]", 0, 8) "," T("z", "I8", "[0, 3]", 8, 8) ","
		T("b", "BOOL", "[3]", 8, 11) "}       ";
	const struct st_tensor *t;
	struct st_file *f;
	struct err e;
	char *p;

	p = mkfile("ok.safetensors", h, 11);
	assert_int_equal(st_open(p, &f, &e), 0);
	assert_string_equal(st_path(f), p);
	assert_int_equal(st_count(f), 3);
	assert_int_equal(st_file_size(f), 8 + strlen(h) + 11);
	t = st_tensor(f, 0);
	assert_string_equal(t->name, "s");
	assert_int_equal(t->ndim, 0);
	assert_int_equal(t->numel, 1);
	assert_int_equal(t->nbytes, 8);
	/* z and b both start at 8: the empty one first. */
	assert_string_equal(st_tensor(f, 1)->name, "z");
	assert_int_equal(st_tensor(f, 1)->numel, 0);
	assert_int_equal(st_tensor(f, 1)->shape[1], 3);
	t = st_find(f, "b");
	assert_non_null(t);
	assert_int_equal(t->dtype, ST_BOOL);
	assert_int_equal(((const unsigned char *)t->data)[2], 10);
	assert_null(st_find(f, "c"));
	assert_null(st_find(f, ""));
	assert_int_equal(st_metadata_count(f), 2);
	assert_string_equal(st_metadata_key(f, 1), "k");
	assert_string_equal(st_metadata_value(f, 1), "v");
	assert_string_equal(st_metadata_get(f, "format"), "pt");
	assert_null(st_metadata_get(f, "nope"));
	st_close(f);
	free(p);

	p = mkfile("empty.safetensors", "{}", 0);
	assert_int_equal(st_open(p, &f, &e), 0);
	assert_int_equal(st_count(f), 0);
	assert_int_equal(st_metadata_count(f), 0);
	assert_null(st_find(f, "x"));
	st_close(f);
	free(p);

	assert_int_equal(st_open_mem("\2\0\0\0\0\0\0\0{}", 10, "mem", &f, &e), 0);
	st_close(f);
	assert_int_equal(st_open_mem("\2\0\0\0\0\0\0\0{]", 10, "mem", &f, &e),
			 ERR_INVALID);
	assert_non_null(strstr(e.msg, "'mem': header: line 1"));
	st_close(NULL);

	p = fs_join(tmpdir, "missing.safetensors");
	assert_int_equal(st_open(p, &f, &e), ERR_SYSTEM);
	assert_non_null(strstr(e.msg, p));
	free(p);
	assert_int_equal(st_open(tmpdir, &f, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "not a regular file"));
}

/* ---- Writer ---- */

struct spec {
	const char *name;
	enum st_dtype dtype;
	size_t shape[3];
	size_t ndim;
};

static const struct spec every_dtype[] = {
	{ "bool", ST_BOOL, { 3 }, 1 },
	{ "u8", ST_U8, { 5 }, 1 },
	{ "i8", ST_I8, { 1, 7 }, 2 },
	{ "f8_e4m3", ST_F8_E4M3, { 9 }, 1 },
	{ "f8_e5m2", ST_F8_E5M2, { 2, 2 }, 2 },
	{ "i16", ST_I16, { 3 }, 1 },
	{ "u16", ST_U16, { 3, 1 }, 2 },
	{ "f16", ST_F16, { 5 }, 1 },
	{ "bf16", ST_BF16, { 2, 3, 1 }, 3 },
	{ "i32", ST_I32, { 3 }, 1 },
	{ "u32", ST_U32, { 1 }, 1 },
	{ "f32", ST_F32, { 2, 3 }, 2 },
	{ "f64", ST_F64, { 0 }, 0 },
	{ "i64", ST_I64, { 3 }, 1 },
	{ "u64", ST_U64, { 2, 0 }, 2 },
};
#define NSPEC (sizeof(every_dtype) / sizeof(*every_dtype))

static size_t spec_bytes(const struct spec *s)
{
	size_t n = dtype_width(s->dtype);

	for (size_t i = 0; i < s->ndim; i++)
		n *= s->shape[i];
	return n;
}

/* Deterministic bytes for tensor k. */
static void fill(unsigned char *p, size_t n, size_t k)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(k * 31 + i * 7 + 1);
}

/* Writes every_dtype to path, declaring in order perm and writing in the
 * reverse, in pieces of piece bytes. */
static void write_all(const char *path, const size_t *perm, size_t piece)
{
	struct st_writer *w;
	struct err e;

	assert_int_equal(st_writer_new(path, &w, &e), 0);
	assert_int_equal(st_writer_set_metadata(w, "z", "last", &e), 0);
	for (size_t i = 0; i < NSPEC; i++) {
		const struct spec *s = &every_dtype[perm[i]];
		if (st_writer_add(w, s->name, s->dtype, s->shape, s->ndim, &e))
			fail_msg("%s", e.msg);
	}
	assert_int_equal(st_writer_set_metadata(w, "format", "pt", &e), 0);
	assert_int_equal(st_writer_begin(w, &e), 0);
	for (size_t i = NSPEC; i-- > 0;) {
		const struct spec *s = &every_dtype[perm[i]];
		size_t n = spec_bytes(s);
		unsigned char data[64];
		assert_true(n <= sizeof(data));
		fill(data, n, perm[i]);
		if (n == 0)
			assert_int_equal(st_writer_write(w, s->name, 0, data, 0, &e), 0);
		for (size_t off = 0; off < n; off += piece) {
			size_t len = n - off < piece ? n - off : piece;
			if (st_writer_write(w, s->name, off, data + off, len, &e))
				fail_msg("%s", e.msg);
		}
	}
	if (st_writer_commit(w, &e))
		fail_msg("%s", e.msg);
	st_writer_free(w);
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void test_st__kill_before_rename_leaves_no_file(void **state)
{
	/* First in the list: base/fault.c reads ANNEAL_FAULT once per process,
	 * so the child must be forked before anything reached a fault point. */
	char *dir = fs_join(tmpdir, "kill"), *path = fs_join(dir, "m.safetensors");
	size_t perm[NSPEC];
	struct err e;
	int status;
	pid_t pid;

	for (size_t i = 0; i < NSPEC; i++)
		perm[i] = i;
	assert_int_equal(fs_mkdir_p(dir, 0755, &e), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		setenv("ANNEAL_FAULT", "safetensors-before-rename", 1);
		write_all(path, perm, 64);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_false(fs_exists(path));
	/* What is left is a temporary name, complete or not. */
	assert_int_equal(count_entries(dir), 1);
	free(path);
	free(dir);
}

static void test_st__round_trip_every_dtype(void **state)
{
	char *path = fs_join(tmpdir, "all.safetensors");
	size_t perm[NSPEC], last_width = 8, next = 0;
	struct st_file *f;
	struct err e;
	unsigned char len8[8];
	FILE *fp;

	for (size_t i = 0; i < NSPEC; i++)
		perm[i] = i;
	write_all(path, perm, 64);
	assert_int_equal(st_open(path, &f, &e), 0);
	assert_int_equal(st_count(f), NSPEC);
	for (size_t k = 0; k < NSPEC; k++) {
		const struct spec *s = &every_dtype[k];
		const struct st_tensor *t = st_find(f, s->name);
		unsigned char want[64];
		assert_non_null(t);
		assert_int_equal(t->dtype, s->dtype);
		assert_int_equal(t->ndim, s->ndim);
		for (size_t d = 0; d < s->ndim; d++)
			assert_int_equal(t->shape[d], s->shape[d]);
		assert_int_equal(t->nbytes, spec_bytes(s));
		fill(want, t->nbytes, k);
		assert_memory_equal(t->data, want, t->nbytes);
		/* Widest first keeps each tensor aligned to its element size. */
		assert_int_equal((uintptr_t)t->data % dtype_width(t->dtype), 0);
	}
	/* File order: by offset; widths never grow. */
	for (size_t i = 0; i < st_count(f); i++) {
		const struct st_tensor *t = st_tensor(f, i);
		assert_int_equal(t->offset, next);
		assert_true(dtype_width(t->dtype) <= last_width);
		last_width = dtype_width(t->dtype);
		next += t->nbytes;
	}
	assert_string_equal(st_metadata_key(f, 0), "format");
	assert_string_equal(st_metadata_get(f, "z"), "last");
	st_close(f);

	/* Header length a multiple of 8, JSON first byte right after. */
	fp = fopen(path, "rb");
	assert_non_null(fp);
	assert_int_equal(fread(len8, 1, 8, fp), 8);
	assert_int_equal(len8[0] % 8, 0);
	assert_int_equal(fgetc(fp), '{');
	fclose(fp);
	free(path);
}

static char *slurp(const char *path, size_t *len)
{
	char *data;
	struct err e;

	assert_int_equal(fs_read_file(path, 1 << 20, &data, len, &e), 0);
	return data;
}

static void test_st__writer_is_deterministic(void **state)
{
	char *a = fs_join(tmpdir, "a.safetensors"), *b = fs_join(tmpdir, "b.safetensors");
	size_t perm[NSPEC], la, lb;
	char *da, *db;
	uint64_t x = 12345;

	for (size_t i = 0; i < NSPEC; i++)
		perm[i] = i;
	write_all(a, perm, 64);
	/* Shuffled declarations and writes, data in 3-byte pieces. */
	for (size_t i = NSPEC - 1; i > 0; i--) {
		size_t j, t;
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		j = (size_t)(x >> 33) % (i + 1);
		t = perm[i], perm[i] = perm[j], perm[j] = t;
	}
	write_all(b, perm, 3);
	da = slurp(a, &la);
	db = slurp(b, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(da, db, la);
	free(da);
	free(db);
	free(a);
	free(b);
}

static void test_st__writer_failures_leave_nothing(void **state)
{
	char *dir = fs_join(tmpdir, "fail"), *path = fs_join(dir, "m.safetensors");
	size_t shape[] = { 4 };
	unsigned char data[16] = { 0 };
	struct st_writer *w;
	struct err e;

	assert_int_equal(fs_mkdir_p(dir, 0755, &e), 0);

	/* A tensor not fully written: commit refuses, nothing remains. */
	assert_int_equal(st_writer_new(path, &w, &e), 0);
	assert_int_equal(st_writer_add(w, "a", ST_F32, shape, 1, &e), 0);
	assert_int_equal(st_writer_add(w, "b", ST_F32, shape, 1, &e), 0);
	assert_int_equal(st_writer_begin(w, &e), 0);
	assert_int_equal(count_entries(dir), 1);   /* the temp */
	assert_int_equal(st_writer_write(w, "a", 0, data, 16, &e), 0);
	assert_int_equal(st_writer_write(w, "b", 0, data, 12, &e), 0);
	assert_int_equal(st_writer_write(w, "b", 12, data, 8, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "tensor 'b': write of 8 bytes at 12 runs past its 16 bytes"));
	assert_int_equal(st_writer_write(w, "c", 0, data, 1, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "tensor 'c': not declared"));
	assert_int_equal(st_writer_commit(w, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "tensor 'b': 12 of 16 bytes written"));
	assert_int_equal(count_entries(dir), 0);
	st_writer_free(w);

	/* Freed before commit: the temp goes. */
	assert_int_equal(st_writer_new(path, &w, &e), 0);
	assert_int_equal(st_writer_add(w, "a", ST_F32, shape, 1, &e), 0);
	assert_int_equal(st_writer_begin(w, &e), 0);
	assert_int_equal(st_writer_write(w, "a", 0, data, 16, &e), 0);
	st_writer_free(w);
	assert_int_equal(count_entries(dir), 0);

	/* Duplicates, reserved and bad names. */
	assert_int_equal(st_writer_new(path, &w, &e), 0);
	assert_int_equal(st_writer_add(w, "a", ST_F32, shape, 1, &e), 0);
	assert_int_equal(st_writer_add(w, "a", ST_F16, shape, 1, &e), 0);
	assert_int_equal(st_writer_add(w, "__metadata__", ST_F16, shape, 1, &e),
			 ERR_INVALID);
	assert_int_equal(st_writer_add(w, "", ST_F16, shape, 1, &e), ERR_INVALID);
	assert_int_equal(st_writer_add(w, "\xff", ST_F16, shape, 1, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "not valid UTF-8"));
	assert_int_equal(st_writer_set_metadata(w, "k", "1", &e), 0);
	assert_int_equal(st_writer_set_metadata(w, "k", "2", &e), ERR_INVALID);
	assert_int_equal(st_writer_begin(w, &e), ERR_INVALID);
	assert_non_null(strstr(e.msg, "tensor 'a': duplicate tensor name"));
	st_writer_free(w);
	assert_int_equal(count_entries(dir), 0);

	/* A directory that does not exist. */
	free(path);
	path = fs_join(tmpdir, "nodir/m.safetensors");
	assert_int_equal(st_writer_new(path, &w, &e), 0);
	assert_int_equal(st_writer_add(w, "a", ST_F32, shape, 1, &e), 0);
	assert_int_equal(st_writer_begin(w, &e), ERR_SYSTEM);
	assert_non_null(strstr(e.msg, path));
	st_writer_free(w);
	assert_false(fs_exists(path));
	free(path);
	free(dir);
}

static void test_st__writes_empty_file(void **state)
{
	char *path = fs_join(tmpdir, "none.safetensors");
	struct st_writer *w;
	struct st_file *f;
	struct err e;

	assert_int_equal(st_writer_new(path, &w, &e), 0);
	assert_int_equal(st_writer_begin(w, &e), 0);
	assert_int_equal(st_writer_commit(w, &e), 0);
	st_writer_free(w);
	assert_int_equal(st_open(path, &f, &e), 0);
	assert_int_equal(st_count(f), 0);
	assert_int_equal(st_file_size(f), 16);   /* 8 + "{}" padded to 8 */
	st_close(f);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_st__kill_before_rename_leaves_no_file),
		cmocka_unit_test(test_st__rejects_framing),
		cmocka_unit_test(test_st__rejects_bad_json),
		cmocka_unit_test(test_st__rejects_bad_entries),
		cmocka_unit_test(test_st__rejects_sizes),
		cmocka_unit_test(test_st__rejects_layout),
		cmocka_unit_test(test_st__rejects_duplicates_and_metadata),
		cmocka_unit_test(test_st__messages_stay_one_line),
		cmocka_unit_test(test_st__accepts_padding_scalars_and_empty),
		cmocka_unit_test(test_st__round_trip_every_dtype),
		cmocka_unit_test(test_st__writer_is_deterministic),
		cmocka_unit_test(test_st__writer_failures_leave_nothing),
		cmocka_unit_test(test_st__writes_empty_file),
	};
	return cmocka_run_group_tests(tests, tmpdir_setup, tmpdir_teardown);
}
