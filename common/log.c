/* log.c — logfmt lines on stderr; see log.h.
 * Each line is built in a local buffer and written with one write(2), so lines
 * from the supervisor and its workers (which share stderr) never interleave. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "chatq";
static enum log_level log_level_cur = LOG_INFO;
static int log_journal;

static const char *level_names[] = {"error", "warn", "info", "debug"};
static const char *level_prio[] = {"<3>", "<4>", "<6>", "<7>"};

void log_init(const char *prog) {
    log_prog = prog;
    log_journal = getenv("JOURNAL_STREAM") != NULL;
}

int log_set_level_name(const char *name) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            log_level_cur = (enum log_level)i;
            return 0;
        }
    }
    if (strcmp(name, "warning") == 0) {
        log_level_cur = LOG_WARN;
        return 0;
    }
    return -1;
}

int log_enabled(enum log_level level) { return level <= log_level_cur; }

void log_write(enum log_level level, const char *event, const char *fmt, ...) {
    if (!log_enabled(level)) return;
    char line[4096];
    size_t n = 0;
    if (log_journal) {
        n += (size_t)snprintf(line, sizeof line, "%s", level_prio[level]);
    } else {
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        n += strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ ", (long)tv.tv_usec / 1000);
    }
    n += (size_t)snprintf(line + n, sizeof line - n, "level=%s prog=%s pid=%d msg=%s",
                          level_names[level], log_prog, (int)getpid(), event);
    if (fmt && *fmt && n < sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
        va_end(ap);
        if (m > 0) n += (size_t)m;
    }
    if (n > sizeof line - 2) n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(2, line, n);
    (void)w;
}

const char *log_quote(const char *s) {
    static char bufs[4][256];
    static int next;
    char *out = bufs[next];
    next = (next + 1) % 4;
    if (!s) return "\"\"";
    int plain = *s != '\0';
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\') plain = 0;
    size_t o = 0, max = sizeof bufs[0] - 8;
    if (!plain) out[o++] = '"';
    for (const char *p = s; *p && o < max; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c < 0x20) {
            out[o++] = ' ';
        } else {
            out[o++] = (char)c;
        }
    }
    if (!plain) out[o++] = '"';
    out[o] = '\0';
    return out;
}
