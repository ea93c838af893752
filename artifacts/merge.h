/* artifacts/merge.h — mergekit's merge methods as per-tensor kernels.
 *
 * One call merges one tensor: flat arrays of numel values (the caller
 * converts bf16/f16 to float32 and back; F64 tensors use the double
 * variant, which runs the same algorithm in double). The sparsifying
 * methods also merge tensors as stored, without the float copies
 * (merge_tensor_stream, below), with the same bits. Formulas, parameter
 * names and defaults follow mergekit; docs/merging.md writes each one down,
 * with the PRNG of DARE, the NaN/Inf policy and what is deterministic.
 *
 * A merge_spec is the method, its parameters, the DARE seed and per-tensor
 * rules ("glob -> overrides", first match wins). It is parsed once at the
 * edge (CLI flags, recipe fields) and is read-only afterwards, so threads
 * may share one spec; each thread brings its own merge_scratch.
 *
 * Same spec, tensor name, inputs and weights => the same output bits, on
 * any thread count: every reduction (norms, dot products, L1 sums) runs in
 * double in a fixed order, and DARE's random keep/drop of an element is a
 * pure function of (seed, tensor name, input index, element index). */
#ifndef ANNEAL_MERGE_H
#define ANNEAL_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "artifacts/dtype.h"

struct err;
struct buf;

enum merge_method {
	MERGE_LINEAR,           /* "linear": weighted mean, no base */
	MERGE_TASK_ARITHMETIC,  /* "task_arithmetic": base + lambda * sum w_i tau_i */
	MERGE_TIES,             /* "ties": top-k trim, sign election, disjoint mean */
	MERGE_DARE_LINEAR,      /* "dare_linear": random drop + rescale, then sum */
	MERGE_DARE_TIES,        /* "dare_ties": random drop + rescale, then TIES */
	MERGE_SLERP,            /* "slerp": base and one model, position t */
	MERGE_MODEL_STOCK,      /* "model_stock": base and >= 2 models */
};
#define MERGE_NMETHODS 7

/* How a sparsified task vector is scaled back up. */
enum merge_rescale {
	MERGE_RESCALE_NONE,     /* "none" (alias "false"): kept values as they are */
	MERGE_RESCALE_DENSITY,  /* "density": kept values / density (DARE paper) */
	MERGE_RESCALE_L1,       /* "l1" (alias "true"): match the L1 norm (mergekit) */
};

/* How TIES elects the sign of each element. */
enum merge_consensus {
	MERGE_CONSENSUS_SUM,    /* "sum": sign of sum_i w_i tau_i (the TIES paper) */
	MERGE_CONSENSUS_COUNT,  /* "count": sign of sum_i sign(w_i tau_i) */
};

/* The parameters of one tensor's merge, after rules are applied. Fields a
 * method does not use keep their defaults. */
struct merge_params {
	double lambda;                  /* "lambda": scales the merged task vector; 1 */
	double density;                 /* "density": fraction kept, [0, 1]; 1 */
	double t;                       /* "t": slerp position, [0, 1]; NaN = unset */
	int normalize;                  /* "normalize": divide by the weights' sum */
	enum merge_rescale rescale;     /* "rescale" */
	enum merge_consensus consensus; /* "consensus" */
};

/* Parses a method name ("ties"); ERR_INVALID with "did you mean" otherwise. */
int merge_method_parse(const char *name, enum merge_method *out,
		       struct err *err);
/* The method's name, as merge_method_parse takes it. */
const char *merge_method_name(enum merge_method m);
/* 1 when the method needs a base tensor (all but linear). */
int merge_method_needs_base(enum merge_method m);

struct merge_spec;  /* opaque */

/* A spec for method m with mergekit's defaults (linear and ties normalize,
 * the others do not; dare_* rescale with l1; seed 0). Cannot fail. */
struct merge_spec *merge_spec_new(enum merge_method m);
void merge_spec_free(struct merge_spec *s);  /* NULL-safe */

enum merge_method merge_spec_method(const struct merge_spec *s);

/* The seed of DARE's random drop (other methods ignore it). */
void merge_spec_set_seed(struct merge_spec *s, uint64_t seed);

/* Sets one parameter from "k=v" (the CLI's --param, a recipe field).
 * ERR_INVALID names the parameter, the method and the rule broken:
 *   unknown parameter 'densty' for method 'ties' (did you mean 'density'?)
 *   parameter 'density' for method 'ties': '1.5' is not in [0, 1] */
int merge_spec_set(struct merge_spec *s, const char *kv, struct err *err);

/* Adds a per-tensor rule: tensors whose name matches the fnmatch(3) glob
 * (no flags: '*' crosses '.') get the overrides in kvs, a list of "k=v"
 * separated by commas or blanks ("t=0.3" or "density=0.5, lambda=0.8").
 * Rules are tried in the order added; the first match wins; a parameter it
 * does not set keeps the spec's value. Errors are merge_spec_set's,
 * prefixed with "rule 'GLOB'". */
int merge_spec_add_rule(struct merge_spec *s, const char *pattern,
			const char *kvs, struct err *err);

/* Checks what can be checked before any tensor is read: a required
 * parameter (slerp's t) set globally or by a rule. A rule that leaves some
 * tensors without t is still reported, tensor by tensor, at merge time. */
