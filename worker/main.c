/* main.c — chatq-worker: one worker process (see worker.h).
 *
 * Normally started by chatqd, which passes --id and the effective settings;
 * it can also be run alone for debugging. It loads the configuration the same
 * way chatqd does (config.h), runs its loop until a drain completes, and
 * exits 0 (1 when it could not start). */
#include <curl/curl.h>
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
#include "worker/worker.h"

static void usage(FILE *f) {
    fputs("usage: chatq-worker [--config FILE] [--redis URL] [--concurrency N]\n"
          "                    [--queues a,b,c] [--log-level LEVEL] [--id ID]\n"
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

int main(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"redis", required_argument, NULL, 'r'},
        {"concurrency", required_argument, NULL, 'n'}, {"queues", required_argument, NULL, 'q'},
        {"log-level", required_argument, NULL, 'l'}, {"id", required_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    config_args args = {0};
    const char *id_arg = NULL;
    int c;
    log_init("chatq-worker");
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c': args.config_file = optarg; break;
        case 'r': args.redis_url = optarg; break;
        case 'n': args.concurrency = optarg; break;
        case 'q': args.queues = optarg; break;
        case 'l': args.log_level = optarg; break;
        case 'i': id_arg = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': puts("chatq-worker " CHATQ_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chatq-worker: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    config cfg;
    char err[512];
    if (config_load(&cfg, &args, err, sizeof err) != 0) {
        fprintf(stderr, "chatq-worker: %s\n", err);
        return 1;
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
