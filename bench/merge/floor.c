/* bench/merge/floor.c — the bytes-moved floor of a merge on this machine:
 * the I/O that `anneal merge` must do, done the way anneal does it, with
 * no arithmetic worth the name. What is left is the cost of moving the
 * bytes, measured on the same files in the same run as anneal.
 *
 * The same I/O as anneal (artifacts/merge_run.c, artifacts/safetensors.c):
 *   - inputs mapped read-only (mmap, MAP_SHARED), read in place;
 *   - the output created as OUT.tmp.XXXXXX (mkostemp), its header written,
 *     ftruncate'd to its full size, then the data written with pwrite from
 *     a 1 MiB staging buffer per thread at each tensor's offset;
 *   - threads take whole tensors, largest first, and go through each one
 *     in order; input pages are released (madvise MADV_DONTNEED: they stay
 *     in the page cache) once the stage that used them is written;
 *   - then fsync, close, rename to OUT, fsync of the directory.
 * The "merge" is the XOR of the inputs' bytes, 4 KiB at a time (one pass,
 * in L1): each output byte depends on the same byte of every input, so no
 * read can be skipped, and the combine costs next to nothing.
 *
 * The inputs must be safetensors files with the same header (the tensors
 * of the first are used; bench/merge/gen.c writes such files). The output
 * is the first input's header followed by the combined data.
 *
 *   floor THREADS OUT IN...
 *
 * Prints "seconds peak_rss_bytes write_seconds sync_seconds": the total
 * (open to directory fsync), the part until every byte was pwritten, and
 * the part after (fsync, close, rename, directory fsync). libc (and
 * pthreads) only. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STAGE (1u << 20)   /* anneal's STAGE_BYTES */
#define SUB 4096u          /* bytes combined per pass over the inputs */

struct tensor {
	uint64_t off, len;   /* in the data section */
};

