/* metrics.c — a worker's series, and the lines that send them; see
 * metrics.h.
 *
 * A family (m_families[]) is a metric name, its type and up to three label
 * names. A series is one set of label values of a family, found through one
 * hash table over all families (m_table: chained, doubled when it holds
 * twice as many series as chains); each family also lists its series in
 * the order they appeared, which is the order they are sent in. A series
 * keeps its value (a histogram: its count, sum and per-bucket counts) and
 * the value last sent, so a send writes only what changed.
 *
 * The times of requests in flight, for the two latency histograms, are
 * kept by jobrun address in a small open-addressing table (m_att: linear
 * probing, deletion by shifting back) that grows with the jobs in flight. */
#include "worker/metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/rconn.h"
#include "worker/report.h"

typedef enum m_type { MT_COUNTER, MT_GAUGE, MT_HISTOGRAM } m_type;

/* Histogram buckets in seconds, for LLM latencies: a fast first token
 * (50 ms) to a long reasoning answer (2 min); later goes to +Inf. */
static const double m_bounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120};
#define M_NBOUNDS (sizeof m_bounds / sizeof m_bounds[0])

typedef struct m_series {
    struct m_family *fam;
    char *lv[3];              /* label values, unescaped */
    double v;                 /* counter, gauge; histogram: count */
    double sent;              /* v when last sent (-1: never) */
    double sum;               /* histogram: sum of observations */
    double *h;                /* histogram: per-bucket counts, +Inf last */
    struct m_series *next;    /* chain in m_table */
    struct m_series *after;   /* the family's next series */
} m_series;

typedef struct m_family {
    const char *name;
    m_type type;
    const char *labels[3];
    m_series *first, *last;
} m_family;

enum {
    F_STARTED, F_FINISHED, F_DUPLICATE, F_IN_FLIGHT, F_ATTEMPTS, F_RETRIES, F_DURATION,
    F_TTFT, F_TOKENS, F_RL_WAITS, F_RL_WAIT_SECONDS, F_RECONNECTS, F_OUTBOX, F_NFAMILIES
};

static m_family m_families[F_NFAMILIES] = {
    [F_STARTED] = {"chatq_jobs_started_total", MT_COUNTER, {"queue"}, 0, 0},
    [F_FINISHED] = {"chatq_jobs_finished_total", MT_COUNTER, {"queue", "status", "code"}, 0, 0},
    [F_DUPLICATE] = {"chatq_jobs_duplicate_total", MT_COUNTER, {"queue"}, 0, 0},
    [F_IN_FLIGHT] = {"chatq_jobs_in_flight", MT_GAUGE, {0}, 0, 0},
    [F_ATTEMPTS] = {"chatq_upstream_attempts_total", MT_COUNTER, {"provider"}, 0, 0},
    [F_RETRIES] = {"chatq_retries_total", MT_COUNTER, {"code"}, 0, 0},
    [F_DURATION] = {"chatq_upstream_duration_seconds", MT_HISTOGRAM, {"provider"}, 0, 0},
    [F_TTFT] = {"chatq_time_to_first_token_seconds", MT_HISTOGRAM, {"provider"}, 0, 0},
    [F_TOKENS] = {"chatq_tokens_total", MT_COUNTER, {"tenant", "model", "kind"}, 0, 0},
    [F_RL_WAITS] = {"chatq_ratelimit_waits_total", MT_COUNTER, {"provider"}, 0, 0},
    [F_RL_WAIT_SECONDS] = {"chatq_ratelimit_wait_seconds_total", MT_COUNTER, {"provider"}, 0, 0},
    [F_RECONNECTS] = {"chatq_redis_reconnects_total", MT_COUNTER, {"process"}, 0, 0},
    [F_OUTBOX] = {"chatq_redis_outbox_depth", MT_GAUGE, {"process"}, 0, 0},
};

static m_series **m_table;   /* hash chains */
static size_t m_table_size;  /* a power of two, or 0 */
static size_t m_nseries;
static int m_pairs;          /* tenant|model pairs with series of their own */

/* ---- series ---------------------------------------------------------------- */

static const char *m_str(const char *s) { return s ? s : ""; }

