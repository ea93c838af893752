/* artifacts/dtype.h — the element types of safetensors files, and the
 * conversions that merging computes through.
 *
 * F32, F16, BF16 and F64 are "computable": merge methods read them as
 * float32 (float64 for F64), compute, and write them back rounded to
 * nearest, ties to even. The other dtypes are only named, sized and copied.
 * Conversions are bit manipulation on integers, so they give the same bits
 * on every machine; the bulk functions are plain loops that gcc -O2
 * vectorises. Sources need no alignment: tensors inside files written by
 * other tools may start at any byte. */
#ifndef ANNEAL_DTYPE_H
#define ANNEAL_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum st_dtype {
	ST_BOOL,
	ST_U8,
	ST_I8,
	ST_F8_E4M3,
	ST_F8_E5M2,
	ST_I16,
	ST_U16,
	ST_F16,
	ST_BF16,
	ST_I32,
	ST_U32,
	ST_F32,
	ST_F64,
	ST_I64,
	ST_U64,
	ST_DTYPE_COUNT
};

/* A float's bits and back (memcpy: no aliasing games, free when inlined). */
static inline uint32_t dtype_fbits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

static inline float dtype_bitsf(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* "F32", "BF16", ... as safetensors headers spell them. */
const char *dtype_name(enum st_dtype t);

/* Parses a header's dtype string (exact, case-sensitive). Returns 0, or
 * ERR_INVALID for an unknown name (no message: the caller knows where the
 * name came from). */
int dtype_parse(const char *s, enum st_dtype *out);

/* Bytes per element: 1, 2, 4 or 8. */
size_t dtype_width(enum st_dtype t);

/* 1 for F32, F16, BF16, F64; 0 for the rest. */
int dtype_computable(enum st_dtype t);

/* Scalar conversions. To float: exact (NaN stays NaN, made quiet).
 * From float: round to nearest, ties to even; overflow gives ±Inf (for F16,
 * anything from 65520 up), NaN gives a quiet NaN of the same sign, small
 * values become subnormals or ±0 with the sign kept. */
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
/* From double, rounded once (not float-then-half double rounding). */
uint16_t f64_to_f16(double d);
uint16_t f64_to_bf16(double d);

/* Bulk conversions of n elements. t must be computable (assert): callers
 * check dtype_computable() when the dtype comes from a file. src and dst
 * must not overlap; src may be unaligned (it points into a mapped file);
 * dst of the from_ functions may be unaligned too. F64 to float32 rounds
 * to nearest even; float32 to F64 is exact. */
void dtype_to_f32(enum st_dtype t, const void *src, float *dst, size_t n);
void dtype_from_f32(enum st_dtype t, const float *src, void *dst, size_t n);
void dtype_to_f64(enum st_dtype t, const void *src, double *dst, size_t n);
void dtype_from_f64(enum st_dtype t, const double *src, void *dst, size_t n);

/* Conversion fused with the step of a weighted sum, for elementwise merges
 * that stream their inputs: x[j] is src converted as dtype_to_f32 does,
 * and each product is rounded before the sum (no fused multiply-add), so
 * the bits are those of dtype_to_f32 followed by the plain float loop:
 *   dtype_scale_f32:  acc[j] = c * x[j]
 *   dtype_axpy_f32:   acc[j] = acc[j] + c * x[j]
 * (Where acc[j] and c * x[j] are both NaN, which NaN comes out is the
 * machine's choice, as in any float sum.) t must be computable (assert);
 * src may be unaligned and must not overlap acc. One pass over src, none
 * over a float copy of it. */
void dtype_scale_f32(enum st_dtype t, const void *src, float c, float *acc,
		     size_t n);
void dtype_axpy_f32(enum st_dtype t, const void *src, float c, float *acc,
		    size_t n);

#endif
