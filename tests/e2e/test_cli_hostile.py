"""test_cli_hostile.py — the `chatq` client against hostile data in Redis.

Anyone who can write to Redis can put anything in the keys the CLI reads:
job hashes, events lists, a batch's output list, the dead list, usage
hashes, worker registrations, pub/sub messages, keys of the wrong type.
docs/reliability.md: bad input of any kind never crashes, hangs or blows up
a chatq program. Each test writes such data with redis-py and runs the real
`chatq`: no crash (no negative exit status, no sanitizer report), no hang
(every run has a deadline), a clear one-line message naming the key when
the command cannot do its work, and nothing raw on a terminal.

No test needs a chatqd: the `hq` fixture is a key prefix of its own on the
session's redis-server, and the environment to run `chatq` with it; where a
worker is needed (batch), the test plays it (FakeBatchRun); replies no
Redis would send come from a fake RESP server (FakeRedis). Memory is
measured as the peak RSS GNU time reports."""

import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from conftest import BIN, SANITIZER_MARKS, SCALE, run_on_pty, wait_for


class Hostile:
    """A key prefix of its own and a way to run `chatq` on it."""

    def __init__(self, redis_server, tmp_path):
        self.prefix = "hq" + uuid.uuid4().hex[:10]
        self.dir = str(tmp_path)
        self.r = redis_server.client(decode_responses=False)
        self.env = dict(os.environ)
        self.env.update({"CHATQ_REDIS_URL": redis_server.url, "CHATQ_PREFIX": self.prefix})
        self.env.pop("CHATQ_CONFIG", None)

    def k(self, *parts):
        return ":".join((self.prefix,) + parts)

    def run(self, *args, timeout=20, env=None):
        """Runs chatq with stdout and stderr to pipes; returns the
        CompletedProcess with text decoded (undecodable bytes escaped)."""
        e = dict(self.env)
        e.update(env or {})
        p = subprocess.run([os.path.join(BIN, "chatq")] + [str(a) for a in args],
                           capture_output=True, env=e, timeout=timeout * SCALE,
                           stdin=subprocess.DEVNULL)
        p.stdout = p.stdout.decode("utf-8", "backslashreplace")
        p.stderr = p.stderr.decode("utf-8", "backslashreplace")
        check_no_crash(p)
        return p

    def run_tty(self, *args, timeout=20):
        """Runs chatq with stdout on a terminal (a pty); returns (exit
        status, the bytes written to the terminal, stderr)."""
        p = run_on_pty([os.path.join(BIN, "chatq")] + [str(a) for a in args], self.env,
                       timeout, stderr_too=False)
        check_no_crash(p)
        return p


def wait_checked(proc, timeout, kill):
    """Waits for proc (stdout and stderr pipes) to end; returns what it did
    as text, checked by check_no_crash(). After timeout seconds (scaled),
    kill() ends it and TimeoutExpired is raised."""
    try:
        out, err = proc.communicate(timeout=timeout * SCALE)
    except subprocess.TimeoutExpired:
        kill()
        proc.communicate()
        raise
    p = subprocess.CompletedProcess(proc.args, proc.returncode, out.decode("utf-8", "replace"),
                                    err.decode("utf-8", "replace"))
    check_no_crash(p)
    return p


def check_no_crash(p):
    assert p.returncode >= 0, "chatq died of signal %d; stderr: %s" % (-p.returncode, p.stderr)
    for mark in SANITIZER_MARKS:
        assert mark not in p.stderr, "sanitizer report:\n%s" % p.stderr


def one_line_error(p):
    assert p.returncode != 0, "expected a failure; stdout: %s" % p.stdout[:2000]
    err = p.stderr.strip()
    assert err and "\n" not in err, "stderr should be one line: %r" % p.stderr[:2000]
    assert err.startswith("chatq: "), err
    return err


@pytest.fixture
def hq(redis_server, tmp_path):
    h = Hostile(redis_server, tmp_path)
    yield h
    keys = list(h.r.scan_iter(match=h.prefix + "*", count=1000))
    if keys:
        h.r.delete(*keys)
    h.r.close()


# ---------------------------------------------------------------- keys of the wrong type

