#!/usr/bin/env python3
"""batch.py — run a batch of jobs through chatq with a progress bar.

    batch.py [-n 1000] [-m MODEL] [--queue Q] [--tenant T]

Pushes N jobs ("Question i of N"), 500 to an LPUSH, all with the same
reply_to list, P-examples:batch:<batch>:out (ours: reply_to may not name
a key under chatq's P:), then takes their output lines
off that list as they come (BRPOP for the first, RPOP with a count for the
rest that are there: one round trip for many lines) until every job has
answered. Each job's id is <batch>-<i>, so a line is matched to its job and
counted once.

On a terminal the bar redraws in place on stderr:

    [##############----------------]  467/1000  46.7%  0 failed  311/s  ETA 2s

elsewhere (a log file, CI) it prints a line at every tenth. The summary goes
to stdout: counts, tokens and the rate. Exit status: 0 when every job
succeeded, 1 when some failed, 2 on a Redis error or when answers stop
coming for --idle seconds."""

import argparse
import json
import sys
import time

import redis

from chatq_client import Chatq

BAR_WIDTH = 30


class Progress:
    """A plain terminal progress bar (no library): redrawn in place with \\r
    on a terminal, at most 10 times a second; one line per tenth elsewhere."""

    def __init__(self, total, out=sys.stderr):
        self.total = total
        self.out = out
        self.tty = out.isatty()
        self.start = time.monotonic()
        self.last_draw = 0.0
        self.last_tenth = 0
        self.last_printed = -1

    def line(self, done, failed):
        frac = done / self.total if self.total else 1.0
        filled = int(frac * BAR_WIDTH)
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = done / elapsed
        eta = "%ds" % ((self.total - done) / rate) if rate > 0 and done < self.total else "-"
        return "[%s%s] %*d/%d %5.1f%%  %d failed  %d/s  ETA %s" % (
            "#" * filled, "-" * (BAR_WIDTH - filled), len(str(self.total)), done,
            self.total, 100 * frac, failed, rate, eta)

    def update(self, done, failed, final=False):
        if self.tty:
            now = time.monotonic()
            if final or now - self.last_draw >= 0.1:
                self.last_draw = now
                self.out.write("\r" + self.line(done, failed) + ("\n" if final else ""))
                self.out.flush()
            return
        tenth = done * 10 // self.total
        if tenth > self.last_tenth or (final and done != self.last_printed):
            self.last_tenth = tenth
            self.last_printed = done
            self.out.write(self.line(done, failed) + "\n")
            self.out.flush()


def run(c, n, model, queue, tenant, idle):
    batch = Chatq.new_id("b")
    out_key = c.app_key("batch", batch, "out")
    jobs = [c.make_job("Question %d of %d" % (i, n), model=model, id="%s-%d" % (batch, i),
                       reply_to=out_key, tenant=tenant, metadata={"batch": batch, "line": i})
            for i in range(1, n + 1)]
    c.submit_many(jobs, queue)
    print("batch %s: %d jobs queued on %s" % (batch, n, c.key("queue", queue)), file=sys.stderr)

    waiting = {j["id"] for j in jobs}
    failed = 0
    tokens = 0
    bar = Progress(n)
    bar.update(0, 0)
    while waiting:
        first = c.r.brpop(out_key, timeout=idle)
        if first is None:
            bar.update(n - len(waiting), failed, final=True)
            print("batch.py: no answer for %ds; %d jobs still out" % (idle, len(waiting)),
                  file=sys.stderr)
            return 2, n - len(waiting), failed, tokens
        lines = [first[1]] + (c.r.rpop(out_key, 1000) or [])
        for raw in lines:
            line = json.loads(raw)
            if line.get("id") not in waiting:
                continue    # not ours, or seen already
            waiting.discard(line["id"])
            resp = line.get("response") or {}
            if line.get("error") is not None or resp.get("status_code") != 200:
                failed += 1
            else:
                tokens += ((resp.get("body") or {}).get("usage") or {}).get("total_tokens", 0)
        bar.update(n - len(waiting), failed)
    bar.update(n, failed, final=True)
    c.r.delete(out_key)
    return (1 if failed else 0), n, failed, tokens


def main():
    ap = argparse.ArgumentParser(description="Run N jobs through chatq with a progress bar.")
    ap.add_argument("-n", type=int, default=1000, help="number of jobs (default 1000)")
    ap.add_argument("-m", "--model")
    ap.add_argument("--queue", default="default")
    ap.add_argument("--tenant")
    ap.add_argument("--idle", type=int, default=60,
                    help="give up when no answer came for this many seconds (default 60)")
    a = ap.parse_args()
    if a.n < 1:
        ap.error("-n must be at least 1")
    c = Chatq()
    t0 = time.monotonic()
    try:
        rc, done, failed, tokens = run(c, a.n, a.model, a.queue, a.tenant, a.idle)
    except redis.RedisError as e:
        print("batch.py: %s" % e, file=sys.stderr)
        return 2
    secs = time.monotonic() - t0
    print("%d jobs: %d succeeded, %d failed, %d tokens, %.1f s (%d jobs/s)"
          % (a.n, done - failed, failed, tokens, secs, done / secs if secs > 0 else 0))
    return rc


if __name__ == "__main__":
    sys.exit(main())
