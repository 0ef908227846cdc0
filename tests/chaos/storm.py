#!/usr/bin/python3
"""storm.py — the two scenarios of issue 9 ("kill anything, lose nothing"),
behind `make chaos` (full size) and, short, behind `make test`
(tests/e2e/test_chaos_short.py).

Scenario A, the kill storm. One chatqd (2 workers x 32) against paced 1-second
answers (half streamed: 10 chunks 100 ms apart; half plain: 1 s before the
headers), as a real model would answer. It runs twice on the same Redis and
upstream, with a fresh key prefix each time:
  - baseline: nothing is killed;
  - storm: a random chatq-worker is SIGKILLed every 2 s for the whole run,
    and redis-server (AOF on, fsync always: nothing acknowledged is lost) is
    restarted twice, at 1/3 and 2/3 of the baseline's time.
It prints and checks, for the storm run: jobs submitted and ended, lost (0:
a job with no terminal status, or left in a queue, processing or quarantine
list), duplicated (0: a job with more than one reply_to line or more than one
terminal event), dead-lettered as worker_crashed (0: outside kills are no
evidence against a job), other failures (0), usage `requests` = jobs, chatqd
alive (it never exits), and the wall time beside the baseline's (at most
CHATQ_STORM_MAX_RATIO, default 2).

Scenario B, one poison pill. The test-hook worker (a body with
"chatq_test_crash": true aborts it at the job's start) runs 2,000 short jobs
(5 chunks 40 ms apart) twice: unharmed, then with one pill pushed among them.
It checks that the pill ends in P:dead as worker_crashed after exactly three
crashes (worker_exited cause=fault), that at least 99% of the other jobs
succeed, and that the run keeps at least half the unharmed throughput (jobs
per second, until the last job ended).

Run: make chaos, or CHATQ_BIN=build /usr/bin/python3 tests/chaos/storm.py
     [--short] [A|B ...]   (default: both)
--short: 400 jobs at concurrency 16 (A) and 500 jobs (B), under a minute
each.
Environment: CHATQ_STORM_JOBS_A, CHATQ_STORM_JOBS_B (job counts),
CHATQ_STORM_MAX_RATIO, CHATQ_CHAOS_KEEP=1 (keep the temp dir).
Exit status: 0 pass, 1 a check failed, 2 the harness failed. On failure the
logs (chatqd-<run>.log, redis.log, upstream.log) are kept and named.
Uses soak.py's Redis and upstream helpers."""

import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from soak import BIN, HarnessError, RedisProc, Upstream, tail  # noqa: E402

KEEP = os.environ.get("CHATQ_CHAOS_KEEP") == "1"
MAX_RATIO = float(os.environ.get("CHATQ_STORM_MAX_RATIO") or 2.0)
TERMINAL = ("succeeded", "failed", "cancelled")
CONFIG = {"retry_base_ms": 20, "retry_max_ms": 2000, "timeout_ms": 30000,
          "idle_timeout_ms": 5000, "connect_timeout_ms": 2000, "shutdown_grace_ms": 2000}
MODEL, TENANT = "mock-storm", "storm"
KILL_EVERY_S = 2.0
T0 = time.monotonic()