def test_wrong_type_keys_are_named(hq, tmp_path):
    """A key of another type than the command reads: one line that names
    the key, exit 1, for every command that reads one."""
    hq.r.set(hq.k("job", "j1"), "a string, not a hash")
    err = one_line_error(hq.run("get", "j1"))
    assert hq.k("job", "j1") in err and "WRONGTYPE" in err

    hq.r.set(hq.k("events", "j2"), "not a list")
    err = one_line_error(hq.run("watch", "j2", "--timeout", "5"))
    assert hq.k("events", "j2") in err

    hq.r.set(hq.k("usage", "2026-01-02"), "not a hash")
    err = one_line_error(hq.run("usage", "--day", "2026-01-02"))
    assert hq.k("usage", "2026-01-02") in err

    hq.r.set(hq.k("dead"), "not a list")
    for args in (["dead"], ["dead", "purge", "--all"], ["dead", "retry", "--all"]):
        err = one_line_error(hq.run(*args))
        assert hq.k("dead") in err, args
    # stats reads the dead list too: it must not show "0 dead jobs"
    err = one_line_error(hq.run("stats"))
    assert hq.k("dead") in err
    hq.r.delete(hq.k("dead"))

    hq.r.set(hq.k("workers"), "not a hash")
    err = one_line_error(hq.run("stats", "--json"))
    assert hq.k("workers") in err


# ---------------------------------------------------------------- usage counters

