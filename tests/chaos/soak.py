#!/usr/bin/python3
"""soak.py — the chaos soak test behind `make chaos`: "no job lost, whatever
is killed" (docs/protocol.md §6 exactly-once results, §8 semantics under faults).

What it runs, all on free loopback ports, in a fresh temp dir:
  - a redis-server with `appendonly yes` and `appendfsync always`, so that a
    restart (SHUTDOWN, then a new server on the same port and dir) keeps
    every acknowledged write;
  - the stand-in upstream tests/e2e/upstream.py (its "mock" scenarios script
    each request: content, chunk delays, fail_first, status, reset);
  - two chatqd (2 workers each, concurrency 64) on one key prefix, each with
    its own log file (its workers share it).

Then, for CHATQ_CHAOS_SECONDS (default 90), a producer thread pushes
CHATQ_CHAOS_JOBS jobs (default 5000) at a steady rate, a seeded mix of: plain
and streamed answers, slow streams (chunk delays), slow plain answers,
upstream 500s that succeed on retry (fail_first), connections reset by the
upstream mid-stream or before the headers on the first attempt(s), and a few
400s that fail for good. Every job has an id, reply_to one shared list, and
max_attempts 8 (a job's own upstream failures use attempts up: with the
default 3, a 500-then-success job that is also interrupted could run out,
which is not what this test is about).

Meanwhile the chaos loop, every 1-3 s (seeded: CHATQ_CHAOS_SEED replays the
same job mix and the same sequence of actions; timing still varies), does
one of: SIGKILL a random worker; SIGKILL a whole chatqd process group and
start a new chatqd; SIGTERM a chatqd (it drains in the background) and start
a new one; restart redis-server. The producer pushes under a lock the Redis
restart also holds, and records each batch in a harness set in the same
MULTI, so no push is ever lost or doubled by the harness itself. A chatqd
that exits by itself is replaced, as systemd would.

Then the chaos stops and it waits (CHATQ_CHAOS_DRAIN_SECONDS, default 120)
until every job hash is terminal and the queues and processing lists are
empty, lets a few seconds pass for any duplicate run to show, stops the
chatqds with SIGTERM, and checks:
  - every job has a hash with a terminal status: succeeded for all but the
    400 ones, which fail with upstream_error/400; a succeeded one has the
    expected response (content compared piece by piece);
  - the reply_to list holds exactly one line per job, none foreign, each
    consistent with the hash;
  - P:events:<id> ends with exactly one terminal event that matches the
    status, seq numbers are 0..n consecutive, a non-streamed job has only its
    final event, and for a streamed succeeded job the chunks after the last
    retry event are exactly what the upstream sent in its last request;
  - the usage counters: requests == N, succeeded/failed/cancelled match the
    hashes, tokens = the mock's per-job usage times the succeeded count;
  - no queue or processing list is left; P:dead holds exactly the failed
    jobs, once each;
  - every chatqd stopped with SIGTERM exited 0; no sanitizer report in logs;
  - no job ends failed/worker_crashed and no chatqd exits by itself (not even
    after crash_loop): this soak kills only from outside (SIGKILL, SIGTERM,
    a Redis restart), which docs/protocol.md §8 says is never the jobs' fault and never
    a crash loop.
Tolerated and reported, not violations, because docs/design.md says so:
  - stream events are best effort while Redis is down: a seq gap, missing
    chunks or a missing retry event in a job that ran while some worker's
    `cmd` connection was down after a Redis restart (the windows are read
    from the chatqd logs: redis_down / redis_ready conn=cmd).
Not tolerated: a seq number used twice. START numbers a resumed run's events
from LLEN of P:events, so a run resumed after such a gap reuses numbers the
run that lost events had already published, and a subscriber that drops
duplicates by seq (docs/protocol.md §5) drops real events; CHATQ_CHAOS_TOLERATE_SEQ_REUSE=1
tolerates it, inside those windows only.

It prints the seed first, each chaos action as it happens, and a summary;
it exits 1 on any violation (with the job's hash, events, reply lines,
upstream requests and the chatqd log lines naming it, and the log dir, which
is kept), 2 when the harness itself failed, 0 otherwise (the temp dir is then
removed unless CHATQ_CHAOS_KEEP=1). Everything it started is stopped on every
exit path, Ctrl-C included.

Run: make chaos, or CHATQ_BIN=build /usr/bin/python3 tests/chaos/soak.py
Environment: CHATQ_CHAOS_JOBS, CHATQ_CHAOS_SECONDS, CHATQ_CHAOS_SEED,
CHATQ_CHAOS_DRAIN_SECONDS, CHATQ_CHAOS_KEEP=1 (keep the temp dir),
CHATQ_CHAOS_TOLERATE_SEQ_REUSE=1 (above).
Uses the standard library and Debian's python3-redis only."""

import calendar
import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import uuid

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
UPSTREAM_PY = os.path.join(REPO, "tests", "e2e", "upstream.py")
BIN = os.path.abspath(os.environ.get("CHATQ_BIN") or os.path.join(REPO, "build"))
PY = "/usr/bin/python3"


def env_num(name, default, kind=int):
    v = os.environ.get(name)
    return kind(v) if v not in (None, "") else default


