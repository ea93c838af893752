/* artifacts/dtype.c — see dtype.h.
 *
 * The workload: a merge converts every element of every input tensor to
 * float and back, so these loops run over gigabytes. Each scalar function
 * is written without branches (every case computed, one selected) so that
 * the bulk loops vectorise; loads and stores go through memcpy because a
 * tensor in someone else's file may start at an odd byte. The half-float
 * conversions follow Fabian Giesen's (public domain) bit tricks: the
 * subnormal cases let the FPU do the round-to-nearest-even by adding a
 * magic constant, which is exact under the default rounding mode. */
#include "artifacts/dtype.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "artifacts/vec.h"
#include "base/err.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this code assumes a little-endian host"
#endif

static const struct {
	const char *name;
	size_t width;
} dtypes[ST_DTYPE_COUNT] = {
	[ST_BOOL] = { "BOOL", 1 },
	[ST_U8] = { "U8", 1 },
	[ST_I8] = { "I8", 1 },
	[ST_F8_E4M3] = { "F8_E4M3", 1 },
	[ST_F8_E5M2] = { "F8_E5M2", 1 },
	[ST_I16] = { "I16", 2 },
	[ST_U16] = { "U16", 2 },
	[ST_F16] = { "F16", 2 },
	[ST_BF16] = { "BF16", 2 },
	[ST_I32] = { "I32", 4 },
	[ST_U32] = { "U32", 4 },
	[ST_F32] = { "F32", 4 },
	[ST_F64] = { "F64", 8 },
	[ST_I64] = { "I64", 8 },
	[ST_U64] = { "U64", 8 },
};

const char *dtype_name(enum st_dtype t)
{
	assert((unsigned)t < ST_DTYPE_COUNT);
	return dtypes[t].name;
}

int dtype_parse(const char *s, enum st_dtype *out)
{
	for (int i = 0; i < ST_DTYPE_COUNT; i++) {
		if (!strcmp(s, dtypes[i].name)) {
			*out = (enum st_dtype)i;
			return 0;
		}
	}
	return ERR_INVALID;
}

size_t dtype_width(enum st_dtype t)
{
	assert((unsigned)t < ST_DTYPE_COUNT);
	return dtypes[t].width;
}

int dtype_computable(enum st_dtype t)
{
	return t == ST_F32 || t == ST_F16 || t == ST_BF16 || t == ST_F64;
}

/* All-ones when c, else zero; sel picks a where m is set: selects instead
 * of branches, so that the loops if-convert. */
static inline uint32_t mask(int c)
{
	return 0u - (uint32_t)c;
}

static inline uint32_t sel(uint32_t m, uint32_t a, uint32_t b)
{
	return (a & m) | (b & ~m);
}

/* Inlined into the loops: a call would stop them vectorising. */
static inline __attribute__((always_inline)) float
half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t em = h & 0x7fffu;
	uint32_t exp = em & 0x7c00u;
	/* Normal: rebias the exponent from 15 to 127. */
	uint32_t norm = (em << 13) + ((uint32_t)(127 - 15) << 23);
	/* Inf/NaN: all-ones exponent, mantissa kept, NaN made quiet. */
	uint32_t special = (em << 13) | 0x7f800000u |
			   (mask(em > 0x7c00u) & 0x00400000u);
	/* Zero/subnormal: mantissa × 2^-24, exact in float. */
	uint32_t sub = dtype_fbits((float)(em & 0x3ffu) * 0x1p-24f);
	uint32_t r = sel(mask(exp == 0x7c00u), special,
			 sel(mask(exp == 0), sub, norm));

	return dtype_bitsf(r | sign);
}

static inline __attribute__((always_inline)) uint16_t
float_to_half(float f)
{
	uint32_t u = dtype_fbits(f);
	uint32_t sign = (u >> 16) & 0x8000u;
	uint32_t a = u & 0x7fffffffu;
	/* Normal results: rebias, then add 0xfff plus the bit that will become
	 * the lowest mantissa bit: carries exactly when the dropped 13 bits are
	 * over half, or exactly half with an odd result (ties to even). A carry
	 * out of the mantissa bumps the exponent, up to Inf at 65520. */
	uint32_t norm = (a + ((uint32_t)(15 - 127) << 23) + 0xfffu +
			 ((a >> 13) & 1u)) >> 13;
	/* Subnormal or zero results (|f| < 2^-14): adding 0.5 leaves the value
	 * in units of 2^-24 in the low mantissa bits, rounded by the FPU. */
	uint32_t sub = dtype_fbits(dtype_bitsf(a) + 0.5f) - dtype_fbits(0.5f);
	uint32_t nan = 0x7e00u | ((a >> 13) & 0x1ffu);
	uint32_t r = sel(mask(a > 0x7f800000u), nan,
			 sel(mask(a >= 0x47800000u), 0x7c00u,  /* >= 65536: Inf */
			     sel(mask(a < 0x38800000u), sub, norm)));

	return (uint16_t)(r | sign);
}

