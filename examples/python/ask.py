#!/usr/bin/env python3
"""ask.py — submit one prompt to chatq and print the answer as it streams.

    ask.py [-m MODEL] [--queue Q] [--tenant T] [--id ID] [--no-stream] PROMPT

Prints the job id on stderr, then the answer on stdout, piece by piece as
the model writes it (with --no-stream: whole, once the job has ended, read
from the job hash). If an attempt fails after part of the answer was shown,
chatq retries: the partial line is ended, a note goes to stderr and the
answer starts over. Exit status: 0 when the job succeeded, 1 when it failed
or was cancelled, 2 on a usage or Redis error.

Environment: CHATQ_REDIS_URL, CHATQ_PREFIX, CHATQ_MODEL (default
gpt-4o-mini), CHATQ_EXTRA_BODY (a JSON object laid over the request body)."""

import argparse
import sys

import redis

from chatq_client import Chatq, response_text


def main():
    ap = argparse.ArgumentParser(description="Submit a prompt to chatq and stream the answer.")
    ap.add_argument("prompt")
    ap.add_argument("-m", "--model")
    ap.add_argument("--queue", default="default")
    ap.add_argument("--tenant")
    ap.add_argument("--id", help="the job id (default: a fresh py-... id)")
    ap.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    ap.add_argument("--timeout", type=float, default=600, help="seconds (default 600)")
    a = ap.parse_args()

    c = Chatq()
    job = c.make_job(a.prompt, model=a.model, stream=not a.no_stream, id=a.id, tenant=a.tenant)
    try:
        jid = c.submit(job, a.queue)
        print(jid, file=sys.stderr)
        if a.no_stream:
            h = c.result(jid, timeout=a.timeout)
            if h.get("status") == "succeeded":
                print(response_text(h))
                return 0
            err = h.get("error") or {}
            print("job %s %s: %s: %s" % (jid, h.get("status"), err.get("code"), err.get("message")),
                  file=sys.stderr)
            return 1
        shown = {"any": False}

        def on_text(piece):
            sys.stdout.write(piece)
            sys.stdout.flush()
            shown["any"] = True

        def on_retry(ev):
            if shown["any"]:
                print()
            shown["any"] = False
            err = ev.get("error") or {}
            print("[attempt %s failed (%s); starting over]" % (ev.get("attempt"), err.get("code")),
                  file=sys.stderr)

        answer = c.follow_text(jid, on_text=on_text, on_retry=on_retry, timeout=a.timeout)
        if shown["any"]:
            print()
        if answer.status == "succeeded":
            return 0
        err = answer.error or {}
        print("job %s %s: %s" % (jid, answer.status, err.get("message") or err.get("code") or ""),
              file=sys.stderr)
        return 1
    except (redis.RedisError, TimeoutError) as e:
        print("ask.py: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
