/* random.c — random bytes: getrandom(2), else /dev/urandom, else a mix of the
 * clock, the pid and a counter through xorshift64; see random.h. */
#include "common/random.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Reads up to n bytes into out from getrandom(2); returns how many it got. */
static size_t random_kernel(unsigned char *out, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(out + got, n - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    return got;
}

/* Fills out[got..n) from /dev/urandom; returns the new count. */
static size_t random_urandom(unsigned char *out, size_t got, size_t n) {
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return got;
    while (got < n) {
        ssize_t r = read(fd, out + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    return got;
}

/* Fills out[got..n) from the clock, the pid and a counter: distinct on every
 * call, which is all ids and jitter need. */
static void random_mix(unsigned char *out, size_t got, size_t n) {
    static uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
                 ((uint64_t)getpid() << 32) ^ ++counter;
    for (; got < n; got++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17; /* xorshift64 */
        out[got] = (unsigned char)x;
    }
}

void random_bytes(void *out, size_t n) {
    unsigned char *p = out;
    size_t got = random_kernel(p, n);
    if (got < n) got = random_urandom(p, got, n);
    if (got < n) random_mix(p, got, n);
}

uint32_t random_u32(void) {
    uint32_t r;
    random_bytes(&r, sizeof r);
    return r;
}