static uint64_t m_hash(const m_family *f, const char *a, const char *b, const char *c) {
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)f;
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL; /* a separator no UTF-8 text holds */
    }
    return h;
}

static void m_grow(void) {
    size_t size = m_table_size ? m_table_size * 2 : 64;
    m_series **tab = xcalloc(size, sizeof *tab);
    for (size_t i = 0; i < m_table_size; i++) {
        for (m_series *s = m_table[i], *next; s; s = next) {
            next = s->next;
            size_t k = m_hash(s->fam, s->lv[0], s->lv[1], s->lv[2]) & (size - 1);
            s->next = tab[k];
            tab[k] = s;
        }
    }
    free(m_table);
    m_table = tab;
    m_table_size = size;
}

/* The series of family f with these label values (NULL = ""), or NULL
 * when there is none and `create` is 0. */
static m_series *m_find(m_family *f, const char *a, const char *b, const char *c, int create) {
    a = m_str(a), b = m_str(b), c = m_str(c);
    if (m_table_size) {
        size_t k = m_hash(f, a, b, c) & (m_table_size - 1);
        for (m_series *s = m_table[k]; s; s = s->next)
            if (s->fam == f && !strcmp(s->lv[0], a) && !strcmp(s->lv[1], b) &&
                !strcmp(s->lv[2], c))
                return s;
    }
    if (!create) return NULL;
    if (m_nseries >= 2 * m_table_size) m_grow();
    m_series *s = xcalloc(1, sizeof *s);
    s->fam = f;
    s->lv[0] = xstrdup(a);
    s->lv[1] = xstrdup(b);
    s->lv[2] = xstrdup(c);
    s->sent = -1;
    if (f->type == MT_HISTOGRAM) s->h = xcalloc(M_NBOUNDS + 1, sizeof *s->h);
    size_t k = m_hash(f, a, b, c) & (m_table_size - 1);
    s->next = m_table[k];
    m_table[k] = s;
    if (f->last)
        f->last->after = s;
    else
        f->first = s;
    f->last = s;
    m_nseries++;
    return s;
}

static void m_add(int fam, const char *a, const char *b, const char *c, double d) {
    m_find(&m_families[fam], a, b, c, 1)->v += d;
}

static void m_observe(int fam, const char *a, double seconds) {
    m_series *s = m_find(&m_families[fam], a, NULL, NULL, 1);
    if (seconds < 0) seconds = 0; /* the wall clock stepped back */
    size_t i = 0;
    while (i < M_NBOUNDS && seconds > m_bounds[i]) i++;
    s->h[i]++;
    s->sum += seconds;
    s->v++;
}

/* A label value a job chose, cut to METRICS_LABEL_MAX bytes on a UTF-8
 * character boundary, into out (METRICS_LABEL_MAX + 1 bytes). */
static const char *m_cut(const char *s, char *out) {
    s = m_str(s);
    size_t n = strlen(s);
    if (n <= METRICS_LABEL_MAX) return s;
    n = METRICS_LABEL_MAX;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--; /* s[n] continues a character */
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

/* ---- request times ------------------------------------------------------------ */

typedef struct m_attempt {
    const void *key;  /* the jobrun; NULL = a free slot */
    long long ms;     /* unix ms the request was sent */
} m_attempt;

static m_attempt *m_att;
static size_t m_att_cap, m_att_n; /* cap: a power of two, or 0 */

static long long m_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* as upstream_first_output_ms() */
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t m_att_slot(const void *key) {
    uint64_t h = (uint64_t)(uintptr_t)key * 11400714819323198485ULL;
    return (size_t)(h >> 20) & (m_att_cap - 1);
}

/* The slot holding key, or the free slot where it would go. */
static size_t m_att_find(const void *key) {
    size_t i = m_att_slot(key);
    while (m_att[i].key && m_att[i].key != key) i = (i + 1) & (m_att_cap - 1);
    return i;
}

static void m_att_put(const void *key, long long ms) {
    if (2 * (m_att_n + 1) > m_att_cap) { /* keep it at most half full */
        m_attempt *old = m_att;
        size_t cap = m_att_cap;
        m_att_cap = cap ? 2 * cap : 64;
        m_att = xcalloc(m_att_cap, sizeof *m_att);
        for (size_t i = 0; i < cap; i++)
            if (old[i].key) m_att[m_att_find(old[i].key)] = old[i];
        free(old);
    }
    size_t i = m_att_find(key);
    if (!m_att[i].key) m_att_n++;
    m_att[i].key = key;
    m_att[i].ms = ms;
}

/* Removes key; returns its time, or -1 when it was not there. */
static long long m_att_take(const void *key) {
    if (!m_att_n) return -1;
    size_t i = m_att_find(key);
    if (!m_att[i].key) return -1;
    long long ms = m_att[i].ms;
    /* shift back the entries after it that probed past its slot */
    for (size_t j = (i + 1) & (m_att_cap - 1); m_att[j].key; j = (j + 1) & (m_att_cap - 1)) {
        size_t home = m_att_slot(m_att[j].key);
        /* j's entry may move to i unless its home lies in (i, j] */
        int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays) continue;
        m_att[i] = m_att[j];
        i = j;
    }
    m_att[i].key = NULL;
    m_att_n--;
    return ms;
}

