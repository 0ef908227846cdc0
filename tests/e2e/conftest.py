"""conftest.py — fixtures for chatq's end-to-end tests.

The tests run the real programs: a `redis-server` (one per session, on a free
loopback port, no persistence), the stand-in upstream `upstream.py` (one per
session; its behaviour is scripted per request, see its docstring), and a
`chatqd` per test, started from $CHATQ_BIN (default <repo>/build) with its
own key prefix, so that tests never see each other's keys or requests.

Fixtures:
  redis_server   the session's RedisServer (host, port, url, client()).
  upstream       the session's UpstreamClient (url, requests(), stats()).
  start_chatqd   factory: start_chatqd(config=None, args=None, workers=2,
                 concurrency=64, env=None, extra_args=(), prefix=None,
                 redis=None) -> Chatqd. `config` is laid over TEST_CONFIG (a
                 key set to None is dropped) and written to a temp file named
                 by $CHATQ_CONFIG; config=False: no config file at all.
                 `args` replaces the default "--workers 2 --concurrency 64".
  cq             a Chatqd started with the defaults.
  redis_factory  factory for extra RedisServers (for tests that stop Redis).

Nothing sleeps for a fixed time: every wait polls a condition with a deadline
(wait_for). Deadlines are multiplied by $CHATQ_E2E_TIME_SCALE (default 1, or
3 when CHATQ_BIN looks like a sanitizer build).

At teardown a chatqd gets SIGTERM, then SIGKILL (its whole process group)
after a deadline. A test fails at teardown if its chatqd died on its own or
its log holds a sanitizer report; the log of a failed test's chatqd is added
to the pytest report."""

import datetime
import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
import redis

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.abspath(os.environ.get("CHATQ_BIN") or os.path.join(REPO, "build"))
API_KEY = "sk-test-secret"
TERMINAL = ("succeeded", "failed", "cancelled")
SCALE = float(os.environ.get("CHATQ_E2E_TIME_SCALE") or (3 if "asan" in BIN else 1))
# Small retry backoff and timeouts keep the suite fast; tests override.
TEST_CONFIG = {
    "retry_base_ms": 20,
    "retry_max_ms": 2000,
    "timeout_ms": 15000,
    "idle_timeout_ms": 5000,
    "connect_timeout_ms": 2000,
    "shutdown_grace_ms": 2000,
}
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


# ---------------------------------------------------------------- helpers

def wait_for(pred, timeout=10.0, interval=0.01, what="condition"):
    """Polls pred() until it returns something truthy (returned) or the
    deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout * SCALE, what))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_on_pty(argv, env, timeout=20, stderr_too=True):
    """Runs argv with stdout (and stderr, with stderr_too) on a
    pseudo-terminal, as a user at a terminal would. Returns a
    CompletedProcess: stdout the bytes the terminal got, stderr the text of
    stderr when it went to a pipe ("" otherwise)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdout=slave, stdin=subprocess.DEVNULL,
                            stderr=slave if stderr_too else subprocess.PIPE)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                data = b""
            if not data and proc.poll() is not None:
                break
            out += data
        elif proc.poll() is not None:
            break
    os.close(master)
    try:
        _, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out,
                                       (err or b"").decode("utf-8", "replace"))


def utc_day(ts=None):
    t = datetime.datetime.fromtimestamp(time.time() if ts is None else ts, datetime.timezone.utc)
    return t.strftime("%Y-%m-%d")


def now_ms():
    return int(time.time() * 1000)


def tail(path, lines=150):
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(no log: %s)" % e
    return "\n".join(text.splitlines()[-lines:])


# ---------------------------------------------------------------- redis

