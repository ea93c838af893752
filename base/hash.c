/* base/hash.c — see hash.h. */
#include "base/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/err.h"

struct sha256 {
	EVP_MD_CTX *ctx;
};

struct sha256 *sha256_new(void)
{
	struct sha256 *h = xmalloc(sizeof(*h));

	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
		abort(); /* libcrypto cannot give SHA-256: nothing sane to do */
	return h;
}

void sha256_update(struct sha256 *h, const void *data, size_t len)
{
	if (EVP_DigestUpdate(h->ctx, data, len) != 1)
		abort();
}

void sha256_final(struct sha256 *h, struct digest *out)
{
	unsigned int n = 0;

	if (EVP_DigestFinal_ex(h->ctx, out->b, &n) != 1 || n != DIGEST_LEN)
		abort();
}

void sha256_reset(struct sha256 *h)
{
	if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
		abort();
}

void sha256_free(struct sha256 *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void sha256_buf(const void *data, size_t len, struct digest *out)
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out->b, &n, EVP_sha256(), NULL) != 1)
		abort();
}

int sha256_file(const char *path, struct digest *out, uint64_t *size,
		struct err *err)
{
	enum { CHUNK = 1 << 20 };
	struct sha256 *h = NULL;
	uint8_t *chunk = NULL;
	uint64_t total = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, errno, "cannot read '%s'", path);
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	h = sha256_new();
	chunk = xmalloc(CHUNK);
	for (;;) {
		ssize_t n = read(fd, chunk, CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = err_sys(err, errno, "cannot read '%s'", path);
			goto done;
		}
		if (n == 0)
			break;
		sha256_update(h, chunk, (size_t)n);
		total += (uint64_t)n;
	}
	sha256_final(h, out);
	if (size)
		*size = total;
done:
	free(chunk);
	sha256_free(h);
	close(fd);
	return rc;
}

void digest_hex(const struct digest *d, char *hex)
{
	static const char x[] = "0123456789abcdef";

	for (int i = 0; i < DIGEST_LEN; i++) {
		hex[2 * i] = x[d->b[i] >> 4];
		hex[2 * i + 1] = x[d->b[i] & 15];
	}
	hex[DIGEST_HEX_LEN] = '\0';
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int digest_parse(const char *hex, struct digest *out)
{
	if (strlen(hex) != DIGEST_HEX_LEN)
		return ERR_INVALID;
	for (int i = 0; i < DIGEST_LEN; i++) {
		int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return ERR_INVALID;
		out->b[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}
