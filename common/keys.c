/* keys.c — Redis key names; see keys.h for the list and their types. */
#include "common/keys.h"

#include <string.h>
#include <time.h>

#include "common/buf.h"

char *keys_queue(const char *p, const char *q) { return xasprintf("%s:queue:%s", p, q); }

char *keys_queue_pattern(const char *p) {
    buf b = {0};
    for (; *p; p++) {
        if (strchr("*?[]\\", *p)) buf_putc(&b, '\\');
        buf_putc(&b, *p);
    }
    buf_puts(&b, ":queue:*");
    return buf_steal(&b);
}

const char *keys_queue_name(const char *p, const char *key) {
    size_t n = strlen(p);
    if (strncmp(key, p, n) != 0 || strncmp(key + n, ":queue:", 7) != 0 || !key[n + 7]) return NULL;
    return key + n + 7;
}
char *keys_job(const char *p, const char *id) { return xasprintf("%s:job:%s", p, id); }
char *keys_stream(const char *p, const char *id) { return xasprintf("%s:stream:%s", p, id); }
char *keys_events(const char *p, const char *id) { return xasprintf("%s:events:%s", p, id); }
char *keys_cancel(const char *p, const char *id) { return xasprintf("%s:cancel:%s", p, id); }
char *keys_dead(const char *p) { return xasprintf("%s:dead", p); }
char *keys_control(const char *p) { return xasprintf("%s:control", p); }
char *keys_usage(const char *p, const char *day) { return xasprintf("%s:usage:%s", p, day); }
char *keys_workers(const char *p) { return xasprintf("%s:workers", p); }
char *keys_crashes(const char *p) { return xasprintf("%s:crashes", p); }
char *keys_requeued(const char *p) { return xasprintf("%s:requeued", p); }
char *keys_quarantine(const char *p, const char *q) { return xasprintf("%s:quarantine:%s", p, q); }
char *keys_drop(const char *p, const char *token) { return xasprintf("%s:drop:%s", p, token); }
char *keys_batch(const char *p, const char *b) { return xasprintf("%s:batch:%s", p, b); }
char *keys_batch_out(const char *p, const char *b) { return xasprintf("%s:batch:%s:out", p, b); }

/* The kinds of state key: each is P:<kind>, or P:<kind>:<something>. */
static const char *const keys_state_kinds[] = {
    "queue",  "processing", "job",     "stream",  "events",   "usage",      "cancel",
    "dead",   "control",    "workers", "heartbeat", "crashes", "requeued", "quarantine",
    "drop",   "ratelimit",  "batch",   NULL,
};

const char *keys_state_kind(const char *p, const char *key) {
    size_t pn = strlen(p);
    if (strncmp(key, p, pn) != 0 || key[pn] != ':') return NULL;
    const char *rest = key + pn + 1;
    for (int i = 0; keys_state_kinds[i]; i++) {
        size_t n = strlen(keys_state_kinds[i]);
        if (strncmp(rest, keys_state_kinds[i], n) != 0 || (rest[n] && rest[n] != ':')) continue;
        if (strcmp(keys_state_kinds[i], "batch") == 0 && keys_is_batch_out(p, key)) return NULL;
        return keys_state_kinds[i];
    }
    return NULL;
}

int keys_is_batch_out(const char *p, const char *key) {
    size_t pn = strlen(p);
    if (strncmp(key, p, pn) != 0 || strncmp(key + pn, ":batch:", 7) != 0) return 0;
    const char *b = key + pn + 7;
    size_t bn = strlen(b);
    return bn > 4 && strcmp(b + bn - 4, ":out") == 0 && !memchr(b, ':', bn - 4);
}

char *keys_processing(const char *p, const char *worker, const char *queue) {
    return xasprintf("%s:processing:%s:%s", p, worker, queue);
}

char *keys_heartbeat(const char *p, const char *worker) {
    return xasprintf("%s:heartbeat:%s", p, worker);
}

char *keys_ratelimit(const char *p, const char *provider, const char *pattern) {
    return xasprintf("%s:ratelimit:%s:%s", p, provider, pattern);
}

void keys_day(long long ms, char out[11]) {
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}
