/* metrics.c — chatqd's registry, exposition text and HTTP server; see
 * metrics.h for the design.
 *
 * The registry is an array of series (text, family, value), found by text
 * through an open-addressing table of indexes (m_index: linear probing,
 * doubled when half full; series are never removed). A worker process's
 * part (metrics_proc) maps series indexes to the last values it sent, in
 * the same kind of table keyed by index + 1.
 *
 * Rendering sorts the series by family (in metrics_families order) and
 * then by text, except that the buckets of one histogram go by their le
 * value as a number, so they read 0.05, 0.1, ... +Inf. */
#include "daemon/metrics.h"

#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/config.h"
#include "common/log.h"
#include "common/version.h"

typedef enum m_type { MT_COUNTER, MT_GAUGE, MT_HISTOGRAM } m_type;

/* Every family chatqd serves: its workers' (worker/metrics.h) and its own. */
static const struct m_family {
    const char *name;
    m_type type;
    const char *help;
} metrics_families[] = {
    {"chatq_jobs_started_total", MT_COUNTER,
     "Jobs taken from a queue by a worker (a requeued job is taken again)."},
    {"chatq_jobs_finished_total", MT_COUNTER,
     "Jobs ended, by queue, status (succeeded, failed, cancelled) and error code (empty on "
     "success)."},
    {"chatq_jobs_duplicate_total", MT_COUNTER,
     "Jobs dropped because another job with their id was queued, running or stored."},
    {"chatq_jobs_in_flight", MT_GAUGE,
     "Jobs the workers hold now, from their fetch to their end."},
    {"chatq_upstream_attempts_total", MT_COUNTER,
     "HTTP requests sent to the upstream, by provider."},
    {"chatq_retries_total", MT_COUNTER,
     "Failed attempts followed by another attempt, by the error code of the failure."},
    {"chatq_upstream_duration_seconds", MT_HISTOGRAM,
     "Time from sending a request to the end of its exchange (status, headers and the whole "
     "answer), by provider."},
    {"chatq_time_to_first_token_seconds", MT_HISTOGRAM,
     "Time from sending a request to its first streamed chunk (or the first byte of a plain "
     "answer), by provider."},
    {"chatq_tokens_total", MT_COUNTER,
     "Tokens of ended jobs, by tenant, model (as the job asked) and kind (prompt, completion)."},
    {"chatq_ratelimit_waits_total", MT_COUNTER,
     "Answers of the shared rate limits that made a job wait, by provider."},
    {"chatq_ratelimit_wait_seconds_total", MT_COUNTER,
     "Time jobs spent getting capacity under the shared rate limits, by provider."},
    {"chatq_redis_reconnects_total", MT_COUNTER,
     "Redis connections that came back after a loss, by process (worker: the command "
     "connection; chatqd)."},
    {"chatq_redis_outbox_depth", MT_GAUGE,
     "Reliable Redis commands not answered yet (queued while Redis is away), by process."},
    {"chatq_worker_restarts_total", MT_COUNTER,
     "Worker processes restarted after they ended, by cause (killed, fault, error, clean)."},
    {"chatq_quarantine_worker_runs_total", MT_COUNTER,
     "Quarantine workers started."},
    {"chatq_worker_processes", MT_GAUGE,
     "Worker processes running now, the quarantine worker and retiring workers included."},
    {"chatq_queue_length", MT_GAUGE,
     "Jobs waiting in each configured queue (sampled every 2 s)."},
    {"chatq_quarantine_length", MT_GAUGE,
     "Suspect jobs waiting in each quarantine list (sampled every 2 s)."},
    {"chatq_dead_jobs", MT_GAUGE,
     "Entries in the dead-letter list P:dead (sampled every 2 s)."},
    {"chatq_metrics_series_dropped_total", MT_COUNTER,
     "Metric lines dropped because the registry held its maximum number of series."},
    {"chatq_build_info", MT_GAUGE,
     "Always 1; the version of chatqd as a label."},
};
#define M_NFAMILIES (int)(sizeof metrics_families / sizeof metrics_families[0])

typedef struct m_series {
    char *text;   /* "name{labels}", or "name" without labels */
    int fam;
    double v;
} m_series;

/* An open-addressing table: slot value 0 = empty, else an index + 1. */
typedef struct m_table {
    uint32_t *slots;
    double *vals;  /* per slot (metrics_proc only) */
    size_t cap, n;
} m_table;

struct metrics {
    m_series *series;
    size_t nseries, cap;
    m_table index;          /* series text -> index */
    int dirty;              /* changed since the last render */
    uv_timer_t render;
    int has_timer;
    struct MHD_Daemon *httpd;
    pthread_mutex_t lock;   /* guards text, text_len */
    char *text;             /* the latest render, served to scrapes */
    size_t text_len;
};

