/* base/hash.h — SHA-256 through libcrypto's EVP interface (SHA-NI where the
 * CPU has it), streaming so that memory stays bounded whatever the input. */
#ifndef ANNEAL_HASH_H
#define ANNEAL_HASH_H

#include <stddef.h>
#include <stdint.h>

struct err;

#define DIGEST_LEN 32
#define DIGEST_HEX_LEN 64

struct digest {
	uint8_t b[DIGEST_LEN];
};

struct sha256;  /* opaque streaming context */

struct sha256 *sha256_new(void);
void sha256_update(struct sha256 *h, const void *data, size_t len);
void sha256_final(struct sha256 *h, struct digest *out); /* then reusable after sha256_reset */
void sha256_reset(struct sha256 *h);
void sha256_free(struct sha256 *h);

/* One-shot helpers. */
void sha256_buf(const void *data, size_t len, struct digest *out);
/* Hashes a file's bytes (streaming); *size gets its length if non-NULL. */
int sha256_file(const char *path, struct digest *out, uint64_t *size,
		struct err *err);

/* hex must hold DIGEST_HEX_LEN + 1 bytes. */
void digest_hex(const struct digest *d, char *hex);
/* Parses 64 hex digits; returns 0 or ERR_INVALID. */
int digest_parse(const char *hex, struct digest *out);

#endif
