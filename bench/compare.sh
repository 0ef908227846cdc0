#!/bin/sh
# compare.sh — `make bench-compare`: chatq side by side with the BullMQ peer,
# by the shared benchmark (shared/bench/compare.sh, its README says how it
# works), against this tree; then the plots of bench/plot.py.
#
#   sh bench/compare.sh [REPEAT]          (default 3; env as compare.sh's:
#                                          MATRIX, SKIP_PEER, REDIS_PORT, ...)
#
# Where the shared benchmark is: $CHATQ_SHARED_BENCH, else ../shared/bench
# (a clone beside shared/, as CI has it), else ../../shared/bench (a git
# worktree one level further down). Without it this says so and exits 2.
#
# It runs a copy of the shared directory (node_modules linked, not copied),
# with two changes to its chatq/run.py, made by sed (once run.py is fixed
# upstream they find nothing):
#   - run.py gives its jobs reply_to lists named bench:done and bench:probe,
#     under the prefix it runs chatq with (CHATQ_PREFIX=bench), and chatq
#     refuses a reply_to under its own prefix except a batch's output list
#     P:batch:<batch>:out (common/job.c): the copy uses bench:batch:done:out
#     and bench:batch:probe:out;
#   - run.py takes the first chatqd it finds anywhere in the tree, which may
#     be build-asan/'s (ten times the memory, a fraction of the speed): the
#     copy looks in build/ first.
#
# Results: the JSON lines and summarize.js's table on stdout, the lines in
# $RESULTS_DIR (default bench/out/compare-<UTC time>/), the plots there too.
set -eu
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
REPEAT=${1:-3}

SHARED=""
for d in "${CHATQ_SHARED_BENCH:-}" ../shared/bench ../../shared/bench; do
    if [ -n "$d" ] && [ -f "$d/compare.sh" ]; then
        SHARED=$(cd "$d" && pwd)
        break
    fi
done
if [ -z "$SHARED" ]; then
    echo "bench-compare: no shared benchmark found (set CHATQ_SHARED_BENCH, or put shared/ beside" \
         "this clone: ../shared/bench); nothing run" >&2
    exit 2
fi
# What the shared benchmark needs beyond `make deps` (node, npm, redis,
# python3-redis): nginx with the echo module, wrk, gnuplot; installed when
# missing, as bench/run.sh does.
missing=""
[ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
[ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ] || missing="$missing libnginx-mod-http-echo"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
if [ -n "$missing" ]; then
    echo "bench-compare: installing$missing" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing ||
        { echo "bench-compare: cannot install$missing" >&2; exit 1; }
fi
for tool in node npm redis-server; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "bench-compare: $tool is missing (make deps installs it)" >&2
        exit 1
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chatq-compare-copy.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/bench"
for f in "$SHARED"/*; do
    [ "$(basename "$f")" = peer-bullmq ] && continue
    cp -r "$f" "$WORK/bench/"
done
mkdir "$WORK/bench/peer-bullmq"
for f in "$SHARED"/peer-bullmq/*; do
    [ "$(basename "$f")" = node_modules ] && continue
    cp "$f" "$WORK/bench/peer-bullmq/"
done
if [ -z "${SKIP_PEER:-}" ]; then
    if [ ! -d "$SHARED/peer-bullmq/node_modules/bullmq" ]; then
        echo "bench-compare: npm ci in $SHARED/peer-bullmq (once)" >&2
        (cd "$SHARED/peer-bullmq" && npm ci --no-audit --no-fund >&2)
    fi
    ln -s "$SHARED/peer-bullmq/node_modules" "$WORK/bench/peer-bullmq/node_modules"
fi
chmod -R u+w "$WORK/bench"
sed -i -e 's/"bench:probe"/"bench:batch:probe:out"/g' -e 's/"bench:done"/"bench:batch:done:out"/g' \
    -e 's|chatqd = find_exe(a.project, "chatqd")|chatqd = find_exe(os.path.join(a.project, "build"), "chatqd") or find_exe(a.project, "chatqd")|' \
    "$WORK/bench/chatq/run.py"

RESULTS_DIR=${RESULTS_DIR:-$REPO/bench/out/compare-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$RESULTS_DIR"
export RESULTS_DIR
echo "bench-compare: $SHARED (copy in $WORK), REPEAT=$REPEAT, results in $RESULTS_DIR" >&2
# How busy the whole machine was over the comparison (all CPUs, 1.0 = every
# one busy all the time), and the load average after: the comparison runs
# everything on this machine, so other work on it skews both sides.
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }
b0=$(busy); t0=$(date +%s); load0=$(cut -d' ' -f1-3 /proc/loadavg)
bash "$WORK/bench/compare.sh" "$REPO" "$REPEAT"
b1=$(busy); t1=$(date +%s)
echo "$b0 $b1 $t0 $t1 $(nproc) $load0 $(cut -d' ' -f1-3 /proc/loadavg)" | awk '{
    busy = $3 - $1; idle = $4 - $2;
    printf "{\"system\":\"machine\",\"seconds\":%d,\"busy_frac\":%.2f,\"nproc\":%d,\"loadavg_before\":\"%s %s %s\",\"loadavg_after\":\"%s %s %s\"}\n",
           $6 - $5, busy / (busy + idle), $7, $8, $9, $10, $11, $12, $13 }' | tee "$RESULTS_DIR/machine.jsonl"

# What the upstream itself serves: wrk against the same nginx set-up, at the
# concurrency of each slow entry of the matrix (W x C streams at once), as
# shared/bench/baseline.sh measures it; one JSON line each, in the results.
MATRIX=${MATRIX:-"fast:20000:2:64 fast:20000:2:256 sse:10000:2:256 slow:4000:2:2000"}
if command -v wrk >/dev/null 2>&1; then
    UP_PORT=${UPSTREAM_PORT:-8089}
    "$WORK/bench/upstream/start.sh" "$UP_PORT" "$WORK/upstream" >&2
    for cfg in $MATRIX; do
        mode=${cfg%%:*}
        [ "$mode" = slow ] || continue
        rest=${cfg#*:}; rest=${rest#*:}
        conns=$(( ${rest%%:*} * ${rest#*:} ))
        out=$(wrk -t2 -c"$conns" -d10s --timeout 10s -s "$WORK/bench/upstream/wrk-post.lua" \
              "http://127.0.0.1:$UP_PORT/slow/v1/chat/completions" 2>&1) || true
        echo "$out" | sed 's/^/# /' >&2
        rps=$(echo "$out" | awk '/^Requests\/sec:/{print $2}')
        printf '{"system":"wrk","mode":"slow","connections":%s,"duration":"10s","requests_per_s":%s}\n' \
            "$conns" "${rps:-null}" | tee -a "$RESULTS_DIR/wrk.jsonl"
    done
    "$WORK/bench/upstream/stop.sh" "$WORK/upstream" >&2 || true
else
    echo "bench-compare: wrk is missing (apt-get install wrk): no upstream baseline for slow" >&2
fi
/usr/bin/python3 bench/plot.py --compare "$RESULTS_DIR" --out "$RESULTS_DIR" || \
    echo "bench-compare: no plots (see plot.py's message above)" >&2
