/* main.c — chatq-worker: one worker process (see worker.h).
 *
 * Normally started by chatqd, which passes --id, the effective settings as
 * flags, --config-stdin (the configuration chatqd validated arrives as a
 * snapshot on stdin, config.h: the worker never reads the file, which may
 * have changed since) and --report-fd 3 (its status channel to chatqd,
 * report.h). --quarantine makes it the quarantine worker: one job at a time,
 * taken from the quarantine lists. Run alone for debugging, it loads the
 * configuration the way chatqd does. It runs its loop until a drain
 * completes and exits 0 (1 when it could not start). */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/config.h"
#include "common/log.h"
#include "common/version.h"
#include "worker/report.h"
#include "worker/worker.h"

#define SNAPSHOT_MAX (64 << 20) /* larger than any config file chatqd accepts */

static void usage(FILE *f) {
    fputs("usage: chatq-worker [--config FILE | --config-stdin] [--redis URL]\n"
          "                    [--concurrency N] [--queues a,b,c] [--log-level LEVEL]\n"
          "                    [--id ID] [--report-fd N] [--quarantine]\n"
          "Runs one chatq worker in the foreground. Normally started by chatqd.\n",
          f);
}

/* host.pid.start-ms: unique across hosts and restarts. */
static char *make_id(void) {
    char host[128] = "host";
    gethostname(host, sizeof host - 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return xasprintf("%s.%d.%lld", host, (int)getpid(),
                     (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

/* Reads the whole of fd 0 (the snapshot chatqd writes, then closes). Returns
 * a malloc'd block and its length, or NULL with errno set. */
static char *read_stdin(size_t *len) {
    buf b = {0};
    char chunk[8192];
    for (;;) {
        ssize_t n = read(0, chunk, sizeof chunk);
        if (n == 0) break;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 || b.len + (size_t)n > SNAPSHOT_MAX) {
            if (n >= 0) errno = EFBIG;
            int e = errno;
            if (b.data) explicit_bzero(b.data, b.len);
            buf_free(&b);
            explicit_bzero(chunk, sizeof chunk);
            errno = e;
            return NULL;
        }
        buf_append(&b, chunk, (size_t)n);
    }
    explicit_bzero(chunk, sizeof chunk);
    *len = b.len;
    return buf_steal(&b);
}

/* The configuration: from the snapshot on stdin (--config-stdin), else
 * loaded as chatqd loads it. Returns 0, or 1 after saying why. */
static int load_config(config *cfg, const config_args *args, int from_stdin) {
    char err[512];
    int rc;
    if (from_stdin) {
        size_t len;
        char *snap = read_stdin(&len);
        if (!snap) {
            fprintf(stderr, "chatq-worker: cannot read the configuration on stdin: %s\n",
                    strerror(errno));
            return 1;
        }
        rc = config_load_snapshot(cfg, snap, len, args, err, sizeof err);
        config_snapshot_free(snap, len);
    } else {
        rc = config_load(cfg, args, err, sizeof err);
    }
    if (rc != 0) {
        fprintf(stderr, "chatq-worker: %s\n", err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"redis", required_argument, NULL, 'r'},
        {"concurrency", required_argument, NULL, 'n'}, {"queues", required_argument, NULL, 'q'},
        {"log-level", required_argument, NULL, 'l'}, {"id", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'V'},
        {"config-stdin", no_argument, NULL, 'S'},  {"report-fd", required_argument, NULL, 'R'},
        {"quarantine", no_argument, NULL, 'Q'},    {NULL, 0, NULL, 0}};
    config_args args = {0};
    const char *id_arg = NULL;
    int c, from_stdin = 0, quarantine = 0, report_fd = -1;
    char *end;
    log_init("chatq-worker");
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': args.config_file = optarg; break;
        case 'r': args.redis_url = optarg; break;
        case 'n': args.concurrency = optarg; break;
        case 'q': args.queues = optarg; break;
        case 'l': args.log_level = optarg; break;
        case 'i': id_arg = optarg; break;
        case 'S': from_stdin = 1; break;
        case 'Q': quarantine = 1; break;
        case 'R':
            report_fd = (int)strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || report_fd < 0) {
                fprintf(stderr, "chatq-worker: --report-fd: must be a file descriptor number\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        case 'V': puts("chatq-worker " CHATQ_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chatq-worker: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (from_stdin && args.config_file) {
        fprintf(stderr, "chatq-worker: --config and --config-stdin exclude each other\n");
        return 2;
    }
    /* The channel first, so that a crash anywhere after is reported. */
    if (report_init(report_fd) != 0) {
        fprintf(stderr, "chatq-worker: --report-fd %d: %s\n", report_fd, strerror(errno));
        return 1;
    }
    report_install_crash_handler();
    config cfg;
    if (load_config(&cfg, &args, from_stdin) != 0) return 1;
    if (quarantine) {
        /* suspects run one at a time: a crash takes no other job with it */
        cfg.quarantine = 1;
        cfg.concurrency = 1;
    }
    log_set_level_name(cfg.log_level);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "chatq-worker: cannot initialise libcurl\n");
        config_free(&cfg);
        return 1;
    }
    /* Started by chatqd (which sets CHATQ_SUPERVISED to its pid): die with
     * it, whatever kills it, rather than go on without a supervisor; and let
     * only chatqd's SIGTERM start a drain (Ctrl-C in a terminal reaches the
     * whole process group, and chatqd forwards it as SIGTERM anyway). */
    const char *sup = getenv("CHATQ_SUPERVISED");
    int supervised = sup && *sup;
    if (supervised) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if ((long)getppid() != atol(sup)) {
            fprintf(stderr, "chatq-worker: chatqd (pid %s) is gone\n", sup);
            config_free(&cfg);
            return 1;
        }
        signal(SIGINT, SIG_IGN);
    }
    char *id = id_arg ? xstrdup(id_arg) : make_id();
    uv_loop_t *loop = uv_default_loop();
    worker w;
    int rc = 1;
    if (worker_init(&w, loop, &cfg, id) == 0) {
        w.supervised = supervised;
        worker_start(&w);
        uv_run(loop, UV_RUN_DEFAULT);
        worker_close(&w);
        uv_run(loop, UV_RUN_DEFAULT); /* close callbacks */
        worker_free(&w);
        rc = 0;
    }
    uv_loop_close(loop);
    free(id);
    config_free(&cfg);
    curl_global_cleanup();
    return rc;
}
