#!/bin/sh
# batch_memory.sh — the peak memory of `chatq batch` on a large input file
# (issue 4: "stays under 50 MB on a 100,000-line file"). Not part of
# `make test`: it takes about a minute. Run from anywhere:
#
#   sh bench/batch_memory.sh [LINES]          (default 100000)
#
# It starts, all private to one temporary directory: a redis-server on a
# free loopback port, the stand-in upstream (tests/e2e/upstream.py), and
# chatqd with 2 workers of concurrency 256 ($CHATQ_BIN, default build/);
# writes LINES Batch API lines (every 10th answered 400, so the errors file
# is used too; a 300-character prompt each) and runs
#   /usr/bin/time -v chatq batch IN -o OUT --errors ERR
# The figure is time's "Maximum resident set size": the whole run, from the
# validation pass through the last output line. It checks that OUT and ERR
# hold one line per input line, prints the figure, and exits 1 when it is
# LIMIT_MB (50) or more. Everything it started is stopped at exit.
set -u
cd "$(dirname "$0")/.." || exit 1
LINES=${1:-100000}
LIMIT_MB=${LIMIT_MB:-50}
BIN=$(cd "${CHATQ_BIN:-build}" && pwd) || exit 1
PY=/usr/bin/python3
for f in "$BIN/chatq" "$BIN/chatqd" "$BIN/chatq-worker"; do
    [ -x "$f" ] || { echo "batch_memory: $f is not built (make)" >&2; exit 1; }
done
if [ ! -x /usr/bin/time ]; then
    # GNU time reports the peak RSS; only this measurement needs it
    echo "batch_memory: installing time"
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends time ||
        { echo "batch_memory: cannot install time" >&2; exit 1; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chatq-batchmem.XXXXXX") || exit 1
PIDS=""
cleanup() {
    for pid in $PIDS; do kill -TERM "-$pid" 2>/dev/null; done
    sleep 0.5
    for pid in $PIDS; do kill -KILL "-$pid" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits up to 15 s for a command to succeed.
wait_until() {
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -gt 150 ] && return 1
        sleep 0.1
    done
}

RPORT=$(free_port)
setsid redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$WORK" --logfile "$WORK/redis.log" >/dev/null 2>&1 &
PIDS="$PIDS $!"
wait_until redis-cli -p "$RPORT" ping || { echo "batch_memory: redis-server did not start" >&2; exit 1; }

setsid $PY tests/e2e/upstream.py --port 0 --port-file "$WORK/upstream.port" \
    >"$WORK/upstream.log" 2>&1 &
PIDS="$PIDS $!"
wait_until test -s "$WORK/upstream.port" || { echo "batch_memory: upstream did not start" >&2; exit 1; }

export CHATQ_REDIS_URL="redis://127.0.0.1:$RPORT/0"
export CHATQ_PREFIX="batchmem"
export OPENAI_BASE_URL="http://127.0.0.1:$(cat "$WORK/upstream.port")/v1"
export OPENAI_API_KEY="sk-bench"
unset CHATQ_CONFIG
setsid "$BIN/chatqd" --workers 2 --concurrency 256 >"$WORK/chatqd.log" 2>&1 &
PIDS="$PIDS $!"

$PY - "$WORK/in.jsonl" "$LINES" <<'EOF'
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
prompt = "Summarise the following text in one sentence. " + "lorem ipsum dolor sit amet " * 10
with open(path, "w") as f:
    for i in range(1, n + 1):
        mock = {"key": "bm:%d" % i}
        if i % 10 == 0:
            mock.update({"status": 400, "message": "bad request %d" % i})
        f.write(json.dumps({"custom_id": "request-%d" % i, "method": "POST",
                            "url": "/v1/chat/completions",
                            "body": {"model": "mock-bench", "max_tokens": 100, "mock": mock,
                                     "messages": [{"role": "user", "content": "%s %d" % (prompt, i)}]}})
                + "\n")
EOF
echo "batch_memory: $LINES lines, $(du -h "$WORK/in.jsonl" | cut -f1) of input"

start=$(date +%s)
/usr/bin/time -v "$BIN/chatq" batch "$WORK/in.jsonl" -o "$WORK/out.jsonl" --errors "$WORK/err.jsonl" \
    >"$WORK/summary.txt" 2>"$WORK/time.txt"
rc=$?
end=$(date +%s)
if [ $rc -ne 0 ]; then
    echo "batch_memory: chatq batch failed (exit $rc):" >&2
    tail -5 "$WORK/time.txt" >&2
    exit 1
fi
cat "$WORK/summary.txt"

got=$(($(wc -l <"$WORK/out.jsonl") + $(wc -l <"$WORK/err.jsonl")))
if [ "$got" -ne "$LINES" ]; then
    echo "batch_memory: $got output lines for $LINES input lines" >&2
    exit 1
fi
kb=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$WORK/time.txt")
mb=$(awk -v kb="$kb" 'BEGIN { printf "%.1f", kb / 1024 }')
echo "batch_memory: chatq batch peak RSS ${mb} MB (${kb} kB) for $LINES lines in $((end - start)) s; limit ${LIMIT_MB} MB"
if [ "$kb" -ge $((LIMIT_MB * 1024)) ]; then
    echo "batch_memory: over the limit" >&2
    exit 1
fi
