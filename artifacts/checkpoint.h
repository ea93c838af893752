/* artifacts/checkpoint.h — a model checkpoint as Hugging Face stores it:
 * one safetensors file, or shards named model-00001-of-00003.safetensors
 * with model.safetensors.index.json mapping each tensor to its shard:
 *   {"metadata": {"total_size": N}, "weight_map": {"tensor": "shard", ...}}
 * Readers see one set of tensors whatever the sharding; writers choose a
 * maximum shard size. */
#ifndef ANNEAL_CHECKPOINT_H
#define ANNEAL_CHECKPOINT_H

#include <stddef.h>

#include "artifacts/safetensors.h"

struct err;

#define CKPT_INDEX "model.safetensors.index.json"
#define CKPT_SINGLE "model.safetensors"

/* ---- Reading ---- */

struct ckpt;  /* opaque; immutable once open */

/* Opens path, which is one of:
 *   - a safetensors file;
 *   - an index file (*.index.json): its shards are in its directory;
 *   - a directory with model.safetensors.index.json: as above;
 *   - a directory without an index: model.safetensors if present, else
 *     its only *.safetensors file. A lone file named like one shard of
 *     several (xxx-00001-of-00003.safetensors) is refused: it is what a
 *     writer that died before the index leaves behind.
 * The index is checked strictly except for "metadata" (total_size is
 * informational, read leniently): "weight_map" must be an object of
 * strings without duplicate keys; shard names must be plain file names
 * (no '/', no ".."); every tensor of the index must be in its shard, every
 * tensor of a shard in the index under that shard, and no tensor in two
 * shards. Every shard is opened with st_open (all of its rules apply).
 * ERR_NOTFOUND when a directory holds no safetensors file. */
int ckpt_open(const char *path, struct ckpt **out, struct err *err);

void ckpt_close(struct ckpt *c);   /* NULL-safe */

/* All tensors, sorted by name (bytewise); i < ckpt_count(c). */
size_t ckpt_count(const struct ckpt *c);
const struct st_tensor *ckpt_tensor(const struct ckpt *c, size_t i);
/* The file tensor i is in. */
const struct st_file *ckpt_tensor_file(const struct ckpt *c, size_t i);

/* Binary search by name, or NULL. */
const struct st_tensor *ckpt_find(const struct ckpt *c, const char *name);

/* The files, in shard-name order (one when unsharded). Metadata lives in
 * each file (st_metadata_get). */
size_t ckpt_nfiles(const struct ckpt *c);
const struct st_file *ckpt_file(const struct ckpt *c, size_t i);

/* Sum of the tensors' nbytes. */
size_t ckpt_data_size(const struct ckpt *c);

/* ---- Writing ----
 *
 * The same three phases as st_writer (declare, begin, write + commit),
 * with the same thread rule: ckpt_writer_write() from any number of
 * threads at once, everything else from one.
 *
 * Sharding: tensors sorted by name are assigned greedily: a shard takes
 * the next tensor unless its data (the tensors' bytes, headers not
 * counted, as Hugging Face counts) would then exceed max_shard_bytes; a
 * tensor bigger than the limit gets a shard of its own. One shard is
 * written as model.safetensors without an index; several as
 * model-0000K-of-0000N.safetensors and then the index, each atomically.
 * The index is written last, so a crash leaves shards without an index,
 * which ckpt_open refuses. Metadata goes into every shard.
 *
 * dir is created if missing and must not already hold a checkpoint (an
 * index or a *.safetensors file): stale shards next to new ones would make
 * a checkpoint that is neither. */
struct ckpt_writer;

/* max_shard_bytes 0: no limit (one file). */
int ckpt_writer_new(const char *dir, size_t max_shard_bytes,
		    struct ckpt_writer **out, struct err *err);
int ckpt_writer_add(struct ckpt_writer *w, const char *name,
		    enum st_dtype dtype, const size_t *shape, size_t ndim,
		    struct err *err);
int ckpt_writer_set_metadata(struct ckpt_writer *w, const char *key,
			     const char *value, struct err *err);
int ckpt_writer_begin(struct ckpt_writer *w, struct err *err);
int ckpt_writer_write(struct ckpt_writer *w, const char *name, size_t offset,
		      const void *data, size_t len, struct err *err);
/* Commits the shards in order, then the index. On failure, shards already
 * committed are removed again. */
int ckpt_writer_commit(struct ckpt_writer *w, struct err *err);
void ckpt_writer_free(struct ckpt_writer *w);   /* NULL-safe */

/* Number of shards (after begin). */
size_t ckpt_writer_nshards(const struct ckpt_writer *w);

#endif
