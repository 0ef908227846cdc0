/* batch_cmd.c — `chatq batch IN.jsonl -o OUT.jsonl`: runs an OpenAI Batch API
 * input file through chatq's workers and writes the output lines.
 *
 * The run, in order:
 *   1. Check every input line (batchin.c) and refuse the whole file, with
 *      nothing queued, if any is bad.
 *   2. Open the output files (batchout.c) and write the state file
 *      OUT.chatq-batch (batchstate.c), which holds the batch id.
 *   3. Loop: queue lines while fewer than --window are unanswered; take the
 *      output lines the workers push to the batch's reply list and write
 *      them; make the files durable and drop what they hold from the list;
 *      draw the progress.
 *   4. When every line is answered: delete the batch's Redis keys, remove
 *      the state file, print the summary.
 *
 * Ids and keys. The batch id is "b" + 16 random hex digits, chosen by the
 * first run and kept in the state file. Line n's job id is "<batch id>-<n>"
 * (custom_ids repeat across files, so they cannot be job ids; the output
 * line still echoes the custom_id). Keys, P being the prefix:
 *   P:batch:<id>       hash: submitted = how many lines, from the start of
 *                      the file, have been queued
 *   P:batch:<id>:out   list: the reply_to of every job; workers LPUSH
 *
 * Crash safety, for Ctrl-C and kill -9 at any instant:
 * - Never queue a line twice: a chunk of jobs is pushed by one Lua script
 *   (scripts_batch_push, common/scripts.c) that also sets `submitted`, so
 *   the count and the queue change together (the LPUSH comes first: if it
 *   fails, the script stops before the count moves, and Redis runs a
 *   script with no other command in between).
 *   A resumed run continues from `submitted`, and also skips any line whose
 *   output is written already.
 * - Never lose or duplicate an output line: lines are read from the reply
 *   list without removing them (LRANGE from the oldest end, past the ones
 *   read already), written, and only after the files are fsync'd is the
 *   list trimmed of them (LTRIM; workers only add at the other end, so the
 *   oldest ones are exactly those read). A crash before the trim leaves
 *   them in the list: the resumed run reads the files back (batchout.c),
 *   cutting a half-written last line, then reads the list again and drops
 *   the lines whose bit is set. Lines that arrived while no run was
 *   collecting wait in the list.
 * - The end: the keys are deleted before the state file is removed; a
 *   crash between finds every line written and finishes at once.
 * A second run on the same files at the same time is refused (flock).
 *
 * Hostile or damaged data in Redis: the reply list may hold anything; a
 * line that is not one of this batch's (batchout.c) is dropped with a
 * warning. A job whose hash says it ended while its line never came (the
 * line was removed; the hash was set before the job ran, which makes the
 * job a duplicate) is counted as failed, `no_output`, once the batch
 * stalls (batch_stalled()), instead of being waited for for ever.
 *
 * The loop needs no threads: Redis commands are short, and when nothing
 * happened it sleeps a little (at most BATCH_IDLE_MAX_S), so answers wait
 * at most that long to be written. */
#include "cli/batch_cmd.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/batchin.h"
#include "cli/batchout.h"
#include "cli/batchstate.h"
#include "cli/help.h"
#include "cli/redis.h"
#include "common/buf.h"
#include "common/keys.h"
#include "common/output.h"
#include "common/scripts.h"

#define BATCH_DEFAULT_WINDOW 1000
#define BATCH_CHUNK_LINES 500          /* jobs per push at most */
#define BATCH_CHUNK_BYTES (4u << 20)   /* and bytes, unless one job is larger */
#define BATCH_TAKE_LINES 1000          /* output lines read per LRANGE at most */
#define BATCH_TAKE_BYTES (16u << 20)   /* and about this many bytes (batch_next_take) */
#define BATCH_SYNC_S 0.5               /* fsync + trim at most this often */
#define BATCH_IDLE_MAX_S 0.05
#define BATCH_TTY_REDRAW_S 0.1
#define BATCH_LOG_EVERY_S 5.0
#define BATCH_STALL_S 5.0              /* no answer this long: ask the job hashes */
#define BATCH_STALL_MAX_S 300.0        /* and again at most this long after */
#define BATCH_STALL_PIPE 1000          /* HGETs per round trip */

/* The signal that asks the run to stop (SIGINT, SIGTERM), 0 until then. */
static volatile sig_atomic_t batch_stop;
/* 1 while the progress bar is on the terminal's last line: a message must
 * clear it first (cli_before_message). */
