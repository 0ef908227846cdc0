#!/usr/bin/env python3
"""watch.py — follow a chatq job that is already queued, running or done.

    watch.py JOB_ID

Prints the job's answer from its first chunk, whenever you start: what was
published before is read from P:events:<id> (after subscribing, so nothing
falls in between), the rest comes live. Run it twice on the same job, one
late, and both print the same text. Exit status: 0 succeeded, 1 failed or
cancelled, 2 on a Redis error or timeout."""

import argparse
import sys

import redis

from chatq_client import Chatq


def main():
    ap = argparse.ArgumentParser(description="Follow a chatq job's stream to its end.")
    ap.add_argument("id")
    ap.add_argument("--timeout", type=float, default=600, help="seconds (default 600)")
    a = ap.parse_args()
    c = Chatq()
    shown = {"any": False}

    def on_text(piece):
        sys.stdout.write(piece)
        sys.stdout.flush()
        shown["any"] = True

    def on_retry(ev):
        if shown["any"]:
            print()
        shown["any"] = False
        print("[attempt %s failed (%s); starting over]"
              % (ev.get("attempt"), (ev.get("error") or {}).get("code")), file=sys.stderr)

    try:
        answer = c.follow_text(a.id, on_text=on_text, on_retry=on_retry, timeout=a.timeout)
    except (redis.RedisError, TimeoutError) as e:
        print("watch.py: %s" % e, file=sys.stderr)
        return 2
    if shown["any"]:
        print()
    err = answer.error or {}
    print("job %s %s%s" % (a.id, answer.status,
                           ": %s: %s" % (err.get("code"), err.get("message")) if err else ""),
          file=sys.stderr)
    return 0 if answer.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
