/* main.c — chatqd, the chatq supervisor (docs/protocol.md §1, §2).
 *
 * Loads the configuration (defaults < file < environment < flags), then
 * either prints it (--check-config) or runs the supervisor (supervisor.h) in
 * the foreground until SIGTERM/SIGINT. Workers get the effective Redis URL
 * and prefix through their environment (CHATQ_REDIS_URL, CHATQ_PREFIX: not on
 * the command line, where any user could read a password with ps), the
 * configuration chatqd validated as a snapshot on their stdin (API keys
 * included, never in their environment or argv) and the effective settings
 * as flags (supervisor.h). With --metrics (or the metrics key) it first
 * listens for Prometheus scrapes (metrics.h): an address it cannot listen on
 * is a startup error. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/config.h"
#include "common/log.h"
#include "common/version.h"
#include "daemon/metrics.h"
#include "daemon/supervisor.h"

static void usage(FILE *f) {
    fputs("usage: chatqd [--config FILE] [--redis URL] [--workers N] [--concurrency N]\n"
          "              [--queues a,b,c] [--log-level error|warn|info|debug]\n"
          "              [--metrics HOST:PORT] [--check-config] [--version] [--help]\n"
          "Runs chatq workers that take chat-completion jobs from Redis lists.\n"
          "Config file: --config, else $CHATQ_CONFIG, else /etc/chatq/chatq.json.\n"
          "Environment: CHATQ_REDIS_URL, CHATQ_PREFIX, OPENAI_BASE_URL, OPENAI_API_KEY.\n",
          f);
}

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},     {"redis", required_argument, NULL, 'r'},
        {"workers", required_argument, NULL, 'w'},    {"concurrency", required_argument, NULL, 'n'},
        {"queues", required_argument, NULL, 'q'},     {"log-level", required_argument, NULL, 'l'},
        {"check-config", no_argument, NULL, 'C'},     {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},          {"metrics", required_argument, NULL, 'm'},
        {NULL, 0, NULL, 0}};
    config_args args = {0};
    int check = 0, c;
    log_init("chatqd");
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': args.config_file = optarg; break;
        case 'r': args.redis_url = optarg; break;
        case 'w': args.workers = optarg; break;
        case 'n': args.concurrency = optarg; break;
        case 'q': args.queues = optarg; break;
        case 'l': args.log_level = optarg; break;
        case 'm': args.metrics = optarg; break;
        case 'C': check = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': puts("chatqd " CHATQ_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chatqd: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    config *cfg = xcalloc(1, sizeof *cfg);
    char err[512];
    if (config_load(cfg, &args, err, sizeof err) != 0) {
        fprintf(stderr, "chatqd: %s\n", err);
        free(cfg);
        return 1;
    }
    if (check) {
        char *dump = config_dump(cfg);
        puts(dump);
        free(dump);
        config_free(cfg);
        free(cfg);
        return 0;
    }
    log_set_level_name(cfg->log_level);
    setenv("CHATQ_REDIS_URL", cfg->redis_url, 1);
    setenv("CHATQ_PREFIX", cfg->prefix, 1);
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("CHATQ_SUPERVISED", pid, 1); /* see worker/main.c */
    /* A worker that dies before reading its snapshot must not kill chatqd
     * with SIGPIPE: the write fails with EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t *loop = uv_default_loop();
    /* The metrics endpoint first: an address taken is a startup error,
     * before any worker runs. */
    metrics *m = NULL;
    if (cfg->metrics && !(m = metrics_new(loop, cfg->metrics, err, sizeof err))) {
        fprintf(stderr, "chatqd: metrics: %s\n", err);
        config_free(cfg);
        free(cfg);
        uv_loop_close(loop);
        return 1;
    }
    if (m) log_info("metrics_listening", "addr=%s path=/metrics", log_quote(cfg->metrics));
    supervisor sup;
    int rc = 1;
    if (supervisor_init(&sup, loop, cfg, &args) == 0) { /* takes cfg */
        sup.metrics = m;
        supervisor_start(&sup);
        uv_run(loop, UV_RUN_DEFAULT);
        rc = sup.exit_code;
        supervisor_close(&sup);
        uv_run(loop, UV_RUN_DEFAULT);
        supervisor_free(&sup);
    } else {
        config_free(cfg);
        free(cfg);
    }
    metrics_close(m); /* after the supervisor, whose processes hold parts of it */
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return rc;
}
