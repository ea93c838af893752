/* bench/ingest/ingest.c — the library driver bench/ingest/run.sh times:
 * opens a store and ingests one tree, as `anneal add` will.
 *
 * usage: ingest STORE_ROOT SRC [THREADS [link|copy]]
 * Prints "digest=<hex> files=<n> bytes=<n> seconds=<s>" (the time of
 * store_open + store_ingest_tree, measured inside). Exit 0, or 1 with the
 * error on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifacts/store.h"
#include "artifacts/tree.h"
#include "base/err.h"
#include "base/hash.h"
#include "base/util.h"

int main(int argc, char **argv)
{
	struct store *s = NULL;
	struct manifest m;
	struct err e;
	char hex[DIGEST_HEX_LEN + 1];
	enum store_mode mode = STORE_LINK;
	int threads = 0;
	double t0, t1;

	if (argc < 3 || argc > 5) {
		fprintf(stderr, "usage: %s STORE_ROOT SRC [THREADS [link|copy]]\n", argv[0]);
		return 2;
	}
	if (argc >= 4)
		threads = atoi(argv[3]);
	if (argc == 5 && !strcmp(argv[4], "copy"))
		mode = STORE_COPY;
	t0 = now_mono();
	if (store_open(&s, argv[1], &e) ||
	    store_ingest_tree(s, argv[2], mode, threads, &m, &e)) {
		fprintf(stderr, "ingest: %s\n", e.msg);
		store_free(s);
		return 1;
	}
	t1 = now_mono();
	digest_hex(&m.digest, hex);
	printf("digest=%s files=%zu bytes=%llu seconds=%.3f threads=%d\n", hex, m.n,
	       (unsigned long long)m.bytes, t1 - t0,
	       threads > 0 ? threads : tree_default_threads(m.n));
	manifest_free(&m);
	store_free(s);
	return 0;
}