static int batch_bar_shown;

static void batch_on_signal(int sig) { batch_stop = sig; }

enum { BAT_OUTPUT = 1, BAT_ERRORS, BAT_RESUME, BAT_QUEUE, BAT_TENANT, BAT_WINDOW, BAT_TIMEOUT };

static const cli_opt batch_opts[] = {
    {"output", 'o', 1, BAT_OUTPUT},
    {"errors", 0, 1, BAT_ERRORS},
    {"resume", 0, 0, BAT_RESUME},
    {"queue", 0, 1, BAT_QUEUE},
    {"tenant", 0, 1, BAT_TENANT},
    {"window", 0, 1, BAT_WINDOW},
    {"timeout", 0, 1, BAT_TIMEOUT},
    {NULL, 0, 0, 0},
};

typedef struct batch_args {
    const char *in, *out, *errors, *queue, *tenant;
    int resume;
    long long window;
    double timeout_s; /* 0: wait as long as it takes */
} batch_args;

typedef struct batch_run {
    batch_args *a;
    batchstate st;
    char *state_path;
    batchin in;
    batchout out;
    redisContext *c;
    char *k_queue, *k_meta, *k_out;
    const price_cfg **prices; /* [model index of b->in] -> price, [0] NULL */
    int priced;            /* some model of the input has a price */
    jsonl_reader rd;       /* the input, at line `next` */
    long long next;        /* the next line to queue */
    long long peeked;      /* lines read from k_out since the last trim */
    long long take;        /* lines the next LRANGE asks for */
    long long done0;       /* lines answered when this run started */
    double t0, last_sync, last_answer, last_progress;
    double last_stall, stall_every; /* the look at the job hashes (batch_stalled) */
    int tty, warned_strays;
} batch_run;

/* ---- arguments ---- */

static int batch_take(cli_ctx *ctx, batch_args *a, int id, const char *val) {
    switch (id) {
    case BAT_OUTPUT: a->out = val; break;
    case BAT_ERRORS: a->errors = val; break;
    case BAT_RESUME: a->resume = 1; break;
    case BAT_QUEUE: a->queue = val; break;
    case BAT_TENANT: a->tenant = val; break;
    case BAT_WINDOW:
        if (cli_parse_ll(val, 1, 1000000, &a->window) < 0)
            return cli_usage_fail(ctx, "--window must be an integer from 1 to 1000000, not '%s'",
                                  val);
        break;
    case BAT_TIMEOUT:
        if (cli_parse_seconds(val, &a->timeout_s) < 0)
            return cli_usage_fail(ctx, "--timeout must be a positive number of seconds, not '%s'",
                                  val);
        break;
    }
    return CLI_OK;
}

static int batch_check_args(cli_ctx *ctx, const batch_args *a) {
    if (!a->in) return cli_usage_fail(ctx, "missing the input file");
    if (!a->out) return cli_usage_fail(ctx, "missing -o OUT.jsonl");
    if (!*a->out || (a->errors && !*a->errors))
        return cli_usage_fail(ctx, "the output file names must not be empty");
    if (a->queue && !*a->queue) return cli_usage_fail(ctx, "the queue name must not be empty");
    return CLI_OK;
}

/* Returns 1 when the caller should stop with *status (help, bad flags). */
static int batch_parse(cli_ctx *ctx, int argc, char **argv, batch_args *a, int *status) {
    cli_parser p;
    int id;
    *status = CLI_OK;
    a->window = BATCH_DEFAULT_WINDOW;
    cli_parser_init(&p, ctx, batch_opts, argc, argv);
    while ((id = cli_next(&p)) > 0) {
        if (id == CLI_OPT_HELP) {
            cli_parser_free(&p);
            *status = help_print(ctx->cmd);
            return 1;
        }
        if ((*status = batch_take(ctx, a, id, p.val)) != CLI_OK) break;
    }
    if (id < 0) *status = CLI_USAGE;
    if (*status == CLI_OK && p.npos > 1) *status = cli_usage_fail(ctx, "expects one input file");
    if (*status == CLI_OK && p.npos == 1) a->in = p.pos[0];
    cli_parser_free(&p);
    if (*status == CLI_OK) *status = batch_check_args(ctx, a);
    return *status != CLI_OK;
}

/* ---- the state: new, or resumed ---- */

