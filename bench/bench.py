#!/usr/bin/python3
"""bench.py — chatq's throughput and footprint benchmark (run by bench/run.sh,
which `make bench` calls; run it with Debian's /usr/bin/python3, which has
python3-redis).

What it measures. Two cases, each run CHATQ_BENCH_RUNS times (default 3) on a
fresh set-up, and reported as the median of the runs:
  json  20,000 non-streamed jobs (model bench-json);
  sse   10,000 streamed jobs (model bench-sse) of 20 chunk events each.
For every run: jobs/s and, for sse, published chunks/s (jobs * 20 / elapsed);
the peak RSS of chatqd and its workers together (VmRSS from /proc/<pid>/statm,
summed, sampled every 50 ms); CPU seconds (utime + stime from /proc/<pid>/stat)
of the supervisor, of each worker, and of redis-server and nginx for context;
and, since other work on the machine skews the figures, how busy the whole
machine was (/proc/stat) and the CPU used by processes not in the run.

Set-up per run, all under one temporary directory: a private redis-server on
a free loopback port (no persistence); a private nginx (own prefix and
config, one worker process, no access log, long keep-alive) answering both
endpoints with canned bodies from `return 200 '...'`; a chatq config file
with two providers routed by model; a unique CHATQ_PREFIX. All jobs are
pushed before chatqd starts, so the queue never runs dry and the measure is
the daemon's, not the producer's.

Timing. `elapsed` is max(finished_at) - min(started_at) over every job's
stored hash (unix ms, set by the workers): from the first job's start to the
last job's finish, so process start-up is not counted. A fine poll (10 ms) of
the usage counters tells when all jobs are over; the wall time from chatqd's
start to that moment is reported too.

Redis time. CONFIG RESETSTAT once the jobs are queued, just before chatqd
starts; INFO commandstats once they are all done. A command a Lua script
runs is counted twice there: in its own entry and inside the usec of the
EVALSHA that ran it. So chatq's Redis time is the usec of EVAL/EVALSHA plus
that of the commands chatq sends outside scripts (redis_time() below says
how the names both do, PUBLISH, RPUSH, HSET, are told apart). Reported per
job, and for streamed jobs per chunk (the PUBLISH and RPUSH of the chunk
events); redis-server's CPU time per job (utime + stime) is the cross-check:
it also holds the reading, parsing and replying that commandstats leaves out.

Job latency: finished_at - started_at of every job (p50, p99, ms).

Correctness, checked every run (a failure makes the exit status 1): every job
hash says succeeded with the expected answer; usage counters requests ==
succeeded == N, no failed, tokens == N * per-job tokens; queue, processing
lists and the dead list empty; for sse, a sample of event lists holds 20
chunks and a done event; chatqd exits 0 on SIGTERM; no worker restarted.

Environment overrides:
  CHATQ_BENCH_RUNS (3), CHATQ_BENCH_JSON_JOBS (20000), CHATQ_BENCH_SSE_JOBS
  (10000), CHATQ_BENCH_WORKERS (2), CHATQ_BENCH_CONCURRENCY (256; a list
  such as "16 64 256" sweeps it: every case runs at each value), CHATQ_BIN
  (build/); a count of 0 skips that case.
  CHATQ_BENCH_REDIS_CALLGRIND=1 runs redis-server under valgrind's
  callgrind and reports the instructions it executed per job (counters
  zeroed once the jobs are queued, dumped when they are all done; the
  driver's completion polls and chatqd's SCRIPT LOADs are in, about 1 %):
  unlike times, this count does not move with the machine's load. The
  throughput of such a run means nothing (Redis runs ~50x slower).
  CHATQ_BENCH_PERF=1 also records a system-wide `perf` profile of the first
  run of each case into bench/out/perf-<time>/ (that run's figures are
  disturbed by perf); CHATQ_BENCH_PERF_ARGS: perf record's options
  (default "-g -F 999"; "--call-graph dwarf -F 499" gives usable stacks
  through libraries built without frame pointers).
  Set by run.sh: CHATQ_BENCH_TMP (the directory for the runs' files) and
  CHATQ_BENCH_PIDFILE (the process groups alive, for run.sh to kill if this
  script dies without cleaning up).

Output: a table on stdout, and the raw per-run figures as JSON in
bench/out/bench-<UTC time>.json (and bench/out/latest.json)."""

import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import redis

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
BIN = os.path.abspath(os.environ.get("CHATQ_BIN") or os.path.join(REPO, "build"))
NGINX = "/usr/sbin/nginx"  # run.sh installs nginx-light when it is missing

RUNS = int(os.environ.get("CHATQ_BENCH_RUNS", "3"))
JSON_JOBS = int(os.environ.get("CHATQ_BENCH_JSON_JOBS", "20000"))
SSE_JOBS = int(os.environ.get("CHATQ_BENCH_SSE_JOBS", "10000"))
WORKERS = int(os.environ.get("CHATQ_BENCH_WORKERS", "2"))
# one or more values ("16 64 256" sweeps them: every case runs at each)
CONCURRENCIES = [int(x) for x in os.environ.get("CHATQ_BENCH_CONCURRENCY", "256").split()]
PERF = os.environ.get("CHATQ_BENCH_PERF", "") not in ("", "0")
PERF_ARGS = os.environ.get("CHATQ_BENCH_PERF_ARGS", "-g -F 999")
PIDFILE = os.environ.get("CHATQ_BENCH_PIDFILE")
REDIS_CALLGRIND = os.environ.get("CHATQ_BENCH_REDIS_CALLGRIND", "") not in ("", "0")

