/* artifacts/safetensors.h — one safetensors file: a strict reader over
 * mmap and a writer that never leaves a file that looks complete.
 *
 * The format: 8 bytes little-endian N, N bytes of JSON header, the data
 * buffer. The header maps tensor names to {"dtype", "shape",
 * "data_offsets": [begin, end]} (offsets into the data buffer), plus an
 * optional "__metadata__" object of string to string. The reader rejects
 * anything a careless or hostile writer could produce (see st_open); the
 * sharded form (an index and several files) is artifacts/checkpoint.h. */
#ifndef ANNEAL_SAFETENSORS_H
#define ANNEAL_SAFETENSORS_H

#include <stddef.h>

#include "artifacts/dtype.h"

struct err;

/* Headers longer than this are refused (as Hugging Face's reader does). */
#define ST_HEADER_MAX 100000000

struct st_tensor {
	const char *name;      /* UTF-8, no NUL inside */
	enum st_dtype dtype;
	size_t ndim;
	const size_t *shape;   /* ndim dims; ndim 0 is a scalar */
	size_t numel;          /* product of shape (1 for a scalar) */
	size_t nbytes;         /* numel * dtype_width(dtype) */
	size_t offset;         /* data_offsets[0], from the data buffer */
	const void *data;      /* nbytes in the mapping; no alignment promised */
};

/* ---- Reading ---- */

struct st_file;  /* opaque; immutable once open: any thread may read it */

/* Maps path read-only and validates all of it before returning. Rejects,
 * with ERR_INVALID and a message naming the file, the tensor where there is
 * one, and the rule: a file shorter than 8 bytes; a header length over
 * ST_HEADER_MAX or past the end of the file; a header that is not valid
 * UTF-8 / JSON / an object; a tensor entry that is not an object with
 * exactly "dtype" (a known name), "shape" (non-negative integers) and
 * "data_offsets" (two non-negative integers); duplicate names or fields;
 * numel × width overflowing; end - begin != numel × width; offsets that run
 * backwards, overlap, or leave gaps (sorted by begin, the tensors must tile
 * the data buffer from 0); data that ends before or after the file's end;
 * "__metadata__" that is not an object of strings. Spaces around the JSON
 * are fine (writers pad). ERR_SYSTEM when the file cannot be read.
 * The mapping lives until st_close: a file truncated by someone else under
 * it raises SIGBUS on access, as with any mmap reader. */
int st_open(const char *path, struct st_file **out, struct err *err);

/* The same over a buffer the caller keeps alive and unchanged until
 * st_close; name is used in messages. The fuzz target's entry point. */
int st_open_mem(const void *buf, size_t len, const char *name,
		struct st_file **out, struct err *err);

void st_close(struct st_file *f);   /* NULL-safe */

/* The path (or name) it was opened with. */
const char *st_path(const struct st_file *f);

/* Tensors in file order (by data offset); i < st_count(f). */
size_t st_count(const struct st_file *f);
const struct st_tensor *st_tensor(const struct st_file *f, size_t i);

/* The tensor named name (binary search), or NULL. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);

/* Bytes in the file: 8 + header + data. */
size_t st_file_size(const struct st_file *f);

/* "__metadata__" entries in header order; st_metadata_get: the value of
 * key or NULL. Pointers are borrowed from f. */
size_t st_metadata_count(const struct st_file *f);
const char *st_metadata_key(const struct st_file *f, size_t i);
const char *st_metadata_value(const struct st_file *f, size_t i);
const char *st_metadata_get(const struct st_file *f, const char *key);

/* ---- Writing ----
 *
 * The header comes first but a merge produces data tensor by tensor, so
 * writing has three phases:
 *   1. st_writer_add() every tensor (name, dtype, shape) and, optionally,
 *      st_writer_set_metadata();
 *   2. st_writer_begin(): fixes the layout, creates "<path>.tmp.XXXXXX" in
 *      the same directory at its final size with the header in place;
 *   3. st_writer_write() each tensor's bytes at their place, in any order
 *      and in any number of pieces, then st_writer_commit(): checks every
 *      byte was written, fsyncs, renames to path, fsyncs the directory.
 * Until commit, path is untouched; a failed commit or st_writer_free()
 * before it removes the temporary file. A crash leaves only the ".tmp."
 * name, which no reader takes for a checkpoint.
 *
 * Layout (deterministic: the same tensors, shapes, metadata and bytes give
 * the same file whatever the order of calls): tensors ordered by dtype
 * width, widest first, then by name (bytewise strcmp), packed without gaps;
 * the header lists "__metadata__" first (keys sorted), then the tensors in
 * that order, in compact JSON padded with spaces so that the data starts
 * at a multiple of 8. Widest-first (as Hugging Face's writer does) keeps
 * every tensor aligned to its element size in the mapping, so readers can
 * use the data in place.
 *
 * Threads: st_writer_write() may be called from several threads at once
 * (pwrite at fixed offsets, an atomic byte count per tensor), for
 * different tensors or disjoint pieces of one. Everything else, one
 * thread, with no write in flight. */
struct st_writer;

int st_writer_new(const char *path, struct st_writer **out, struct err *err);

/* Declares a tensor. name: non-empty UTF-8, not "__metadata__", unique
 * (duplicates are reported by st_writer_begin). shape is copied. */
int st_writer_add(struct st_writer *w, const char *name, enum st_dtype dtype,
		  const size_t *shape, size_t ndim, struct err *err);

/* Adds a "__metadata__" entry; keys must be unique. Copied. */
int st_writer_set_metadata(struct st_writer *w, const char *key,
			   const char *value, struct err *err);

int st_writer_begin(struct st_writer *w, struct err *err);

/* Writes len bytes of tensor name's data, starting offset bytes into the
 * tensor. Each byte of each tensor must be written exactly once. */
int st_writer_write(struct st_writer *w, const char *name, size_t offset,
		    const void *data, size_t len, struct err *err);

int st_writer_commit(struct st_writer *w, struct err *err);

/* Frees; removes the temporary file if not committed. NULL-safe. */
void st_writer_free(struct st_writer *w);

/* Size of the data buffer (sum of nbytes) declared so far. */
size_t st_writer_data_size(const struct st_writer *w);

#endif