/* A flag given again on --resume must say what the batch was started with. */
static int batch_same_flag(const char *flag, const char *given, const char *kept,
                           int is_path) {
    if (!given) return 0;
    char *abs = is_path ? batchstate_abspath(given) : xstrdup(given);
    int same = kept && !strcmp(abs, kept);
    free(abs);
    if (same) return 0;
    cli_fail("--%s: the batch was started with %s%s%s", flag, kept ? "'" : "no --", kept ? kept : flag,
             kept ? "'" : "");
    return -1;
}

static int batch_resume_state(batch_run *b, cli_ctx *ctx) {
    batch_args *a = b->a;
    if (batchstate_read(b->state_path, &b->st) < 0) return -1;
    if (batch_same_flag("errors", a->errors, b->st.errors, 1) < 0 ||
        batch_same_flag("queue", a->queue, b->st.queue, 0) < 0 ||
        batch_same_flag("tenant", a->tenant, b->st.tenant, 0) < 0)
        return -1;
    if (strcmp(cli_ctx_prefix(ctx), b->st.prefix)) {
        cli_fail("the batch was started with the key prefix '%s', not '%s'", b->st.prefix,
                 cli_ctx_prefix(ctx));
        return -1;
    }
    return 0;
}

static void batch_new_state(batch_run *b, cli_ctx *ctx) {
    batch_args *a = b->a;
    char id[18];
    batchstate_new_id(id);
    b->st.batch_id = xstrdup(id);
    b->st.input = batchstate_abspath(a->in);
    b->st.output = batchstate_abspath(a->out);
    b->st.errors = a->errors ? batchstate_abspath(a->errors) : NULL;
    b->st.queue = xstrdup(a->queue ? a->queue : "default");
    b->st.tenant = a->tenant ? xstrdup(a->tenant) : NULL;
    b->st.prefix = xstrdup(cli_ctx_prefix(ctx));
    b->st.created_at = cli_unix_ms();
}

/* The state file must exist exactly when --resume is given. */
static int batch_load_state(batch_run *b, cli_ctx *ctx) {
    struct stat sb;
    int exists = lstat(b->state_path, &sb) == 0;
    if (b->a->resume && !exists) {
        cli_fail("nothing to resume: %s does not exist (no interrupted batch writes %s)",
                 b->state_path, b->a->out);
        return -1;
    }
    if (!b->a->resume && exists) {
        cli_fail("%s exists: a batch writing %s was interrupted; continue it with --resume, or "
                 "remove %s to start over", b->state_path, b->a->out, b->state_path);
        return -1;
    }
    if (b->a->resume) return batch_resume_state(b, ctx);
    batch_new_state(b, ctx);
    return 0;
}

/* The input of a resumed batch must be the file it started with. */
static int batch_same_input(batch_run *b) {
    if (b->in.size == b->st.input_size && b->in.hash == b->st.input_hash &&
        b->in.lines == b->st.lines)
        return 0;
    cli_fail("%s is not the file the batch started with (%s, %lld bytes); its results go to %s",
             b->a->in, b->st.input, b->st.input_size, b->a->out);
    return -1;
}

/* ---- Redis ---- */

/* Where line `next` was left: the batch hash's `submitted`, + 1. */
static int batch_load_submitted(batch_run *b) {
    redisReply *r = cli_redis_cmd(b->c, "HGET %s submitted", b->k_meta);
    if (!r) return -1;
    long long n = 0;
    if (r->type == REDIS_REPLY_STRING && cli_parse_ll(r->str, 0, b->in.lines, &n) < 0) n = 0;
    freeReplyObject(r);
    b->next = n + 1;
    return 0;
}

/* Runs the push script (scripts_batch_push: KEYS queue and batch hash,
 * ARGV the new `submitted` count and the jobs) on a chunk: argv[6..] hold
 * the jobs, argv[0..5] are filled here. */