static int nin, out_fd, nthreads;
static const unsigned char **in_map;
static size_t in_len, data_start, page;
static struct tensor *tensors;
static size_t ntensors;
static atomic_size_t next_tensor;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int pwrite_all(int fd, const unsigned char *p, size_t n, off_t off)
{
	while (n) {
		ssize_t r = pwrite(fd, p, n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r, n -= (size_t)r, off += r;
	}
	return 0;
}

/* anneal's release_pages: the whole pages inside [p, p + len). */
static void release(const unsigned char *p, size_t len)
{
	uintptr_t a = (uintptr_t)p, e = a + len;

	a = (a + page - 1) & ~(uintptr_t)(page - 1);
	e &= ~(uintptr_t)(page - 1);
	if (e > a)
		madvise((void *)a, e - a, MADV_DONTNEED);
}

/* dst = XOR of the inputs at byte offset off, n bytes (n <= SUB): one
 * pass over each input, straight from the mapping, with dst (4 KiB) in L1.
 * Whole SUB blocks go through fixed-length loops, which gcc vectorises. */
static inline uint64_t word(const unsigned char *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	return w;
}

static void combine(unsigned char *dst, size_t off, size_t n)
{
	if (n == SUB && nin >= 2) {
		uint64_t a[SUB / 8];
		const unsigned char *x = in_map[0] + off, *y = in_map[1] + off;
		for (size_t j = 0; j < SUB / 8; j++)
			a[j] = word(x + 8 * j) ^ word(y + 8 * j);
		for (int i = 2; i < nin; i++) {
			x = in_map[i] + off;
			for (size_t j = 0; j < SUB / 8; j++)
				a[j] ^= word(x + 8 * j);
		}
		memcpy(dst, a, SUB);
		return;
	}
	for (size_t j = 0; j < n; j++) {
		unsigned char c = in_map[0][off + j];
		for (int i = 1; i < nin; i++)
			c ^= in_map[i][off + j];
		dst[j] = c;
	}
}

static void *work(void *arg)
{
	unsigned char *stage = malloc(STAGE);

	(void)arg;
	if (!stage)
		return (void *)1;
	for (;;) {
		size_t k = atomic_fetch_add(&next_tensor, 1);
		const struct tensor *t;
		if (k >= ntensors)
			break;
		t = &tensors[k];
		for (uint64_t o = 0; o < t->len; o += STAGE) {
			size_t n = t->len - o < STAGE ? (size_t)(t->len - o) : STAGE;
			size_t at = data_start + (size_t)(t->off + o);
			for (size_t s = 0; s < n; s += SUB)
				combine(stage + s, at + s, n - s < SUB ? n - s : SUB);
			if (pwrite_all(out_fd, stage, n, (off_t)at)) {
				free(stage);
				return (void *)1;
			}
			for (int i = 0; i < nin; i++)
				release(in_map[i] + at, n);
		}
	}
	free(stage);
	return NULL;
}

static int by_size(const void *pa, const void *pb)
{
	const struct tensor *a = pa, *b = pb;

	if (a->len != b->len)
		return a->len > b->len ? -1 : 1;
	return (a->off > b->off) - (a->off < b->off);
}

/* The tensors of a safetensors header: every "data_offsets":[a,b]. */
static int parse_header(const unsigned char *map, size_t len)
{
	uint64_t hlen = 0;
	char *h;
	const char *p;
	size_t cap = 64;

	if (len < 8)
		return -1;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | map[i];
	if (hlen > len - 8)
		return -1;
	data_start = 8 + (size_t)hlen;
	h = malloc((size_t)hlen + 1);
	tensors = malloc(cap * sizeof(*tensors));
	if (!h || !tensors)
		return -1;
	memcpy(h, map + 8, (size_t)hlen);
	h[hlen] = 0;
	for (p = h; (p = strstr(p, "\"data_offsets\"")); p++) {
		unsigned long long a, b;
		if (sscanf(p, "\"data_offsets\" : [ %llu , %llu ]", &a, &b) != 2 &&
		    sscanf(p, "\"data_offsets\":[%llu,%llu]", &a, &b) != 2)
			return -1;
		if (b < a || b > len - data_start)
			return -1;
		if (ntensors == cap && !(tensors = realloc(tensors, (cap *= 2) * sizeof(*tensors))))
			return -1;
		tensors[ntensors].off = a;
		tensors[ntensors].len = b - a;
		ntensors++;
	}
	free(h);
	qsort(tensors, ntensors, sizeof(*tensors), by_size);
	return 0;
}

int main(int argc, char **argv)
{
	double t0, t1, t2;
	struct rusage ru;
	struct stat st;
	pthread_t th[256];
	char *tmp, *dir, *slash;
	int bad = 0, fd, dfd;

	if (argc < 4) {
		fprintf(stderr, "usage: floor THREADS OUT IN...\n");
		return 2;
	}
	t0 = now();
	page = (size_t)sysconf(_SC_PAGESIZE);
	nthreads = atoi(argv[1]);
	if (nthreads < 1 || nthreads > 256)
		nthreads = 1;
	nin = argc - 3;
	in_map = calloc((size_t)nin, sizeof(*in_map));
	for (int i = 0; i < nin; i++) {
		void *p;
		fd = open(argv[3 + i], O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st)) {
			perror(argv[3 + i]);
			return 3;
		}
		if (i == 0)
			in_len = (size_t)st.st_size;
		else if ((size_t)st.st_size != in_len) {
			fprintf(stderr, "floor: %s: not the size of %s\n", argv[3 + i], argv[3]);
			return 3;
		}
		p = mmap(NULL, in_len, PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			perror(argv[3 + i]);
			return 3;
		}
		close(fd);
		in_map[i] = p;
	}
	if (parse_header(in_map[0], in_len)) {
		fprintf(stderr, "floor: %s: not a safetensors file it can read\n", argv[3]);
		return 3;
	}

	if (asprintf(&tmp, "%s.tmp.XXXXXX", argv[2]) < 0)
		return 3;
	out_fd = mkostemp(tmp, O_CLOEXEC);
	if (out_fd < 0 || fchmod(out_fd, 0644) ||
	    pwrite_all(out_fd, in_map[0], data_start, 0) ||
	    ftruncate(out_fd, (off_t)in_len)) {
		perror(tmp);
		return 3;
	}
	for (long i = 0; i < nthreads; i++)
		pthread_create(&th[i], NULL, work, (void *)i);
	for (int i = 0; i < nthreads; i++) {
		void *r;
		pthread_join(th[i], &r);
		bad |= r != NULL;
	}
	t1 = now();
	if (bad || fsync(out_fd) || close(out_fd) || rename(tmp, argv[2])) {
		fprintf(stderr, "floor: I/O error on %s\n", tmp);
		unlink(tmp);
		return 3;
	}
	dir = strdup(argv[2]);
	slash = dir ? strrchr(dir, '/') : NULL;
	if (slash)
		*slash = 0;
	dfd = open(slash ? (*dir ? dir : "/") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || (fsync(dfd) && errno != EINVAL)) {
		perror("floor: fsync of the output's directory");
		return 3;
	}
	close(dfd);
	t2 = now();
	getrusage(RUSAGE_SELF, &ru);
	printf("%.6f %ld %.6f %.6f\n", t2 - t0, ru.ru_maxrss * 1024L, t1 - t0, t2 - t1);
	return 0;
}
