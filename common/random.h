/* random.h — random numbers from the kernel, with a fallback that never fails.
 *
 * Used for generated ids (they must be unique, not secret) and for the jitter
 * of retries and waits (it must spread workers apart, nothing more). So when
 * getrandom(2) is not available it falls back to /dev/urandom, and when that
 * fails too, to a clock/pid/counter mix: the caller always gets its bytes and
 * never has an error to handle. Not for keys or secrets. */
#ifndef CHATQ_RANDOM_H
#define CHATQ_RANDOM_H

#include <stddef.h>
#include <stdint.h>

/* Fills out with n random bytes. */
void random_bytes(void *out, size_t n);
/* A random 32-bit number. */
uint32_t random_u32(void);

#endif