static int batch_push(batch_run *b, char **argv, size_t *lens, int njobs) {
    char submitted[32];
    snprintf(submitted, sizeof submitted, "%lld", b->next - 1);
    argv[0] = (char *)"EVAL";
    argv[1] = (char *)scripts_batch_push;
    argv[2] = (char *)"2";
    argv[3] = b->k_queue;
    argv[4] = b->k_meta;
    argv[5] = submitted;
    for (int i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(b->c, njobs + 6, (const char **)argv, lens);
    if (!r) {
        cli_fail("redis: %s", b->c->errstr[0] ? b->c->errstr : "connection lost");
        return -1;
    }
    int ok = r->type != REDIS_REPLY_ERROR;
    if (!ok) cli_fail("redis: %s", r->str);
    freeReplyObject(r);
    return ok ? 0 : -1;
}

/* The next line to queue, as a job text (malloc'd); NULL at the end or on
 * an error (*failed set, printed). Lines answered already are skipped. */
static char *batch_next_job(batch_run *b, int *failed) {
    char err[320];
    while (b->next <= b->in.lines) {
        long long n = b->next;
        if (jsonl_next(&b->rd) != 1 || b->rd.lineno != n || b->rd.too_long) {
            cli_fail("%s: cannot read line %lld again: the file changed during the batch",
                     b->a->in, n);
            *failed = 1;
            return NULL;
        }
        b->next++;
        if (batchout_has(&b->out, n)) continue;
        char *text = batchin_build(&b->in, buf_cstr(&b->rd.line), b->rd.line.len, n, err,
                                   sizeof err, NULL);
        if (!text) {
            cli_fail("%s:%lld: %s (the file changed during the batch)", b->a->in, n, err);
            *failed = 1;
        }
        return text;
    }
    return NULL;
}

/* Queues what the window allows, when that is worth a push: at least a
 * quarter of the window (or all that is left), so a steady trickle of
 * answers does not become a push per answer. Returns 0 or -1 (printed). */
static int batch_submit(batch_run *b) {
    long long left = b->in.lines - (b->next - 1);
    long long unanswered = (b->next - 1) - b->out.done;
    long long room = b->a->window - (unanswered > 0 ? unanswered : 0);
    long long want = b->a->window / 4 > 0 ? b->a->window / 4 : 1;
    if (want > BATCH_CHUNK_LINES) want = BATCH_CHUNK_LINES;
    if (want > left) want = left;
    if (left <= 0 || room < want) return 0;
    if (!batchin_unchanged(&b->in)) {
        cli_fail("%s changed during the batch; restore it and continue with --resume", b->a->in);
        return -1;
    }
    if (room > BATCH_CHUNK_LINES) room = BATCH_CHUNK_LINES;
    char **argv = xcalloc((size_t)room + 6, sizeof *argv);
    size_t *lens = xcalloc((size_t)room + 6, sizeof *lens), bytes = 0;
    int n = 0, failed = 0, rc = 0;
    char *text;
    while (n < room && bytes < BATCH_CHUNK_BYTES && (text = batch_next_job(b, &failed))) {
        argv[6 + n] = text;
        lens[6 + n] = strlen(text);
        bytes += lens[6 + n++];
    }
    if (failed) rc = -1;
    else if (n) rc = batch_push(b, argv, lens, n);
    for (int i = 0; i < n; i++) free(argv[6 + i]);
    free(argv);
    free(lens);
    return rc;
}

/* How many lines the next LRANGE asks for, after one that asked for `take`
 * and got `got` lines, the longest `biggest` bytes. A line's size is known
 * only once it is read, and lines are read whole: 1000 answers of 16 MB
 * each would be 16 GB at once. So the count starts at 1 and doubles while
 * reads come back full, up to BATCH_TAKE_LINES, and never asks for more
 * than BATCH_TAKE_BYTES of lines as long as the longest just read. */
static long long batch_next_take(long long take, long long got, size_t biggest) {
    long long next = got >= take ? take * 2 : take;
    if (next > BATCH_TAKE_LINES) next = BATCH_TAKE_LINES;
    if (biggest > 0 && (size_t)next > BATCH_TAKE_BYTES / biggest)
        next = (long long)(BATCH_TAKE_BYTES / biggest);
    return next < 1 ? 1 : next;
}

/* Reads the output lines after those read already, oldest first, and
 * writes them. Returns how many were read, or -1 (printed). */
static long long batch_collect(batch_run *b) {
    redisReply *r = cli_redis_cmd(b->c, "LRANGE %s %lld %lld", b->k_out,
                                  -(b->peeked + b->take), -(b->peeked + 1));
    if (!r) return -1;
    long long n = r->type == REDIS_REPLY_ARRAY ? (long long)r->elements : 0;
    size_t biggest = 0;
    for (long long i = n - 1; i >= 0; i--) { /* the right end is the oldest */
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING) {
            b->out.strays++;
            continue;
        }
        if (e->len > biggest) biggest = e->len;
        if (batchout_take(&b->out, e->str, e->len) < 0) {
            freeReplyObject(r);
            return -1;
        }
    }
    freeReplyObject(r);
    b->peeked += n;
    b->take = batch_next_take(b->take, n, biggest);
    return n;
}