static inline __attribute__((always_inline)) float
bfloat_to_float(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	uint32_t quiet = mask((h & 0x7fffu) > 0x7f80u) & 0x00400000u;

	return dtype_bitsf(u | quiet);
}

static inline __attribute__((always_inline)) uint16_t
float_to_bfloat(float f)
{
	uint32_t u = dtype_fbits(f);
	/* Same carry trick as f32_to_f16, 16 dropped bits. */
	uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
	uint32_t nan = (u >> 16) | 0x0040u;

	return (uint16_t)sel(mask((u & 0x7fffffffu) > 0x7f800000u), nan, r);
}

float f16_to_f32(uint16_t h)
{
	return half_to_float(h);
}

uint16_t f32_to_f16(float f)
{
	return float_to_half(f);
}

float bf16_to_f32(uint16_t h)
{
	return bfloat_to_float(h);
}

uint16_t f32_to_bf16(float f)
{
	return float_to_bfloat(f);
}

/* double to float rounded to odd: truncate, then set the lowest bit when
 * anything was lost. A second rounding (to nearest even, to fewer bits)
 * of a round-to-odd result with at least two extra bits is the correctly
 * rounded result; float has 13 (F16) or 16 (BF16) bits to spare. */
static inline float f64_to_f32_odd(double d)
{
	float f = (float)d;
	uint32_t u = dtype_fbits(f);

	if (d == d && (double)f != d) {
		if (fabs((double)f) > fabs(d))
			u--;   /* rounded away from zero: step back */
		u |= 1u;
	}
	return dtype_bitsf(u);
}

uint16_t f64_to_f16(double d)
{
	return float_to_half(f64_to_f32_odd(d));
}

uint16_t f64_to_bf16(double d)
{
	return float_to_bfloat(f64_to_f32_odd(d));
}

/* The bulk loops. gcc -O2 (its "very cheap" cost model) vectorises only
 * loops whose trip count it knows, so each runs over whole blocks of
 * BLOCK elements, then a scalar tail. Elements go through memcpy'd loads
 * and stores, which compile to plain (unaligned) vector moves.
 *
 * On x86-64 the hot loops are also compiled for AVX2 and AVX-512 (gcc's
 * target_clones: the widest the CPU has is picked once, at load time):
 * the same integer and float operations, 8 or 16 lanes at a time instead
 * of 4, so the same bits. The only float arithmetic in them is the
 * products and sums of the fused loops below and the exact subnormal
 * steps of the half-float tricks; a multiply-add is never fused (see
 * NO_CONTRACT), so no clone rounds differently from the plain one. */
#define BLOCK 64


#define BULK(fn, stype, dtype, each)                                       \
	static __attribute__((noinline)) CLONES NO_CONTRACT void            \
	fn(const stype *restrict s, dtype *restrict d, size_t n)            \
	{                                                                   \
		size_t i = 0;                                               \
		for (; i + BLOCK <= n; i += BLOCK)                          \
			for (size_t j = i; j < i + BLOCK; j++)              \
				each(s, d, j);                              \
		for (; i < n; i++)                                          \
			each(s, d, i);                                      \
	}

static inline void f16_f32_one(const unsigned char *s, float *d, size_t i)
{
	uint16_t h;
	memcpy(&h, s + 2 * i, 2);
	d[i] = half_to_float(h);
}

static inline void bf16_f32_one(const unsigned char *s, float *d, size_t i)
{
	uint16_t h;
	memcpy(&h, s + 2 * i, 2);
	d[i] = bfloat_to_float(h);
}

static inline void f64_f32_one(const unsigned char *s, float *d, size_t i)
{
	double x;
	memcpy(&x, s + 8 * i, 8);
	d[i] = (float)x;
}

static inline void f32_f16_one(const float *s, unsigned char *d, size_t i)
{
	uint16_t h = float_to_half(s[i]);
	memcpy(d + 2 * i, &h, 2);
}