/* ---- what the job code counts --------------------------------------------------- */

void metrics_job_started(const char *queue) { m_add(F_STARTED, queue, NULL, NULL, 1); }

void metrics_job_duplicate(const char *queue) { m_add(F_DUPLICATE, queue, NULL, NULL, 1); }

void metrics_job_finished(const char *queue, job_status status, const char *code,
                          const char *tenant, const char *model,
                          const long long usage[USAGE_NMETRICS]) {
    m_add(F_FINISHED, queue, job_status_name(status), status == JOB_SUCCEEDED ? "" : code, 1);
    long long prompt = usage[USAGE_PROMPT_TOKENS], completion = usage[USAGE_COMPLETION_TOKENS];
    if (prompt <= 0 && completion <= 0) return;
    char tbuf[METRICS_LABEL_MAX + 1], mbuf[METRICS_LABEL_MAX + 1];
    const char *t = m_cut(tenant, tbuf), *m = m_cut(model, mbuf);
    m_family *f = &m_families[F_TOKENS];
    if (!m_find(f, t, m, "prompt", 0)) {
        if (m_pairs >= METRICS_MAX_PAIRS)
            t = m = "_other";
        else
            m_pairs++;
    }
    m_add(F_TOKENS, t, m, "prompt", (double)prompt);
    m_add(F_TOKENS, t, m, "completion", (double)completion);
}

void metrics_attempt_sent(const void *key, const char *provider) {
    m_add(F_ATTEMPTS, provider, NULL, NULL, 1);
    m_att_put(key, m_now_ms());
}

void metrics_attempt_done(const void *key, const char *provider, long long first_output_ms) {
    long long sent = m_att_take(key);
    if (sent < 0) return;
    m_observe(F_DURATION, provider, (double)(m_now_ms() - sent) / 1000);
    if (first_output_ms > 0) m_observe(F_TTFT, provider, (double)(first_output_ms - sent) / 1000);
}

void metrics_forget(const void *key) { m_att_take(key); }

void metrics_retry(const char *code) { m_add(F_RETRIES, code, NULL, NULL, 1); }

void metrics_rate_reply(const char *provider, long long wait_ms, long long waited_ms) {
    if (wait_ms > 0)
        m_add(F_RL_WAITS, provider, NULL, NULL, 1);
    else if (waited_ms > 0)
        m_add(F_RL_WAIT_SECONDS, provider, NULL, NULL, (double)waited_ms / 1000);
}

void metrics_redis_reconnect(void) { m_add(F_RECONNECTS, "worker", NULL, NULL, 1); }

/* ---- the lines ------------------------------------------------------------------ */

/* A label value as the text format wants it: \ " and newline escaped;
 * other control characters, which no valid job holds, become '?'. */
static void m_put_value(buf *b, const char *s) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\\' || ch == '"')
            buf_putc(b, '\\'), buf_putc(b, (char)ch);
        else if (ch == '\n')
            buf_puts(b, "\\n");
        else
            buf_putc(b, ch < 0x20 || ch == 0x7f ? '?' : (char)ch);
    }
}

/* One line: "metric V NAME[SUFFIX]{labels[,le="LE"]}\n"; a line longer
 * than chatqd reads is left out (label values are cut well short of it). */