RUN_TIMEOUT_S = 120        # one run may not take longer than this
SAMPLE_S = 0.05            # RSS and CPU sampling period
POLL_S = 0.01              # completion poll period

TARGET_JOBS_S = 10000      # non-streamed jobs/s, at least
TARGET_CHUNKS_S = 100000   # published chunks/s, at least
TARGET_RSS_MB = 100        # peak RSS of chatqd + workers, below

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# ---------------------------------------------------------------- canned answers

CREATED = 1700000000
PROMPT_TOKENS = 12
SSE_PIECES = ["tok%02d " % i for i in range(17)]  # 17 content chunks
SSE_CHUNKS = 20                                   # role + 17 content + finish + usage
SSE_USAGE = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": len(SSE_PIECES),
             "total_tokens": PROMPT_TOKENS + len(SSE_PIECES)}
JSON_CONTENT = "Hello from the benchmark upstream."
JSON_USAGE = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": 7,
              "total_tokens": PROMPT_TOKENS + 7}


def canned_json():
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": CREATED,
        "model": "bench-json",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": JSON_CONTENT},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": JSON_USAGE}, separators=(",", ":"))


def canned_sse():
    def chunk(choices, usage=None):
        o = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": CREATED,
             "model": "bench-sse", "choices": choices}
        if usage is not None:
            o["usage"] = usage
        return "data: " + json.dumps(o, separators=(",", ":")) + "\n\n"
    events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                      "finish_reason": None}])]
    for piece in SSE_PIECES:
        events.append(chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
    events.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    events.append(chunk([], SSE_USAGE))
    assert len(events) == SSE_CHUNKS
    return "".join(events) + "data: [DONE]\n\n"


def nginx_quote(text):
    """A single-quoted nginx string: backslash escapes, newlines as \\n. A '$'
    would start a variable, so the canned bodies must not contain one."""
    assert "$" not in text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


# ---------------------------------------------------------------- /proc

def proc_cpu(pid):
    """utime + stime of pid in seconds, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat


def proc_rss(pid):
    """Resident set size of pid in bytes, or None when it is gone."""
    try:
        with open("/proc/%d/statm" % pid) as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return None


def proc_hwm(pid):
    """VmHWM (the kernel's own peak RSS) of pid in bytes, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def proc_children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    kids = []  # kernels without CONFIG_PROC_CHILDREN: scan /proc
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    s = f.read()
                if int(s[s.rindex(")") + 2:].split()[1]) == pid:
                    kids.append(int(d))
            except (OSError, ValueError):
                pass
    return kids


def system_busy():
    """CPU seconds the whole machine has spent busy (not idle, not iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / CLK_TCK


def self_cpu():
    t = os.times()
    return t.user + t.system


def cpu_sum(pids):
    return sum(c for c in (proc_cpu(p) for p in pids) if c is not None)


# ---------------------------------------------------------------- Redis time

# The script calls; their usec holds the commands the scripts run.
SCRIPT_CMDS = {"eval", "evalsha", "eval_ro", "evalsha_ro"}
# What the Lua of common/scripts.c calls (redis.call and redis.pcall).
LUA_CMDS = {"lmove", "lset", "hmget", "exists", "hget", "hdel", "llen", "lindex", "del",
            "hset", "lrem", "expire", "rpush", "publish", "lpush", "hincrby", "set", "time",
            "pexpire", "lpop"}
# What chatq sends outside scripts: the worker (stream events, attempts
# counter, heartbeat, registration, client tracking, resync), the supervisor
# (queue depths, worker list, heartbeats) and rconn's handshake.
CHATQ_CMDS = {"publish", "rpush", "hset", "set", "client", "subscribe", "lrange", "llen",
              "hgetall", "mget", "script", "auth", "select"}
# What this script sends while a run is measured: its completion polls and
# the statistics themselves. Not chatq's.
DRIVER_CMDS = {"hget", "info", "config"}
# The names in both sets: how many times the scripts call each per job in
# this benchmark (fresh jobs with an id, no reply_to, no retry, no
# duplicate), counted in the Lua of common/scripts.c: FINISH writes the job
# hash (HSET), appends the final event to the events list (RPUSH) and
# PUBLISHes it; START writes the hash (HSET). Keep in step with the scripts:
# the non-streamed case checks it (there chatq sends no RPUSH or PUBLISH of
# its own, so their calls must be exactly jobs x this).
LUA_CALLS_PER_JOB = {"hset": 2, "rpush": 1, "publish": 1}


def redis_time(stats, case, n):
    """chatq's Redis time over a run from INFO commandstats (`stats`, as
    redis-py parses it), without counting twice what scripts run.

    EVAL/EVALSHA count whole. A name only chatq sends, or one neither side
    is known to send (listed as unclassified), counts whole; a name only the
    scripts call is left out (it is inside EVALSHA); the driver's are left
    out. For a name both send (PUBLISH, RPUSH, HSET), the scripts' calls are
    known from the Lua (LUA_CALLS_PER_JOB x jobs): the rest are chatq's own.
    The entry does not say how long each call took, so its usec is shared
    in proportion to the calls, except for RPUSH, whose cost grows with the
    events it appends: a streamed job's own RPUSHes append its 20 chunk
    events (in one call or a few), FINISH's appends the final one, so RPUSH
    is shared in proportion to the events (20 : 1). That gives chatq's own
    RPUSH the fixed cost of FINISH's calls too: it overstates the cost per
    chunk a little, never understates it."""
    cmds = {}
    for key, v in stats.items():
        if not key.startswith("cmdstat_") or not isinstance(v, dict):
            continue
        name = key[len("cmdstat_"):].split("|")[0].lower()  # "client|id" is CLIENT's
        c = cmds.setdefault(name, {"calls": 0, "usec": 0})
        c["calls"] += int(v.get("calls", 0))
        c["usec"] += int(v.get("usec", 0))
    script_us = outside_us = events_us = 0.0
    unclassified, warnings = [], []
    for name, c in sorted(cmds.items()):
        if name in SCRIPT_CMDS:
            c["counted_usec"] = c["usec"]
            script_us += c["usec"]
            continue
        if name in DRIVER_CMDS or (name in LUA_CMDS and name not in CHATQ_CMDS):
            c["counted_usec"] = 0
            continue
        if name not in CHATQ_CMDS:
            unclassified.append(name)
        lua_calls = LUA_CALLS_PER_JOB.get(name, 0) * n if name in LUA_CMDS else 0
        own = c["calls"] - lua_calls
        if own < 0:
            warnings.append("%s: %d calls, fewer than the %d the scripts make"
                            % (name, c["calls"], lua_calls))
            own = 0
        if case == "json" and name in ("rpush", "publish") and own != 0:
            warnings.append("%s: %d calls outside scripts in the non-streamed case, expected 0 "
                            "(LUA_CALLS_PER_JOB out of step with the scripts?)" % (name, own))
        c["own_calls"] = own
        share = own / c["calls"] if c["calls"] else 0
        if name == "rpush" and case == "sse" and own > 0:
            events = n * SSE_CHUNKS  # the chunk events, all in chatq's own RPUSHes
            share = events / (events + lua_calls)
        c["counted_usec"] = c["usec"] * share
        outside_us += c["counted_usec"]
        if name in ("rpush", "publish"):
            events_us += c["counted_usec"]
    total = script_us + outside_us
    evals = sum(cmds.get(k, {}).get("calls", 0) for k in SCRIPT_CMDS)
    chunks = n * SSE_CHUNKS if case == "sse" else 0
    return {
        "usec_total": total,
        "usec_scripts": script_us,
        "usec_outside_scripts": outside_us,
        "us_per_job": total / n,
        "scripts_us_per_job": script_us / n,
        "outside_us_per_job": outside_us / n,
        "script_calls_per_job": evals / n,
        "events_us_per_chunk": events_us / chunks if chunks else None,
        "jobs_per_s_one_core": n * 1e6 / total if total else None,
        "commands": cmds,
        "unclassified": unclassified,
        "warnings": warnings,
    }


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=30):
    try:
        with open(path, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
    except OSError as e:
        return "(no log: %s)" % e


class Procs:
    """The process groups this script started; each is killed at the end
    (and listed in run.sh's pid file, in case this script is killed)."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log, env=None):
        with open(log, "ab") as lf:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                 env=env, start_new_session=True)
        self.procs.append(p)
        self._write_pidfile()
        return p

    def _write_pidfile(self):
        """Lists the groups still alive, so that run.sh never kills a group
        id that has been reused by someone else's process."""
        if PIDFILE:
            with open(PIDFILE + ".new", "w") as f:
                f.write("".join("%d\n" % p.pid for p in self.procs))
            os.replace(PIDFILE + ".new", PIDFILE)

    def stop(self, p, sig=signal.SIGTERM, timeout=15):
        """Signals p and waits; its whole group is SIGKILLed after the
        timeout. Returns p's exit status."""
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)  # whatever is left of the group
        except (ProcessLookupError, PermissionError):
            pass
        rc = p.wait()
        if p in self.procs:
            self.procs.remove(p)
            self._write_pidfile()
        return rc

    def stop_all(self):
        for p in list(reversed(self.procs)):
            self.stop(p, timeout=5)


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %ds waiting for %s" % (timeout, what))
        time.sleep(0.01)