class RedisServer:
    def __init__(self, workdir, port=None, extra=()):
        self.dir = workdir
        self.port = port
        self.extra = list(extra)
        self.proc = None
        self.log = os.path.join(workdir, "redis.log")

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def client(self, **kw):
        kw.setdefault("decode_responses", True)
        kw.setdefault("encoding_errors", "replace")
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10, **kw)

    def _ping(self):
        try:
            return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    def start(self):
        fixed = self.port is not None
        for _ in range(5):
            if not fixed:
                self.port = free_port()
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self.dir,
                 "--logfile", self.log] + self.extra,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._ping():
                    return self
                time.sleep(0.01)
            self.stop()
            if fixed:
                break
        raise RuntimeError("redis-server did not start: " + tail(self.log, 20))

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed (make deps)")
    srv = RedisServer(str(tmp_path_factory.mktemp("redis"))).start()
    yield srv
    srv.stop()


@pytest.fixture
def redis_factory(tmp_path):
    made = []

    def make(port=None, extra=()):
        d = tmp_path / ("redis%d" % len(made))
        d.mkdir()
        srv = RedisServer(str(d), port, extra)
        made.append(srv)
        return srv
    yield make
    for srv in made:
        srv.stop(signal.SIGKILL)


# ---------------------------------------------------------------- upstream

class UpstreamClient:
    def __init__(self, port, proc, log):
        self.port = port
        self.proc = proc
        self.log = log
        self.base = "http://127.0.0.1:%d" % port
        self.url = self.base + "/v1"

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            return json.loads(r.read())

    def requests(self, key=None, prefix=None):
        q = []
        if key is not None:
            q.append("key=" + urllib.request.quote(key, safe=""))
        if prefix is not None:
            q.append("prefix=" + urllib.request.quote(prefix, safe=""))
        return self.get("/_requests" + ("?" + "&".join(q) if q else ""))

    def stats(self):
        return self.get("/_stats")

    def wait_requests(self, key, n, timeout=10):
        return wait_for(lambda: (lambda rs: rs if len(rs) >= n else None)(self.requests(key)),
                        timeout, what="%d upstream request(s) with key %s" % (n, key))


def start_upstream(workdir):
    port_file = os.path.join(workdir, "upstream.port")
    log = os.path.join(workdir, "upstream.log")
    with open(log, "wb") as lf:
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "upstream.py"),
                                 "--port", "0", "--port-file", port_file],
                                stdout=lf, stderr=subprocess.STDOUT, start_new_session=True)

    def ready():
        if proc.poll() is not None:
            raise RuntimeError("upstream.py exited: " + tail(log, 30))
        if not os.path.exists(port_file):
            return None
        with open(port_file) as f:
            port = int(f.read())
        try:
            c = UpstreamClient(port, proc, log)
            return c if c.get("/_health") == "ok" else None
        except OSError:
            return None
    return wait_for(ready, 15, what="upstream.py to answer")


def stop_process(proc, timeout=5):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def upstream(tmp_path_factory):
    c = start_upstream(str(tmp_path_factory.mktemp("upstream")))
    yield c
    stop_process(c.proc)


# ---------------------------------------------------------------- chatqd

def parse_job_hash(h):
    """The job hash with its JSON fields decoded and its times as ints."""
    out = dict(h)
    for f in ("response", "usage", "error", "metadata"):
        if f in out:
            try:
                out[f] = json.loads(out[f])
            except ValueError:
                raise AssertionError("job hash field %s is not JSON: %r" % (f, out[f][:300]))
    for f in ("attempts", "started_at", "first_token_at", "finished_at"):
        if f in out:
            try:
                out[f] = int(out[f])
            except ValueError:
                raise AssertionError("job hash field %s is not an integer: %r" % (f, out[f]))
    return out


class Subscription:
    """A pub/sub subscription on one job's stream channel; collect() gathers
    the parsed events."""

    def __init__(self, r, channel):
        self.ps = r.pubsub()
        self.ps.subscribe(channel)
        self.channel = channel
        self.messages = []
        # The confirmation proves the server registered us before any push.
        wait_for(lambda: (self.ps.get_message(timeout=0.05) or {}).get("type") == "subscribe",
                 5, what="SUBSCRIBE confirmation")

    def poll(self, timeout=0.05):
        m = self.ps.get_message(timeout=timeout)
        if m and m["type"] == "message":
            self.messages.append(json.loads(m["data"]))
            return True
        return False

    def collect(self, timeout=10, until=None):
        """Reads until until(messages) holds (default: a terminal event)."""
        until = until or (lambda ms: bool(ms) and ms[-1].get("type") in ("done", "error"))
        deadline = time.monotonic() + timeout * SCALE
        while not until(self.messages):
            if time.monotonic() > deadline:
                raise AssertionError("timed out collecting events on %s; got %s"
                                     % (self.channel, json.dumps(self.messages)[:2000]))
            self.poll(0.05)
        return self.messages

    def drain(self):
        while self.poll(0.01):
            pass
        return self.messages

    def close(self):
        try:
            self.ps.close()
        except Exception:
            pass


