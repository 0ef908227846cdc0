"""test_metrics.py — chatqd --metrics, scraped by a real Prometheus.

A chatqd serves /metrics on a free loopback port; a Prometheus (Debian's
/usr/bin/prometheus, installed by scripts/deps.sh) scrapes it every second
with its storage in a temp dir. The test runs jobs of every kind
(succeeded, failed, streamed, retried, a duplicate), then asks Prometheus'
HTTP API (/api/v1/query) for the counters and compares them with what it
ran; it kills a worker and checks that the restart is counted by cause and
that no counter went back. `promtool check metrics` must find nothing to
say about a scrape. The other tests need no Prometheus: the endpoint's
answers, the config key, and a taken address failing the start."""

import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import BIN, SCALE, free_port, stop_process, tail, wait_for

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


def http_get(url, timeout=5):
    """(status, headers, body text) of a GET, HTTP errors included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


class Prometheus:
    """A Prometheus scraping one target every second, for one test."""

    def __init__(self, workdir, target):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log = os.path.join(workdir, "prometheus.log")
        conf = os.path.join(workdir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: chatq\n    static_configs:\n"
                    "      - targets: ['%s']\n" % target)
        with open(self.log, "wb") as lf:
            self.proc = subprocess.Popen(
                [PROMETHEUS, "--config.file=" + conf,
                 "--storage.tsdb.path=" + os.path.join(workdir, "tsdb"),
                 "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
                stdout=lf, stderr=subprocess.STDOUT, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited: " + tail(self.log, 30))
            try:
                return http_get(self.url + "/-/ready", 1)[0] == 200
            except OSError:
                return False
        wait_for(ready, 30, what="prometheus to be ready")

    def query(self, q):
        """The instant vector of q as {frozenset(labels): value}."""
        status, _, body = http_get(self.url + "/api/v1/query?" +
                                   urllib.parse.urlencode({"query": q}))
        assert status == 200, body
        data = json.loads(body)["data"]
        assert data["resultType"] == "vector", data
        out = {}
        for r in data["result"]:
            labels = {k: v for k, v in r["metric"].items() if k not in ("job", "instance")}
            out[frozenset(labels.items())] = float(r["value"][1])
        return out

    def value(self, q):
        """The one value of q (0 when it has none)."""
        v = self.query(q)
        assert len(v) <= 1, v
        return next(iter(v.values()), 0.0)

    def wait(self, expected, timeout=20):
        """Waits until every query in `expected` has its value."""
        got = {}

        def all_there():
            for q, want in expected.items():
                got[q] = self.value(q)
            return all(got[q] == want for q, want in expected.items())
        try:
            wait_for(all_there, timeout, interval=0.25, what="prometheus to see the counts")
        except AssertionError:
            raise AssertionError("expected %s, prometheus has %s" % (expected, got))

    def stop(self):
        stop_process(self.proc)


def metrics_chatqd(start_chatqd, **kw):
    port = free_port()
    cq = start_chatqd(extra_args=["--metrics", "127.0.0.1:%d" % port], **kw)
    cq.metrics_addr = "127.0.0.1:%d" % port
    cq.metrics_url = "http://%s/metrics" % cq.metrics_addr

    def up():
        cq.check_alive()
        try:
            return http_get(cq.metrics_url, 1)[0] == 200
        except OSError:
            return False
    wait_for(up, 10, what="chatqd to serve /metrics")
    return cq


def scrape(cq):
    status, headers, body = http_get(cq.metrics_url)
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return body


def test_prometheus_scrapes_what_ran(start_chatqd, tmp_path):
    if not (os.access(PROMETHEUS, os.X_OK) and os.access(PROMTOOL, os.X_OK)):
        pytest.fail("prometheus is not installed (make deps)")
    cq = metrics_chatqd(start_chatqd, workers=2, concurrency=8)
    prom = Prometheus(str(tmp_path), cq.metrics_addr)
    try:
        jobs = []
        for _ in range(5):
            jobs.append(cq.mkjob(tenant="acme"))
        for _ in range(2):
            jobs.append(cq.mkjob(tenant="beta", stream=True, mock={"content": ["a", "b", "c"]}))
        for _ in range(2):
            jobs.append(cq.mkjob(tenant="acme", mock={"status": 400}))
        jobs.append(cq.mkjob(tenant="beta", mock={"fail_first": 1}))  # 500, then a success
        for j in jobs:
            cq.push(j)
        results = {j["id"]: cq.wait_job_done(j["id"]) for j in jobs}
        assert sorted(r["status"] for r in results.values()) == ["failed"] * 2 + ["succeeded"] * 8
        cq.run(dict(jobs[0]))  # the same id again: a duplicate, dropped
        wait_for(lambda: cq.r.llen(cq.queue_key()) == 0, 10, what="the duplicate to be taken")

        fin = 'chatq_jobs_finished_total{status="%s",code="%s"}'
        expected = {
            'sum(chatq_jobs_started_total{queue="default"})': 11,
            fin % ("succeeded", ""): 8,
            fin % ("failed", "upstream_error"): 2,
            'sum(chatq_jobs_duplicate_total)': 1,
            'sum(chatq_upstream_attempts_total{provider="default"})': 11,
            'chatq_retries_total{code="upstream_error"}': 1,
            'chatq_upstream_duration_seconds_count{provider="default"}': 11,
            # a first token: the 8 successful attempts (an error answer has none)
            'chatq_time_to_first_token_seconds_count{provider="default"}': 8,
            'chatq_time_to_first_token_seconds_bucket{provider="default",le="+Inf"}': 8,
            'chatq_tokens_total{tenant="acme",model="mock-1",kind="prompt"}': 5 * 9,
            'chatq_tokens_total{tenant="acme",model="mock-1",kind="completion"}': 5 * 12,
            'chatq_tokens_total{tenant="beta",model="mock-1",kind="completion"}': 3 * 12,
            'chatq_jobs_in_flight': 0,
            'chatq_worker_processes': 2,
            'chatq_queue_length{queue="default"}': 0,
            'chatq_dead_jobs': 2,
            'up': 1,
        }
        prom.wait(expected)
        # histograms are cumulative and end in +Inf
        buckets = prom.query('chatq_upstream_duration_seconds_bucket{provider="default"}')
        les = sorted((float(dict(k)["le"]), v) for k, v in buckets.items())
        assert les[0][0] == 0.05 and les[-1] == (float("inf"), 11)
        assert all(a[1] <= b[1] for a, b in zip(les, les[1:]))
        assert prom.value('chatq_time_to_first_token_seconds_sum{provider="default"}') < 8 * 5

        # promtool finds nothing to say about a scrape
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape(cq),
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stdout + r.stderr

        # a worker killed: its restart is counted, and no counter goes back
        victim = cq.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in cq.worker_pids() and len(cq.worker_pids()) == 2, 10,
                 what="the worker to be replaced")
        expected['chatq_worker_restarts_total{cause="killed"}'] = 1
        prom.wait(expected)
        for q in ('sum(resets(chatq_jobs_started_total[1m]))',
                  'sum(resets(chatq_jobs_finished_total[1m]))',
                  'sum(resets(chatq_tokens_total[1m]))'):
            assert prom.value(q) == 0, q
        # the replacement's jobs add on
        more = [cq.mkjob(tenant="acme") for _ in range(3)]
        for j in more:
            cq.run(j)
        for q in (fin % ("succeeded", ""), 'sum(chatq_jobs_started_total{queue="default"})',
                  'sum(chatq_upstream_attempts_total{provider="default"})',
                  'chatq_upstream_duration_seconds_count{provider="default"}',
                  'chatq_time_to_first_token_seconds_count{provider="default"}',
                  'chatq_time_to_first_token_seconds_bucket{provider="default",le="+Inf"}'):
            expected[q] += 3
        expected['chatq_tokens_total{tenant="acme",model="mock-1",kind="prompt"}'] += 3 * 9
        expected['chatq_tokens_total{tenant="acme",model="mock-1",kind="completion"}'] += 3 * 12
        prom.wait(expected)
    finally:
        prom.stop()


def test_endpoint_answers(start_chatqd):
    cq = metrics_chatqd(start_chatqd, workers=1)
    text = scrape(cq)
    assert "# TYPE chatq_worker_restarts_total counter\n" in text
    assert 'chatq_worker_restarts_total{cause="fault"} 0\n' in text
    assert "chatq_build_info{version=" in text
    status, _, body = http_get("http://%s/" % cq.metrics_addr)
    assert status == 404 and "/metrics" in body
    req = urllib.request.Request(cq.metrics_url, data=b"x", method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("POST was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 405 and e.headers["Allow"] == "GET, HEAD"
    # the listening socket is chatqd's alone: no worker inherits it (once
    # it runs chatq-worker: between fork and exec a child holds them all)
    port = cq.metrics_addr.rsplit(":", 1)[1]

    def exe(pid):
        try:
            return os.readlink("/proc/%d/exe" % pid)
        except OSError:
            return ""
    pids = wait_for(lambda: (lambda ps: ps if ps and all(exe(p).endswith("/chatq-worker")
                                                        for p in ps) else None)(cq.worker_pids()),
                    10, what="the worker to run chatq-worker")
    for pid in pids:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = target[8:-1]
                with open("/proc/net/tcp") as f:
                    listening = [l.split() for l in f if l.split()[3:4] == ["0A"]]
                assert all(l[9] != inode for l in listening), (pid, fd, port)


def test_off_by_default_and_the_config_key(start_chatqd, tmp_path):
    env = dict(os.environ, CHATQ_CONFIG="")
    conf = tmp_path / "c.json"
    conf.write_text("{}")
    r = subprocess.run([os.path.join(BIN, "chatqd"), "--config", str(conf), "--check-config"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout)["metrics"] is None
    conf.write_text('{"metrics": "[::1]:9464"}')
    r = subprocess.run([os.path.join(BIN, "chatqd"), "--config", str(conf), "--check-config"],
                       capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout)["metrics"] == "[::1]:9464"
    # the flag wins; "" turns it off
    r = subprocess.run([os.path.join(BIN, "chatqd"), "--config", str(conf), "--metrics", "",
                        "--check-config"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout)["metrics"] is None
    for bad in ("9464", "localhost", "127.0.0.1:0", "127.0.0.1:70000", "::1:9464", ":9464"):
        conf.write_text(json.dumps({"metrics": bad}))
        r = subprocess.run([os.path.join(BIN, "chatqd"), "--config", str(conf), "--check-config"],
                           capture_output=True, text=True, env=env, timeout=30)
        assert r.returncode == 1 and "metrics must be \"HOST:PORT\"" in r.stderr, (bad, r.stderr)


def test_address_taken_fails_the_start(start_chatqd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        cq = start_chatqd(extra_args=["--metrics", "127.0.0.1:%d" % port])
        cq.expect_exit = True
        rc = cq.proc.wait(10 * SCALE)
        assert rc == 1
        log = cq.log()
        assert ("chatqd: metrics: cannot listen on 127.0.0.1:%d: Address already in use" % port
                in log), log
        assert "worker_started" not in log  # before any worker ran
