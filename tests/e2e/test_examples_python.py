"""test_examples_python.py — the Python client examples (examples/python/)
against a real chatqd: the scripts as a user runs them, and the client
module where a test needs to look at what it did.

Covered: ask.py streams an answer; watch.py joining a job half way prints
the whole answer once (subscribe, then replay, skip seen seq); a retry
after chunks were shown starts the text over; wait.py through reply_to and
by polling; cancel.py ends a running job `cancelled`; batch.py runs 1,000
jobs with its progress bar, on a terminal and off one."""

import json
import os
import pty
import subprocess
import sys
import threading

import pytest

from conftest import REPO, SCALE, wait_for

EX = os.path.join(REPO, "examples", "python")
sys.path.insert(0, EX)
import chatq_client  # noqa: E402  (examples/python is not a package)

PIECES = ["p%02d " % i for i in range(12)]
FULL = "".join(PIECES)


def script_env(cq, extra=None):
    env = dict(cq.env)
    env["CHATQ_MODEL"] = "mock-py"
    env.pop("CHATQ_EXTRA_BODY", None)
    env.update(extra or {})
    return env


def run(cq, name, *args, env=None, timeout=20):
    return subprocess.run([sys.executable, os.path.join(EX, name)] + list(args),
                          env=script_env(cq, env), capture_output=True, text=True,
                          timeout=timeout * SCALE)


