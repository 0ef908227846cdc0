"""test_examples_web.py — the streaming page (examples/web/) against a real
chatqd: the bridge's Server-Sent Events read directly, then the page in
headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core
from npm through examples/web/test/browser.js).

The stand-in upstream paces the answer (the bridge's CHATQ_EXTRA_BODY gives
every job a `mock` with `chunk_delay_ms`), so that there is time to look at
the page mid-stream and to reload it. Nothing sleeps for a fixed time."""

import http.client
import json
import os
import shutil
import subprocess
import urllib.parse

import pytest

from conftest import REPO, SCALE, free_port, stop_process, tail, wait_for

WEB = os.path.join(REPO, "examples", "web")
CHROMIUM = "/usr/bin/chromium"
WORDS = ["w%02d " % i for i in range(40)]
FULL = "".join(WORDS)


@pytest.fixture(scope="module")
def node():
    exe = shutil.which("node")
    if not exe:
        pytest.fail("node is not installed (make deps)")
    for mod in ("ioredis", "playwright-core"):
        if not os.path.isdir(os.path.join(WEB, "node_modules", mod)):
            pytest.fail("examples/web/node_modules/%s is missing (make deps runs npm ci)" % mod)
    return exe


class Bridge:
    """A running examples/web/server.js and a small HTTP client for it."""

    def __init__(self, node, cq, workdir, extra_body):
        self.port = free_port()
        self.log_path = os.path.join(workdir, "bridge.log")
        env = dict(cq.env)
        env.update({"PORT": str(self.port), "CHATQ_MODEL": "mock-web",
                    "CHATQ_EXTRA_BODY": json.dumps(extra_body)})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([node, os.path.join(WEB, "server.js")], env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
        self.url = "http://127.0.0.1:%d/" % self.port
        wait_for(self.up, 10, what="the bridge to answer")

    def up(self):
        if self.proc.poll() is not None:
            raise AssertionError("bridge exited: " + tail(self.log_path))
        try:
            return self.request("GET", "/")[0] == 200
        except OSError:
            return False

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10 * SCALE)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def submit(self, prompt):
        status, data = self.request("POST", "/api/jobs", json.dumps({"prompt": prompt}),
                                    {"Content-Type": "application/json"})
        assert status == 201, data
        return json.loads(data)["id"]

    def events(self, jid, last_id=None, query=None, stop_after=None):
        """Reads the SSE stream: (HTTP status, [(sse id, event)]), to the
        end of the stream or until an event with seq stop_after."""
        path = "/api/jobs/%s/events" % jid
        if query is not None:
            path += "?" + urllib.parse.urlencode({"lastEventId": query})
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = str(last_id)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10 * SCALE)
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            if r.status != 200:
                return r.status, []
            assert r.getheader("Content-Type").startswith("text/event-stream")
            out, sse_id, data = [], None, []
            while True:
                line = r.readline()
                if not line:
                    return 200, out         # the bridge ended the stream
                line = line.decode().rstrip("\n")
                if line.startswith("id: "):
                    sse_id = int(line[4:])
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and data:
                    ev = json.loads("\n".join(data))
                    out.append((sse_id, ev))
                    sse_id, data = None, []
                    if stop_after is not None and ev.get("seq") == stop_after:
                        return 200, out
        finally:
            conn.close()

    def stop(self):
        stop_process(self.proc)


@pytest.fixture
def bridge(node, cq, tmp_path):
    made = []

    def start(extra_body):
        b = Bridge(node, cq, str(tmp_path), extra_body)
        made.append(b)
        return b
    yield start
    for b in made:
        b.stop()


def text_of(events):
    """The answer the events spell (content of choice 0; a retry drops it)."""
    text = ""
    for _, ev in events:
        if ev["type"] == "retry":
            text = ""
        elif ev["type"] == "chunk":
            for c in ev["data"].get("choices", []):
                text += (c.get("delta") or {}).get("content") or ""
    return text