static void m_line(buf *b, const m_series *s, const char *suffix, const char *le, double v) {
    size_t start = b->len;
    buf_printf(b, "metric %.17g %s%s{", v, s->fam->name, suffix);
    int n = 0;
    for (int i = 0; i < 3 && s->fam->labels[i]; i++) {
        buf_printf(b, "%s%s=\"", n++ ? "," : "", s->fam->labels[i]);
        m_put_value(b, s->lv[i]);
        buf_putc(b, '"');
    }
    if (le) buf_printf(b, "%sle=\"%s\"", n ? "," : "", le);
    buf_puts(b, "}\n");
    if (b->len - start > REPORT_LINE_MAX) b->len = start;
}

static void m_lines(buf *b, const m_series *s) {
    if (s->fam->type != MT_HISTOGRAM) {
        m_line(b, s, "", NULL, s->v);
        return;
    }
    double cum = 0;
    char le[32];
    for (size_t i = 0; i <= M_NBOUNDS; i++) {
        cum += s->h[i];
        if (i < M_NBOUNDS)
            snprintf(le, sizeof le, "%g", m_bounds[i]);
        else
            strcpy(le, "+Inf");
        m_line(b, s, "_bucket", le, cum);
    }
    m_line(b, s, "_sum", NULL, s->sum);
    m_line(b, s, "_count", NULL, s->v);
}

/* The lines of every series (full) or of those changed since last sent. */
static void m_build(buf *b, int full) {
    for (int f = 0; f < F_NFAMILIES; f++)
        for (m_series *s = m_families[f].first; s; s = s->after)
            if (full || s->v != s->sent) m_lines(b, s);
}

static void m_mark_sent(int full) {
    for (int f = 0; f < F_NFAMILIES; f++)
        for (m_series *s = m_families[f].first; s; s = s->after)
            if (full || s->v != s->sent) s->sent = s->v;
}

char *metrics_snapshot(int full, size_t *len) {
    buf b = {0};
    m_build(&b, full);
    m_mark_sent(full);
    *len = b.len;
    return buf_steal(&b);
}

/* ---- sending ----------------------------------------------------------------------- */

static worker *m_worker;
static uv_timer_t m_timer;
static unsigned m_ticks;
static buf m_out;

static void m_sample(void) {
    m_find(&m_families[F_IN_FLIGHT], NULL, NULL, NULL, 1)->v = m_worker->nruns;
    m_series *outbox = m_find(&m_families[F_OUTBOX], "worker", NULL, NULL, 1);
    outbox->v = (double)rconn_pending(m_worker->cmd);
}

/* Sends what changed, or everything; what the channel did not take is
 * sent again next time (it is not marked sent). */
static void m_send(int full) {
    m_sample();
    buf_reset(&m_out);
    m_build(&m_out, full);
    if (report_send_lines(m_out.data, m_out.len)) m_mark_sent(full);
    if (m_out.cap > 65536) buf_free(&m_out); /* a burst of series: give it back */
}

static void m_on_timer(uv_timer_t *t) {
    (void)t;
    m_send(++m_ticks % METRICS_FULL_EVERY == 0);
}

void metrics_start(worker *w) {
    m_worker = w;
    uv_timer_init(w->loop, &m_timer);
    uv_timer_start(&m_timer, m_on_timer, METRICS_SEND_MS, METRICS_SEND_MS);
    uv_unref((uv_handle_t *)&m_timer); /* never what keeps the loop alive */
}

void metrics_stop(void) {
    if (!m_worker) return;
    m_send(1);
    uv_close((uv_handle_t *)&m_timer, NULL);
    buf_free(&m_out);
    m_worker = NULL;
}

void metrics_reset(void) {
    for (size_t i = 0; i < m_table_size; i++) {
        for (m_series *s = m_table[i], *next; s; s = next) {
            next = s->next;
            for (int j = 0; j < 3; j++) free(s->lv[j]);
            free(s->h);
            free(s);
        }
    }
    free(m_table);
    m_table = NULL;
    m_table_size = m_nseries = 0;
    m_pairs = 0;
    for (int f = 0; f < F_NFAMILIES; f++) m_families[f].first = m_families[f].last = NULL;
    free(m_att);
    m_att = NULL;
    m_att_cap = m_att_n = 0;
}
