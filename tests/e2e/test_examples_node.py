"""test_examples_node.py — the Node.js client examples (examples/node/,
ioredis from npm) against a real chatqd, run with `node` as a user would.

Covered: ask.js streams an answer (and --no-stream); watch.js joining a job
half way prints the whole answer once; a retry after chunks were shown
starts the text over; wait.js through reply_to and by polling; cancel.js
ends a running job `cancelled`. `make deps` runs `npm ci` in examples/node."""

import json
import os
import shutil
import subprocess

import pytest

from conftest import REPO, SCALE, wait_for

EX = os.path.join(REPO, "examples", "node")
PIECES = ["n%02d " % i for i in range(12)]
FULL = "".join(PIECES)


@pytest.fixture(scope="module")
def node():
    exe = shutil.which("node")
    if not exe:
        pytest.fail("node is not installed (make deps)")
    if not os.path.isdir(os.path.join(EX, "node_modules", "ioredis")):
        pytest.fail("examples/node/node_modules is missing (make deps runs npm ci)")
    return exe


def script_env(cq, extra=None):
    env = dict(cq.env)
    env["CHATQ_MODEL"] = "mock-js"
    env.pop("CHATQ_EXTRA_BODY", None)
    env.update(extra or {})
    return env


def run(node, cq, name, *args, env=None, timeout=20):
    return subprocess.run([node, os.path.join(EX, name)] + list(args), env=script_env(cq, env),
                          capture_output=True, text=True, timeout=timeout * SCALE)


def start(node, cq, name, *args):
    return subprocess.Popen([node, os.path.join(EX, name)] + list(args), env=script_env(cq),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ask_streams_the_answer(node, cq, upstream):
    key = cq.mock_key("ask")
    p = run(node, cq, "ask.js", "hello from node",
            env={"CHATQ_EXTRA_BODY": json.dumps({"mock": {"key": key}})})
    assert p.returncode == 0, p.stderr
    assert p.stdout == "echo: hello from node\n"
    jid = p.stderr.splitlines()[0]
    assert jid.startswith("js-")
    h = cq.job(jid)
    assert h["status"] == "succeeded"
    assert h["response"]["choices"][0]["message"]["content"] == "echo: hello from node"
    req = upstream.requests(key)[0]
    assert req["stream"] is True and req["body"]["model"] == "mock-js"
    assert req["body"]["messages"] == [{"role": "user", "content": "hello from node"}]

    p = run(node, cq, "ask.js", "--no-stream", "plain")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "echo: plain\n"


def test_watch_joins_half_way_without_gap_or_repeat(node, cq):
    job = cq.mkjob(mock={"content": PIECES, "chunk_delay_ms": 60}, stream=True)
    cq.push(job)
    wait_for(lambda: cq.r.llen(cq.k("events", job["id"])) >= 4, 10, what="first events")
    early = start(node, cq, "watch.js", job["id"])
    assert cq.r.hget(cq.job_key(job["id"]), "status") == "running", "joined too late to test"
    p = run(node, cq, "watch.js", job["id"])
    out, err = early.communicate(timeout=20 * SCALE)
    assert early.returncode == 0 and p.returncode == 0, err + p.stderr
    assert out == FULL + "\n" and p.stdout == FULL + "\n"
    assert "job %s succeeded" % job["id"] in p.stderr


def test_retry_starts_the_text_over(node, cq):
    # Attempt 1 is cut (TCP reset) after three chunks; attempt 2 runs whole.
    job = cq.mkjob(mock={"content": PIECES, "chunk_delay_ms": 10, "fail_first": 1,
                         "fail": {"reset": "mid_stream", "reset_after": 4}}, stream=True)
    cq.push(job)
    p = run(node, cq, "watch.js", job["id"])
    assert p.returncode == 0, p.stderr
    # Live or replayed, the same: the start of attempt 1, a line end, then
    # the whole answer once.
    assert p.stdout == "".join(PIECES[:3]) + "\n" + FULL + "\n"
    assert "[attempt 1 failed (" in p.stderr and "starting over" in p.stderr
    assert cq.job(job["id"])["attempts"] == 2


def test_wait_by_reply_to_and_by_polling(node, cq):
    p = run(node, cq, "wait.js", "via reply_to")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "echo: via reply_to\n"
    jid = p.stderr.splitlines()[0]
    assert cq.job(jid)["status"] == "succeeded"
    assert not cq.r.exists(cq.prefix + "-examples:reply:" + jid), "reply list left behind"

    p = run(node, cq, "wait.js", "--poll", "via the hash")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "echo: via the hash\n"


def test_cancel_ends_a_running_job_cancelled(node, cq):
    job = cq.mkjob(mock={"content": ["c%02d " % i for i in range(100)], "chunk_delay_ms": 50},
                   stream=True)
    cq.push(job)
    watcher = start(node, cq, "watch.js", job["id"])
    wait_for(lambda: cq.r.llen(cq.k("events", job["id"])) >= 3, 10, what="a running stream")
    p = run(node, cq, "cancel.js", job["id"])
    assert p.returncode == 0 and p.stdout == "cancel requested for %s\n" % job["id"]
    out, err = watcher.communicate(timeout=10 * SCALE)
    assert watcher.returncode == 1, err
    assert "job %s cancelled" % job["id"] in err
    h = cq.wait_job_done(job["id"])
    assert h["status"] == "cancelled" and h["error"]["code"] == "cancelled"
    assert out.startswith("c00 c01 ") and len(out) < 400, "cancelled long before its end"
