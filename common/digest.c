/* digest.c — SHA1 hex through libcrypto's one-shot EVP_Digest(); see
 * digest.h. */
#include "common/digest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

void digest_sha1_hex(const void *data, size_t len, char out[41]) {
    static const char hex[] = "0123456789abcdef";
    static const unsigned char empty = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(data ? data : &empty, len, md, &n, EVP_sha1(), NULL) || n != 20) {
        fputs("chatq: libcrypto failed to compute a SHA1 (out of memory?)\n", stderr);
        abort();
    }
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}