/* Makes the files durable, then drops the lines they hold from the list. */
static int batch_sync(batch_run *b) {
    b->last_sync = cli_now();
    if (batchout_sync(&b->out) < 0) return -1;
    if (!b->peeked) return 0;
    redisReply *r = cli_redis_cmd(b->c, "LTRIM %s 0 %lld", b->k_out, -(b->peeked + 1));
    if (!r) return -1;
    freeReplyObject(r);
    b->peeked = 0;
    return 0;
}

/* The batch is complete: its keys go first, then the state file. */
static int batch_cleanup(batch_run *b) {
    redisReply *r = cli_redis_cmd(b->c, "DEL %s %s", b->k_meta, b->k_out);
    if (!r) return -1;
    freeReplyObject(r);
    return batchstate_remove(b->state_path);
}

/* ---- progress ---- */

static void batch_duration(double s, char *out, size_t n) {
    long long t = (long long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, n, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(out, n, "%lld:%02lld", t / 60, t % 60);
}

/* Lines answered per second in this run, and the time left at that pace. */
static double batch_rate(const batch_run *b, double now, char *eta, size_t n) {
    double dt = now - b->t0;
    double rate = dt > 0 ? (double)(b->out.done - b->done0) / dt : 0;
    if (rate > 0)
        batch_duration((double)(b->in.lines - b->out.done) / rate, eta, n);
    else
        snprintf(eta, n, "?");
    return rate;
}

static void batch_clear_bar(void) {
    if (!batch_bar_shown) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    batch_bar_shown = 0;
}

/* A count in at most 6 characters: 950, 12.3k, 4.56M. */
static void batch_short(long long v, char *out, size_t n) {
    if (v < 10000)
        snprintf(out, n, "%lld", v);
    else if (v < 10000000)
        snprintf(out, n, "%.1fk", (double)v / 1e3);
    else
        snprintf(out, n, "%.2fM", (double)v / 1e6);
}

/* The terminal's width, so the bar never wraps (a wrapped line cannot be
 * redrawn with \r). */
static int batch_columns(void) {
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
}

/* " | $1.2345" when the input has a priced model, else "". */
static void batch_cost_so_far(const batch_run *b, char *out, size_t n) {
    if (b->priced)
        snprintf(out, n, " | $%.4f", (double)b->out.cost_micro_usd / 1e6);
    else
        out[0] = '\0';
}

static void batch_draw_bar(batch_run *b, double rate, const char *eta) {
    char bar[17], tokens[32], cost[48], line[256];
    long long total = b->in.lines, done = b->out.done;
    int fill = total ? (int)(done * 16 / total) : 16;
    for (int i = 0; i < 16; i++) bar[i] = i < fill ? '#' : '.';
    bar[16] = '\0';
    batch_short(b->out.total_tokens, tokens, sizeof tokens);
    batch_cost_so_far(b, cost, sizeof cost);
    snprintf(line, sizeof line, "[%s] %lld/%lld %d%% | %lld failed | %.0f/s | ETA %s | %s tokens%s",
             bar, done, total, total ? (int)(done * 100 / total) : 100, b->out.failed, rate,
             eta, tokens, cost);
    int cols = batch_columns() - 1;
    if (cols > 0 && (size_t)cols < sizeof line) line[cols] = '\0';
    fprintf(stderr, "\r\033[K%s", line);
    batch_bar_shown = 1;
}

static void batch_draw(batch_run *b, double now) {
    char eta[32], cost[48];
    double rate = batch_rate(b, now, eta, sizeof eta);
    long long total = b->in.lines, done = b->out.done;
    if (b->tty) {
        batch_draw_bar(b, rate, eta);
    } else {
        batch_cost_so_far(b, cost, sizeof cost);
        fprintf(stderr, "chatq: batch %s: %lld/%lld answered | %lld failed | %.0f/s | ETA %s | "
                "%lld tokens%s\n", b->st.batch_id, done, total, b->out.failed, rate, eta,
                b->out.total_tokens, cost);
    }
    fflush(stderr);
}

static void batch_progress(batch_run *b) {
    double now = cli_now();
    if (b->out.strays && !b->warned_strays) {
        batch_clear_bar();
        fprintf(stderr, "chatq: %s holds lines of no job of this batch; they are dropped\n",
                b->k_out);
        b->warned_strays = 1;
    }
    if (now - b->last_progress < (b->tty ? BATCH_TTY_REDRAW_S : BATCH_LOG_EVERY_S)) return;
    b->last_progress = now;
    batch_draw(b, now);
}

static void batch_summary(batch_run *b) {
    double dt = cli_now() - b->t0;
    long long n = b->out.done - b->done0;
    batchout *o = &b->out;
    batch_clear_bar();
    printf("batch %s: %lld lines: %lld succeeded, %lld failed\n", b->st.batch_id, b->in.lines,
           o->done - o->failed, o->failed);
    if (o->errf)
        printf("output: %s (%lld lines), errors: %s (%lld lines)\n", b->a->out, o->out_lines,
               b->a->errors ? b->a->errors : b->st.errors, o->err_lines);
    else
        printf("output: %s (%lld lines)\n", b->a->out, o->out_lines);
    printf("tokens: %lld prompt, %lld completion, %lld total", o->prompt_tokens,
           o->completion_tokens, o->total_tokens);
    if (o->cached_tokens) printf(" (%lld prompt tokens cached)", o->cached_tokens);
    putchar('\n');
    if (o->priced) {
        printf("cost: $%lld.%06lld", o->cost_micro_usd / 1000000, o->cost_micro_usd % 1000000);
        if (o->unpriced) printf(" (%lld answers of models without a price not counted)", o->unpriced);
        putchar('\n');
    }
    printf("time: %.1f s, %lld lines answered in this run (%.0f/s)\n", dt, n,
           dt > 0 ? (double)n / dt : 0.0);
    fflush(stdout);
}

/* ---- jobs that ended without their output line ----
 *
 * FINISH stores a job's result in its hash and pushes its output line in
 * one script. So a job whose hash holds a final status while the list,
 * read to its end after that, holds no line of it will never send one:
 * the line was removed, or someone set the hash before the job ran and the
 * worker took the job for a duplicate (docs/protocol.md §6). Waiting for it
 * would wait for ever; the line is counted as failed, with the error
 * `no_output` (the hash keeps what is left of the result). This look costs
 * one HGET per unanswered line, so it is taken only when nothing came for
 * BATCH_STALL_S, then less and less often. */

static const char *const batch_final_status[] = {"succeeded", "failed", "cancelled", NULL};

typedef struct batch_ended {
    long long line;
    int status; /* index in batch_final_status */
} batch_ended;

/* The queued, unanswered lines whose job hash holds a final status, in a
 * malloc'd array of *n (NULL when none). Returns 0, or -1 (printed). */
static int batch_ended_lines(batch_run *b, batch_ended **out, size_t *n) {
    size_t cap = 0;
    long long line = 1, sent[BATCH_STALL_PIPE];
    *out = NULL;
    *n = 0;
    while (line < b->next) {
        int k = 0;
        for (; line < b->next && k < BATCH_STALL_PIPE; line++) {
            if (batchout_has(&b->out, line)) continue;
            char *id = xasprintf("%s-%lld", b->st.batch_id, line), *key = keys_job(b->st.prefix, id);
            redisAppendCommand(b->c, "HGET %s status", key);
            free(key);
            free(id);
            sent[k++] = line;
        }
        for (int i = 0; i < k; i++) {
            redisReply *r = NULL;
            if (redisGetReply(b->c, (void **)&r) != REDIS_OK) {
                cli_fail("redis: %s", b->c->errstr[0] ? b->c->errstr : "connection lost");
                return -1;
            }
            /* an error (a key that is no hash: the worker replaces it) or
             * any other status: the job may still answer */
            int st = r->type == REDIS_REPLY_STRING ? cli_str_index(batch_final_status, r->str) : -1;
            freeReplyObject(r);
            if (st < 0) continue;
            if (*n == cap) {
                cap = cap ? cap * 2 : 16;
                *out = xrealloc(*out, cap * sizeof **out);
            }
            (*out)[(*n)++] = (batch_ended){sent[i], st};
        }
    }
    return 0;
}

/* Writes the failed output line of a line whose job ended without one.
 * Returns 0 or -1 (printed). */
static int batch_write_no_output(batch_run *b, const batch_ended *e) {
    jsonl_reader rd;
    batchin_info info = {0};
    char err[320];
    /* the custom_id, from the input line (checked when the batch began) */
    if (batchin_seek(&b->in, &rd, e->line) == 0 && jsonl_next(&rd) == 1 && !rd.too_long)
        free(batchin_build(&b->in, buf_cstr(&rd.line), rd.line.len, e->line, err, sizeof err,
                           &info));
    jsonl_free(&rd);
    char *id = xasprintf("%s-%lld", b->st.batch_id, e->line);
    char *key = keys_job(b->st.prefix, id);
    char *msg = xasprintf("the job ended (%s says status %s) but its output line never reached "
                          "%s; what is left of its result: chatq get %s",
                          key, batch_final_status[e->status], b->k_out, id);
    char *line = output_line(id, info.custom_id ? info.custom_id : id, 0, NULL, NULL, "no_output",
                             msg);
    int rc = batchout_take(&b->out, line, strlen(line)) < 0 ? -1 : 0;
    free(line);
    free(msg);
    free(key);
    free(id);
    batchin_info_free(&info);
    return rc;
}

/* The look at the job hashes, when the batch stalls. Returns 0, or -1
 * (printed). */
static int batch_stalled(batch_run *b) {
    batch_ended *v;
    size_t n, lost = 0;
    int rc = batch_ended_lines(b, &v, &n);
    long long got = 1;
    /* read every line there is now: one pushed after the HGET is here */
    while (rc == 0 && n && got > 0)
        if ((got = batch_collect(b)) < 0) rc = -1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (batchout_has(&b->out, v[i].line)) continue;
        if (batch_write_no_output(b, &v[i]) < 0) rc = -1;
        if (rc == 0 && !lost++) {
            batch_clear_bar();
            fprintf(stderr, "chatq: line %lld (job %s-%lld) ended %s without an output line: "
                    "counted as failed (no_output)\n", v[i].line, b->st.batch_id, v[i].line,
                    batch_final_status[v[i].status]);
        }
    }
    if (lost > 1) fprintf(stderr, "chatq: %zu lines counted as failed (no_output) in all\n", lost);
    free(v);
    return rc;
}

