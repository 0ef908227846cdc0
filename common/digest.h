/* digest.h — SHA1 of a byte string, as hex.
 *
 * chatq names things after their content: a job without an id gets one
 * from the SHA1 of its text (so the same text pushed twice is the same job,
 * docs/protocol.md §6), and P:crashes counts deaths per SHA1 of a job's text. SHA1 is
 * used as a name, not for security: a producer able to make two texts
 * collide could as well give both the same id.
 *
 * Backed by OpenSSL's libcrypto (EVP, not the SHA1() call OpenSSL 3
 * deprecates). */
#ifndef CHATQ_DIGEST_H
#define CHATQ_DIGEST_H

#include <stddef.h>

/* Writes the SHA1 of data[0..len) as 40 lowercase hex digits and a NUL into
 * out. data may be NULL when len is 0. Never fails: libcrypto can fail here
 * only when out of memory, which aborts, as every allocation in chatq does. */
void digest_sha1_hex(const void *data, size_t len, char out[41]);

#endif
