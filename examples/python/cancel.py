#!/usr/bin/env python3
"""cancel.py — cancel a queued or running chatq job.

    cancel.py JOB_ID [--ttl SECONDS]

Sets P:cancel:<id> (it expires after --ttl, default one day) and publishes
the id on P:control: a running job is aborted at once, a queued one is
dropped when a worker reaches it. Either way it ends `cancelled` (its hash,
its final stream event and its reply_to line say so); a job that had
already ended is not changed."""

import argparse
import sys

import redis

from chatq_client import Chatq


def main():
    ap = argparse.ArgumentParser(description="Cancel a chatq job.")
    ap.add_argument("id")
    ap.add_argument("--ttl", type=int, default=86400, help="seconds the cancel key lives")
    a = ap.parse_args()
    try:
        Chatq().cancel(a.id, ttl=a.ttl)
    except redis.RedisError as e:
        print("cancel.py: %s" % e, file=sys.stderr)
        return 2
    print("cancel requested for %s" % a.id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