/* ---- the loop ---- */

static void batch_idle(double *idle) {
    struct timespec ts = {0, (long)(*idle * 1e9)};
    nanosleep(&ts, NULL); /* a signal ends it early, which is what we want */
    *idle = *idle * 2 > BATCH_IDLE_MAX_S ? BATCH_IDLE_MAX_S : *idle * 2;
}

/* Runs until every line is answered (0), a signal (its number), or an
 * error (-1, printed). */
static int batch_loop(batch_run *b) {
    double idle = 0.001;
    while (b->out.done < b->in.lines) {
        if (batch_stop) return (int)batch_stop;
        long long before = b->next, done = b->out.done;
        if (batch_submit(b) < 0) return -1;
        long long got = batch_collect(b);
        if (got < 0) return -1;
        double now = cli_now();
        if (b->out.done > done) b->last_answer = now;
        if (now - b->last_sync >= BATCH_SYNC_S && batch_sync(b) < 0) return -1;
        batch_progress(b);
        if (got || b->next != before) {
            idle = 0.001;
            continue;
        }
        if (now - b->last_answer >= BATCH_STALL_S && now - b->last_stall >= b->stall_every) {
            long long done = b->out.done;
            b->last_stall = now;
            b->stall_every = b->stall_every * 2 > BATCH_STALL_MAX_S ? BATCH_STALL_MAX_S
                                                                    : b->stall_every * 2;
            if (batch_stalled(b) < 0) return -1;
            if (b->out.done > done) {
                b->last_answer = now;
                b->stall_every = BATCH_STALL_S;
                continue;
            }
        }
        if (b->a->timeout_s > 0 && now - b->last_answer > b->a->timeout_s) {
            batch_clear_bar();
            cli_fail("no answer for %g seconds (%lld of %lld lines answered); the batch is kept: "
                     "continue it with --resume", b->a->timeout_s, b->out.done, b->in.lines);
            return -1;
        }
        batch_idle(&idle);
    }
    return 0;
}