static inline void f32_bf16_one(const float *s, unsigned char *d, size_t i)
{
	uint16_t h = float_to_bfloat(s[i]);
	memcpy(d + 2 * i, &h, 2);
}

static inline void f32_f64_one(const float *s, unsigned char *d, size_t i)
{
	double x = s[i];
	memcpy(d + 8 * i, &x, 8);
}

BULK(f16_to_f32_n, unsigned char, float, f16_f32_one)
BULK(bf16_to_f32_n, unsigned char, float, bf16_f32_one)
BULK(f64_to_f32_n, unsigned char, float, f64_f32_one)
BULK(f32_to_f16_n, float, unsigned char, f32_f16_one)
BULK(f32_to_bf16_n, float, unsigned char, f32_bf16_one)
BULK(f32_to_f64_n, float, unsigned char, f32_f64_one)

/* The fused loops: x converted as above, then acc = c * x (SCALE) or
 * acc = acc + c * x (AXPY), in that order of operands. */
#define FUSED(fn, load, op)                                                 \
	static __attribute__((noinline)) CLONES NO_CONTRACT void            \
	fn(const unsigned char *restrict s, float c, float *restrict acc,   \
	   size_t n)                                                        \
	{                                                                   \
		size_t i = 0;                                               \
		for (; i + BLOCK <= n; i += BLOCK)                          \
			for (size_t j = i; j < i + BLOCK; j++)              \
				op(acc, j, c, load(s, j));                  \
		for (; i < n; i++)                                          \
			op(acc, i, c, load(s, i));                          \
	}

static inline float load_f32(const unsigned char *s, size_t i)
{
	float x;
	memcpy(&x, s + 4 * i, 4);
	return x;
}

static inline float load_f16(const unsigned char *s, size_t i)
{
	uint16_t h;
	memcpy(&h, s + 2 * i, 2);
	return half_to_float(h);
}

static inline float load_bf16(const unsigned char *s, size_t i)
{
	uint16_t h;
	memcpy(&h, s + 2 * i, 2);
	return bfloat_to_float(h);
}

static inline void op_scale(float *acc, size_t i, float c, float x)
{
	acc[i] = c * x;
}

static inline void op_axpy(float *acc, size_t i, float c, float x)
{
	float p = c * x;
	acc[i] = acc[i] + p;
}

FUSED(f32_scale_n, load_f32, op_scale)
FUSED(f16_scale_n, load_f16, op_scale)
FUSED(bf16_scale_n, load_bf16, op_scale)
FUSED(f32_axpy_n, load_f32, op_axpy)
FUSED(f16_axpy_n, load_f16, op_axpy)
FUSED(bf16_axpy_n, load_bf16, op_axpy)

/* F64 (not a streaming dtype): through a small float buffer. */
static void f64_fused(const unsigned char *s, float c, float *acc, size_t n,
		      int axpy)
{
	float x[256];

	while (n) {
		size_t k = n < 256 ? n : 256;
		f64_to_f32_n(s, x, k);
		if (axpy)
			f32_axpy_n((const unsigned char *)x, c, acc, k);
		else
			f32_scale_n((const unsigned char *)x, c, acc, k);
		s += 8 * k;
		acc += k;
		n -= k;
	}
}

void dtype_scale_f32(enum st_dtype t, const void *src, float c, float *acc,
		     size_t n)
{
	assert(dtype_computable(t));
	if (n == 0)
		return;
	switch (t) {
	case ST_F32: f32_scale_n(src, c, acc, n); break;
	case ST_F16: f16_scale_n(src, c, acc, n); break;
	case ST_BF16: bf16_scale_n(src, c, acc, n); break;
	case ST_F64: f64_fused(src, c, acc, n, 0); break;
	default: break;
	}
}

void dtype_axpy_f32(enum st_dtype t, const void *src, float c, float *acc,
		    size_t n)
{
	assert(dtype_computable(t));
	if (n == 0)
		return;
	switch (t) {
	case ST_F32: f32_axpy_n(src, c, acc, n); break;
	case ST_F16: f16_axpy_n(src, c, acc, n); break;
	case ST_BF16: bf16_axpy_n(src, c, acc, n); break;
	case ST_F64: f64_fused(src, c, acc, n, 1); break;
	default: break;
	}
}

/* Conversions to float of whole large tensors (the merger's, for the
 * methods that need a whole tensor): each line of the output would be
 * read from memory before being overwritten, then be evicted before it is
 * used, the output being larger than a core's share of the last-level
 * cache. Above STREAM_MIN bytes of output the values are converted into
 * an L1 buffer and copied out with non-temporal stores, which skip that
 * read: a third less memory traffic. The same values either way. (A fixed
 * bound: what the OS says of the L3 is unreliable in VMs, and a tensor
 * this size is one of many in flight, one per thread.) */