N_JOBS = env_num("CHATQ_CHAOS_JOBS", 5000)
PUSH_SECONDS = env_num("CHATQ_CHAOS_SECONDS", 90.0, float)
DRAIN_SECONDS = env_num("CHATQ_CHAOS_DRAIN_SECONDS", 120.0, float)
KEEP = os.environ.get("CHATQ_CHAOS_KEEP") == "1"
TOLERATE_SEQ_REUSE = os.environ.get("CHATQ_CHAOS_TOLERATE_SEQ_REUSE") == "1"
SEED = env_num("CHATQ_CHAOS_SEED", None) if os.environ.get("CHATQ_CHAOS_SEED") else \
    random.SystemRandom().randrange(1, 2 ** 31)

WORKERS, CONCURRENCY = 2, 64
GRACE_MS = 2000
CONFIG = {
    "retry_base_ms": 20,
    "retry_max_ms": 2000,
    "timeout_ms": 15000,
    "idle_timeout_ms": 5000,
    "connect_timeout_ms": 2000,
    "shutdown_grace_ms": GRACE_MS,
}
MODEL, TENANT = "mock-chaos", "chaos"
MAX_ATTEMPTS = 8
# The upstream's usage for every answer (upstream.py DEFAULT_USAGE).
USAGE = {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
TERMINAL = ("succeeded", "failed", "cancelled")
# Chaos actions and their weights.
ACTIONS = [("kill_worker", 40), ("kill_group", 20), ("term_chatqd", 20), ("restart_redis", 20)]
# Job kinds and their weights (of 100).
KINDS = [("plain", 28), ("stream", 24), ("slow_stream", 10), ("slow_plain", 5),
         ("retry500", 13), ("reset_mid", 10), ("reset_before", 5), ("bad400", 5)]
# Stream events lost to a Redis restart are tolerated in a job that ran while
# some worker's `cmd` connection was down (read from the logs); when the logs
# do not say, until this many seconds after Redis came back.
OUTAGE_MARGIN_S = 7.0
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
LOG_EVENTS = ("worker_exited", "worker_recovered", "drain_timeout", "worker_requeued",
              "redis_down", "requeue_orphans", "suspect_job_solo", "finish_skipped",
              "redis_unreachable_at_exit", "stop_timeout", "crash_loop", "start_failed",
              "finish_failed", "fetch_failed", "recover_failed", "redis_handshake_failed")

T0 = time.monotonic()


def say(msg):
    print("[%7.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


class HarnessError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, lines=60):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(no log: %s)" % e
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------- processes

class RedisProc:
    """A redis-server with AOF (fsync always) that can be restarted on the
    same port and dir."""

    def __init__(self, workdir):
        self.dir = workdir
        self.port = None
        self.proc = None
        self.log = os.path.join(workdir, "redis.log")
        self.starts = 0

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=20,
                           decode_responses=True, encoding_errors="replace")

    def _ready(self):
        try:
            return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2).ping()
        except redis.RedisError:  # refused, or LOADING the AOF
            return False

    def start(self):
        for _ in range(5):
            if self.port is None:
                self.port = free_port()
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                 "--dir", self.dir, "--logfile", self.log, "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._ready():
                    self.starts += 1
                    return
                time.sleep(0.02)
            self.kill()
            if self.starts:
                break  # a restart must keep its port
            self.port = None
        raise HarnessError("redis-server did not start:\n" + tail(self.log, 20))

    def shutdown(self):
        """SHUTDOWN (which writes out the AOF) and wait for the process."""
        try:
            redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10).shutdown()
        except redis.RedisError as e:
            say("redis SHUTDOWN said %r; sending SIGTERM" % e)
            self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            raise HarnessError("redis-server did not exit after SHUTDOWN")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Upstream:
    def __init__(self, workdir):
        self.dir = workdir
        self.log = os.path.join(workdir, "upstream.log")
        self.proc = None
        self.base = None

    def start(self):
        port_file = os.path.join(self.dir, "upstream.port")
        with open(self.log, "wb") as lf:
            self.proc = subprocess.Popen([PY, UPSTREAM_PY, "--port", "0", "--port-file", port_file],
                                         stdin=subprocess.DEVNULL, stdout=lf,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError("upstream.py exited:\n" + tail(self.log, 30))
            if os.path.exists(port_file):
                with open(port_file) as f:
                    self.base = "http://127.0.0.1:%d" % int(f.read())
                try:
                    if self.get("/_health") == "ok":
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise HarnessError("upstream.py did not answer")

    @property
    def url(self):
        return self.base + "/v1"

    def get(self, path, timeout=10):
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Daemon:
    """One chatqd, in its own process group (its workers share it)."""

    def __init__(self, n, argv, env, log_path):
        self.n = n
        self.log_path = log_path
        self.logf = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pgid = self.proc.pid
        self.state = "active"  # active | draining | killed | died | stopped
        self.termed = False    # got SIGTERM from us
        self.killed = False    # got SIGKILL (its group) from us
        self.rc = None

    @property
    def name(self):
        return "chatqd#%d(pid %d)" % (self.n, self.proc.pid)

    def alive(self):
        return self.proc.poll() is None

    def worker_pids(self):
        if not self.alive():
            return []
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]

    def group_pids(self):
        """The live chatq processes of this daemon's process group."""
        out = subprocess.run(["pgrep", "-g", str(self.pgid)], capture_output=True, text=True)
        pids = []
        for x in out.stdout.split():
            try:
                with open("/proc/%s/comm" % x) as f:
                    if f.read().strip().startswith("chatq"):
                        pids.append(int(x))
            except OSError:
                pass
        return pids

    def kill_group(self):
        """SIGKILL the whole process group (only while it holds our processes)."""
        if self.group_pids():
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self):
        try:
            self.logf.close()
        except Exception:
            pass