struct metrics_proc {
    m_table last;           /* series index -> the last value sent */
};

/* ---- tables ------------------------------------------------------------------ */

static uint64_t m_hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static uint64_t m_hash_int(uint32_t v) { return (uint64_t)v * 11400714819323198485ULL >> 17; }

/* The slot of m's index that holds the series `text`, or the empty slot
 * where it would go. */
static size_t m_index_find(const metrics *m, const char *text) {
    size_t i = m_hash_str(text) & (m->index.cap - 1);
    for (; m->index.slots[i]; i = (i + 1) & (m->index.cap - 1))
        if (!strcmp(m->series[m->index.slots[i] - 1].text, text)) break;
    return i;
}

/* The slot of t holding key (a series index + 1), or the empty slot for it. */
static size_t m_proc_find(const m_table *t, uint32_t key) {
    size_t i = m_hash_int(key) & (t->cap - 1);
    while (t->slots[i] && t->slots[i] != key) i = (i + 1) & (t->cap - 1);
    return i;
}

static void m_index_grow(metrics *m) {
    m_table old = m->index;
    m->index.cap = old.cap ? 2 * old.cap : 256;
    m->index.slots = xcalloc(m->index.cap, sizeof *m->index.slots);
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i])
            m->index.slots[m_index_find(m, m->series[old.slots[i] - 1].text)] = old.slots[i];
    free(old.slots);
}

static void m_proc_grow(m_table *t) {
    m_table old = *t;
    t->cap = old.cap ? 2 * old.cap : 64;
    t->slots = xcalloc(t->cap, sizeof *t->slots);
    t->vals = xcalloc(t->cap, sizeof *t->vals);
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.slots[i]) continue;
        size_t j = m_proc_find(t, old.slots[i]);
        t->slots[j] = old.slots[i];
        t->vals[j] = old.vals[i];
    }
    free(old.slots);
    free(old.vals);
}

/* ---- series text ---------------------------------------------------------------- */

