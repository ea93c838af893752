/* bench/merge/gen.c — writes one benchmark checkpoint: N BF16 tensors of
 * ROWS x COLS, named model.layers.NN.weight, as a single safetensors file.
 *
 *   gen OUT SEED N ROWS COLS
 *
 * Values: a shared "pretrained" matrix (the same for every SEED) plus
 * SEED's own small perturbation (SEED 0: none, the base), so that task
 * vectors are small, of both signs, and different in each model, as in a
 * real fine-tune. splitmix64, bf16 by truncation: fast (about a second a
 * GB), deterministic. libc only. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static uint16_t bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, 4);
	return (uint16_t)(u >> 16);
}

int main(int argc, char **argv)
{
	FILE *f;
	char *hdr;
	size_t hlen = 0, cap, numel, nbytes;
	unsigned long long seed, n, rows, cols;
	uint16_t *buf;

	if (argc != 6) {
		fprintf(stderr, "usage: gen OUT SEED N ROWS COLS\n");
		return 2;
	}
	seed = strtoull(argv[2], NULL, 10);
	n = strtoull(argv[3], NULL, 10);
	rows = strtoull(argv[4], NULL, 10);
	cols = strtoull(argv[5], NULL, 10);
	numel = (size_t)(rows * cols);
	nbytes = numel * 2;
	cap = 256 + n * 160;
	hdr = malloc(cap);
	buf = malloc(nbytes);
	if (!hdr || !buf) {
		fprintf(stderr, "gen: out of memory\n");
		return 3;
	}
	hlen += (size_t)snprintf(hdr + hlen, cap - hlen, "{\"__metadata__\":{\"format\":\"pt\"}");
	for (unsigned long long t = 0; t < n; t++)
		hlen += (size_t)snprintf(hdr + hlen, cap - hlen,
			",\"model.layers.%02llu.weight\":{\"dtype\":\"BF16\",\"shape\":[%llu,%llu],"
			"\"data_offsets\":[%zu,%zu]}", t, rows, cols, (size_t)t * nbytes, (size_t)(t + 1) * nbytes);
	hlen += (size_t)snprintf(hdr + hlen, cap - hlen, "}");
	while (hlen % 8)
		hdr[hlen++] = ' ';
	f = fopen(argv[1], "wb");
	if (!f) {
		perror(argv[1]);
		return 3;
	}
	{
		uint64_t le = hlen;
		unsigned char b[8];
		for (int i = 0; i < 8; i++)
			b[i] = (unsigned char)(le >> (8 * i));
		fwrite(b, 1, 8, f);
		fwrite(hdr, 1, hlen, f);
	}
	for (unsigned long long t = 0; t < n; t++) {
		for (size_t j = 0; j < numel; j++) {
			uint64_t k = (t << 40) ^ j;
			uint64_t a = mix(k * 0x9E3779B97F4A7C15ULL + 1);
			float base = ((float)(a >> 40) * 0x1p-24f - 0.5f) * 0.08f;
			float d = 0;
			if (seed) {
				uint64_t z = mix((k ^ (seed << 56)) * 0x9E3779B97F4A7C15ULL + seed);
				d = ((float)(z >> 40) * 0x1p-24f - 0.5f) * 0.004f;
			}
			buf[j] = bf16(base + d);
		}
		if (fwrite(buf, 1, nbytes, f) != nbytes) {
			perror(argv[1]);
			return 3;
		}
	}
	if (fclose(f)) {
		perror(argv[1]);
		return 3;
	}
	free(buf);
	free(hdr);
	return 0;
}