def test_usage_counters_that_are_not_counts(hq):
    """Counters past INT64_MAX when summed, negative, not integers, fields
    of another shape: the totals saturate instead of wrapping, what is not
    a count is skipped, and one warning names the key."""
    day = "2026-01-03"
    key = hq.k("usage", day)
    big = 2 ** 63 - 1
    hq.r.hset(key, mapping={
        "a|m|requests": big, "b|m|requests": big, "h|m|requests": 4,
        "c|m|requests": -5, "d|m|requests": "12abc", "e|m|requests": "1e3",
        "f|m|requests": "99999999999999999999", "no-separators": 1,
        "g|m|no_such_metric": 1,
    })
    p = hq.run("usage", "--day", day)
    assert p.returncode == 0, p.stderr
    rows = [l.split() for l in p.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ["a", "b", "h", "TOTAL"], p.stdout
    assert rows[-1][1] == str(big), p.stdout  # saturated, not wrapped
    assert not any(c.startswith("-") and c != "-" for r in rows for c in r), p.stdout
    warn = p.stderr.strip()
    assert "\n" not in warn and key in warn and "6 fields" in warn, p.stderr

    j = hq.run("usage", "--day", day, "--json")
    assert j.returncode == 0
    assert sorted((o["tenant"], o["requests"]) for o in json.loads(j.stdout)) == \
        [("a", big), ("b", big), ("h", 4)]

    s = hq.run("stats", "--json")  # today's totals: nothing there, but no failure
    assert s.returncode == 0, s.stderr


# ---------------------------------------------------------------- text tables on a terminal

ESC_TEXT = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202e"


def assert_terminal_safe(out):
    """What reached the terminal holds no escape sequence (ESC, C1 CSI,
    BEL, a bidi override) of the hostile text."""
    for bad in (b"\x1b", b"\x07", "\x9b".encode(), "\u202e".encode()):
        assert bad not in out, "%r reached the terminal: %r" % (bad, out[:3000])


def test_usage_table_on_a_terminal(hq):
    day = "2026-01-04"
    hq.r.hset(hq.k("usage", day), mapping={
        ("t" + ESC_TEXT + "|m\nx|requests").encode(): 1,
        "plain|m\tx|requests": 2,
    })
    p = hq.run_tty("usage", "--day", day)
    assert p.returncode == 0, p.stderr
    assert_terminal_safe(p.stdout)
    lines = p.stdout.decode().replace("\r\n", "\n").strip("\n").split("\n")
    assert len(lines) == 4, lines  # header, two rows, TOTAL: no cell breaks a row
    assert "^[" in p.stdout.decode()


def test_stats_table_on_a_terminal(hq):
    hq.r.hset(hq.k("workers"), mapping={
        ("w1" + ESC_TEXT).encode(): json.dumps({"host": "h" + ESC_TEXT, "pid": "1\n2",
                                                "queues": ["q" + ESC_TEXT]}),
    })
    p = hq.run_tty("stats")
    assert p.returncode == 0, p.stderr
    assert_terminal_safe(p.stdout)
    assert "^[" in p.stdout.decode()


# ---------------------------------------------------------------- worker registrations

def test_stats_registrations_of_any_shape(hq):
    """P:workers values of every shape: null members, wrong types, not
    JSON, not an object, huge numbers. stats shows "-" for what it cannot
    read and never "(null)"."""
    hq.r.hset(hq.k("workers"), mapping={
        "w-null": json.dumps({"host": None, "pid": None, "queues": None}),
        "w-types": json.dumps({"host": [1, 2], "pid": {"a": 1}, "queues": 7,
                               "alive": "yes", "in_flight": "x", "id": 3}),
        "w-big": json.dumps({"host": "h", "pid": 2 ** 64, "queues": ["a", 5, None, ""]}),
        "w-notjson": b"\xff\xfe{",
        "w-array": "[1,2,3]",
        "w-empty": "",
    })
    p = hq.run("stats")
    assert p.returncode == 0, p.stderr
    assert "(null)" not in p.stdout, p.stdout
    rows = {l.split()[0]: l.split() for l in p.stdout.splitlines() if l.startswith("w-")}
    assert set(rows) == {"w-null", "w-types", "w-big", "w-notjson", "w-array", "w-empty"}
    assert rows["w-null"][1:3] == ["-", "-"], rows["w-null"]
    queue_rows = p.stdout.split("\n\n")[0].splitlines()[1:]
    assert all(len(l.split()) == 2 for l in queue_rows), queue_rows  # no queue named ""
    j = hq.run("stats", "--json")
    assert j.returncode == 0, j.stderr
    workers = {w["id"]: w for w in json.loads(j.stdout)["workers"]}
    assert workers["w-types"]["alive"] is False and workers["w-types"]["in_flight"] == 0


# ---------------------------------------------------------------- events of watch

def chunk_event(seq, text, attempt=1):
    return json.dumps({"seq": seq, "type": "chunk", "attempt": attempt,
                       "data": {"choices": [{"index": 0, "delta": {"content": text}}]}})


class Watch:
    """`chatq watch ID` running in the background, subscribed."""

    def __init__(self, hq, jid, *extra):
        self.hq = hq
        self.proc = subprocess.Popen([os.path.join(BIN, "chatq"), "watch", jid] + list(extra),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=hq.env)
        self.channel = hq.k("stream", jid)
        wait_for(lambda: self.proc.poll() is not None or
                 dict(hq.r.pubsub_numsub(self.channel)).get(self.channel.encode()) == 1,
                 10, what="watch to subscribe")

    def publish(self, msg):
        self.hq.r.publish(self.channel, msg)

    def result(self, timeout=20):
        return wait_checked(self.proc, timeout, self.proc.kill)


def test_watch_event_numbers_at_the_int64_limit(hq):
    """seq and attempt at and past INT64_MAX (json-c reads 2^64-1 as
    INT64_MAX): such an event is no event, and nothing overflows; the watch
    still drops duplicates and ends with the done event."""
    jid = "j-seq"
    hq.r.rpush(hq.k("events", jid), chunk_event(0, "alpha"))
    w = Watch(hq, jid, "--timeout", "15")
    w.publish(chunk_event(2 ** 64 - 1, "evil"))
    w.publish(chunk_event(2 ** 63 - 1, "evil"))
    w.publish(chunk_event(0, "alpha"))  # a duplicate: dropped
    w.publish(json.dumps({"seq": 1, "type": "retry", "attempt": 2 ** 63 - 1, "error": {}}))
    w.publish(chunk_event(2, "beta"))
    w.publish(json.dumps({"seq": 3, "type": "done", "status": "succeeded"}))
    p = w.result()
    assert p.returncode == 0, p.stderr
    assert "evil" not in p.stdout and p.stdout.count("alpha") == 1, p.stdout
    assert "beta" in p.stdout, p.stdout


def measured(tmp_path, *args):
    """The argv that runs chatq with args under GNU time, which writes its
    peak RSS for peak_rss_mb() (scripts/deps.sh installs it). A child's own
    rusage would count the pages it shared with pytest between fork and
    exec."""
    chatq = [os.path.join(BIN, "chatq")] + [str(a) for a in args]
    assert os.access("/usr/bin/time", os.X_OK), "GNU time (package time) is missing"
    return ["/usr/bin/time", "-f", "%M", "-o", str(tmp_path / "rss.kb")] + chatq


def peak_rss_mb(tmp_path):
    """The peak RSS, in MB, of the last run through measured()."""
    with open(str(tmp_path / "rss.kb")) as f:
        return int(f.read().split()[-1]) / 1024


def test_watch_reads_a_long_events_list_in_pages(hq, tmp_path):
    """An events list of 200,000 entries (a long stream: a job may publish
    100,000 chunks per attempt) and a publisher whose seq keeps skipping
    ahead, which makes watch look at the list again each time: the list is
    read a page at a time from where it was left, never whole, so memory
    stays small and each entry is read once."""
    jid = "j-long"
    n = 200000
    key = hq.k("events", jid)
    pipe = hq.r.pipeline(transaction=False)
    for start in range(0, n, 5000):
        pipe.rpush(key, *[chunk_event(i, "x") for i in range(start, start + 5000)])
    pipe.execute()
    out_path = str(tmp_path / "watch.out")
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(measured(tmp_path, "watch", jid, "--timeout", "120"),
                                stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=hq.env, start_new_session=True)
        channel = hq.k("stream", jid)
        wait_for(lambda: proc.poll() is not None or
                 dict(hq.r.pubsub_numsub(channel)).get(channel.encode()) == 1,
                 10, what="watch to subscribe")
        t0 = time.monotonic()
        for i in range(40):
            hq.r.publish(channel, json.dumps({"seq": n + 10 + 2 * i, "type": "note"}))
        hq.r.publish(channel, json.dumps({"seq": n + 200, "type": "done", "status": "succeeded"}))
        try:
            _, err = proc.communicate(timeout=120 * SCALE)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        took = time.monotonic() - t0
        err = err.decode("utf-8", "replace")
    check_no_crash(subprocess.CompletedProcess(proc.args, proc.returncode, "", err))
    assert proc.returncode == 0, err
    with open(out_path) as f:
        assert f.read().count("x") == n
    assert took < 10 * SCALE, "watch took %.1f s: the list is read again and again" % took
    peak_mb = peak_rss_mb(tmp_path)
    if "asan" not in BIN:
        assert peak_mb < 20, "watch peaked at %.0f MB: the list is read whole" % peak_mb


# ---------------------------------------------------------------- batch's output list

def write_batch_input(path, n):
    with open(path, "w") as f:
        for i in range(1, n + 1):
            f.write(json.dumps({"custom_id": "c%d" % i, "method": "POST",
                                "url": "/v1/chat/completions", "body": {
                "model": "m", "messages": [{"role": "user", "content": "line %d" % i}]}}) + "\n")


class FakeBatchRun:
    """`chatq batch` in the background, with the test as its worker: take()
    returns the jobs it queued, answer() pushes output lines."""

    def __init__(self, hq, tmp_path, n, *extra):
        self.hq = hq
        self.n = n
        self.inp = str(tmp_path / "in.jsonl")
        self.out = str(tmp_path / "out.jsonl")
        write_batch_input(self.inp, n)
        self.proc = subprocess.Popen(measured(tmp_path, "batch", self.inp, "-o", self.out, *extra),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=hq.env,
                                     start_new_session=True)
        self.qkey = hq.k("queue", "default")

    def take(self, count=None):
        count = self.n if count is None else count
        wait_for(lambda: self.proc.poll() is not None or self.hq.r.llen(self.qkey) >= count,
                 20, what="%d jobs queued by chatq batch" % count)
        if self.proc.poll() is not None:
            raise AssertionError("chatq batch exited with %d: %s"
                                 % (self.proc.returncode, self.proc.stderr.read().decode()))
        jobs = [json.loads(x) for x in reversed(self.hq.r.lrange(self.qkey, 0, -1))]
        self.hq.r.delete(self.qkey)
        self.reply_to = jobs[0]["reply_to"]
        return jobs

    @staticmethod
    def line(job, content="ok"):
        return json.dumps({"id": job["id"], "custom_id": job["custom_id"], "response": {
            "status_code": 200, "request_id": None, "body": {"choices": [{
                "index": 0, "message": {"role": "assistant", "content": content}}]}},
            "error": None})

    def answer(self, lines):
        """LPUSHes the lines in one transaction: all land at once."""
        pipe = self.hq.r.pipeline(transaction=True)
        for l in lines:
            pipe.lpush(self.reply_to, l)
        pipe.execute()

    def result(self, timeout=60):
        # on a timeout, kill GNU time and chatq both
        return wait_checked(self.proc, timeout, lambda: os.killpg(self.proc.pid, signal.SIGKILL))

    def output_lines(self):
        with open(self.out) as f:
            return [json.loads(l) for l in f.read().splitlines()]


def test_batch_reads_big_output_lines_a_few_at_a_time(hq, tmp_path):
    """100 output lines of 1 MB each land in the list at once: the batch
    reads them a few at a time (its LRANGE asks for fewer lines when lines
    are big), not all 100 MB at once."""
    b = FakeBatchRun(hq, tmp_path, 100)
    jobs = b.take()
    big = "y" * (1 << 20)
    b.answer([b.line(j, big) for j in jobs])
    p = b.result()
    assert p.returncode == 0, p.stderr
    assert len(b.output_lines()) == 100
    peak = peak_rss_mb(tmp_path)
    print("batch: peak RSS %s MB" % peak)
    if "asan" not in BIN:
        assert peak < 50, "batch peaked at %.0f MB: the whole list was read at once" % peak


def test_batch_counts_a_job_that_ended_without_its_line_as_failed(hq, tmp_path):
    """A job whose hash says it ended while its output line never reached
    the list (someone set the hash first, so the worker took the job for a
    duplicate; or the line was removed): the batch does not wait for ever.
    When nothing came for a few seconds it asks the job hashes of the lines
    still unanswered, and a line whose job ended is counted as failed, with
    an error that says why. Garbage in the list changes nothing."""
    err_path = str(tmp_path / "err.jsonl")
    b = FakeBatchRun(hq, tmp_path, 3, "--errors", err_path)
    jobs = b.take()
    lost = jobs[1]["id"]
    hq.r.hset(hq.k("job", lost), "status", "succeeded")
    b.answer([b.line(jobs[0]), "not json", json.dumps({"id": 5}), b.line(jobs[2])])
    t0 = time.monotonic()
    p = b.result(timeout=60)
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 30 * SCALE
    assert sorted(l["id"] for l in b.output_lines()) == sorted([jobs[0]["id"], jobs[2]["id"]])
    with open(err_path) as f:
        errs = [json.loads(l) for l in f.read().splitlines()]
    assert len(errs) == 1, errs
    e = errs[0]
    assert e["id"] == lost and e["custom_id"] == "c2" and e["response"] is None, e
    assert e["error"]["code"] == "no_output" and hq.k("job", lost) in e["error"]["message"], e
    assert "2 succeeded, 1 failed" in p.stdout, p.stdout
    assert "no_output" in p.stderr and lost in p.stderr, p.stderr


# ---------------------------------------------------------------- JSON that costs more than its text

def json_bomb(n=1500000):
    """n empty arrays in one: 3 bytes of text each, about 150 bytes each
    in json-c."""
    return "[" + ",".join(["[]"] * n) + "]"


def run_peak(hq, tmp_path, *args):
    p = subprocess.run(measured(tmp_path, *args), capture_output=True, env=hq.env,
                       stdin=subprocess.DEVNULL, timeout=60 * SCALE)
    p.stdout = p.stdout.decode("utf-8", "replace")
    p.stderr = p.stderr.decode("utf-8", "replace")
    check_no_crash(p)
    return p, peak_rss_mb(tmp_path)


def test_json_bombs_are_not_parsed(hq, tmp_path):
    """JSON anyone can write, where every command parses some: a job hash's
    response, a dead-list entry, a stream event, a worker registration.
    1.5 million empty arrays (4.5 MB of text) would cost json-c about 225
    MB; the CLI refuses to build that (the text is shown as text where it is
    shown at all), and stays far below."""
    bomb = json_bomb()
    hq.r.hset(hq.k("job", "jb"), mapping={"status": "succeeded", "response": bomb})
    hq.r.lpush(hq.k("dead"), '{"job":"{}","error":{"code":"c","message":"m"},"x":%s}' % bomb)
    hq.r.rpush(hq.k("events", "jb"), '{"seq":0,"type":"chunk","attempt":1,"data":%s}' % bomb,
               json.dumps({"seq": 1, "type": "done", "status": "succeeded"}))
    hq.r.hset(hq.k("workers"), "wb", bomb)
    runs = {
        "get": ("get", "jb"),
        "dead": ("dead",),
        "dead --json": ("dead", "--json"),
        "watch": ("watch", "jb", "--timeout", "20"),
        "stats": ("stats",),
    }
    peaks = {}
    for name, args in runs.items():
        p, peak = run_peak(hq, tmp_path, *args)
        if name == "watch":  # the response is no answer: a failure, said on one line
            one_line_error(p)
        else:
            assert p.returncode == 0, (name, p.stderr)
        peaks[name] = peak
    print("peak RSS, MB:", peaks)
    if "asan" not in BIN:
        for name, peak in peaks.items():
            assert peak < 80, "%s peaked at %.0f MB" % (name, peak)
    g = json.loads(hq.run("get", "jb").stdout)
    assert g["response"] == bomb  # shown as the text it is


# ---------------------------------------------------------------- replies of unexpected types

class FakeRedis:
    """A TCP server that speaks just enough RESP for chatq, answering each
    command with what `replies` maps its name to (raw RESP bytes, or a
    function of the argument list), "+OK" otherwise. A SUBSCRIBE is
    confirmed, then followed by `messages` (raw RESP)."""

    def __init__(self, replies, messages=b""):
        import socketserver
        import threading
        outer = self
        self.replies = replies
        self.messages = messages

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                while True:
                    args = outer.read_command(self.rfile)
                    if args is None:
                        return
                    name = args[0].upper()
                    if name == b"SUBSCRIBE":
                        self.wfile.write(b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n"
                                         % (len(args[1]), args[1]) + outer.messages)
                        continue
                    r = outer.replies.get(name.decode(), b"+OK\r\n")
                    self.wfile.write(r(args) if callable(r) else r)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def read_command(f):
        line = f.readline()
        if not line.startswith(b"*"):
            return None
        args = []
        for _ in range(int(line[1:])):
            n = int(f.readline()[1:])
            args.append(f.read(n + 2)[:-2])
        return args

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def bulk(s):
    s = s.encode() if isinstance(s, str) else s
    return b"$%d\r\n%s\r\n" % (len(s), s)


# Elements of every type but a bulk string, and strings of JSON that is fine.
ODD = [b":7\r\n", b"$-1\r\n", b"*-1\r\n", b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n", b"+status\r\n",
       b"-ERR an error inside\r\n", b"*0\r\n"]


def odd_array(*strings):
    items = ODD + [bulk(s) for s in strings]
    return b"*%d\r\n" % len(items) + b"".join(items)


def test_replies_of_unexpected_types(hq, tmp_path):
    """Integers, nils, nested arrays, status and error replies where bulk
    strings are expected, and numbers as strings: every command ends,
    without a crash, with its output or a one-line message."""
    entry = json.dumps({"job": json.dumps({"id": "d1", "body": {}}), "error": {
        "code": "invalid_job", "message": "m"}, "failed_at": 1})
    replies = {
        "HGETALL": odd_array("status", "succeeded", "t|m|requests", "5"),
        "HGET": b":1\r\n",
        "LRANGE": odd_array(json.dumps({"seq": 0, "type": "chunk"})),
        "LLEN": b":900\r\n",
        "EXISTS": bulk("1"),
        "SCAN": b"*2\r\n:0\r\n*2\r\n:1\r\n$-1\r\n",
        # more entries than asked for, of every type
        "EXEC": b"*2\r\n:900\r\n" + odd_array(*[entry] * 300),
        "EVAL": b":0\r\n",
    }
    fake = FakeRedis(replies, messages=b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n:5\r\n"
                                       b"*2\r\n$7\r\nmessage\r\n$1\r\nc\r\n"
                                       b":3\r\n$-1\r\n")
    try:
        env = {"CHATQ_REDIS_URL": "redis://127.0.0.1:%d/0" % fake.port}
        for args in (["get", "j1"], ["get", "j1", "--raw"], ["usage"], ["usage", "--json"],
                     ["stats"], ["stats", "--json"], ["dead"], ["dead", "--json"],
                     ["dead", "retry", "--all"], ["dead", "purge", "--all"],
                     ["watch", "j1", "--timeout", "3"], ["cancel", "j1"]):
            p = hq.run(*args, env=env, timeout=30)
            if p.returncode:
                one_line_error(p)
    finally:
        fake.close()


def test_watch_failure_message_is_one_line(hq):
    """A failed job's error code and message come from the final event or
    the job hash, which anyone can write: the failure is still one line."""
    jid = "j-fail"
    err = {"code": "up\nstream", "message": "first line\nsecond line\r\n\tthird " + ESC_TEXT}
    hq.r.rpush(hq.k("events", jid), json.dumps({"seq": 0, "type": "error", "status": "failed",
                                               "error": err}))
    p = hq.run("watch", jid, "--timeout", "10")
    msg = one_line_error(p)
    assert "first line" in msg and "third" in msg, msg
    # from the hash, when the final event has no error
    hq.r.delete(hq.k("events", jid))
    hq.r.rpush(hq.k("events", jid), json.dumps({"seq": 0, "type": "error",
                                               "status": "cancel\nled"}))
    hq.r.hset(hq.k("job", jid), mapping={"status": "failed", "error": json.dumps(err)})
    msg = one_line_error(hq.run("watch", jid, "--timeout", "10"))
    assert "second line" in msg, msg
