#!/usr/bin/env python3
"""wait.py — submit one prompt without streaming and wait for its result.

    wait.py [-m MODEL] [--poll] PROMPT

The job names a reply_to list (P-examples:reply:<id>, a key of our own:
reply_to may not name one of chatq's, under P:); when it ends, chatq
pushes its output line there (OpenAI Batch output format) and BRPOP wakes
us: no polling. With --poll the script reads the job hash P:job:<id> every
100 ms instead, which needs no list but costs a round trip per poll.
Prints the answer; exit status 0 succeeded, 1 failed or cancelled, 2 on a
Redis error or timeout."""

import argparse
import json
import sys

import redis

from chatq_client import Chatq, response_text


def main():
    ap = argparse.ArgumentParser(description="Submit a prompt and wait for the result.")
    ap.add_argument("prompt")
    ap.add_argument("-m", "--model")
    ap.add_argument("--queue", default="default")
    ap.add_argument("--poll", action="store_true", help="poll the job hash instead of reply_to")
    ap.add_argument("--timeout", type=int, default=600, help="seconds (default 600)")
    a = ap.parse_args()
    c = Chatq()
    jid = c.new_id()
    reply_key = None if a.poll else c.app_key("reply", jid)
    try:
        c.submit(c.make_job(a.prompt, model=a.model, id=jid, reply_to=reply_key), a.queue)
        print(jid, file=sys.stderr)
        if a.poll:
            h = c.result(jid, timeout=a.timeout)
            if h["status"] == "succeeded":
                print(response_text(h))
                return 0
            print("job %s %s: %s" % (jid, h["status"], json.dumps(h.get("error"))), file=sys.stderr)
            return 1
        line = c.wait_reply(reply_key, timeout=a.timeout)
    except (redis.RedisError, TimeoutError) as e:
        print("wait.py: %s" % e, file=sys.stderr)
        return 2
    if line is None:
        print("wait.py: no answer within %ss" % a.timeout, file=sys.stderr)
        return 2
    # A final HTTP answer fills `response` (status_code 200 for a success);
    # a failure without one (timeout, cancelled...) sets `error`.
    resp = line.get("response") or {}
    if line.get("error") is None and resp.get("status_code") == 200:
        print(resp["body"]["choices"][0]["message"].get("content") or "")
        return 0
    print("job %s failed: %s" % (jid, json.dumps(line.get("error") or resp.get("body"))),
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
