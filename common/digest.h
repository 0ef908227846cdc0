/* digest.h — the SHA1 of a job's text, as Redis' redis.sha1hex() writes it.
 *
 * A job's text is its identity where its id cannot be (two pushes of the same
 * text are the same job; a job put back on its queue is found again by it):
 * the worker and the Lua scripts must compute the same name for it, so this
 * is SHA1 in 40 lower-case hex digits, from OpenSSL's libcrypto. */
#ifndef CHATQ_DIGEST_H
#define CHATQ_DIGEST_H

#include <stddef.h>

/* Writes the SHA1 of data[len] as 40 hex digits and a NUL into out. */
void digest_sha1_hex(const void *data, size_t len, char out[41]);

#endif