int merge_spec_check(const struct merge_spec *s, struct err *err);

/* The parameters for tensor `name` (global values, then the first matching
 * rule's overrides). */
void merge_spec_params(const struct merge_spec *s, const char *name,
		       struct merge_params *out);

/* Appends a canonical one-line description ("ties density=0.5 lambda=1
 * normalize=true consensus=sum rescale=none [rule '*.mlp.*': density=0.3]")
 * for lineage records: the same spec always gives the same text. */
void merge_spec_describe(const struct merge_spec *s, struct buf *out);

/* Reusable buffers of one thread's merges: the top-k selection of TIES (at
 * most one tensor's worth, only the pages touched become resident; about
 * numel / 16 per input when streamed) and small per-input tables. Zero-initialise (MERGE_SCRATCH_INIT); grows on
 * demand; merge_scratch_free releases it and leaves it zeroed. */
struct merge_scratch {
	void *sel;          /* TIES: magnitudes or candidates, numel values */
	size_t sel_cap;     /* bytes */
	void *rows;         /* per-chunk rows of weighted task vectors */
	size_t rows_cap;    /* bytes */
	void *inputs;       /* per-input state (threshold, scale, PRNG key) */
	size_t inputs_cap;  /* bytes */
};
#define MERGE_SCRATCH_INIT { NULL, 0, NULL, 0, NULL, 0 }
void merge_scratch_free(struct merge_scratch *sc);

/* Merges one tensor of numel elements into out.
 *
 * base: the base model's tensor (NULL for linear, which ignores it; put
 * the base among the inputs with a weight to include it). inputs: ninputs
 * arrays. weights: one per input, NULL meaning all 1 (slerp and
 * model_stock ignore them). Inputs: linear >= 1, task_arithmetic, ties and
 * dare_* >= 0 (none gives the base), slerp exactly 1 (base is v0, the
 * input v1), model_stock >= 2.
 *
 * name selects the per-tensor rules and keys DARE's PRNG. out may be the
 * very same array as base or one of the inputs (merging in place); other
 * overlaps are not allowed. On error out holds unspecified values.
 *
 * Non-finite values (NaN, +-Inf): linear and task_arithmetic propagate
 * them element by element as IEEE arithmetic does; the other methods,
 * where one element's value moves others (a top-k threshold, an L1 norm,
 * a cosine), refuse the tensor with ERR_INVALID naming the input and the
 * element. ERR_NOMEM if scratch cannot grow. */
int merge_tensor_f32(const struct merge_spec *spec, const char *name,
		     const float *base, const float *const *inputs,
		     const double *weights, size_t ninputs, size_t numel,
		     float *out, struct merge_scratch *scratch,
		     struct err *err);

/* The same in double precision, for F64 tensors. */
int merge_tensor_f64(const struct merge_spec *spec, const char *name,
		     const double *base, const double *const *inputs,
		     const double *weights, size_t ninputs, size_t numel,
		     double *out, struct merge_scratch *scratch,
		     struct err *err);

/* ---- streamed: the sparsifying methods without float copies ----------
 *
 * merge_tensor_stream merges one tensor read as the file stores it
 * (numel elements of dtype for the base and each input, any alignment),
 * for the methods and dtypes merge_stream_covers accepts: ties,
 * dare_linear and dare_ties over F32, F16 and BF16. The result is, bit for
 * bit, what merge_tensor_f32 gives on the inputs converted with
 * dtype_to_f32; so are its errors (arguments, non-finite values). It is
 * handed to emit in order, element 0 first, at most MERGE_STREAM_STEP
 * float values a call; an error emit returns stops the merge and is
 * returned. A non-finite value may be found after emit was called for a
 * part of the tensor.
 *
 * The inputs are read in steps, in place where the dtype allows (F32,
 * BF16): TIES' thresholds take one pass over all inputs (a strided sample
 * brackets them first; more passes, rarely, when the sample misses),
 * rescale=l1 takes one more, the merge one. The scratch holds no tensor:
 * per TIES input, a copy of the magnitudes inside the bracket (about 4%,
 * room for numel / 16), and a few L1-sized buffers (merge_stream_scratch
 * bounds it). */
#define MERGE_STREAM_STEP 1024
typedef int (*merge_emit_fn)(void *ctx, const float *vals, size_t n,
			     struct err *err);
int merge_stream_covers(const struct merge_spec *spec, enum st_dtype dtype);
int merge_tensor_stream(const struct merge_spec *spec, const char *name,
			enum st_dtype dtype, const void *base,
			const void *const *inputs, const double *weights,
			size_t ninputs, size_t numel, merge_emit_fn emit,
			void *ctx, struct merge_scratch *scratch,
			struct err *err);
/* The most scratch merge_tensor_stream grows to for ninputs inputs of
 * numel elements, in bytes (counting what only becomes resident when
 * written). */
uint64_t merge_stream_scratch(const struct merge_spec *spec, size_t ninputs,
			      size_t numel);

/* DARE's keep/drop draw, exposed so that tests and reference
 * implementations can reproduce it: the uniform value in [0, 1) for
 * element `index` of input `input` of tensor `name`. An element is kept
 * when the draw is < density. */
double merge_dare_uniform(uint64_t seed, const char *name, size_t input,
			  uint64_t index);

#endif