# ---------------------------------------------------------------- jobs

def make_jobs(rng, prefix, replies):
    """N job specs: (id, raw JSON text, spec dict)."""
    kinds, weights = zip(*KINDS)
    out = []
    for i in range(N_JOBS):
        jid = "job-%06d" % i
        kind = rng.choices(kinds, weights)[0]
        stream = {"stream": True, "slow_stream": True, "plain": False, "slow_plain": False}.get(
            kind, rng.random() < 0.5)
        npieces = rng.randint(8, 15) if kind == "slow_stream" else rng.randint(3, 6)
        pieces = ["%s.%d " % (jid, k) for k in range(npieces)]
        mock = {"key": "%s:%s" % (prefix, jid), "content": pieces}
        if kind == "slow_stream":
            mock["chunk_delay_ms"] = rng.randint(80, 250)
        elif kind == "slow_plain":
            mock["delay_ms"] = rng.randint(300, 1500)
        elif kind == "retry500":
            mock["fail_first"] = rng.randint(1, 2)
            mock["fail"] = {"status": rng.choice([500, 502, 503])}
        elif kind == "reset_mid":
            mock["fail_first"] = rng.randint(1, 2)
            mock["fail"] = {"reset": "mid_stream", "reset_after": rng.randint(2, 3)}
        elif kind == "reset_before":
            mock["fail_first"] = 1
            mock["fail"] = {"reset": "before_headers"}
        elif kind == "bad400":
            mock["status"] = 400
            mock["message"] = "chaos: bad request " + jid
        job = {"id": jid, "tenant": TENANT, "reply_to": replies, "max_attempts": MAX_ATTEMPTS,
               "stream": stream, "metadata": {"kind": kind},
               "body": {"model": MODEL, "messages": [{"role": "user", "content": "hi " + jid}],
                        "mock": mock}}
        out.append((jid, json.dumps(job), {"kind": kind, "stream": stream,
                                             "content": "".join(pieces), "bad": kind == "bad400"}))
    return out


# ---------------------------------------------------------------- the soak

