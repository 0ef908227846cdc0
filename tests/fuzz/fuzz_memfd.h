/* fuzz_memfd.h — hands a fuzz input to code that reads a file by name.
 *
 * One memfd per process, rewritten with each input; its name,
 * "/proc/self/fd/<n>", opens as a regular file holding exactly the input. */
#ifndef CHATQ_FUZZ_MEMFD_H
#define CHATQ_FUZZ_MEMFD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int fuzz_memfd = -1;
static char fuzz_memfd_path[64];

/* Writes data into the memfd; returns its path. Aborts on failure. */
static const char *fuzz_memfd_write(const uint8_t *data, size_t size) {
    if (fuzz_memfd < 0) {
        fuzz_memfd = memfd_create("fuzz-input", MFD_CLOEXEC);
        if (fuzz_memfd < 0) abort();
        snprintf(fuzz_memfd_path, sizeof fuzz_memfd_path, "/proc/self/fd/%d", fuzz_memfd);
    }
    if (ftruncate(fuzz_memfd, 0) != 0) abort();
    size_t off = 0;
    while (off < size) {
        ssize_t n = pwrite(fuzz_memfd, data + off, size - off, (off_t)off);
        if (n <= 0) abort();
        off += (size_t)n;
    }
    return fuzz_memfd_path;
}

#endif
