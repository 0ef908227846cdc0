/* idset.c — the custom_id set of idset.h.
 *
 * The hash is FNV-1a followed by the MurmurHash3 finaliser: FNV alone
 * leaves its low bits, the ones the slot index is taken from, poorly mixed
 * for ids that differ only in their last characters ("request-1",
 * "request-2"...). */
#include "cli/idset.h"

#include <stdlib.h>

#include "cli/jsonl.h"
#include "common/buf.h"

#define IDSET_MIN_CAP 1024

uint64_t idset_hash(const char *s, size_t n) {
    uint64_t h = jsonl_fnv(JSONL_FNV_INIT, s, n);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h ? h : 1;
}

/* Puts (h, line) in the first free slot of its probe sequence. */
static void idset_place(uint64_t *hash, uint32_t *line, size_t cap, uint64_t h, uint32_t l) {
    size_t i = (size_t)h & (cap - 1);
    while (hash[i]) i = (i + 1) & (cap - 1);
    hash[i] = h;
    line[i] = l;
}

static void idset_grow(idset *s) {
    size_t cap = s->cap ? s->cap * 2 : IDSET_MIN_CAP;
    uint64_t *hash = xcalloc(cap, sizeof *hash);
    uint32_t *line = xcalloc(cap, sizeof *line);
    for (size_t i = 0; i < s->cap; i++)
        if (s->hash[i]) idset_place(hash, line, cap, s->hash[i], s->line[i]);
    free(s->hash);
    free(s->line);
    s->hash = hash;
    s->line = line;
    s->cap = cap;
}

uint32_t idset_add(idset *s, uint64_t h, uint32_t line, idset_same_fn same, void *arg) {
    if ((s->n + 1) * 4 > s->cap * 3) idset_grow(s);
    size_t i = (size_t)h & (s->cap - 1);
    for (; s->hash[i]; i = (i + 1) & (s->cap - 1)) {
        if (s->hash[i] == h && same(arg, s->line[i])) return s->line[i];
    }
    s->hash[i] = h;
    s->line[i] = line;
    s->n++;
    return 0;
}

void idset_free(idset *s) {
    free(s->hash);
    free(s->line);
    s->hash = NULL;
    s->line = NULL;
    s->cap = s->n = 0;
}
