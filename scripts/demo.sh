#!/bin/sh
# make demo: a private Redis and (unless OPENAI_BASE_URL is set) the stand-in
# upstream on free loopback ports, chatqd with two workers, a few real jobs
# (one streamed live), the stored results and the usage table. Everything it
# starts is stopped on exit.
set -e
cd "$(dirname "$0")/.."
BIN=$(pwd)/build
PY=/usr/bin/python3
DIR=$(mktemp -d /tmp/chatq-demo.XXXXXX)
STANDIN=""
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do
        i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
    done
    rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

# wait_for "what" command...: polls until the command succeeds (10 s at most).
wait_for() {
    what=$1; shift
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i+1))
        if [ $i -gt 200 ]; then echo "demo: $what did not come up" >&2; exit 1; fi
        sleep 0.05
    done
}
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" \
    >"$DIR/redis.log" 2>&1 &
PIDS="$PIDS $!"
wait_for redis redis-cli -p "$RPORT" ping
export CHATQ_REDIS_URL="redis://127.0.0.1:$RPORT/0"
export CHATQ_PREFIX=demo

if [ -n "$OPENAI_BASE_URL" ]; then
    echo "== using your upstream $OPENAI_BASE_URL"
    MODEL=${DEMO_MODEL:-gpt-4o-mini}
else
    $PY tests/e2e/upstream.py --port 0 --port-file "$DIR/upstream.port" >"$DIR/upstream.log" 2>&1 &
    PIDS="$PIDS $!"
    wait_for upstream test -s "$DIR/upstream.port"
    export OPENAI_BASE_URL="http://127.0.0.1:$(cat "$DIR/upstream.port")/v1"
    export OPENAI_API_KEY=sk-demo-not-a-real-key
    MODEL=demo-model
    STANDIN=1
    echo "== stand-in upstream on $OPENAI_BASE_URL, Redis on 127.0.0.1:$RPORT"
fi

echo '{ /* the demo runs on the defaults */ }' >"$DIR/chatq.json"
"$BIN/chatqd" --workers 2 --concurrency 64 --config "$DIR/chatq.json" 2>"$DIR/chatqd.log" &
PIDS="$PIDS $!"

echo
echo "== chatq submit --stream (content printed as the chunks arrive)"
if [ -n "$STANDIN" ]; then
    # The stand-in streams whatever the job's "mock" field says, slowly
    # enough to watch; a real upstream gets a plain prompt.
    printf '%s' '{"tenant":"demo","stream":true,"body":{"model":"demo-model",
      "messages":[{"role":"user","content":"Say hello to chatq."}],
      "mock":{"chunk_delay_ms":120,"content":["Hello","!"," I am"," chatq:"," your"," jobs"," go"," in"," a"," Redis"," list,"," and"," the"," answer"," streams"," back"," chunk"," by"," chunk."]}}}' |
        "$BIN/chatq" submit --stream --json -
else
    "$BIN/chatq" submit -m "$MODEL" --stream --tenant demo "Say hello to chatq in one sentence."
fi
echo
echo "== chatq submit --wait (non-streamed)"
"$BIN/chatq" submit -m "$MODEL" --wait --tenant demo "What is a Redis list?"
echo
echo "== five jobs pushed with redis-cli, results read back from their hashes"
for i in 1 2 3 4 5; do
    redis-cli -p "$RPORT" LPUSH demo:queue:default \
        "{\"id\":\"demo-$i\",\"tenant\":\"batch\",\"reply_to\":\"demo:replies\",\"body\":{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"job $i\"}]}}" >/dev/null
done
i=0
until [ "$(redis-cli -p "$RPORT" LLEN demo:replies)" = 5 ]; do
    i=$((i+1)); [ $i -gt 600 ] && { echo "demo: jobs did not finish" >&2; exit 1; }
    sleep 0.05
done
for i in 1 2 3 4 5; do
    printf 'demo-%s: %s, answer: ' "$i" "$(redis-cli -p "$RPORT" HGET "demo:job:demo-$i" status)"
    "$BIN/chatq" get "demo-$i" | $PY -c 'import json,sys; r=json.load(sys.stdin)["response"]; print(r["choices"][0]["message"]["content"])'
done
echo
echo "== one reply_to output line (OpenAI Batch output format)"
redis-cli -p "$RPORT" LINDEX demo:replies 0
echo
echo "== chatq usage"
"$BIN/chatq" usage
echo
echo "== chatq stats"
"$BIN/chatq" stats