#if defined(__x86_64__) && defined(__SSE2__)
#include <emmintrin.h>
#define STREAM_MIN (16u << 20)
#define STREAM_BUF 2048   /* floats: 8 KiB */

/* dst (16-byte aligned) = src, n floats, with non-temporal stores. */
static void stream_out(float *dst, const float *src, size_t n)
{
	size_t i = 0;

	for (; i + 4 <= n; i += 4)
		_mm_stream_si128((__m128i *)(void *)(dst + i),
				 _mm_load_si128((const __m128i *)(const void *)(src + i)));
	for (; i < n; i++)
		dst[i] = src[i];
}

static int to_f32_streamed(enum st_dtype t, const void *src, float *dst,
			   size_t n)
{
	_Alignas(64) float buf[STREAM_BUF];
	const unsigned char *s = src;
	size_t w = dtype_width(t);

	if ((t != ST_F16 && t != ST_BF16) || n < STREAM_MIN / sizeof(float))
		return 0;
	/* A head up to 16-byte alignment, plainly. */
	while (n && (uintptr_t)dst % 16) {
		dtype_to_f32(t, s, dst, 1);
		s += w, dst++, n--;
	}
	while (n) {
		size_t k = n < STREAM_BUF ? n : STREAM_BUF;
		if (t == ST_F16)
			f16_to_f32_n(s, buf, k);
		else
			bf16_to_f32_n(s, buf, k);
		stream_out(dst, buf, k);
		s += w * k, dst += k, n -= k;
	}
	_mm_sfence();
	return 1;
}
#else
static int to_f32_streamed(enum st_dtype t, const void *src, float *dst,
			   size_t n)
{
	return 0;
}
#endif

void dtype_to_f32(enum st_dtype t, const void *src, float *dst, size_t n)
{
	assert(dtype_computable(t));
	if (n == 0 || to_f32_streamed(t, src, dst, n))
		return;
	switch (t) {
	case ST_F32: memcpy(dst, src, n * sizeof(float)); break;
	case ST_F16: f16_to_f32_n(src, dst, n); break;
	case ST_BF16: bf16_to_f32_n(src, dst, n); break;
	case ST_F64: f64_to_f32_n(src, dst, n); break;
	default: break;
	}
}

void dtype_from_f32(enum st_dtype t, const float *src, void *dst, size_t n)
{
	assert(dtype_computable(t));
	if (n == 0)
		return;
	switch (t) {
	case ST_F32: memcpy(dst, src, n * sizeof(float)); break;
	case ST_F16: f32_to_f16_n(src, dst, n); break;
	case ST_BF16: f32_to_bf16_n(src, dst, n); break;
	case ST_F64: f32_to_f64_n(src, dst, n); break;
	default: break;
	}
}

void dtype_to_f64(enum st_dtype t, const void *src, double *dst, size_t n)
{
	const unsigned char *s = src;

	assert(dtype_computable(t));
	if (n == 0)
		return;
	switch (t) {
	case ST_F64:
		memcpy(dst, src, n * sizeof(double));
		break;
	case ST_F32:
		for (size_t i = 0; i < n; i++) {
			float x;
			memcpy(&x, s + 4 * i, 4);
			dst[i] = x;
		}
		break;
	case ST_F16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, s + 2 * i, 2);
			dst[i] = half_to_float(h);
		}
		break;
	case ST_BF16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, s + 2 * i, 2);
			dst[i] = bfloat_to_float(h);
		}
		break;
	default:
		break;
	}
}

void dtype_from_f64(enum st_dtype t, const double *src, void *dst, size_t n)
{
	unsigned char *d = dst;

	assert(dtype_computable(t));
	if (n == 0)
		return;
	switch (t) {
	case ST_F64:
		memcpy(dst, src, n * sizeof(double));
		break;
	case ST_F32:
		for (size_t i = 0; i < n; i++) {
			float x = (float)src[i];
			memcpy(d + 4 * i, &x, 4);
		}
		break;
	case ST_F16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h = f64_to_f16(src[i]);
			memcpy(d + 2 * i, &h, 2);
		}
		break;
	case ST_BF16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h = f64_to_bf16(src[i]);
			memcpy(d + 2 * i, &h, 2);
		}
		break;
	default:
		break;
	}
}
