/* log.h — one line per event, logfmt style, on stderr.
 *
 *   ts=2026-11-25T14:00:00.123Z level=info prog=chatq-worker pid=42 msg=job_done id=abc ms=12
 *
 * Call sites pass the event name and then their own key=value pairs:
 *   log_info("job_done", "id=%s ms=%ld", id, ms);
 * Values that may hold spaces or quotes go through log_quote() first.
 * When stderr is the systemd journal ($JOURNAL_STREAM set), each line starts
 * with its syslog priority (<3> error, <4> warn, <6> info, <7> debug) so the
 * journal records the right level. Secrets are never passed to these calls. */
#ifndef CHATQ_LOG_H
#define CHATQ_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_init(const char *prog);
/* Returns 0, or -1 when name is not one of error, warn, info, debug. */
int log_set_level_name(const char *name);
int log_enabled(enum log_level level);

void log_write(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(ev, ...) log_write(LOG_ERROR, ev, __VA_ARGS__)
#define log_warn(ev, ...) log_write(LOG_WARN, ev, __VA_ARGS__)
#define log_info(ev, ...) log_write(LOG_INFO, ev, __VA_ARGS__)
#define log_debug(ev, ...) \
    do { if (log_enabled(LOG_DEBUG)) log_write(LOG_DEBUG, ev, __VA_ARGS__); } while (0)

/* Formats s as a logfmt value (quoted and escaped when needed, cut at 200
 * bytes). Returns a pointer into one of a few rotating static buffers, so up
 * to four log_quote() results may appear in one log call. */
const char *log_quote(const char *s);

#endif
