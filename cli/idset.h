/* idset.h — the set of custom_ids seen in a batch file, in 12 bytes a slot.
 *
 * `chatq batch` must refuse a file whose custom_ids repeat, while reading
 * the file as a stream: the set is the one structure that grows with the
 * file. It keeps no strings: a slot holds the id's 64-bit hash and the
 * number of the line that holds it. When a new id's hash matches a slot,
 * the caller's `same` callback decides (by reading that earlier line again)
 * whether the ids are really equal; a mere hash collision is told apart and
 * both ids are kept. Open addressing with linear probing in two parallel
 * arrays, load factor at most 3/4, doubling when full: for 100,000 ids the
 * set takes 3 MiB.
 *
 * Ownership: the set owns its arrays (idset_free()). */
#ifndef CHATQ_CLI_IDSET_H
#define CHATQ_CLI_IDSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct idset {
    uint64_t *hash;   /* 0 = empty slot */
    uint32_t *line;
    size_t cap;       /* a power of two, or 0 before the first add */
    size_t n;
} idset;

/* 1 when the id stored for `line` equals the id being added. */
typedef int (*idset_same_fn)(void *arg, uint32_t line);

/* The hash of an id (never 0). */
uint64_t idset_hash(const char *s, size_t n);

/* Adds the id with hash h found on `line`: returns 0 when it is new, or the
 * line of the earlier equal id (then nothing is added). */
uint32_t idset_add(idset *s, uint64_t h, uint32_t line, idset_same_fn same, void *arg);

void idset_free(idset *s);

#endif