static void batch_on_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = batch_on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C stops at once: that is safe too */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* After the loop: the files are synced and the list trimmed whatever
 * happened (unless Redis itself failed); returns the exit status. */
static int batch_finish(batch_run *b, int rc) {
    /* After an error only the files: Redis may be what failed, and one
     * message is enough. The untrimmed lines are dropped on --resume. */
    int synced = rc < 0 ? batchout_sync(&b->out) == 0 : batch_sync(b) == 0;
    batch_clear_bar();
    if (rc == 0 && synced && batch_cleanup(b) == 0) {
        batch_summary(b);
        return CLI_OK;
    }
    if (rc > 0) {
        cli_fail("interrupted: %lld of %lld lines answered; continue with: chatq batch %s -o %s "
                 "--resume", b->out.done, b->in.lines, b->a->in, b->a->out);
        return 128 + rc;
    }
    return CLI_ERR;
}

static void batch_keys(batch_run *b, cli_ctx *ctx) {
    const char *p = cli_ctx_prefix(ctx);
    b->k_queue = keys_queue(p, b->st.queue);
    b->k_meta = keys_batch(p, b->st.batch_id);
    b->k_out = keys_batch_out(p, b->st.batch_id);
}

/* The price of each distinct (provider, model) of the input, as the
 * workers would find it: the line's provider, else the first whose model
 * patterns match. */