static int m_name_char(char c, int first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* Checks "name{l=\"v\",...}" (labels escaped as the text format wants,
 * braces required) and returns the name's length, or 0 when malformed. */
static size_t m_series_check(const char *s) {
    size_t n = 0;
    while (m_name_char(s[n], n == 0)) n++;
    if (n == 0 || s[n] != '{') return 0;
    const char *p = s + n + 1;
    if (*p == '}') return p[1] ? 0 : n;
    for (;;) {
        const char *l = p;
        while (m_name_char(*p, p == l) && *p != ':') p++;
        if (p == l || p[0] != '=' || p[1] != '"') return 0;
        for (p += 2; *p != '"'; p++) {
            if (*p == '\0' || *p == '\n') return 0;
            if (*p == '\\' && (p[1] == '\\' || p[1] == '"' || p[1] == 'n')) p++;
            else if (*p == '\\') return 0;
        }
        p++;
        if (*p == '}') return p[1] ? 0 : n;
        if (*p++ != ',') return 0;
    }
}

/* The family of a series whose name is name[0..n), or -1 when unknown.
 * A histogram's series are its _bucket, _sum and _count. */
static int m_family_of(const char *name, size_t n) {
    for (int f = 0; f < M_NFAMILIES; f++) {
        const char *fn = metrics_families[f].name;
        size_t fl = strlen(fn);
        if (n == fl && !memcmp(name, fn, n))
            return metrics_families[f].type == MT_HISTOGRAM ? -1 : f;
        if (metrics_families[f].type != MT_HISTOGRAM || n <= fl || memcmp(name, fn, fl)) continue;
        const char *suf = name + fl;
        size_t sl = n - fl;
        if ((sl == 7 && !memcmp(suf, "_bucket", 7)) || (sl == 4 && !memcmp(suf, "_sum", 4)) ||
            (sl == 6 && !memcmp(suf, "_count", 6)))
            return f;
    }
    return -1;
}

/* The index of a series given as text, created if need be; -1 when the
 * text is malformed, its family unknown, or the registry full. */
static long m_series_get(metrics *m, const char *text) {
    if (m->index.cap) {
        size_t i = m_index_find(m, text);
        if (m->index.slots[i]) return (long)m->index.slots[i] - 1;
    }
    size_t n = m_series_check(text);
    int fam = n ? m_family_of(text, n) : -1;
    if (fam < 0) return -1;
    if (m->nseries >= METRICS_MAX_SERIES) {
        metrics_add(m, "chatq_metrics_series_dropped_total{}", 1);
        return -1;
    }
    if (2 * (m->nseries + 1) > m->index.cap) m_index_grow(m);
    if (m->nseries == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 128;
        m->series = xrealloc(m->series, m->cap * sizeof *m->series);
    }
    m_series *s = &m->series[m->nseries];
    s->text = xstrdup(text);
    s->fam = fam;
    s->v = 0;
    m->index.slots[m_index_find(m, text)] = (uint32_t)++m->nseries;
    m->dirty = 1;
    return (long)m->nseries - 1;
}

/* ---- updates --------------------------------------------------------------------- */

void metrics_add(metrics *m, const char *series, double d) {
    long i = m ? m_series_get(m, series) : -1;
    if (i < 0) return;
    m->series[i].v += d;
    m->dirty = 1;
}

void metrics_set(metrics *m, const char *series, double v) {
    long i = m ? m_series_get(m, series) : -1;
    if (i < 0 || m->series[i].v == v) return;
    m->series[i].v = v;
    m->dirty = 1;
}

metrics_proc *metrics_proc_new(metrics *m) { return m ? xcalloc(1, sizeof(metrics_proc)) : NULL; }

int metrics_proc_line(metrics *m, metrics_proc *mp, const char *line) {
    if (!m || !mp || strncmp(line, "metric ", 7)) return -1;
    char *end;
    errno = 0;
    double v = strtod(line + 7, &end);
    if (end == line + 7 || *end != ' ' || errno || !isfinite(v)) return -1;
    long i = m_series_get(m, end + 1);
    if (i < 0) return -1;
    m_table *t = &mp->last;
    if (2 * (t->n + 1) > t->cap) m_proc_grow(t);
    size_t k = m_proc_find(t, (uint32_t)i + 1);
    if (!t->slots[k]) {
        t->slots[k] = (uint32_t)i + 1;
        t->vals[k] = 0;
        t->n++;
    }
    double d = v - t->vals[k];
    if (d == 0 || (d < 0 && metrics_families[m->series[i].fam].type != MT_GAUGE)) return 0;
    t->vals[k] = v;
    m->series[i].v += d;
    m->dirty = 1;
    return 0;
}

void metrics_proc_end(metrics *m, metrics_proc *mp) {
    if (!m || !mp) return;
    for (size_t k = 0; k < mp->last.cap; k++) {
        uint32_t key = mp->last.slots[k];
        if (!key || metrics_families[m->series[key - 1].fam].type != MT_GAUGE) continue;
        m->series[key - 1].v -= mp->last.vals[k];
        m->dirty = 1;
    }
    free(mp->last.slots);
    free(mp->last.vals);
    free(mp);
}

/* ---- rendering ------------------------------------------------------------------------ */

/* Where a series' le label value starts, or NULL. */
static const char *m_le(const char *text) {
    const char *p = strstr(text, "le=\"");
    return p ? p + 4 : NULL;
}

static int m_cmp(const void *a, const void *b) {
    const m_series *x = *(m_series *const *)a, *y = *(m_series *const *)b;
    if (x->fam != y->fam) return x->fam < y->fam ? -1 : 1;
    const char *lx = m_le(x->text), *ly = m_le(y->text);
    /* the buckets of one histogram: le is their last label */
    if (lx && ly && lx - x->text == ly - y->text &&
        !memcmp(x->text, y->text, (size_t)(lx - x->text))) {
        double vx = strtod(lx, NULL), vy = strtod(ly, NULL);
        return vx < vy ? -1 : vx > vy;
    }
    return strcmp(x->text, y->text);
}

/* A value as short as it reads back exactly; integers without exponent. */
static void m_put_number(buf *b, double v) {
    if (v == floor(v) && fabs(v) < 1e15) {
        buf_printf(b, "%.0f", v);
        return;
    }
    char s[32];
    snprintf(s, sizeof s, "%.15g", v);
    if (strtod(s, NULL) != v) snprintf(s, sizeof s, "%.17g", v);
    buf_puts(b, s);
}

char *metrics_render(metrics *m, size_t *len) {
    buf b = {0};
    m_series **order = xcalloc(m->nseries + 1, sizeof *order);
    for (size_t i = 0; i < m->nseries; i++) order[i] = &m->series[i];
    qsort(order, m->nseries, sizeof *order, m_cmp);
    int fam = -1;
    for (size_t i = 0; i < m->nseries; i++) {
        const m_series *s = order[i];
        if (s->fam != fam) {
            static const char *const types[] = {"counter", "gauge", "histogram"};
            fam = s->fam;
            const struct m_family *f = &metrics_families[fam];
            buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                       types[f->type]);
        }
        size_t tl = strlen(s->text);
        /* "name{}" is written "name" */
        buf_append(&b, s->text, tl >= 2 && !strcmp(s->text + tl - 2, "{}") ? tl - 2 : tl);
        buf_putc(&b, ' ');
        m_put_number(&b, s->v == 0 ? 0 : s->v); /* never "-0" */
        buf_putc(&b, '\n');
    }
    free(order);
    *len = b.len;
    return buf_steal(&b);
}