def start(cq, name, *args, env=None):
    return subprocess.Popen([sys.executable, os.path.join(EX, name)] + list(args),
                            env=script_env(cq, env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def client(cq):
    return chatq_client.Chatq(url=cq.redis_server.url, prefix=cq.prefix)


def test_ask_streams_the_answer(cq, upstream):
    key = cq.mock_key("ask")
    p = run(cq, "ask.py", "hello from python",
            env={"CHATQ_EXTRA_BODY": json.dumps({"mock": {"key": key}})})
    assert p.returncode == 0, p.stderr
    assert p.stdout == "echo: hello from python\n"
    jid = p.stderr.splitlines()[0]
    h = cq.job(jid)
    assert h["status"] == "succeeded"
    assert h["response"]["choices"][0]["message"]["content"] == "echo: hello from python"
    req = upstream.requests(key)[0]
    assert req["stream"] is True and req["body"]["model"] == "mock-py"
    assert req["body"]["messages"] == [{"role": "user", "content": "hello from python"}]

    p = run(cq, "ask.py", "--no-stream", "plain")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "echo: plain\n"


def test_watch_joins_half_way_without_gap_or_repeat(cq):
    # A paced stream; watch.py starts once part of it was published, so it
    # must take the start from P:events and the rest from the channel.
    job = cq.mkjob(mock={"content": PIECES, "chunk_delay_ms": 60}, stream=True)
    cq.push(job)
    wait_for(lambda: cq.r.llen(cq.k("events", job["id"])) >= 4, 10, what="first events")
    early = start(cq, "watch.py", job["id"])
    assert cq.r.hget(cq.job_key(job["id"]), "status") == "running", "joined too late to test"
    p = run(cq, "watch.py", job["id"])
    out, err = early.communicate(timeout=20 * SCALE)
    assert early.returncode == 0 and p.returncode == 0, err + p.stderr
    assert out == FULL + "\n" and p.stdout == FULL + "\n"
    assert "job %s succeeded" % job["id"] in p.stderr


def test_retry_starts_the_text_over(cq):
    # Attempt 1 is cut (TCP reset) after three chunks; attempt 2 runs whole.
    job = cq.mkjob(mock={"content": PIECES, "chunk_delay_ms": 10, "fail_first": 1,
                         "fail": {"reset": "mid_stream", "reset_after": 4}}, stream=True)
    c = client(cq)
    shown, retries = [], []
    cq.push(job)
    answer = c.follow_text(job["id"], on_text=shown.append,
                           on_retry=lambda ev: retries.append(len(shown)), timeout=20 * SCALE)
    assert answer.status == "succeeded" and answer.retries == 1, answer
    assert answer.text == FULL
    # What was shown before the retry was the start of attempt 1; after it,
    # the whole answer once.
    assert retries and "".join(shown[:retries[0]]) == "".join(PIECES[:3])
    assert "".join(shown[retries[0]:]) == FULL
    seqs = [e["seq"] for e in cq.events(job["id"])]
    assert seqs == list(range(len(seqs)))
    assert cq.job(job["id"])["attempts"] == 2

    # The script shows the same: the partial line ended, a note, the answer.
    p = run(cq, "watch.py", job["id"])
    assert p.returncode == 0
    assert p.stdout == "".join(PIECES[:3]) + "\n" + FULL + "\n"
    assert "starting over" in p.stderr


def test_wait_by_reply_to_and_by_polling(cq):
    p = run(cq, "wait.py", "via reply_to")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "echo: via reply_to\n"
    jid = p.stderr.splitlines()[0]
    assert cq.job(jid)["status"] == "succeeded"
    assert not cq.r.exists(cq.prefix + "-examples:reply:" + jid), "reply list left behind"

    p = run(cq, "wait.py", "--poll", "via the hash")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "echo: via the hash\n"


def test_cancel_ends_a_running_job_cancelled(cq):
    job = cq.mkjob(mock={"content": ["c%02d " % i for i in range(100)], "chunk_delay_ms": 50},
                   stream=True)
    cq.push(job)
    watcher = start(cq, "watch.py", job["id"])
    wait_for(lambda: cq.r.llen(cq.k("events", job["id"])) >= 3, 10, what="a running stream")
    p = run(cq, "cancel.py", job["id"])
    assert p.returncode == 0 and p.stdout == "cancel requested for %s\n" % job["id"]
    out, err = watcher.communicate(timeout=10 * SCALE)
    assert watcher.returncode == 1
    assert "job %s cancelled" % job["id"] in err
    h = cq.wait_job_done(job["id"])
    assert h["status"] == "cancelled" and h["error"]["code"] == "cancelled"
    assert out.startswith("c00 c01 ") and len(out) < 400, "cancelled long before its end"


def read_pty(fd, sink):
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:     # EIO: the other side is closed
            return
        if not data:
            return
        sink.append(data)


@pytest.mark.parametrize("tty", [False, True], ids=["log", "terminal"])
def test_batch_of_1000_with_progress_bar(cq, tty):
    env = script_env(cq, {"CHATQ_EXTRA_BODY": ""})
    argv = [sys.executable, os.path.join(EX, "batch.py"), "-n", "1000", "--tenant", "pybatch",
            "--idle", str(int(30 * SCALE))]
    if not tty:
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60 * SCALE)
        rc, out, err = p.returncode, p.stdout, p.stderr
        bars = [line for line in err.splitlines() if line.startswith("[")]
        # A line each time a tenth is passed (several may pass at once).
        assert 1 <= len(bars) <= 10, err
        counts = [int(b.split("]")[1].split("/")[0]) for b in bars]
        assert counts == sorted(counts), err
        assert bars[-1].startswith("[" + "#" * 30 + "] 1000/1000 100.0%  0 failed")
    else:
        # stderr on a pseudo-terminal: the bar redraws in place.
        master, slave = pty.openpty()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        chunks = []
        reader = threading.Thread(target=read_pty, args=(master, chunks))
        reader.start()
        out, _ = proc.communicate(timeout=60 * SCALE)
        reader.join(10)
        os.close(master)
        rc = proc.returncode
        err = b"".join(chunks).decode()
        text = err.replace("\r\n", "\n")
        frames = [f for f in text.split("\r") if f.startswith("[")]
        assert len(frames) >= 2 and "\n[" not in text, err
        assert frames[-1].startswith("[" + "#" * 30 + "] 1000/1000 100.0%  0 failed"), err
    assert rc == 0, err
    assert out.startswith("1000 jobs: 1000 succeeded, 0 failed, 21000 tokens"), out
    assert cq.usage()["pybatch|mock-py|succeeded"] == 1000