static void batch_prices(batch_run *b, const config *cfg) {
    b->prices = xcalloc(b->in.nmodels + 1, sizeof *b->prices);
    for (size_t i = 1; i <= b->in.nmodels; i++) {
        const char *model = b->in.models[i];
        const provider_cfg *p = b->in.providers[i] ? config_provider(cfg, b->in.providers[i])
                                                   : config_route(cfg, model);
        b->prices[i] = p ? config_price(p, model) : NULL;
        if (b->prices[i]) b->priced = 1;
    }
}

/* Everything before the loop. Returns 0 or -1 (printed). */
static int batch_prepare(batch_run *b, cli_ctx *ctx) {
    batch_args *a = b->a;
    if (batch_load_state(b, ctx) < 0) return -1;
    batch_keys(b, ctx);
    if (batchin_open(&b->in, a->in, (size_t)ctx->cfg.max_job_bytes) < 0) return -1;
    b->in.batch_id = b->st.batch_id;
    b->in.reply_to = b->k_out;
    b->in.tenant = b->st.tenant;
    if (batchin_validate(&b->in) < 0) return -1;
    if (a->resume && batch_same_input(b) < 0) return -1;
    b->st.input_size = b->in.size;
    b->st.input_hash = b->in.hash;
    b->st.lines = b->in.lines;
    batch_prices(b, &ctx->cfg);
    if (!(b->c = cli_redis_connect(ctx))) return -1;
    if (batchout_open(&b->out, a->out, b->st.errors, a->resume, b->st.batch_id, b->in.lines,
                      b->in.fd, b->in.model_of, b->prices) < 0)
        return -1;
    if (!a->resume && batchstate_write(b->state_path, &b->st) < 0) return -1;
    b->next = 1;
    if (a->resume && batch_load_submitted(b) < 0) return -1;
    if (batchin_seek(&b->in, &b->rd, b->next) < 0) {
        cli_fail("cannot read %s: %s", a->in, strerror(errno));
        return -1;
    }
    return 0;
}

static void batch_start_message(batch_run *b) {
    if (b->a->resume)
        fprintf(stderr, "chatq: batch %s resumed: %lld lines, %lld answered, %lld queued before\n",
                b->st.batch_id, b->in.lines, b->out.done, b->next - 1);
    else
        fprintf(stderr, "chatq: batch %s: %lld lines, queue %s\n", b->st.batch_id, b->in.lines,
                b->st.queue);
    fflush(stderr);
}

static void batch_free(batch_run *b) {
    jsonl_free(&b->rd);
    batchout_close(&b->out);
    batchin_close(&b->in);
    if (b->c) redisFree(b->c);
    batchstate_free(&b->st);
    free(b->prices);
    free(b->state_path);
    free(b->k_queue);
    free(b->k_meta);
    free(b->k_out);
}

int batch_cmd(cli_ctx *ctx, int argc, char **argv) {
    batch_args a;
    batch_run b;
    int status;
    memset(&a, 0, sizeof a);
    if (batch_parse(ctx, argc, argv, &a, &status)) return status;
    if (cli_ctx_load(ctx) < 0) return CLI_ERR;
    memset(&b, 0, sizeof b);
    b.a = &a;
    b.in.fd = -1;
    b.out.fd = b.out.err_fd = -1;
    b.state_path = xasprintf("%s%s", a.out, BATCHSTATE_SUFFIX);
    status = CLI_ERR;
    if (batch_prepare(&b, ctx) == 0) {
        batch_on_signals();
        b.tty = isatty(STDERR_FILENO);
        cli_before_message = batch_clear_bar;
        b.done0 = b.out.done;
        b.take = 1;
        b.stall_every = BATCH_STALL_S;
        b.t0 = b.last_sync = b.last_answer = cli_now();
        b.last_progress = b.tty ? 0 : b.t0;
        batch_start_message(&b);
        status = batch_finish(&b, batch_loop(&b));
        cli_before_message = NULL;
    }
    batch_free(&b);
    return status;
}