/* Renders when something changed, and swaps the text in for the scrapes. */
static void m_on_render(uv_timer_t *t) {
    metrics *m = t->data;
    if (!m->dirty) return;
    m->dirty = 0;
    size_t len;
    char *text = metrics_render(m, &len);
    pthread_mutex_lock(&m->lock);
    char *old = m->text;
    m->text = text;
    m->text_len = len;
    pthread_mutex_unlock(&m->lock);
    free(old);
}

/* ---- HTTP (libmicrohttpd's thread) ---------------------------------------------------- */

static enum MHD_Result m_reply(struct MHD_Connection *c, unsigned status, const char *type,
                               const char *body, size_t len) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result m_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version,
                                    const char *upload, size_t *upload_size, void **state) {
    metrics *m = cls;
    (void)version, (void)upload, (void)upload_size, (void)state;
    static const char plain[] = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        static const char msg[] = "only GET and HEAD\n";
        return m_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, plain, msg, sizeof msg - 1);
    }
    if (strcmp(url, "/metrics")) {
        static const char msg[] = "not found: chatqd serves /metrics\n";
        return m_reply(c, MHD_HTTP_NOT_FOUND, plain, msg, sizeof msg - 1);
    }
    pthread_mutex_lock(&m->lock); /* the text is copied into the response */
    enum MHD_Result ret = m_reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                                  m->text ? m->text : "", m->text ? m->text_len : 0);
    pthread_mutex_unlock(&m->lock);
    return ret;
}

/* libmicrohttpd's own messages (a client that misbehaves, out of memory),
 * quoted by hand: log_quote() is not for other threads. */
static void m_on_httpd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    for (char *p = msg; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < ' ') *p = ' ';
    log_warn("metrics_http", "message=\"%s\"", msg);
}

/* A listening socket on addr, or -1 with the reason in err. */
static int m_listen(const char *addr, char *err, size_t errlen) {
    char host[256], port[8];
    int p;
    if (config_metrics_addr(addr, host, sizeof host, &p) < 0) {
        snprintf(err, errlen, "%s: not HOST:PORT", addr);
        return -1;
    }
    snprintf(port, sizeof port, "%d", p);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res, *ai;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    int fd = -1, e = 0;
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(e));
    return fd;
}

/* Starts the server thread on fd, with every signal blocked in it: they
 * are the loop's to handle. */
static struct MHD_Daemon *m_start_httpd(metrics *m, int fd) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, m_on_request, m,
        MHD_OPTION_EXTERNAL_LOGGER, m_on_httpd_log, NULL, /* first, to catch every message */
        MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, 64u,
        MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return d;
}

/* ---- life ------------------------------------------------------------------------------ */

static void m_free(metrics *m) {
    for (size_t i = 0; i < m->nseries; i++) free(m->series[i].text);
    free(m->series);
    free(m->index.slots);
    free(m->text);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

metrics *metrics_new(uv_loop_t *loop, const char *addr, char *err, size_t errlen) {
    metrics *m = xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    /* series that exist from the start, so that rate() and increase() see
     * their first events */
    static const char *const causes[] = {"killed", "fault", "error", "clean"};
    for (int i = 0; i < 4; i++) {
        char s[80];
        snprintf(s, sizeof s, "chatq_worker_restarts_total{cause=\"%s\"}", causes[i]);
        metrics_add(m, s, 0);
    }
    metrics_add(m, "chatq_quarantine_worker_runs_total{}", 0);
    metrics_add(m, "chatq_metrics_series_dropped_total{}", 0);
    metrics_add(m, "chatq_redis_reconnects_total{process=\"chatqd\"}", 0);
    metrics_set(m, "chatq_build_info{version=\"" CHATQ_VERSION "\"}", 1);
    if (!addr) return m;
    int fd = m_listen(addr, err, errlen);
    if (fd < 0) {
        m_free(m);
        return NULL;
    }
    m->httpd = m_start_httpd(m, fd);
    if (!m->httpd) {
        snprintf(err, errlen, "cannot serve on %s: libmicrohttpd did not start", addr);
        close(fd);
        m_free(m);
        return NULL;
    }
    uv_timer_init(loop, &m->render);
    m->render.data = m;
    m->has_timer = 1;
    m_on_render(&m->render); /* a scrape right after the start gets something */
    uv_timer_start(&m->render, m_on_render, METRICS_RENDER_MS, METRICS_RENDER_MS);
    uv_unref((uv_handle_t *)&m->render);
    return m;
}

static void m_on_timer_closed(uv_handle_t *h) { m_free(h->data); }

void metrics_close(metrics *m) {
    if (!m) return;
    if (m->httpd) MHD_stop_daemon(m->httpd); /* joins its thread, closes the socket */
    if (m->has_timer)
        uv_close((uv_handle_t *)&m->render, m_on_timer_closed);
    else
        m_free(m);
}