class Chatqd:
    def __init__(self, redis_server, upstream, workdir, config, args, env, name, prefix=None):
        self.redis_server = redis_server
        self.upstream = upstream
        self.dir = workdir
        self.prefix = prefix or "e2e" + uuid.uuid4().hex[:10]
        self.log_path = os.path.join(workdir, name + ".log")
        self.r = redis_server.client()
        self.subs = []
        self.ids = 0
        self.expect_exit = False
        self.env = dict(os.environ)
        self.env.update({
            "CHATQ_REDIS_URL": redis_server.url,
            "CHATQ_PREFIX": self.prefix,
            "OPENAI_BASE_URL": upstream.url,
            "OPENAI_API_KEY": API_KEY,
            "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
        })
        self.env.pop("CHATQ_CONFIG", None)
        if config is not False:
            cfg = dict(TEST_CONFIG)
            for k, v in (config or {}).items():
                if v is None:
                    cfg.pop(k, None)
                else:
                    cfg[k] = v
            self.config_path = os.path.join(workdir, name + ".json")
            with open(self.config_path, "w") as f:
                json.dump(cfg, f, indent=2)
            self.env["CHATQ_CONFIG"] = self.config_path
        self.env.update(env or {})
        self.argv = [os.path.join(BIN, "chatqd")] + list(args)
        self.proc = None

    # -- process

    def start(self):
        exe = self.argv[0]
        if not os.access(exe, os.X_OK):
            pytest.fail("%s is not built (make, or set CHATQ_BIN)" % exe)
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self.logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.pgid = self.proc.pid
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise AssertionError("chatqd exited with status %s; log:\n%s"
                                 % (self.proc.returncode, tail(self.log_path, 60)))

    def worker_pids(self):
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return sorted(int(x) for x in out.stdout.split())

    def wait_workers(self, n, timeout=10):
        return wait_for(lambda: (lambda p: p if len(p) == n else None)(self.worker_pids()),
                        timeout, what="%d worker processes" % n)

    def stop(self, sig=signal.SIGTERM, timeout=8):
        """Signals chatqd, waits for it, then SIGKILLs whatever is left of its
        process group. Returns chatqd's exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout * SCALE)
            except subprocess.TimeoutExpired:
                pass
        rc = self.proc.poll()
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if rc is None:
            self.proc.wait()
        return rc

    def close(self):
        for s in self.subs:
            s.close()
        self.logf.close()
        self.r.close()

    def log(self):
        return tail(self.log_path, 10 ** 6)

    # -- keys

    def k(self, *parts):
        return ":".join((self.prefix,) + parts)

    def queue_key(self, name="default"):
        return self.k("queue", name)

    def job_key(self, jid):
        return self.k("job", jid)

    # -- jobs

    def new_id(self):
        self.ids += 1
        return "j%d" % self.ids

    def mock_key(self, jid):
        return "%s:%s" % (self.prefix, jid)

    def mkjob(self, mock=None, id=None, model="mock-1", stream=None, messages=None,
              body=None, **fields):
        """A job dict: id, body {model, messages, mock {key, ...}} and fields."""
        jid = id or self.new_id()
        m = {"key": self.mock_key(jid)}
        m.update(mock or {})
        b = {"model": model, "messages": messages or [{"role": "user", "content": "hi"}], "mock": m}
        b.update(body or {})
        job = {"id": jid, "body": b}
        if stream is not None:
            job["stream"] = stream
        job.update(fields)
        return job

    def push(self, job, queue="default"):
        """LPUSHes a job (dict -> JSON text; str/bytes as given); returns the
        raw text pushed."""
        raw = json.dumps(job) if isinstance(job, (dict, list)) else job
        self.r.lpush(self.queue_key(queue), raw)
        return raw

    def job(self, jid):
        return parse_job_hash(self.r.hgetall(self.job_key(jid)))

    def wait_job_done(self, jid, timeout=10):
        def done():
            self.check_alive()
            st = self.r.hget(self.job_key(jid), "status")
            return st in TERMINAL
        wait_for(done, timeout, what="job %s to end (status now %r)"
                 % (jid, self.r.hget(self.job_key(jid), "status")))
        return self.job(jid)

    def wait_status(self, jid, statuses, timeout=10):
        statuses = (statuses,) if isinstance(statuses, str) else tuple(statuses)

        def ok():
            self.check_alive()
            return self.r.hget(self.job_key(jid), "status") in statuses
        wait_for(ok, timeout, what="job %s status in %s" % (jid, statuses))
        return self.job(jid)

    def run(self, job, queue="default", timeout=10):
        self.push(job, queue)
        return self.wait_job_done(job["id"], timeout)

    def events(self, jid):
        return [json.loads(x) for x in self.r.lrange(self.k("events", jid), 0, -1)]

    def dead(self):
        """P:dead entries, oldest first."""
        return [json.loads(x) for x in reversed(self.r.lrange(self.k("dead"), 0, -1))]

    def replies(self, key):
        """Output lines pushed to a reply_to list, oldest first."""
        return [json.loads(x) for x in reversed(self.r.lrange(key, 0, -1))]

    def wait_replies(self, key, n, timeout=10):
        def got():
            self.check_alive()
            return self.r.llen(key) >= n
        wait_for(got, timeout, what="%d line(s) on %s" % (n, key))
        return self.replies(key)

    def usage(self, day=None):
        h = self.r.hgetall(self.k("usage", day or utc_day()))
        return {f: int(v) for f, v in h.items()}

    def subscribe(self, jid):
        s = Subscription(self.r, self.k("stream", jid))
        self.subs.append(s)
        return s

    def cancel(self, jid):
        self.r.set(self.k("cancel", jid), "1", ex=300)
        self.r.publish(self.k("control"), jid)

    def cli(self, *args, input=None, timeout=20, env=None):
        e = dict(self.env)
        e.update(env or {})
        return subprocess.run([os.path.join(BIN, "chatq")] + [str(a) for a in args],
                              input=input, capture_output=True, text=True, env=e,
                              timeout=timeout * SCALE)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for d in getattr(item, "_chatqds", []):
            rep.sections.append(("chatqd log (%s, prefix %s)" % (os.path.basename(d.log_path), d.prefix),
                                 tail(d.log_path, 200)))


@pytest.fixture
def start_chatqd(request, redis_server, upstream, tmp_path):
    made = []
    request.node._chatqds = made

    def start(config=None, args=None, workers=2, concurrency=64, env=None, extra_args=(),
              prefix=None, redis=None):
        if args is None:
            args = ["--workers", str(workers), "--concurrency", str(concurrency)]
        d = Chatqd(redis or redis_server, upstream, str(tmp_path), config,
                   list(args) + list(extra_args), env, "chatqd%d" % len(made), prefix)
        made.append(d)
        return d.start()
    yield start
    problems = []
    for d in made:
        if d.proc is not None and d.proc.poll() is not None and not d.expect_exit:
            problems.append("chatqd (prefix %s) died during the test with status %s"
                            % (d.prefix, d.proc.returncode))
        d.stop()
        d.close()
        log = d.log()
        for mark in SANITIZER_MARKS:
            if mark in log:
                problems.append("sanitizer report in %s: %s" % (d.log_path, mark))
                break
    if problems:
        pytest.fail("; ".join(problems) + "\n" + "\n".join(tail(d.log_path, 80) for d in made),
                    pytrace=False)


@pytest.fixture
def cq(start_chatqd):
    return start_chatqd()