def say(msg):
    print("[%7.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


def retry(fn, tries=100):
    """Runs a Redis call, riding out a restart of redis-server."""
    for _ in range(tries):
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
            time.sleep(0.1)
    raise HarnessError("Redis does not answer")


class Run:
    """One chatqd on its own key prefix, with its jobs and its log."""

    def __init__(self, h, name, specs, extra=None, worker=None, concurrency=64):
        self.h = h
        self.name = name
        self.prefix = "storm" + uuid.uuid4().hex[:8]
        self.jobs = materialise(self.prefix, specs, extra)  # [(id, raw, content)]
        self.ids = [j[0] for j in self.jobs]
        self.log_path = os.path.join(h.dir, "chatqd-%s.log" % name)
        env = dict(os.environ)
        env.update({"CHATQ_REDIS_URL": "redis://127.0.0.1:%d/0" % h.redis.port,
                    "CHATQ_PREFIX": self.prefix, "OPENAI_BASE_URL": h.upstream.url,
                    "OPENAI_API_KEY": "sk-storm-secret", "CHATQ_CONFIG": h.config_path})
        if worker:
            env["CHATQ_WORKER"] = worker
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "chatqd"), "--workers", "2", "--concurrency", str(concurrency)],
            env=env, stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.r = h.redis.client()
        self.kills = 0
        self.restarts = 0
        self.exited_at = None

    def k(self, *parts):
        return ":".join((self.prefix,) + parts)

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]

    def wait_workers(self):
        deadline = time.monotonic() + 15
        while len(self.worker_pids()) < 2 or retry(lambda: self.r.hlen(self.k("workers"))) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise HarnessError("chatqd %s did not start its workers:\n%s"
                                   % (self.name, tail(self.log_path, 30)))
            time.sleep(0.05)

    def push(self, raws):
        p = self.r.pipeline(transaction=False)
        for i in range(0, len(raws), 500):
            p.lpush(self.k("queue", "default"), *raws[i:i + 500])
        retry(p.execute)

    def statuses(self):
        def get():
            p = self.r.pipeline(transaction=False)
            for jid in self.ids:
                p.hget(self.k("job", jid), "status")
            return dict(zip(self.ids, p.execute()))
        return retry(get)

    def kill_a_worker(self, rng):
        pids = self.worker_pids()
        if pids:
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
                self.kills += 1
            except ProcessLookupError:
                pass

    def restart_redis(self):
        t = time.monotonic()
        self.h.redis.shutdown()
        self.h.redis.start()
        self.r.connection_pool.disconnect()
        self.restarts += 1
        say("%s: restarted redis-server (down %.2fs)" % (self.name, time.monotonic() - t))

    def run(self, deadline_s, kill=False, restarts_at=()):
        """Pushes every job, then waits until each has a terminal status,
        killing and restarting on the way. Returns the wall time (None:
        not every job ended within deadline_s)."""
        rng = random.Random(7)
        self.wait_workers()
        t0 = time.monotonic()
        self.push([raw for _, raw, _ in self.jobs])
        next_kill = t0 + KILL_EVERY_S
        restarts = sorted(restarts_at)
        while True:
            now = time.monotonic()
            if self.proc.poll() is not None and self.exited_at is None:
                self.exited_at = now - t0
                say("%s: chatqd EXITED with status %s" % (self.name, self.proc.returncode))
            if kill and now >= next_kill:
                self.kill_a_worker(rng)
                next_kill = now + KILL_EVERY_S
            if restarts and now - t0 >= restarts[0]:
                restarts.pop(0)
                self.restart_redis()
            st = self.statuses()
            left = sum(1 for v in st.values() if v not in TERMINAL)
            if left == 0:
                return time.monotonic() - t0
            if now - t0 > deadline_s:
                say("%s: %d job(s) not ended after %.0fs" % (self.name, left, deadline_s))
                return None
            time.sleep(0.2)

    def lists_left(self):
        out = {}
        for pat in ("queue", "processing", "quarantine"):
            for key in retry(lambda: list(self.r.scan_iter(match=self.k(pat, "*"), count=1000))):
                n = retry(lambda: self.r.llen(key))
                if n:
                    out[key] = n
        return out

    def results(self):
        """Counts from Redis: statuses, reply lines and terminal events per
        job, dead entries by code, usage requests."""
        st = self.statuses()
        lines = collections.Counter()
        for raw in retry(lambda: self.r.lrange(self.prefix + "-replies", 0, -1)):
            lines[json.loads(raw).get("id")] += 1
        p = self.r.pipeline(transaction=False)
        for jid in self.ids:
            p.lrange(self.k("events", jid), 0, -1)
        finals = {}
        for jid, evs in zip(self.ids, retry(p.execute)):
            finals[jid] = sum(1 for e in evs if json.loads(e).get("type") in ("done", "error"))
        dead = collections.Counter()
        dead_jobs = []
        for raw in retry(lambda: self.r.lrange(self.k("dead"), 0, -1)):
            d = json.loads(raw)
            dead[d["error"].get("code")] += 1
            dead_jobs.append(d["job"])
        requests = 0
        for key in retry(lambda: list(self.r.scan_iter(match=self.k("usage", "*")))):
            for f, v in retry(lambda: self.r.hgetall(key)).items():
                if f.endswith("|requests"):
                    requests += int(v)
        return {"status": st, "lines": lines, "finals": finals, "dead": dead,
                "dead_jobs": dead_jobs, "requests": requests}

    def log_lines(self, msg):
        with open(self.log_path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        return [l for l in text.splitlines() if " msg=%s " % msg in l + " "]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self.logf.close()


class Harness:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="chatq-storm-")
        self.redis = RedisProc(self.dir)
        self.upstream = Upstream(self.dir)
        self.config_path = os.path.join(self.dir, "chatq.json")
        with open(self.config_path, "w") as f:
            json.dump(CONFIG, f, indent=2)
        self.runs = []
        self.failures = []

    def start(self):
        for exe in ("chatqd", "chatq-worker"):
            if not os.access(os.path.join(BIN, exe), os.X_OK):
                raise HarnessError("%s is not built in %s (make)" % (exe, BIN))
        self.redis.start()
        self.upstream.start()
        say("redis-server on port %d (AOF, fsync always), upstream on %s, dir %s"
            % (self.redis.port, self.upstream.base, self.dir))

    def run(self, name, specs, **kw):
        r = Run(self, name, specs, **kw)
        self.runs.append(r)
        return r

    def check(self, ok, what):
        print("  %s %s" % ("ok  " if ok else "FAIL", what), flush=True)
        if not ok:
            self.failures.append(what)

    def close(self, keep):
        for r in self.runs:
            r.stop()
        self.upstream.stop()
        self.redis.kill()
        if keep:
            print("storm: logs and data kept in %s" % self.dir, flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def job(prefix, jid, mock, stream, body=None):
    b = {"model": MODEL, "messages": [{"role": "user", "content": "hi " + jid}],
         "mock": dict(mock, key="%s:%s" % (prefix, jid))}
    b.update(body or {})
    return json.dumps({"id": jid, "tenant": TENANT, "reply_to": prefix + "-replies",
                       "stream": stream, "body": b})


def paced_jobs(n):
    """Scenario A's jobs as specs (id, stream, mock, expected content): half
    1-s streams, half 1-s plain answers."""
    out = []
    for i in range(n):
        jid = "a-%05d" % i
        pieces = ["%s.%d " % (jid, k) for k in range(10)]
        stream = i % 2 == 0
        mock = {"content": pieces}
        if stream:
            mock["chunk_delay_ms"] = 100
        else:
            mock["delay_ms"] = 1000
        out.append((jid, stream, mock, "".join(pieces)))
    return out


def materialise(run_prefix, specs, extra=None):
    """The jobs of one run (its own prefix): [(id, raw JSON, expected content)];
    extra: {id: fields laid over the body}."""
    return [(jid, job(run_prefix, jid, mock, stream, (extra or {}).get(jid)), content)
            for jid, stream, mock, content in specs]


def scenario_a(h, n, conc):
    print("\n== scenario A: kill storm, %d jobs (1-s answers, half streamed), 2 workers x %d"
          % (n, conc), flush=True)
    specs = paced_jobs(n)
    base = h.run("A-baseline", specs, concurrency=conc)
    t_base = base.run(deadline_s=max(120, n / 5))
    base.stop()
    if t_base is None:
        h.check(False, "baseline: every job ended")
        return
    say("A-baseline: %d jobs in %.1fs" % (n, t_base))

    storm = h.run("A-storm", specs, concurrency=conc)
    t = storm.run(deadline_s=max(180, t_base * 6), kill=True,
                  restarts_at=(t_base / 3, 2 * t_base / 3))
    alive = storm.proc.poll() is None and storm.exited_at is None
    res = storm.results()
    st = res["status"]
    ended = sum(1 for v in st.values() if v in TERMINAL)
    lists = storm.lists_left()
    lost = n - ended + sum(lists.values())
    dup = sum(1 for jid in storm.ids if res["lines"][jid] > 1 or res["finals"][jid] > 1)
    crashed = res["dead"].get("worker_crashed", 0)
    other_failed = sum(1 for v in st.values() if v == "failed") - crashed
    content = dict((jid, c) for jid, _, c in storm.jobs)
    wrong = 0
    for jid in storm.ids:
        if st[jid] == "succeeded":
            resp = json.loads(retry(lambda: storm.r.hget(storm.k("job", jid), "response")))
            wrong += resp["choices"][0]["message"]["content"] != content[jid]
    print("A: %d SIGKILLs, %d Redis restarts; baseline %.1fs, storm %s"
          % (storm.kills, storm.restarts, t_base,
             "%.1fs (%.2fx)" % (t, t / t_base) if t else "DID NOT END"), flush=True)
    print("A: submitted %d, ended %d, lost %d, duplicated %d, worker_crashed %d, other failures "
          "%d, wrong answers %d, usage requests %d, chatqd %s"
          % (n, ended, lost, dup, crashed, other_failed, wrong, res["requests"],
             "alive" if alive else "EXITED"), flush=True)
    h.check(ended == n, "every job ended (%d of %d)" % (ended, n))
    h.check(lost == 0, "nothing lost (lists left: %s)" % (lists or "none"))
    h.check(dup == 0, "no job has two results")
    h.check(crashed == 0, "no job dead-lettered as worker_crashed (%d)" % crashed)
    h.check(other_failed == 0, "no other failure (%s)" % dict(res["dead"]))
    h.check(wrong == 0, "every answer is the upstream's")
    h.check(res["requests"] == n, "usage requests = jobs (%d)" % res["requests"])
    h.check(alive, "chatqd alive through the storm")
    h.check(not storm.log_lines("crash_loop"), "no crash_loop")
    h.check(storm.kills >= 3, "workers were killed (%d)" % storm.kills)
    h.check(t is not None and t <= MAX_RATIO * t_base,
            "wall time within %.1fx of the baseline" % MAX_RATIO)


def short_jobs(n):
    out = []
    for i in range(n):
        jid = "b-%05d" % i
        pieces = ["%s.%d " % (jid, k) for k in range(5)]
        out.append((jid, True, {"content": pieces, "chunk_delay_ms": 40}, "".join(pieces)))
    return out


def scenario_b(h, n):
    print("\n== scenario B: one poison pill among %d jobs, 2 workers x 64" % n, flush=True)
    hooks = os.path.join(BIN, "chatq-worker-testhooks")
    if not os.access(hooks, os.X_OK):
        raise HarnessError("%s is not built (make build/chatq-worker-testhooks)" % hooks)
    specs = short_jobs(n)
    base = h.run("B-unharmed", specs, worker=hooks)
    t_base = base.run(deadline_s=max(120, n / 10))
    base.stop()
    if t_base is None:
        h.check(False, "unharmed run: every job ended")
        return
    say("B-unharmed: %d jobs in %.1fs (%.0f jobs/s)" % (n, t_base, n / t_base))

    pill_at = n // 10
    pill_id = "b-pill"
    specs_p = specs[:pill_at] + [(pill_id, False, {"content": ["never"]}, "never")] + specs[pill_at:]
    run = h.run("B-pill", specs_p, extra={pill_id: {"chatq_test_crash": True}}, worker=hooks)
    raw_pill = [raw for jid, raw, _ in run.jobs if jid == pill_id][0]
    t = run.run(deadline_s=max(180, t_base * 6))
    alive = run.proc.poll() is None
    res = run.results()
    st = res["status"]
    others = [jid for jid in run.ids if jid != pill_id]
    ok = sum(1 for jid in others if st[jid] == "succeeded")
    faults = [l for l in run.log_lines("worker_exited") if " cause=fault " in l]
    pill_dead = [d for d in res["dead_jobs"] if d == raw_pill]
    tput, tput_base = (n / t if t else 0.0), n / t_base
    print("B: unharmed %.1fs (%.0f jobs/s); with the pill %s; pill status %s, crashes %d, "
          "dead entries %s; others succeeded %d of %d; chatqd %s"
          % (t_base, tput_base, "%.1fs (%.0f jobs/s)" % (t, tput) if t else "DID NOT END",
             st.get(pill_id), len(faults), dict(res["dead"]), ok, len(others),
             "alive" if alive else "EXITED"), flush=True)
    h.check(len(pill_dead) == 1 and res["dead"].get("worker_crashed") == 1 and
            st.get(pill_id) == "failed", "the pill dead-lettered as worker_crashed, once")
    h.check(len(faults) == 3, "after exactly 3 crashes (%d)" % len(faults))
    h.check(ok >= 0.99 * len(others), "at least 99%% of the rest succeeded (%d of %d)"
            % (ok, len(others)))
    h.check(tput >= 0.5 * tput_base, "at least half the unharmed throughput (%.0f vs %.0f jobs/s)"
            % (tput, tput_base))
    h.check(alive and not run.log_lines("crash_loop"), "chatqd alive, no crash_loop")
    h.check(not run.log_lines("suspect_job_solo"), "no job waited behind a suspect")


def main(argv):
    short = "--short" in argv
    which = [a for a in argv if a in ("A", "B")] or ["A", "B"]
    # A: as many jobs in flight as make the run last long enough for its
    # kills (about 12 s unharmed when short, 45 s in full)
    n_a = int(os.environ.get("CHATQ_STORM_JOBS_A") or (400 if short else 3000))
    conc_a = 16 if short else 32
    n_b = int(os.environ.get("CHATQ_STORM_JOBS_B") or (500 if short else 2000))
    h = Harness()
    rc = 2
    try:
        h.start()
        if "A" in which:
            scenario_a(h, n_a, conc_a)
        if "B" in which:
            scenario_b(h, n_b)
        rc = 1 if h.failures else 0
        print("\nRESULT: %s" % ("PASS" if rc == 0 else "FAIL: " + "; ".join(h.failures)),
              flush=True)
        if rc:
            for r in h.runs:
                print("--- %s (%s), last lines:\n%s" % (r.name, r.log_path, tail(r.log_path, 15)))
    except HarnessError as e:
        print("storm: harness error: %s" % e, file=sys.stderr)
    except KeyboardInterrupt:
        rc = 130
    finally:
        h.close(keep=KEEP or rc != 0)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
