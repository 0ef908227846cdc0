#!/bin/sh
# run.sh — `make bench`: chatq's throughput and footprint benchmark.
#
# Installs nginx (Debian's nginx-light) when /usr/sbin/nginx is missing and
# gnuplot (gnuplot-nox) when gnuplot is, since only the benchmark needs them,
# then runs bench/bench.py with Debian's python3 (which has python3-redis),
# and bench/plot.py for the PNG plots of its figures (bench/out/*.png). bench.py starts a private redis-server, nginx and
# chatqd per run and stops them itself; as a second line of defence it lists
# the process groups it has running in a file, and the EXIT trap here kills any
# group still alive when the script ends, however it ends.
set -u
cd "$(dirname "$0")/.." || exit 1

missing=""
[ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
if [ -n "$missing" ]; then
    echo "bench: installing$missing"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing || {
        echo "bench: cannot install$missing" >&2
        exit 1
    }
    # The package's own nginx service is not used: the benchmark runs a private one.
fi

# Everything a run writes (configs, logs, Redis' and nginx's files) lives in
# this directory, removed at exit.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/chatq-bench.XXXXXX") || exit 1
PIDFILE="$WORK/pgids"
: > "$PIDFILE"
child=""
cleanup() {
    while read -r pgid; do
        kill -KILL "-$pgid" 2>/dev/null
    done < "$PIDFILE"
    rm -rf "$WORK"
}
# On INT or TERM, ask bench.py to stop (it cleans up after itself), wait for
# it, then exit: the EXIT trap kills whatever is left. bench.py runs in the
# background because sh runs no trap while a foreground command is running.
stop() {
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child"
    exit "$1"
}
trap cleanup EXIT
trap 'stop 130' INT
trap 'stop 143' TERM

CHATQ_BENCH_TMP="$WORK" CHATQ_BENCH_PIDFILE="$PIDFILE" /usr/bin/python3 bench/bench.py "$@" &
child=$!
wait "$child"
rc=$?
child=""
[ "$rc" = 0 ] && /usr/bin/python3 bench/plot.py --bench bench/out/latest.json
exit "$rc"
