/* tests/fuzz/fuzz_safetensors.c — libFuzzer target for the safetensors
 * reader (`make fuzz`). Any input must be either rejected with a message
 * or accepted as a file whose every tensor lies inside the input, is found
 * by name, and converts (when computable) without touching anything else;
 * ASan and UBSan catch the rest. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/dtype.h"
#include "artifacts/safetensors.h"
#include "base/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_file *f = NULL;
	struct err e;
	size_t total = 0;

	if (st_open_mem(data, size, "fuzz", &f, &e)) {
		if (f || !e.msg[0] || strncmp(e.msg, "'fuzz': ", 8))
			abort();
		return 0;
	}
	for (size_t i = 0; i < st_count(f); i++) {
		const struct st_tensor *t = st_tensor(f, i);
		const uint8_t *p = t->data;
		float buf[16];
		double dbuf[16];

		if (p < data || p + t->nbytes > data + size ||
		    st_find(f, t->name) != t || t->nbytes !=
		    t->numel * dtype_width(t->dtype))
			abort();
		total += t->nbytes;
		if (dtype_computable(t->dtype)) {
			size_t n = t->numel < 16 ? t->numel : 16;
			dtype_to_f32(t->dtype, t->data, buf, n);
			dtype_to_f64(t->dtype, t->data, dbuf, n);
		}
	}
	for (size_t i = 0; i < st_metadata_count(f); i++)
		if (st_metadata_get(f, st_metadata_key(f, i)) == NULL ||
		    st_metadata_value(f, i) == NULL)
			abort();
	if (total > size)
		abort();
	st_close(f);
	return 0;
}
