/* bench/merge/floor.c — the bytes-moved floor of a merge on this machine:
 * reads every input once and writes one output of the first input's size
 * once (each output byte depends on the same byte of every input, so no
 * read can be skipped), in 1 MiB blocks over THREADS threads, then fsyncs
 * the output, as anneal does before it renames. No arithmetic worth the
 * name: what is left is the cost of moving the bytes. Inputs are read
 * through mmap (no copy out of the page cache: the cheapest way to read
 * warm files, and what anneal does), the output with pwrite.
 *
 *   floor THREADS OUT IN...
 *
 * Prints "seconds peak_rss_bytes". libc (and pthreads) only. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1u << 20)   /* anneal stages 1 MiB too; 8 MiB blocks fall out of cache */

static int nin, out_fd, *in_fd, nthreads;
static const uint64_t **in_map;
static off_t size;

static int pwrite_all(int fd, const unsigned char *p, size_t n, off_t off)
{
	while (n) {
		ssize_t r = pwrite(fd, p, n, off);
		if (r <= 0)
			return -1;
		p += r, n -= (size_t)r, off += r;
	}
	return 0;
}

static void *work(void *arg)
{
	long id = (long)arg;
	uint64_t *acc = malloc(BLOCK);

	if (!acc)
		return (void *)1;
	for (off_t off = (off_t)id * BLOCK; off < size; off += (off_t)nthreads * BLOCK) {
		size_t n = size - off < BLOCK ? (size_t)(size - off) : BLOCK;
		size_t w = n / 8, o = (size_t)off / 8;   /* a tail under 8 bytes: input 0's */
		memcpy(acc, in_map[0] + o, n);
		for (int i = 1; i < nin; i++) {
			const uint64_t *x = in_map[i] + o;
			for (size_t j = 0; j < w; j++)
				acc[j] ^= x[j];
		}
		/* Out of the resident set, as anneal does (the pages stay cached). */
		for (int i = 0; i < nin; i++)
			madvise((void *)(in_map[i] + o), n & ~(size_t)4095, MADV_DONTNEED);
		if (pwrite_all(out_fd, (const unsigned char *)acc, n, off))
			return (void *)1;
	}
	free(acc);
	return NULL;
}

int main(int argc, char **argv)
{
	struct timespec t0, t1;
	struct rusage ru;
	struct stat st;
	pthread_t th[256];
	int bad = 0;

	if (argc < 4) {
		fprintf(stderr, "usage: floor THREADS OUT IN...\n");
		return 2;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	nthreads = atoi(argv[1]);
	if (nthreads < 1 || nthreads > 256)
		nthreads = 1;
	nin = argc - 3;
	in_fd = calloc((size_t)nin, sizeof(*in_fd));
	in_map = calloc((size_t)nin, sizeof(*in_map));
	for (int i = 0; i < nin; i++) {
		in_fd[i] = open(argv[3 + i], O_RDONLY);
		if (in_fd[i] < 0 || fstat(in_fd[i], &st)) {
			perror(argv[3 + i]);
			return 3;
		}
		if (i == 0)
			size = st.st_size;
		else if (st.st_size < size)
			size = st.st_size;
	}
	for (int i = 0; i < nin; i++) {
		void *p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, in_fd[i], 0);
		if (p == MAP_FAILED) {
			perror(argv[3 + i]);
			return 3;
		}
		in_map[i] = p;
	}
	out_fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (out_fd < 0 || ftruncate(out_fd, size)) {
		perror(argv[2]);
		return 3;
	}
	for (long i = 0; i < nthreads; i++)
		pthread_create(&th[i], NULL, work, (void *)i);
	for (int i = 0; i < nthreads; i++) {
		void *r;
		pthread_join(th[i], &r);
		bad |= r != NULL;
	}
	if (bad || fsync(out_fd) || close(out_fd)) {
		fprintf(stderr, "floor: I/O error\n");
		return 3;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	getrusage(RUSAGE_SELF, &ru);
	printf("%.6f %ld\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9,
	       ru.ru_maxrss * 1024L);
	return 0;
}
