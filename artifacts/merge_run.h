/* artifacts/merge_run.h — merges whole checkpoints, streaming tensor by
 * tensor: the driver behind `anneal merge` and the merge stage kind.
 *
 * It opens the base and the models (artifacts/checkpoint.h: a file, an
 * index or a directory, mapped read-only), checks that they hold the same
 * tensors with the same shapes and dtypes, declares the output's tensors
 * to a ckpt_writer, and lets worker threads merge one tensor each with
 * artifacts/merge.h's kernels, writing each result at its place in the
 * output as soon as it is computed. A model is never loaded whole.
 *
 * Memory. `linear` and `task_arithmetic` are elementwise and are streamed
 * in chunks: a few hundred KiB a thread, whatever the tensor size. `ties`,
 * `dare_linear` and `dare_ties` over F32, F16 and BF16 tensors are
 * streamed too (merge_tensor_stream): their scratch holds no tensor, only
 * TIES' selection copies (room for numel / 16 floats per model, about 4%
 * written). The rest (`slerp`, `model_stock`, F64 tensors) converts the
 * inputs of the tensor a thread merges to float32 (float64 for F64;
 * F32/F64 inputs aligned in the mapping are used in place), so the
 * scratch holds at most (inputs + 2) x numel x 4 bytes for the largest
 * tensor (x 8 for F64). Mapped input pages are released (madvise) once a
 * tensor is done, so the resident set does not grow with the model size
 * either.
 *
 * Determinism: the same inputs, spec, options and labels give the same
 * output bytes on any number of threads (each tensor is computed by one
 * thread with the kernels' fixed-order arithmetic; the writer's layout
 * does not depend on the order tensors are written in). */
#ifndef ANNEAL_MERGE_RUN_H
#define ANNEAL_MERGE_RUN_H

#include <stddef.h>
#include <stdint.h>

struct err;
struct merge_spec;

/* Hugging Face's default max_shard_size ("5GB", decimal). */
#define MERGE_RUN_DEFAULT_SHARD 5000000000ULL

struct merge_run_input {
	const char *path;    /* ckpt_open: a safetensors file, an index, or a dir */
	const char *label;   /* names it in messages and metadata; NULL: path */
	const char *digest;  /* optional (an artifact's digest): recorded too */
	double weight;       /* the model's weight (ignored for the base) */
};

struct merge_run_opts {
	const struct merge_spec *spec;        /* method, params, rules, seed */
	const struct merge_run_input *base;   /* NULL for linear; required else */
	const struct merge_run_input *models; /* nmodels >= 1 */
	size_t nmodels;
	const char *out_dir;     /* created if missing; must hold no checkpoint */
	uint64_t max_shard_bytes;  /* 0: one file (see ckpt_writer_new) */
	int threads;             /* <= 0: one per online CPU, fewer if the
				    scratch bound would pass half of RAM */
	/* A tensor missing from some model, or whose shape or dtype differs
	 * from the base's, or an integer tensor whose bytes differ: copy the
	 * base's instead of refusing the merge; tensors only some models have
	 * are left out. Requires a base. */
	int pass_through_base;
};

struct merge_run_report {
	size_t tensors;          /* in the output */
	size_t merged;           /* computed by the method */
	size_t copied;           /* not computable (ints, bool, fp8), identical in
				    every input: copied */
	size_t from_base;        /* copied from the base (pass_through_base) */
	size_t left_out;         /* in some model only, not written (idem) */
	size_t nshards;
	int threads;             /* worker threads used */
	uint64_t bytes_read;     /* tensor data read from the inputs */
	uint64_t bytes_written;  /* tensor data written */
	uint64_t scratch_bound;  /* bytes: the anonymous-memory bound above */
	uint64_t peak_rss;       /* bytes: getrusage's ru_maxrss of the process */
	double seconds;          /* wall time, open to commit */
};

/* Merges the models (and base) into o->out_dir. The output has the base's
 * tensors (the first model's for linear), with their names, shapes and
 * dtypes, and "__metadata__" with "format": "pt" and "anneal.merge.*"
 * entries: method, spec (merge_spec_describe), seed, base and models
 * (labels, digests, weights).
 *
 * Refuses, before anything is written (ERR_INVALID, naming the tensor and
 * the inputs): a tensor missing from some input ("tensor 'x': missing from
 * 'b' (present in base and 'a')"), a shape or dtype that differs, a tensor
 * that is not computable and not byte-identical everywhere — unless
 * pass_through_base; the wrong number of models for the method; a base for
 * linear, or none for the others. A kernel's refusal (a NaN for ties, ...)
 * stops the merge. On any failure nothing is left in out_dir (the
 * directory itself is removed if this call created it) and *out is
 * unspecified. ERR_SYSTEM for I/O. out may be NULL. */
int merge_run(const struct merge_run_opts *o, struct merge_run_report *out,
	      struct err *err);

/* The checks merge_run makes before it reads anything (the method's
 * number of models, base or no base, the spec's merge_spec_check, an
 * output directory given): for callers that have slow work to do before
 * merge_run (resolving, checking out). The paths are not looked at. */
int merge_run_check(const struct merge_run_opts *o, struct err *err);

#endif
