#!/bin/sh
# examples/local-stack.sh — everything the examples need, on this machine, for
# trying them out: a private redis-server, the stand-in upstream
# (tests/e2e/upstream.py, unless OPENAI_BASE_URL is set) and chatqd with two
# workers, all on free loopback ports, as `make demo` does. It prints the
# environment to export in another terminal, then waits; Ctrl-C stops
# everything it started. Run `make` first (it uses build/chatqd).
#
#   sh examples/local-stack.sh             # keeps running; in another terminal:
#   export CHATQ_REDIS_URL=redis://127.0.0.1:PORT/0 CHATQ_PREFIX=chatq
set -e
cd "$(dirname "$0")/.."
BIN=$(pwd)/build
PY=/usr/bin/python3
[ -x "$BIN/chatqd" ] || { echo "local-stack: build/chatqd is missing: run make first" >&2; exit 1; }
DIR=$(mktemp -d /tmp/chatq-examples.XXXXXX)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do
        i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
    done
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# wait_for "what" command...: polls until the command succeeds (10 s at most).
wait_for() {
    what=$1; shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i+1))
        if [ $i -gt 200 ]; then echo "local-stack: $what did not come up" >&2; exit 1; fi
        sleep 0.05
    done
}
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

RPORT=${REDIS_PORT:-$(free_port)}
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
    >"$DIR/redis.log" 2>&1 &
PIDS="$PIDS $!"
wait_for redis redis-cli -p "$RPORT" ping
export CHATQ_REDIS_URL="redis://127.0.0.1:$RPORT/0"
export CHATQ_PREFIX=${CHATQ_PREFIX:-chatq}

if [ -z "$OPENAI_BASE_URL" ]; then
    $PY tests/e2e/upstream.py --port 0 --port-file "$DIR/upstream.port" >"$DIR/upstream.log" 2>&1 &
    PIDS="$PIDS $!"
    wait_for upstream test -s "$DIR/upstream.port"
    export OPENAI_BASE_URL="http://127.0.0.1:$(cat "$DIR/upstream.port")/v1"
    export OPENAI_API_KEY=sk-local-not-a-real-key
    echo "local-stack: stand-in upstream on $OPENAI_BASE_URL (it answers \"echo: <prompt>\")"
fi

echo '{ /* the examples run on the defaults */ }' >"$DIR/chatq.json"
"$BIN/chatqd" --workers 2 --concurrency 64 --config "$DIR/chatq.json" 2>"$DIR/chatqd.log" &
PIDS="$PIDS $!"
wait_for chatqd sh -c "redis-cli -p $RPORT --scan --pattern '$CHATQ_PREFIX:*' | grep -q ."

cat <<EOF
local-stack: Redis on 127.0.0.1:$RPORT, chatqd running (log: $DIR/chatqd.log).
In another terminal:

  export CHATQ_REDIS_URL=$CHATQ_REDIS_URL CHATQ_PREFIX=$CHATQ_PREFIX

then run the examples (examples/README.md). Ctrl-C here stops it all.
EOF
wait