class Soak:
    def __init__(self):
        # Separate streams, so that the job mix and the sequence and timing of
        # actions replay exactly whatever the victims found at each turn.
        self.rng_jobs = random.Random(SEED)
        self.rng_chaos = random.Random(SEED + 1)
        self.rng = random.Random(SEED + 2)   # victims, Redis downtime
        self.dir = tempfile.mkdtemp(prefix="chatq-chaos-")
        self.prefix = "chaos" + uuid.uuid4().hex[:8]
        self.redis = RedisProc(self.dir)
        self.upstream = Upstream(self.dir)
        self.daemons = []
        self.lock = threading.Lock()       # held while Redis restarts, and by each push
        self.stop_event = threading.Event()
        self.producer_error = None
        self.pushed = 0
        self.outages = []                  # (t_down, t_up), unix seconds
        self.actions = collections.Counter()
        self.violations = []
        self.notes = []
        self.tolerated = collections.Counter()
        self.tolerated_ids = collections.defaultdict(list)

    def k(self, *parts):
        return ":".join((self.prefix,) + parts)

    # -- daemons

    def start_daemon(self):
        n = len(self.daemons)
        env = dict(os.environ)
        env.pop("CHATQ_CONFIG", None)
        env.update({"CHATQ_REDIS_URL": "redis://127.0.0.1:%d/0" % self.redis.port,
                    "CHATQ_PREFIX": self.prefix, "OPENAI_BASE_URL": self.upstream.url,
                    "OPENAI_API_KEY": "sk-chaos-secret", "CHATQ_CONFIG": self.config_path})
        argv = [os.path.join(BIN, "chatqd"), "--workers", str(WORKERS),
                "--concurrency", str(CONCURRENCY), "--log-level", "debug"]
        d = Daemon(n, argv, env, os.path.join(self.dir, "chatqd-%02d.log" % n))
        self.daemons.append(d)
        return d

    def active(self):
        return [d for d in self.daemons if d.state == "active"]

    def supervise(self):
        """Notices chatqds that exited; replaces an active one that exited by
        itself (as systemd's Restart= would)."""
        for d in list(self.daemons):
            if d.rc is not None or d.alive():
                continue
            d.rc = d.proc.returncode
            if d.state == "active":
                d.state = "died"
                log = tail(d.log_path, 400)
                if d.rc == 1 and "msg=crash_loop" in log:
                    # docs/protocol.md §8: only deaths without progress are a crash loop,
                    # and outside kills never count
                    self.actions["chatqd_crash_loop_exit"] += 1
                self.violations.append("%s exited by itself with status %s; log %s:\n%s"
                                       % (d.name, d.rc, d.log_path, tail(d.log_path, 40)))
                say("%s exited by itself (status %s); starting a new one" % (d.name, d.rc))
                self.start_daemon()
            elif d.state == "draining":
                d.state = "stopped"
                if not d.killed and d.rc != 0:
                    self.violations.append("%s exited %s after SIGTERM (expected 0); log %s:\n%s"
                                           % (d.name, d.rc, d.log_path, tail(d.log_path, 40)))
                say("%s (SIGTERMed) exited with status %s" % (d.name, d.rc))

    # -- chaos actions

    def act(self, what):
        if what == "kill_worker":
            cands = [(d, p) for d in self.daemons for p in d.worker_pids()]
            if not cands:
                self.actions["kill_worker_skipped"] += 1
                return "no worker alive"
            d, pid = self.rng.choice(cands)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return "worker %d of %s was gone already" % (pid, d.name)
            self.actions[what] += 1
            return "SIGKILL worker %d of %s" % (pid, d.name)
        if what == "kill_group":
            cands = [d for d in self.daemons if d.alive()]
            if not cands:
                return "no chatqd alive"
            d = self.rng.choice(cands)
            was = d.state
            d.killed = True
            d.kill_group()
            self.actions[what] += 1
            msg = "SIGKILL process group of %s (%s)" % (d.name, was)
            if was == "active":
                d.state = "killed"
                msg += "; started %s" % self.start_daemon().name
            return msg
        if what == "term_chatqd":
            if not self.active():
                return "no active chatqd"
            d = self.rng.choice(self.active())
            d.proc.send_signal(signal.SIGTERM)
            d.termed = True
            d.state = "draining"
            self.actions[what] += 1
            return "SIGTERM %s; started %s" % (d.name, self.start_daemon().name)
        if what == "restart_redis":
            pause = self.rng.uniform(0, 1.0)
            with self.lock:
                t_down = time.time()
                self.redis.shutdown()
                time.sleep(pause)
                self.redis.start()
                t_up = time.time()
                self.outages.append((t_down, t_up))
                for c in self.clients:
                    c.connection_pool.disconnect()
            self.actions[what] += 1
            return "restarted redis-server (down %.2fs)" % (t_up - t_down)
        raise AssertionError(what)

    # -- producer

    def produce(self, jobs):
        r = self.redis.client()
        self.clients.append(r)
        pushed_key = "chaosharness:%s:pushed" % self.prefix
        q = self.k("queue", "default")
        start = time.monotonic()
        i = 0
        try:
            while i < len(jobs) and not self.stop_event.is_set():
                due = min(len(jobs), int(len(jobs) * (time.monotonic() - start) / PUSH_SECONDS) + 1)
                if due <= i:
                    time.sleep(0.02)
                    continue
                batch = jobs[i:due]
                with self.lock:
                    self.push_batch(r, q, pushed_key, batch)
                i = due
                self.pushed = i
        except BaseException as e:  # noqa: B902 - reported by the main thread
            self.producer_error = "".join(traceback.format_exception(type(e), e, e.__traceback__))

    def push_batch(self, r, q, pushed_key, batch):
        """LPUSH a batch and note it in the harness set, atomically; after an
        error, the set says whether the MULTI went through (no guessing)."""
        for attempt in range(20):
            try:
                p = r.pipeline(transaction=True)
                p.lpush(q, *[raw for _, raw, _ in batch])
                p.sadd(pushed_key, batch[0][0])
                p.execute()
                return
            except redis.ConnectionError as e:
                time.sleep(0.2)
                try:
                    if r.sismember(pushed_key, batch[0][0]):
                        return
                except redis.ConnectionError:
                    pass
                say("producer: push failed (%s), retrying" % e)
        raise HarnessError("cannot push jobs to Redis")

    # -- drain

    def redis_call(self, fn, tries=50):
        for _ in range(tries):
            try:
                return fn()
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.2)
        raise HarnessError("Redis does not answer")

    def leftover_lists(self, r):
        out = {}
        for pat in (self.k("queue", "*"), self.k("processing", "*")):
            for key in r.scan_iter(match=pat, count=1000):
                out[key] = r.llen(key)
        return {k: v for k, v in out.items() if v}

    def statuses(self, r, ids):
        p = r.pipeline(transaction=False)
        for jid in ids:
            p.hget(self.k("job", jid), "status")
        return dict(zip(ids, p.execute()))

    def drain(self, ids):
        r = self.redis.client()
        deadline = time.monotonic() + DRAIN_SECONDS
        t0 = time.monotonic()
        last = 0
        while True:
            self.supervise()
            st = self.redis_call(lambda: self.statuses(r, ids))
            left = [j for j in ids if st[j] not in TERMINAL]
            lists = self.redis_call(lambda: self.leftover_lists(r))
            if not left and not lists:
                return time.monotonic() - t0, []
            if time.monotonic() > deadline:
                return None, left
            if time.monotonic() - last > 5:
                last = time.monotonic()
                say("draining: %d job(s) not terminal, lists left: %s"
                    % (len(left), ", ".join("%s=%d" % kv for kv in sorted(lists.items())) or "none"))
            time.sleep(0.5)

    def stop_daemons(self):
        for d in self.daemons:
            if d.alive() and not d.termed:
                d.proc.send_signal(signal.SIGTERM)
                d.termed = True
                d.state = "draining"
        deadline = time.monotonic() + GRACE_MS / 1000 + 20
        while time.monotonic() < deadline and any(d.alive() for d in self.daemons):
            time.sleep(0.1)
        self.supervise()
        for d in self.daemons:
            if d.alive():
                self.violations.append("%s did not exit within %.0fs of SIGTERM; log %s:\n%s"
                                       % (d.name, GRACE_MS / 1000 + 20, d.log_path,
                                          tail(d.log_path, 40)))
                d.kill_group()
                d.proc.wait()

    # -- main

    def run(self):
        say("seed %d (replay: CHATQ_CHAOS_SEED=%d), %d jobs over %.0fs, bin %s, dir %s"
            % (SEED, SEED, N_JOBS, PUSH_SECONDS, BIN, self.dir))
        for exe in ("chatqd", "chatq-worker"):
            if not os.access(os.path.join(BIN, exe), os.X_OK):
                raise HarnessError("%s is not built in %s (make, or set CHATQ_BIN)" % (exe, BIN))
        self.config_path = os.path.join(self.dir, "chatq.json")
        with open(self.config_path, "w") as f:
            json.dump(CONFIG, f, indent=2)
        self.clients = []
        self.redis.start()
        self.upstream.start()
        say("redis-server on port %d (AOF, fsync always), upstream on %s, prefix %s"
            % (self.redis.port, self.upstream.base, self.prefix))
        for _ in range(2):
            self.start_daemon()
        deadline = time.monotonic() + 15
        while sum(len(d.worker_pids()) for d in self.daemons) < 2 * WORKERS:
            self.supervise()
            if time.monotonic() > deadline:
                raise HarnessError("chatqd did not start its workers:\n" +
                                   tail(self.daemons[0].log_path, 30))
            time.sleep(0.05)

        replies = self.prefix + "-replies"  # reply_to may not name a key under P:
        jobs = make_jobs(self.rng_jobs, self.prefix, replies)
        self.specs = {jid: spec for jid, _, spec in jobs}
        ids = [jid for jid, _, _ in jobs]
        kinds = collections.Counter(s["kind"] for s in self.specs.values())
        say("job mix: " + ", ".join("%s=%d" % kv for kv in sorted(kinds.items())))

        producer = threading.Thread(target=self.produce, args=(jobs,), daemon=True)
        t_start = time.monotonic()
        producer.start()
        names, weights = zip(*ACTIONS)
        next_at = time.monotonic() + self.rng_chaos.uniform(1, 3)
        last_progress = time.monotonic()
        while producer.is_alive():
            self.supervise()
            if self.producer_error:
                break
            now = time.monotonic()
            if now >= next_at:
                what = self.rng_chaos.choices(names, weights)[0]
                say("chaos: %s (pushed %d/%d)" % (self.act(what), self.pushed, N_JOBS))
                next_at = time.monotonic() + self.rng_chaos.uniform(1, 3)
            elif now - last_progress > 10:
                last_progress = now
                say("pushed %d/%d" % (self.pushed, N_JOBS))
            time.sleep(0.05)
        producer.join()
        if self.producer_error:
            raise HarnessError("producer failed:\n" + self.producer_error)
        say("chaos stopped after %.1fs; %d chatqd active; waiting for every job to end"
            % (time.monotonic() - t_start, len(self.active())))

        self.drain_s, left = self.drain(ids)
        if self.drain_s is None:
            self.violations.append("after %.0fs, %d job(s) still not terminal (first: %s) or "
                                   "lists left: %s" % (DRAIN_SECONDS, len(left), left[:10],
                                                       self.leftover_lists(self.redis.client())))
            self.stuck = left
        else:
            say("all %d jobs terminal and lists empty %.1fs after the chaos stopped"
                % (len(ids), self.drain_s))
            self.stuck = []
            time.sleep(3)  # let a duplicate run (a job queued twice) show itself
        self.stop_daemons()
        self.check(ids, replies)
        return self.report()

    # -- checks

    def outage_windows(self):
        """When stream events could be lost to each Redis restart: from just
        before the SHUTDOWN until the last worker that lost its `cmd`
        connection then had it ready again (redis_down / redis_ready lines in
        the logs); up + OUTAGE_MARGIN_S when the logs do not say."""
        line = re.compile(r"^ts=(\S+) .*? pid=(\d+) msg=(redis_down|redis_ready) conn=cmd\b")
        marks = collections.defaultdict(list)  # pid -> [(t, what)]
        for d in self.daemons:
            try:
                with open(d.log_path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            for ln in text.splitlines():
                m = line.match(ln)
                if m:
                    t = calendar.timegm(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + \
                        float("0" + m.group(1)[19:].rstrip("Z"))
                    marks[int(m.group(2))].append((t, m.group(3)))
        windows = []
        for down, up in self.outages:
            end = None
            for evs in marks.values():
                evs.sort()
                lost = [t for t, w in evs if w == "redis_down" and down - 0.5 <= t <= up + 0.5]
                if not lost:
                    continue
                back = [t for t, w in evs if w == "redis_ready" and t >= lost[0]]
                if back:
                    end = max(end or 0, back[0])
            windows.append((down - 0.5, (end if end is not None else up + OUTAGE_MARGIN_S) + 0.2))
        return windows

    def in_outage(self, jid, h):
        """Whether the job ran during an event-loss window. Its first run
        began by the first upstream request (no event comes before one): the
        hash's started_at is the last run's (FINISH writes the start of the
        run that finished)."""
        try:
            a = int(h.get("started_at")) / 1000.0
            b = int(h.get("finished_at") or time.time() * 1000) / 1000.0
        except (TypeError, ValueError):
            return bool(self.windows)
        reqs = self.upreqs.get(jid) or []
        if reqs:
            a = min(a, min(q["t"] for q in reqs))
        return any(a <= end and b >= start for start, end in self.windows)

    def tolerate(self, jid, what):
        self.tolerated[what] += 1
        if len(self.tolerated_ids[what]) < 5:
            self.tolerated_ids[what].append(jid)

    def bad(self, jid, what):
        self.violations.append("job %s: %s" % (jid, what))
        self.bad_ids.setdefault(jid, what)

    def check(self, ids, replies_key):
        r = self.redis.client()
        self.bad_ids = {}
        p = r.pipeline(transaction=False)
        for jid in ids:
            p.hgetall(self.k("job", jid))
            p.lrange(self.k("events", jid), 0, -1)
        got = p.execute()
        hashes = {jid: got[2 * i] for i, jid in enumerate(ids)}
        events = {}
        for i, jid in enumerate(ids):
            try:
                events[jid] = [json.loads(x) for x in got[2 * i + 1]]
            except ValueError:
                events[jid] = None
        self.hashes, self.events = hashes, events
        self.windows = self.outage_windows()
        try:
            reqs = self.upstream.get("/_requests?prefix=" + urllib.request.quote(self.prefix + ":"),
                                     timeout=60)
        except OSError as e:
            reqs = []
            self.notes.append("could not read the upstream's requests: %s" % e)
        self.upreqs = collections.defaultdict(list)
        for q in reqs:
            self.upreqs[q["key"].split(":", 1)[1]].append(q)

        # replies
        lines = r.lrange(replies_key, 0, -1)
        self.reply_lines = collections.defaultdict(list)
        for raw in lines:
            try:
                o = json.loads(raw)
                self.reply_lines[o.get("id")].append(o)
            except ValueError:
                self.violations.append("reply_to line is not JSON: %r" % raw[:300])
        foreign = set(self.reply_lines) - set(ids)
        if foreign:
            self.violations.append("reply_to lines for unknown ids: %s" % sorted(map(str, foreign))[:10])

        outcome = collections.Counter()
        self.crashed = []
        for jid in ids:
            self.check_job(jid, hashes[jid], events[jid], self.reply_lines.get(jid, []), outcome)
        self.outcome = outcome

        # dead list
        dead = collections.Counter()
        for raw in r.lrange(self.k("dead"), 0, -1):
            try:
                dead[json.loads(json.loads(raw)["job"]).get("id")] += 1
            except (ValueError, KeyError, TypeError, AttributeError):
                self.violations.append("P:dead entry not understood: %r" % raw[:300])
        failed = {jid for jid in ids if hashes[jid].get("status") == "failed"}
        for jid, n in dead.items():
            if n != 1:
                self.bad(jid, "in P:dead %d times" % n)
            if jid not in failed:
                self.bad(jid, "in P:dead but its hash says %r" % hashes.get(jid, {}).get("status"))
        for jid in failed - set(dead):
            self.bad(jid, "failed but not in P:dead")

        # usage
        totals = collections.Counter()
        field = "%s|%s|" % (TENANT, MODEL)
        for key in r.scan_iter(match=self.k("usage", "*")):
            for f, v in r.hgetall(key).items():
                if f.startswith(field):
                    totals[f[len(field):]] += int(v)
                else:
                    self.violations.append("usage field %s in %s from no job of ours: %s" % (f, key, v))
        self.usage = totals
        n_st = collections.Counter(h.get("status") for h in hashes.values())
        want = {"requests": len(ids), "succeeded": n_st["succeeded"], "failed": n_st["failed"]}
        for f in ("prompt_tokens", "completion_tokens", "total_tokens"):
            want[f] = USAGE[f] * n_st["succeeded"]
        for f, v in want.items():
            if totals[f] != v:
                self.violations.append("usage %s = %d, expected %d" % (f, totals[f], v))
        cancelled = totals["requests"] - totals["succeeded"] - totals["failed"]
        if cancelled != n_st["cancelled"]:
            self.violations.append("usage says %d cancelled, the hashes %d" % (cancelled, n_st["cancelled"]))

        # leftovers
        lists = self.leftover_lists(r)
        if lists:
            self.violations.append("queues/processing lists not empty: %s" % lists)
        crashes = r.hlen(self.k("crashes"))
        if crashes:
            self.notes.append("%s still holds %d count(s) (docs/design.md: FINISH or RECOVER "
                              "clears them)" % (self.k("crashes"), crashes))

        # logs
        self.log_counts = collections.Counter()
        for d in self.daemons:
            d.close()
            with open(d.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            for mark in SANITIZER_MARKS:
                if mark in text:
                    self.violations.append("sanitizer report (%s) in %s" % (mark, d.log_path))
            for ev in LOG_EVENTS:
                self.log_counts[ev] += text.count("msg=%s " % ev) + text.count("msg=%s\n" % ev)

    def check_job(self, jid, h, ev, lines, outcome):
        spec = self.specs[jid]
        if not h:
            self.bad(jid, "no job hash (lost)")
            return
        st = h.get("status")
        try:
            err = json.loads(h["error"]) if "error" in h else None
        except ValueError:
            err = "(not JSON)"
        code = err.get("code") if isinstance(err, dict) else None
        outcome["%s/%s" % (st, code) if code else st] += 1
        if st not in TERMINAL:
            self.bad(jid, "status %r, not terminal" % st)
            return
        crashed = st == "failed" and code == "worker_crashed"
        if crashed:
            self.crashed.append(jid)
            self.bad(jid, "failed worker_crashed, but every death here came from outside "
                          "(docs/protocol.md §8: not the jobs' fault)")
        elif spec["bad"]:
            if st != "failed" or code != "upstream_error" or err.get("status") != 400:
                self.bad(jid, "a 400 job ended %s with error %s" % (st, err))
        elif st != "succeeded":
            self.bad(jid, "ended %s with error %s (expected succeeded)" % (st, err))
        if st == "succeeded":
            try:
                resp = json.loads(h["response"])
                content = resp["choices"][0]["message"]["content"]
            except (KeyError, ValueError, IndexError, TypeError):
                self.bad(jid, "succeeded without a usable response: %r" % h.get("response", "")[:300])
                content = None
            if content is not None and content != spec["content"]:
                self.bad(jid, "response content %r, expected %r" % (content, spec["content"]))

        # reply_to
        if len(lines) != 1:
            self.bad(jid, "%d reply_to line(s), expected 1" % len(lines))
        for line in lines:
            resp, lerr = line.get("response"), line.get("error")
            if st == "succeeded":
                ok = (isinstance(resp, dict) and resp.get("status_code") == 200 and lerr is None
                      and (resp.get("body") or {}).get("choices", [{}])[0].get("message", {})
                      .get("content") == spec["content"])
            elif crashed:
                ok = resp is None and isinstance(lerr, dict) and lerr.get("code") == "worker_crashed"
            elif spec["bad"]:
                ok = isinstance(resp, dict) and resp.get("status_code") == 400 and lerr is None
            else:
                ok = True  # already a violation above
            if not ok:
                self.bad(jid, "reply_to line does not match the %s hash: %s" % (st, json.dumps(line)[:400]))

        # events
        if ev is None:
            self.bad(jid, "an event is not JSON")
            return
        types = [e.get("type") for e in ev]
        finals = [i for i, t in enumerate(types) if t in ("done", "error")]
        if len(finals) != 1 or finals[0] != len(ev) - 1:
            self.bad(jid, "%d terminal event(s), at %s of %d events (expected exactly one, last)"
                     % (len(finals), finals, len(ev)))
            return
        last = ev[-1]
        if (last["type"] == "done") != (st == "succeeded") or \
                (last["type"] == "error" and last.get("status") != st):
            self.bad(jid, "final event %s does not match status %s" % (json.dumps(last)[:300], st))
        seqs = [e.get("seq") for e in ev]
        outage = self.in_outage(jid, h)
        if seqs != list(range(len(ev))):
            gap = all(isinstance(x, int) for x in seqs) and seqs == sorted(set(seqs))
            if outage and gap:
                self.tolerate(jid, "seq gap in a job running during a Redis restart")
            elif outage and TOLERATE_SEQ_REUSE:
                self.tolerate(jid, "seq reuse in a job running during a Redis restart")
            else:
                self.bad(jid, "seq numbers %s are not 0..%d%s" % (
                    seqs, len(ev) - 1, "" if not outage else
                    " (it ran during a Redis restart: events lost then leave a gap, which the "
                    "design allows, but here seq numbers are used twice, so a subscriber that "
                    "drops duplicates by seq (docs/protocol.md §5) drops real events; "
                    "CHATQ_CHAOS_TOLERATE_SEQ_REUSE=1 tolerates this)"))
        if not spec["stream"]:
            if len(ev) != 1:
                self.bad(jid, "non-streamed job has %d events: %s" % (len(ev), types))
            return
        if st != "succeeded" or crashed:
            return
        # The chunks of the attempt that answered, and nothing else.
        r = len(types) - 1 - types[::-1].index("retry") if "retry" in types else -1
        chunks = [e.get("data") for e in ev[r + 1:-1]]
        reqs = self.upreqs.get(jid) or []
        if any(t != "chunk" for t in types[r + 1:-1]):
            self.bad(jid, "after the last retry, events %s are not all chunks" % types[r + 1:-1])
        elif reqs and chunks != reqs[-1].get("sent"):
            if outage:
                self.tolerate(jid, "chunk events missing in a job running during a Redis restart")
            else:
                self.bad(jid, "the %d chunk event(s) after the last retry are not the %d chunk(s) "
                         "the upstream sent in its last request (of %d)"
                         % (len(chunks), len(reqs[-1].get("sent") or []), len(reqs)))
        # Chunks of two attempts are always separated by a retry event.
        prev = None
        for e in ev:
            if e.get("type") == "retry":
                prev = None
            elif e.get("type") == "chunk":
                if prev is not None and e.get("attempt") != prev:
                    if outage:
                        self.tolerate(jid, "retry event missing in a job running "
                                           "during a Redis restart")
                    else:
                        self.bad(jid, "chunks of attempts %s and %s with no retry event between"
                                 % (prev, e.get("attempt")))
                    break
                prev = e.get("attempt")

    # -- report

    def evidence(self, jid):
        out = ["--- job %s (%s)" % (jid, json.dumps(self.specs[jid]))]
        out.append("hash: " + json.dumps(self.hashes.get(jid))[:3000])
        ev = self.events.get(jid) or []
        out.append("events (%d): %s" % (len(ev), json.dumps(
            [{k: v for k, v in e.items() if k != "data"} for e in ev])[:3000]))
        out.append("reply lines: " + json.dumps(self.reply_lines.get(jid, []))[:2000])
        reqs = self.upreqs.get(jid) or []
        out.append("upstream requests: " + json.dumps(
            [{"attempt": q["attempt"], "conn": q["conn"], "outcome": q["outcome"],
              "t": round(q["t"], 3), "t_end": q["t_end"] and round(q["t_end"], 3),
              "client_closed_at": q["client_closed_at"] and round(q["client_closed_at"], 3),
              "sent": len(q.get("sent") or [])} for q in reqs]))
        out.append("redis restarts (unix s, down..up): %s" % [(round(a, 3), round(b, 3)) for a, b in self.outages])
        out.append("event-loss windows (unix s): %s" % [(round(a, 3), round(b, 3)) for a, b in self.windows])
        pat = re.compile(r"(?<![A-Za-z0-9._:-])%s(?![A-Za-z0-9._:-])" % re.escape(jid))
        for d in self.daemons:
            try:
                with open(d.log_path, "rb") as f:
                    hits = [ln for ln in f.read().decode("utf-8", "replace").splitlines()
                            if pat.search(ln)]
            except OSError:
                continue
            if hits:
                out.append("%s (%s):" % (os.path.basename(d.log_path), d.name))
                out.extend("  " + ln for ln in hits[-40:])
        return "\n".join(out)

    def report(self):
        print()
        print("=" * 72)
        print("chatq chaos soak: seed %d, %d jobs over %.0fs, 2 x chatqd (%d workers, concurrency %d)"
              % (SEED, N_JOBS, PUSH_SECONDS, WORKERS, CONCURRENCY))
        print("chaos actions: " + ", ".join("%s=%d" % kv for kv in sorted(self.actions.items())))
        print("chatqd processes started: %d" % len(self.daemons))
        print("time to drain after the chaos: %s" % ("%.1fs" % self.drain_s if self.drain_s is not None
                                                   else "DID NOT DRAIN"))
        if self.outages:
            print("redis restarts: %d; event-loss windows %s s"
                  % (len(self.outages), ", ".join("%.1f" % (b - a) for a, b in self.windows)))
        print("outcomes: " + ", ".join("%s=%d" % kv for kv in sorted(self.outcome.items())))
        print("upstream requests: %d for %d jobs" % (sum(len(v) for v in self.upreqs.values()), N_JOBS))
        print("usage: " + ", ".join("%s=%d" % kv for kv in sorted(self.usage.items())))
        print("log events: " + ", ".join("%s=%d" % kv for kv in sorted(self.log_counts.items()) if kv[1]))
        if self.tolerated:
            print("tolerated (by design): " + ", ".join("%s=%d" % kv for kv in sorted(self.tolerated.items())))
        for what, ids in sorted(self.tolerated_ids.items()):
            print("  e.g. %s: %s" % (what, " ".join(ids)))
        for n in self.notes:
            print("note: " + n)
        if not self.violations:
            print("RESULT: PASS (no violation)")
            return 0
        print("RESULT: FAIL, %d violation(s):" % len(self.violations))
        for v in self.violations[:50]:
            print("  - " + v)
        if len(self.violations) > 50:
            print("  ... and %d more" % (len(self.violations) - 50))
        ids = list(self.bad_ids)[:8] + [j for j in getattr(self, "stuck", [])[:4] if j not in self.bad_ids]
        for jid in ids:
            print(self.evidence(jid))
        print("logs kept in %s (chatqd-NN.log per daemon, redis.log, upstream.log)" % self.dir)
        return 1

    def cleanup(self, remove):
        self.stop_event.set()
        for d in self.daemons:
            if d.alive():
                d.kill_group()
                try:
                    d.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            else:
                d.kill_group()  # workers left without their chatqd
            d.close()
        self.upstream.stop()
        self.redis.kill()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("chaos: logs and data in %s" % self.dir, flush=True)


def main():
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    soak = Soak()
    rc = 2
    try:
        rc = soak.run()
    except KeyboardInterrupt:
        print("chaos: interrupted", file=sys.stderr)
        rc = 130
    except HarnessError as e:
        print("chaos: harness error: %s" % e, file=sys.stderr)
        rc = 2
    except Exception:
        traceback.print_exc()
        rc = 2
    finally:
        soak.cleanup(remove=(rc == 0 and not KEEP))
    return rc


if __name__ == "__main__":
    sys.exit(main())