def start_redis(procs, d):
    for _ in range(5):
        port = free_port()
        log = os.path.join(d, "redis.log")
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", d, "--logfile", log]
        if REDIS_CALLGRIND:
            argv = ["valgrind", "--tool=callgrind",
                    "--callgrind-out-file=" + os.path.join(d, "redis-cg.%p.out")] + argv
        p = procs.start(argv, os.path.join(d, "redis.out"))
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30)
        deadline = time.monotonic() + (30 if REDIS_CALLGRIND else 10)
        while time.monotonic() < deadline and p.poll() is None:
            try:
                if r.ping():
                    return p, port, r
            except redis.RedisError:
                time.sleep(0.01)
        procs.stop(p)
    raise RuntimeError("redis-server did not start: " + tail(os.path.join(d, "redis.log")))


def nginx_missing_modules():
    try:
        v = subprocess.run([NGINX, "-V"], capture_output=True, text=True).stderr
    except OSError:
        return set()
    return {m for m in ("fastcgi", "uwsgi", "scgi", "proxy")
            if "--without-http_%s_module" % m in v}


def start_nginx(procs, d):
    prefix = os.path.join(d, "nginx")
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    missing = nginx_missing_modules()
    temps = "".join("    %s_temp_path tmp/%s;\n" % (m, m)
                    for m in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
                    if m not in missing)
    for _ in range(5):
        port = free_port()
        conf = ("worker_processes 1;\n"
                "worker_rlimit_nofile 20000;\n"
                "error_log error.log warn;\n"
                "pid nginx.pid;\n"
                "events { worker_connections 8192; }\n"
                "http {\n"
                "    access_log off;\n"
                "    keepalive_requests 1000000;\n"
                "    keepalive_timeout 60s;\n" + temps +
                "    server {\n"
                "        listen 127.0.0.1:%d;\n"
                "        location = /json/v1/chat/completions {\n"
                "            default_type application/json;\n"
                "            return 200 %s;\n"
                "        }\n"
                "        location = /sse/v1/chat/completions {\n"
                "            default_type text/event-stream;\n"
                "            return 200 %s;\n"
                "        }\n"
                "    }\n"
                "}\n") % (port, nginx_quote(canned_json()), nginx_quote(canned_sse()))
        with open(os.path.join(prefix, "nginx.conf"), "w") as f:
            f.write(conf)
        p = procs.start([NGINX, "-p", prefix, "-e", "error.log", "-c", "nginx.conf",
                         "-g", "daemon off;"], os.path.join(d, "nginx.out"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and p.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return p, port
            except OSError:
                time.sleep(0.01)
        procs.stop(p)
    raise RuntimeError("nginx did not start: " + tail(os.path.join(prefix, "error.log"))
                       + tail(os.path.join(d, "nginx.out")))


def check_upstream(port):
    """The canned answers as chatq will see them, checked once: a parse error
    here would otherwise show up as a benchmark of retries."""
    import urllib.request
    for path, ctype in (("json", "application/json"), ("sse", "text/event-stream")):
        req = urllib.request.Request("http://127.0.0.1:%d/%s/v1/chat/completions" % (port, path),
                                     data=b'{"model":"x"}', method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read().decode()
            if not resp.headers.get("Content-Type", "").startswith(ctype):
                raise RuntimeError("nginx %s: content type %s" % (path, resp.headers["Content-Type"]))
        if path == "json":
            json.loads(body)
        else:
            datas = [l[6:] for l in body.split("\n") if l.startswith("data: ")]
            if len(datas) != SSE_CHUNKS + 1 or datas[-1] != "[DONE]":
                raise RuntimeError("nginx sse: %d events" % len(datas))
            for x in datas[:-1]:
                json.loads(x)


# ---------------------------------------------------------------- one run

def utc_day(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")


def push_jobs(r, prefix, case, n, run_tag):
    model = "bench-" + case
    ids = ["b%s-%s-%d" % (run_tag, case, i) for i in range(n)]
    key = "%s:queue:default" % prefix
    pipe = r.pipeline(transaction=False)
    batch = []
    for i, jid in enumerate(ids):
        job = {"id": jid, "body": {"model": model,
                                   "messages": [{"role": "user", "content": "benchmark job %d" % i}]}}
        if case == "sse":
            job["stream"] = True
        batch.append(json.dumps(job, separators=(",", ":")))
        if len(batch) == 1000:
            pipe.lpush(key, *batch)
            batch = []
    if batch:
        pipe.lpush(key, *batch)
    pipe.execute()
    if r.llen(key) != n:
        raise RuntimeError("pushed %d jobs, queue holds %d" % (n, r.llen(key)))
    return ids


def usage_field(r, prefix, days, field):
    return sum(int(r.hget("%s:usage:%s" % (prefix, d), field) or 0) for d in days)


def run_once(case, n, run_no, tmp, procs, conc, perf_dir=None):
    d = os.path.join(tmp, "%s-c%d-%d" % (case, conc, run_no))
    os.makedirs(d)
    redis_p, rport, r = start_redis(procs, d)
    nginx_p, nport = start_nginx(procs, d)
    check_upstream(nport)
    prefix = "bench-" + uuid.uuid4().hex[:10]
    cfg = {
        "log_level": "warn",
        "providers": [
            {"name": "json", "base_url": "http://127.0.0.1:%d/json/v1" % nport,
             "models": ["bench-json*"]},
            {"name": "sse", "base_url": "http://127.0.0.1:%d/sse/v1" % nport,
             "models": ["bench-sse*"]},
        ],
    }
    cfg_path = os.path.join(d, "chatq.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    ids = push_jobs(r, prefix, case, n, uuid.uuid4().hex[:6])
    r.config_resetstat()  # commandstats from here: chatq's own commands
    if REDIS_CALLGRIND:
        subprocess.run(["callgrind_control", "-z", str(redis_p.pid)], stdout=subprocess.DEVNULL)

    env = dict(os.environ)
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "JOURNAL_STREAM", "NOTIFY_SOCKET"):
        env.pop(k, None)
    env.update({"CHATQ_CONFIG": cfg_path, "CHATQ_REDIS_URL": "redis://127.0.0.1:%d/0" % rport,
                "CHATQ_PREFIX": prefix})
    nginx_pids = [nginx_p.pid] + proc_children(nginx_p.pid)
    redis_cpu0 = proc_cpu(redis_p.pid)
    nginx_cpu0 = cpu_sum(nginx_pids)
    day0 = utc_day(time.time() * 1000)
    model = "bench-" + case
    log = os.path.join(d, "chatqd.log")

    busy0, self0 = system_busy(), self_cpu()
    t0 = time.monotonic()
    cq = procs.start([os.path.join(BIN, "chatqd"), "--workers", str(WORKERS),
                      "--concurrency", str(conc)], log, env=env)
    perf_p = None
    if perf_dir:
        perf_p = subprocess.Popen(["perf", "record", "-q", "-a"] + PERF_ARGS.split() +
                                  ["-o", os.path.join(perf_dir, "perf-%s.data" % case)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
    worker_pids = []          # every worker pid seen, in order
    cpu = {}                  # pid -> last utime+stime seen
    peak_rss = 0
    peak_rss_at = 0.0
    per_proc_peak = {}
    next_sample = 0.0
    done = 0
    days = [day0]
    while True:
        now = time.monotonic()
        if now >= next_sample:
            next_sample = now + SAMPLE_S
            kids = proc_children(cq.pid)
            for k in kids:
                if k not in worker_pids:
                    worker_pids.append(k)
            total = 0
            for pid in [cq.pid] + kids:
                rss = proc_rss(pid)
                c = proc_cpu(pid)
                if rss is not None:
                    total += rss
                    per_proc_peak[pid] = max(per_proc_peak.get(pid, 0), rss)
                if c is not None:
                    cpu[pid] = c
            if total > peak_rss:
                peak_rss, peak_rss_at = total, now - t0
        day = utc_day(time.time() * 1000)
        if day not in days:
            days.append(day)
        done = usage_field(r, prefix, days, "|%s|requests" % model)
        if done >= n:
            break
        if cq.poll() is not None:
            raise RuntimeError("chatqd exited with %s during the run:\n%s" % (cq.returncode, tail(log)))
        if now - t0 > RUN_TIMEOUT_S:
            raise RuntimeError("run not over after %ds: %d of %d jobs done\n%s"
                               % (RUN_TIMEOUT_S, done, n, tail(log)))
        time.sleep(POLL_S)
    wall = time.monotonic() - t0

    # Final figures, before anything is stopped.
    kids = proc_children(cq.pid)
    hwm = {}
    for pid in [cq.pid] + kids:
        c = proc_cpu(pid)
        if c is not None:
            cpu[pid] = c
        h = proc_hwm(pid)
        if h is not None:
            hwm[pid] = h
    redis_cpu = proc_cpu(redis_p.pid) - redis_cpu0
    redis_ir = callgrind_dump(redis_p.pid, d) if REDIS_CALLGRIND else None
    cmdstats = r.info("commandstats")
    nginx_cpu = cpu_sum(nginx_pids) - nginx_cpu0
    busy = system_busy() - busy0
    bench_cpu = self_cpu() - self0
    if perf_p:
        os.kill(perf_p.pid, signal.SIGINT)
        perf_p.wait()

    errors = verify(r, prefix, case, n, ids, days)
    rc = procs.stop(cq)
    if rc != 0:
        errors.append("chatqd exited with status %s on SIGTERM" % rc)
    if len(worker_pids) != WORKERS:
        errors.append("%d worker processes seen, expected %d (a restart?)"
                      % (len(worker_pids), WORKERS))
    started, finished, lat = job_times(r, prefix, ids)
    procs.stop(nginx_p)
    procs.stop(redis_p)
    if errors:
        print("  chatqd log (tail):\n" + tail(log), file=sys.stderr)

    elapsed = (finished - started) / 1000.0
    names = {cq.pid: "supervisor"}
    names.update({pid: "worker%d" % (i + 1) for i, pid in enumerate(worker_pids)})
    rt = redis_time(cmdstats, case, n)
    errors.extend("redis commandstats: " + w for w in rt["warnings"])
    res = {
        "case": case, "run": run_no, "jobs": n, "concurrency": conc,
        "elapsed_s": elapsed,
        "wall_s": wall,
        "jobs_per_s": n / elapsed if elapsed > 0 else None,
        "chunks_per_s": n * SSE_CHUNKS / elapsed if case == "sse" and elapsed > 0 else None,
        "peak_rss_mb": peak_rss / 1e6,
        "peak_rss_at_s": peak_rss_at,
        "sum_vmhwm_mb": sum(hwm.values()) / 1e6,
        "peak_rss_mb_per_process": {names[pid]: v / 1e6 for pid, v in per_proc_peak.items()
                                    if pid in names},
        "cpu_s": {
            "supervisor": cpu.get(cq.pid, 0.0),
            **{"worker%d" % (i + 1): cpu.get(pid, 0.0) for i, pid in enumerate(worker_pids)},
            "redis-server": redis_cpu,
            "nginx": nginx_cpu,
        },
        "job_ms_p50": percentile(lat, 50),
        "job_ms_p99": percentile(lat, 99),
        "redis": rt,
        "redis_cpu_us_per_job": redis_cpu / n * 1e6,
        "redis_instructions_per_job": redis_ir / n if redis_ir else None,
        "errors": errors,
    }
    res["cpu_s"]["chatq_total"] = res["cpu_s"]["supervisor"] + sum(
        cpu.get(pid, 0.0) for pid in worker_pids)
    res["worker_cpu_us_per_job"] = res["cpu_s"]["chatq_total"] / n * 1e6
    # The machine as a whole over the wall time: how busy it was (1.0 = every
    # CPU busy all the time), and the CPU used by processes not part of this
    # run (other users' work skews the figures on a small machine).
    res["machine_busy_frac"] = busy / (wall * (os.cpu_count() or 1))
    res["cpu_s"]["bench_script"] = bench_cpu
    res["other_cpu_s"] = max(0.0, busy - res["cpu_s"]["chatq_total"] - redis_cpu - nginx_cpu
                             - bench_cpu)
    return res


def callgrind_dump(pid, d):
    """Has callgrind dump the counts of redis-server (pid) since they were
    zeroed; returns the instructions executed, or None."""
    subprocess.run(["callgrind_control", "-d", str(pid)], stdout=subprocess.DEVNULL)
    dumps = [f for f in os.listdir(d) if f.startswith("redis-cg.%d.out." % pid)]
    if not dumps:
        return None
    last = max(dumps, key=lambda f: int(f.rsplit(".", 1)[1]))
    with open(os.path.join(d, last)) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    return None


def percentile(xs, p):
    """The p-th percentile of the sorted list xs (nearest rank), or None."""
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else None


def job_times(r, prefix, ids):
    """min(started_at), max(finished_at) over the stored job hashes, and
    every job's finished_at - started_at (ms, sorted)."""
    lo, hi = None, None
    lat = []
    for i in range(0, len(ids), 2000):
        pipe = r.pipeline(transaction=False)
        for jid in ids[i:i + 2000]:
            pipe.hmget("%s:job:%s" % (prefix, jid), "started_at", "finished_at")
        for s, f in pipe.execute():
            if s is None or f is None:
                continue
            s, f = int(s), int(f)
            lat.append(f - s)
            lo = s if lo is None or s < lo else lo
            hi = f if hi is None or f > hi else hi
    if lo is None:
        raise RuntimeError("no job hash has started_at/finished_at")
    return lo, hi, sorted(lat)


def verify(r, prefix, case, n, ids, days):
    """Everything that must hold after a run; returns the list of failures."""
    errs = []
    model = "bench-" + case
    usage = JSON_USAGE if case == "json" else SSE_USAGE
    want = {"requests": n, "succeeded": n, "failed": 0,
            "prompt_tokens": n * usage["prompt_tokens"],
            "completion_tokens": n * usage["completion_tokens"],
            "total_tokens": n * usage["total_tokens"]}
    for metric, v in want.items():
        got = usage_field(r, prefix, days, "|%s|%s" % (model, metric))
        if got != v:
            errs.append("usage %s = %d, expected %d" % (metric, got, v))
    qlen = r.llen("%s:queue:default" % prefix)
    if qlen:
        errs.append("%d jobs left in the queue" % qlen)
    dead = r.llen("%s:dead" % prefix)
    if dead:
        errs.append("%d entries in the dead list" % dead)
    for k in r.scan_iter(match="%s:processing:*" % prefix, count=1000):
        if r.llen(k):
            errs.append("%d jobs left in %s" % (r.llen(k), k.decode()))
    expected = JSON_CONTENT if case == "json" else "".join(SSE_PIECES)
    bad = 0
    example = None
    for i in range(0, len(ids), 2000):
        pipe = r.pipeline(transaction=False)
        for jid in ids[i:i + 2000]:
            pipe.hmget("%s:job:%s" % (prefix, jid), "status", "response")
        for jid, (st, resp) in zip(ids[i:i + 2000], pipe.execute()):
            ok = st == b"succeeded" and resp is not None
            if ok:
                try:
                    o = json.loads(resp)
                    ok = (o["choices"][0]["message"]["content"] == expected
                          and o["usage"]["total_tokens"] == usage["total_tokens"])
                except (ValueError, KeyError, IndexError, TypeError):
                    ok = False
            if not ok:
                bad += 1
                example = example or "%s: status=%s response=%.200s" % (jid, st, resp)
    if bad:
        errs.append("%d jobs without the expected succeeded result, e.g. %s" % (bad, example))
    if case == "sse":
        step = max(1, len(ids) // 50)
        for jid in ids[::step]:
            evs = [json.loads(e) for e in r.lrange("%s:events:%s" % (prefix, jid), 0, -1)]
            kinds = [e.get("type") for e in evs]
            if kinds != ["chunk"] * SSE_CHUNKS + ["done"] or \
                    [e.get("seq") for e in evs] != list(range(SSE_CHUNKS + 1)):
                errs.append("events of %s: %s" % (jid, kinds))
                break
    return errs


# ---------------------------------------------------------------- report

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


MEDIAN_FIELDS = ("jobs_per_s", "chunks_per_s", "elapsed_s", "peak_rss_mb", "sum_vmhwm_mb",
                 "worker_cpu_us_per_job", "machine_busy_frac", "other_cpu_s", "job_ms_p50",
                 "job_ms_p99", "redis_cpu_us_per_job", "redis_instructions_per_job")
REDIS_FIELDS = ("us_per_job", "scripts_us_per_job", "outside_us_per_job",
                "script_calls_per_job", "events_us_per_chunk", "jobs_per_s_one_core")


def summarize(runs):
    s = {k: median([r[k] for r in runs]) for k in MEDIAN_FIELDS}
    s["redis"] = {k: median([r["redis"][k] for r in runs]) for k in REDIS_FIELDS}
    s["cpu_s"] = {}
    for k in runs[0]["cpu_s"]:
        s["cpu_s"][k] = median([r["cpu_s"].get(k) for r in runs])
    return s


def fmt(v, unit="", digits=0):
    if v is None:
        return "-"
    return ("{:,.%df}" % digits).format(v) + unit


def verdict(ok):
    return "ok" if ok else "MISSED"


TARGET_REDIS_US_JOB = 20     # Redis time per non-streamed job, at most
TARGET_REDIS_US_CHUNK = 2    # Redis time per stream chunk, at most


def print_table(med, machine, conc):
    print()
    print("chatq benchmark: %s, %d CPUs; chatqd --workers %d --concurrency %d; median of %d runs"
          % (machine["cpu_model"], machine["nproc"], WORKERS, conc, RUNS))
    print()
    row = "  %-44s %14s %14s %8s  %s"
    print(row % ("figure", "measured", "target", "ratio", ""))
    print(row % ("-" * 44, "-" * 14, "-" * 14, "-" * 8, ""))
    j, s = med.get("json"), med.get("sse")
    if j:
        v = j["jobs_per_s"]
        print(row % ("non-streamed jobs/s (%d jobs)" % JSON_JOBS, fmt(v), ">= " + fmt(TARGET_JOBS_S),
                     fmt(v / TARGET_JOBS_S, "x", 2), verdict(v >= TARGET_JOBS_S)))
    if s:
        print(row % ("streamed jobs/s (%d jobs)" % SSE_JOBS, fmt(s["jobs_per_s"]), "", "", ""))
        v = s["chunks_per_s"]
        print(row % ("streamed chunks/s (x%d)" % SSE_CHUNKS, fmt(v), ">= " + fmt(TARGET_CHUNKS_S),
                     fmt(v / TARGET_CHUNKS_S, "x", 2), verdict(v >= TARGET_CHUNKS_S)))
    for name, m in (("non-streamed", j), ("streamed", s)):
        if m:
            v = m["peak_rss_mb"]
            print(row % ("peak RSS, chatqd+workers, %s" % name, fmt(v, " MB", 1),
                         "< %d MB" % TARGET_RSS_MB, fmt(v / TARGET_RSS_MB, "x", 2),
                         verdict(v < TARGET_RSS_MB)))
    if j:
        v = j["redis"]["us_per_job"]
        print(row % ("Redis time per non-streamed job (µs)", fmt(v, "", 1),
                     "<= %d" % TARGET_REDIS_US_JOB, fmt(v / TARGET_REDIS_US_JOB, "x", 2),
                     verdict(v <= TARGET_REDIS_US_JOB)))
        print(row % ("  jobs/s one Redis core carries (1e6/that)",
                     fmt(1e6 / v if v else None), "", "", ""))
    if s:
        v = s["redis"]["events_us_per_chunk"]
        print(row % ("Redis time per stream chunk (µs)", fmt(v, "", 2),
                     "<= %d" % TARGET_REDIS_US_CHUNK, fmt(v / TARGET_REDIS_US_CHUNK, "x", 2),
                     verdict(v <= TARGET_REDIS_US_CHUNK)))
        print(row % ("Redis time per streamed job, all (µs)", fmt(s["redis"]["us_per_job"], "", 1),
                     "", "", ""))
    print()
    print("  Redis per job (µs; commandstats: scripts + chatq's own commands; CPU = redis-server"
          " utime+stime)")
    print("  %-13s%10s%10s%10s%14s%12s%10s%10s" % ("case", "total", "scripts", "own cmds",
                                                    "script calls", "Redis CPU", "p50 ms",
                                                    "p99 ms"))
    for name, m in (("non-streamed", j), ("streamed", s)):
        if m:
            rr = m["redis"]
            print("  %-13s%10s%10s%10s%14s%12s%10s%10s"
                  % (name, fmt(rr["us_per_job"], "", 1), fmt(rr["scripts_us_per_job"], "", 1),
                     fmt(rr["outside_us_per_job"], "", 1), fmt(rr["script_calls_per_job"], "", 3),
                     fmt(m["redis_cpu_us_per_job"], "", 1), fmt(m["job_ms_p50"]),
                     fmt(m["job_ms_p99"])))
    print()
    names = list((j or s)["cpu_s"].keys())
    cols = [n for n in names if n == "supervisor" or n.startswith("worker")]
    cols += ["chatq_total", "redis-server", "nginx"]
    print("  CPU seconds per process (median; 'others' = the rest of the machine, not this run)")
    print("  %-13s" % "case" + "".join("%13s" % c for c in cols)
          + "%9s%13s%7s" % ("others", "chatq µs/job", "busy"))
    for name, m in (("non-streamed", j), ("streamed", s)):
        if m:
            print("  %-13s" % name + "".join("%13s" % fmt(m["cpu_s"].get(c), "", 2) for c in cols)
                  + "%9s%13s%7s" % (fmt(m["other_cpu_s"], "", 2),
                                     fmt(m["worker_cpu_us_per_job"], "", 1),
                                     fmt(100 * m["machine_busy_frac"], "%")))
    print()


def machine_info():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        redis_v = subprocess.run(["redis-server", "--version"], capture_output=True,
                                 text=True).stdout.strip()
    except OSError:
        redis_v = None
    try:
        nginx_v = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
    except OSError:
        nginx_v = None
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": os.uname().release,
            "redis": redis_v, "nginx": nginx_v}


def print_run(res):
    case = res["case"]
    extra = " %s chunks/s" % fmt(res["chunks_per_s"]) if case == "sse" else ""
    rr = res["redis"]
    chunk = (", %.2f µs/chunk" % rr["events_us_per_chunk"]) if case == "sse" else ""
    print("bench: %-4s C=%d run %d: %d jobs in %.2fs: %s jobs/s%s, peak RSS %.1f MB, "
          "p99 %s ms, Redis %.1f µs/job%s (CPU %.1f%s), CPU s: chatq %.2f, redis %.2f, "
          "nginx %.2f, others %.2f; machine %.0f%% busy%s"
          % (case, res["concurrency"], res["run"], res["jobs"], res["elapsed_s"],
             fmt(res["jobs_per_s"]), extra, res["peak_rss_mb"], fmt(res["job_ms_p99"]),
             rr["us_per_job"], chunk, res["redis_cpu_us_per_job"],
             ", %s instructions" % fmt(res["redis_instructions_per_job"])
             if res["redis_instructions_per_job"] else "", res["cpu_s"]["chatq_total"],
             res["cpu_s"]["redis-server"], res["cpu_s"]["nginx"], res["other_cpu_s"],
             100 * res["machine_busy_frac"],
             "" if not res["errors"] else "  ERRORS: " + "; ".join(res["errors"])), flush=True)


def main():
    for prog in ("chatqd", "chatq-worker"):
        if not os.access(os.path.join(BIN, prog), os.X_OK):
            sys.exit("bench: %s/%s is missing: run `make` first" % (BIN, prog))
    if not os.access(NGINX, os.X_OK):
        sys.exit("bench: %s is missing (bench/run.sh installs nginx-light)" % NGINX)
    os.makedirs(OUT, exist_ok=True)
    machine = machine_info()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    perf_dir = None
    if PERF and shutil.which("perf"):
        perf_dir = os.path.join(OUT, "perf-" + stamp)
        os.makedirs(perf_dir)
    tmp = tempfile.mkdtemp(prefix="runs-", dir=os.environ.get("CHATQ_BENCH_TMP"))
    procs = Procs()
    runs = {c: {"json": [], "sse": []} for c in CONCURRENCIES}
    failed = False

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        for conc in CONCURRENCIES:
            for case, n in (("json", JSON_JOBS), ("sse", SSE_JOBS)):
                if n <= 0:
                    continue
                for i in range(1, RUNS + 1):
                    first = i == 1 and conc == CONCURRENCIES[0]
                    res = run_once(case, n, i, tmp, procs, conc, perf_dir if first else None)
                    runs[conc][case].append(res)
                    print_run(res)
                    failed = failed or bool(res["errors"])
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        failed = True
    except Exception as e:  # report, clean up, exit 1
        print("bench: error: %s" % e, file=sys.stderr)
        failed = True
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    # medians per concurrency; "medians" (and "runs") alone are the first
    # concurrency's, as before the sweep existed
    by_conc = {str(c): {case: summarize(rs) for case, rs in runs[c].items() if rs}
               for c in CONCURRENCIES}
    med = by_conc[str(CONCURRENCIES[0])]
    doc = {"time": stamp, "machine": machine,
           "settings": {"runs": RUNS, "json_jobs": JSON_JOBS, "sse_jobs": SSE_JOBS,
                        "sse_chunks_per_job": SSE_CHUNKS, "workers": WORKERS,
                        "concurrency": CONCURRENCIES[0], "concurrencies": CONCURRENCIES},
           "targets": {"json_jobs_per_s": TARGET_JOBS_S, "sse_chunks_per_s": TARGET_CHUNKS_S,
                       "peak_rss_mb": TARGET_RSS_MB, "redis_us_per_job": TARGET_REDIS_US_JOB,
                       "redis_us_per_chunk": TARGET_REDIS_US_CHUNK},
           "runs": runs[CONCURRENCIES[0]],
           "runs_by_concurrency": {str(c): runs[c] for c in CONCURRENCIES},
           "medians": med, "medians_by_concurrency": by_conc, "ok": not failed}
    path = os.path.join(OUT, "bench-%s.json" % stamp)
    for p in (path, os.path.join(OUT, "latest.json")):
        with open(p, "w") as f:
            json.dump(doc, f, indent=2)
    for c in CONCURRENCIES:
        if by_conc[str(c)]:
            print_table(by_conc[str(c)], machine, c)
    print("bench: raw figures in %s" % os.path.relpath(path, REPO))
    if perf_dir:
        print("bench: perf profiles in %s (perf report -i ...)" % os.path.relpath(perf_dir, REPO))
    if failed:
        print("bench: FAILED: see the errors above", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