def test_bridge_sse_resumes_from_last_event_id(bridge, cq):
    b = bridge({"mock": {"content": WORDS[:10], "chunk_delay_ms": 60}})
    jid = b.submit("hello bridge")

    # Read the first events, drop the connection mid-stream, come back with
    # the last id seen: the rest follows, nothing twice, nothing missing.
    status, first = b.events(jid, stop_after=3)
    assert status == 200 and [i for i, _ in first] == [0, 1, 2, 3]
    assert cq.r.hget(cq.job_key(jid), "status") == "running", "ended before the resume"
    status, rest = b.events(jid, last_id=3)
    assert status == 200
    seqs = [i for i, _ in first + rest]
    assert seqs == list(range(len(seqs))), seqs
    assert all(i == ev["seq"] for i, ev in first + rest), "SSE id is the event's seq"
    assert rest[-1][1]["type"] == "done" and rest[-1][1]["status"] == "succeeded"
    full = first + rest
    assert text_of(full) == "".join(WORDS[:10])

    # From the start (no id), from a page's ?lastEventId=, and the header
    # winning over the query (an EventSource reconnecting to such a URL).
    assert b.events(jid) == (200, full)
    assert b.events(jid, query=5) == (200, full[6:])
    assert b.events(jid, last_id=7, query=2) == (200, full[8:])
    # The client has the final event: 204, which stops an EventSource.
    assert b.events(jid, last_id=full[-1][0]) == (204, [])

    assert b.request("POST", "/api/jobs", b"{}")[0] == 400
    assert b.request("GET", "/api/jobs/bad%20id/events")[0] == 400
    status, data = b.request("GET", "/api/jobs/" + jid)
    assert status == 200 and json.loads(data) == {"id": jid, "status": "succeeded", "error": None}


def test_page_streams_survives_reload_and_cancels(bridge, cq, upstream, node, tmp_path):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("%s is not installed (make deps installs Debian's chromium)" % CHROMIUM)
    key = cq.mock_key("web")
    # Upstream requests 1, 2, 3 with this key: the first job runs whole; the
    # second job's first attempt is cut after one word (a TCP reset), so the
    # page has to drop what it showed on the retry event; its second attempt
    # is cancelled from the page.
    b = bridge({"mock": {"key": key, "content": WORDS, "chunk_delay_ms": 60,
                         "script": [{}, {"reset": "mid_stream", "reset_after": 2}, {}]}})
    prompt = "What do you see, Chromium?"
    env = dict(os.environ)
    env.update({"BRIDGE_URL": b.url, "PROMPT": prompt, "WAIT_FOR": "w03",
                "STEP_TIMEOUT_MS": str(int(15000 * SCALE)),
                "SCREENSHOT": str(tmp_path / "page.png")})
    p = subprocess.run([node, os.path.join(WEB, "test", "browser.js")], env=env,
                       capture_output=True, text=True, timeout=90 * SCALE)
    assert p.returncode == 0, p.stderr + "\nbridge log:\n" + tail(b.log_path)
    seen = json.loads(p.stdout)

    # Tokens showed while it streamed: part of the answer, not all of it.
    before, after, final = seen["before_reload"], seen["after_reload"], seen["final"]
    assert before["status"] == "streaming"
    assert FULL.startswith(before["text"]) and "w03" in before["text"] and before["text"] != FULL
    # The reload came mid-stream and the page went on from what it had.
    assert after["job"] == before["job"] and after["status"] == "streaming"
    assert after["text"].startswith(before["text"]) and after["text"] != FULL
    # No token lost or shown twice.
    assert final == {"status": "succeeded", "text": FULL, "job": before["job"]}
    h = cq.job(before["job"])
    assert h["status"] == "succeeded" and h["attempts"] == 1
    assert h["response"]["choices"][0]["message"]["content"] == FULL
    asked = upstream.requests(key)[0]["body"]["messages"]
    assert asked == [{"role": "user", "content": prompt}]

    # A retry, then Cancel: the page shows the second attempt's words only
    # (not "w00 w00 ..."), and says cancelled, as does the job hash.
    cb, cf = seen["cancel_before"], seen["cancel_final"]
    assert cb["job"] != before["job"] and cb["status"] == "streaming"
    assert FULL.startswith(cb["text"]) and "w01" in cb["text"]
    assert cf["status"] == "cancelled" and FULL.startswith(cf["text"]) and cf["text"] != FULL
    h = cq.wait_job_done(cf["job"])
    assert h["status"] == "cancelled" and h["error"]["code"] == "cancelled"
    assert h["attempts"] == 2
