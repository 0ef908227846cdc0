"""test_dead.py — `chatq dead`: the dead list P:dead listed (text and
--json), retried (by id, by number, --all --code) and purged (--older-than,
--code), against a real chatqd whose workers keep adding to the list.

Jobs fail for good on their first attempt with an HTTP 400 from the stand-in
upstream (never retried); with `fail_first` only that first attempt fails,
so a retried job then succeeds. The upstream counts attempts per mock key,
which is how "exactly one run" is checked."""

import json
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import BIN, now_ms, wait_for

FAIL_ONCE = {"fail_first": 1, "fail": {"status": 400, "message": "not now"}}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def ok(p):
    assert p.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout, p.stderr)
    return p


def failed(p):
    assert p.returncode == 1, "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout, p.stderr)
    err = p.stderr.strip()
    assert err.startswith("chatq: ") and "\n" not in err, "stderr should be one line: %r" % p.stderr
    return p


def fail_for_good(cq, jid, mock=None, queue="default", **fields):
    """Pushes a job that fails on its first attempt (HTTP 400) and waits for
    its dead entry; returns the raw text."""
    before = len(cq.dead())
    raw = cq.push(cq.mkjob(mock=mock or FAIL_ONCE, id=jid, **fields), queue)
    h = cq.wait_job_done(jid)
    assert h["status"] == "failed" and h["error"]["code"] == "upstream_error", h
    wait_for(lambda: len(cq.dead()) > before, 5, what="the dead entry of " + jid)
    return raw


def dead_json(cq, *args):
    return json.loads(ok(cq.cli("dead", "--json", *args)).stdout)


def runs(upstream, cq, jid):
    return len(upstream.requests(cq.mock_key(jid)))


def test_list_text_and_json(cq):
    fail_for_good(cq, "d-a")
    fail_for_good(cq, "d-b", mock={"status": 400, "message": "bad\nthings \x1b[31mred"})
    cq.push("this is {not json")
    wait_for(lambda: len(cq.dead()) == 3, 5, what="3 dead entries")

    entries = dead_json(cq)
    assert [e["index"] for e in entries] == [2, 1, 0]          # newest first, oldest is 0
    assert [e["id"] for e in entries] == [None, "d-b", "d-a"]
    assert entries[0]["job"] == "this is {not json"
    assert entries[0]["error"]["code"] == "invalid_job"
    assert entries[1]["error"]["code"] == "upstream_error"
    assert entries[1]["error"]["message"].startswith("HTTP 400")
    assert all(abs(e["failed_at"] - now_ms()) < 60000 for e in entries)
    assert dead_json(cq, "--limit", "1") == entries[:1]

    lines = ok(cq.cli("dead")).stdout.splitlines()
    assert lines[0].split() == ["INDEX", "ID", "CODE", "FAILED_AT", "MESSAGE"]
    rows = [l.split(None, 4) for l in lines[1:]]
    assert [r[:3] for r in rows] == [["2", "-", "invalid_job"], ["1", "d-b", "upstream_error"],
                                     ["0", "d-a", "upstream_error"]]
    assert all(ISO.match(r[3]) for r in rows)
    assert len(lines) == 4            # the message's line break became a space
    assert "HTTP 400: bad things" in lines[2]

    more = ok(cq.cli("dead", "--limit", "2")).stdout
    assert "the newest 2 of 3 entries" in more


def test_list_on_a_terminal_is_safe(cq):
    fail_for_good(cq, "d-tty", mock={"status": 400, "message": "a \x1b]0;pwned\x07 b"})
    # script(1) gives chatq a terminal for stdout
    env = dict(cq.env)
    p = subprocess.run(["script", "-qec", "%s dead" % os.path.join(BIN, "chatq"), "/dev/null"],
                       capture_output=True, env=env, timeout=20)
    assert p.returncode == 0, p
    out = p.stdout.decode("utf-8", "replace")
    assert "d-tty" in out and "\x1b" not in out and "^[]0;pwned^G" in out


def test_empty_list(cq):
    assert ok(cq.cli("dead")).stdout.strip() == "no dead jobs"
    assert dead_json(cq) == []


def test_retry_by_id_runs_again_afresh(start_chatqd, upstream):
    cq = start_chatqd(config={"queues": ["default", "other"]})
    fail_for_good(cq, "r-1", queue="other")
    assert runs(upstream, cq, "r-1") == 1
    # a cancel request the dead run left behind must not cancel the retry
    cq.r.set(cq.k("cancel", "r-1"), "1", ex=300)

    p = ok(cq.cli("dead", "retry", "r-1"))
    assert "retried r-1 (#0) onto queue other" in p.stdout   # the queue its hash named
    assert cq.dead() == []
    h = cq.wait_job_done("r-1")
    assert h["status"] == "succeeded", h
    assert h["attempts"] == 1 and h["queue"] == "other"
    assert runs(upstream, cq, "r-1") == 2
    ev = cq.events("r-1")
    assert [(e["seq"], e["type"]) for e in ev] == [(0, "done")]
    assert not cq.r.exists(cq.k("cancel", "r-1"))

    # gone now: a second retry fails with one line
    p = failed(cq.cli("dead", "retry", "r-1"))
    assert "no dead entry matches job r-1" in p.stderr


def test_retry_by_index_and_to_another_queue(cq, upstream):
    raw = fail_for_good(cq, "x-1")
    cq.push("not a job at all")
    wait_for(lambda: len(cq.dead()) == 2, 5, what="2 dead entries")
    # the entry without an id cannot be named by id; by number it can
    p = ok(cq.cli("dead", "retry", "--index", "0", "--queue", "elsewhere"))
    assert "retried x-1 (#0) onto queue elsewhere" in p.stdout
    assert cq.r.lrange(cq.queue_key("elsewhere"), 0, -1) == [raw]
    assert cq.r.hget(cq.job_key("x-1"), "status") == "queued"
    p = ok(cq.cli("dead", "retry", "--index", "0"))
    assert "retried #0 onto queue default" in p.stdout
    wait_for(lambda: len(cq.dead()) == 1, 5, what="the non-job to fail again")
    assert cq.dead()[0]["job"] == "not a job at all"
    failed(cq.cli("dead", "retry", "--index", "7"))


def test_retry_all_with_code(cq, upstream):
    for i in range(3):
        fail_for_good(cq, "up-%d" % i)
    # a different code, that must stay: an invalid job
    cq.push(json.dumps({"id": "inv-1", "body": {"model": "mock-1", "messages": []}}))
    wait_for(lambda: len(cq.dead()) == 4, 5, what="4 dead entries")

    p = ok(cq.cli("dead", "retry", "--all", "--code", "upstream_error"))
    assert p.stdout.splitlines()[-1] == "retried 3, skipped 0"
    for i in range(3):
        h = cq.wait_job_done("up-%d" % i)
        assert h["status"] == "succeeded" and h["attempts"] == 1
        assert runs(upstream, cq, "up-%d" % i) == 2
    left = cq.dead()
    assert [d["error"]["code"] for d in left] == ["invalid_job"]


def test_concurrent_retries_of_one_entry_run_it_once(cq, upstream):
    ids = ["c-%d" % i for i in range(6)]
    for jid in ids:
        fail_for_good(cq, jid)
    argv = [os.path.join(BIN, "chatq"), "dead", "retry"]
    for jid in ids:
        procs = [subprocess.Popen(argv + [jid], env=cq.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        rcs = [p.wait(20) for p in procs]
        assert sorted(rcs) == [0, 1], rcs
        for p in procs:
            p.stdout.close()
            p.stderr.close()
    for jid in ids:
        h = cq.wait_job_done(jid)
        assert h["status"] == "succeeded", h
    assert cq.dead() == []
    assert [runs(upstream, cq, jid) for jid in ids] == [2] * len(ids)   # one run each
    assert cq.r.llen(cq.queue_key()) == 0


def test_same_id_twice_is_queued_once(cq, upstream):
    # the same text failed twice (pushed again once the first result had
    # expired): one retry, the other entry stays
    job = cq.mkjob(mock={"fail_first": 2, "fail": {"status": 400}}, id="twice")
    fail_for_good(cq, "twice", mock=job["body"]["mock"])
    cq.r.delete(cq.job_key("twice"), cq.k("events", "twice"))   # as result_ttl_s does
    fail_for_good(cq, "twice", mock=job["body"]["mock"])
    assert len(cq.dead()) == 2
    p = ok(cq.cli("dead", "retry", "--all"))
    assert "retried twice (#1)" in p.stdout
    assert "skipped twice (#0): job twice is queued already" in p.stdout
    h = cq.wait_job_done("twice")
    assert h["status"] == "succeeded"
    assert runs(upstream, cq, "twice") == 3
    assert len(cq.dead()) == 1


@pytest.mark.parametrize("status", ["retried", "gone", "queue_not_list", "succeeded"])
def test_retry_reads_a_hash_status_as_a_status(cq, upstream, status):
    """A job hash's status is told apart from DEAD_RETRY's own answers: a
    hash saying "retried" (anyone can write one) is a status that refuses
    the retry, not a retry done."""
    jid = "st-" + status
    fail_for_good(cq, jid)
    cq.r.hset(cq.job_key(jid), "status", status)
    p = failed(cq.cli("dead", "retry", jid))
    said = "skipped %s (#0): job %s ran again after this failure and its hash says %s" % (
        jid, jid, status)
    assert said in p.stdout, p.stdout
    assert len(cq.dead()) == 1
    assert cq.r.llen(cq.queue_key()) == 0


def test_retry_leaves_an_id_that_lives_again(cq, upstream):
    fail_for_good(cq, "alive")
    # once the result expired, the producer pushed the id again: it is running
    cq.r.delete(cq.job_key("alive"), cq.k("events", "alive"))
    cq.push(cq.mkjob(id="alive", mock={"key": cq.mock_key("alive2"), "delay_ms": 1500}))
    cq.wait_status("alive", "running")
    p = failed(cq.cli("dead", "retry", "alive"))
    assert "skipped alive (#0): job alive is running" in p.stdout
    assert len(cq.dead()) == 1
    h = cq.wait_job_done("alive")
    assert h["status"] == "succeeded"
    p = failed(cq.cli("dead", "retry", "alive"))
    assert "its hash says succeeded" in p.stdout
    assert len(cq.dead()) == 1 and runs(upstream, cq, "alive") == 1


def test_oversized_entry_is_not_retried(start_chatqd):
    cq = start_chatqd(config={"max_job_bytes": 4096})
    job = cq.mkjob(id="huge", messages=[{"role": "user", "content": "x" * 8000}])
    raw = cq.push(job)
    wait_for(lambda: cq.dead(), 5, what="the dead entry")
    d = cq.dead()[0]
    assert d["job_bytes"] == len(raw)
    assert dead_json(cq)[0]["id"] == "huge"
    p = failed(cq.cli("dead", "retry", "huge"))
    assert "skipped huge (#0): the job was too large (%d bytes)" % len(raw) in p.stdout
    assert "cannot be retried" in p.stdout
    assert "not retried" in p.stderr
    p = ok(cq.cli("dead", "retry", "--all"))
    assert "retried 0, skipped 1" in p.stdout
    assert len(cq.dead()) == 1 and cq.r.llen(cq.queue_key()) == 0
    assert "purged 1 entry" in ok(cq.cli("dead", "purge", "--index", "0")).stdout
    assert cq.dead() == []


def entry(jid, code, failed_at, message="old"):
    job = {"id": jid, "body": {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}}
    return json.dumps({"job": json.dumps(job), "error": {"code": code, "message": message,
                       "status": 0, "upstream": None}, "failed_at": failed_at})


def test_purge_older_than_and_code(cq):
    day = 86400 * 1000
    cq.r.lpush(cq.k("dead"), entry("old-1", "timeout", now_ms() - 9 * day),
               entry("old-2", "upstream_error", now_ms() - 8 * day))
    fail_for_good(cq, "new-1")
    p = cq.cli("dead", "purge")           # everything needs --all
    assert p.returncode == 2 and "--all" in p.stderr
    assert len(cq.dead()) == 3
    assert ok(cq.cli("dead", "purge", "--older-than", "7d", "--code", "timeout")).stdout \
        == "purged 1 entry\n"
    assert [d["error"]["code"] for d in cq.dead()] == ["upstream_error", "upstream_error"]
    assert ok(cq.cli("dead", "purge", "--older-than", "7d")).stdout == "purged 1 entry\n"
    assert [json.loads(d["job"])["id"] for d in cq.dead()] == ["new-1"]
    assert ok(cq.cli("dead", "purge", "--older-than", "12h")).stdout == "purged 0 entries\n"
    assert ok(cq.cli("dead", "purge", "--all")).stdout == "purged 1 entry\n"
    assert cq.dead() == []
    p = cq.cli("dead", "purge", "--older-than", "7")
    assert p.returncode == 2 and "--older-than" in p.stderr


def test_purge_and_retry_while_workers_add_entries(cq, upstream):
    """600 old entries (several pages) are purged, then 300 retried, while
    the workers LPUSH new failures all along: every old entry is acted on
    once, and no new one is touched."""
    old = now_ms() - 30 * 86400 * 1000
    key = cq.k("dead")

    def seed(n, tag, code):
        pipe = cq.r.pipeline()
        for i in range(n):
            pipe.lpush(key, entry("%s-%d" % (tag, i), code, old + i))
        pipe.execute()

    def while_feeding(tag, *args):
        """Runs `chatq dead ARGS` while a thread pushes failing jobs, and
        entries straight onto P:dead as a worker does (those land at once,
        while the CLI reads); returns (the CLI's result, the number of new
        entries to expect)."""
        stop, pushed = threading.Event(), [0]

        def feed():
            r = cq.redis_server.client()
            while not stop.is_set() or pushed[0] < 20:
                jid = "%s-%d" % (tag, pushed[0])
                r.lpush(cq.queue_key(), json.dumps(cq.mkjob(id=jid, mock={"status": 400})))
                r.lpush(key, entry(jid + "-direct", "upstream_error", now_ms()))
                pushed[0] += 1
                time.sleep(0.001)
            r.close()
        t = threading.Thread(target=feed)
        t.start()
        try:
            p = ok(cq.cli("dead", *args))
        finally:
            stop.set()
            t.join()
        return p, 2 * pushed[0]

    seed(600, "old", "timeout")
    p, n1 = while_feeding("new", "purge", "--code", "timeout")
    assert p.stdout == "purged 600 entries\n"
    wait_for(lambda: cq.r.llen(key) == n1, 10, what="%d new failures" % n1)
    assert {d["error"]["code"] for d in cq.dead()} == {"upstream_error"}

    # retry: these old entries are jobs that now succeed
    seed(300, "back", "rate_limited")
    p, n2 = while_feeding("more", "retry", "--all", "--code", "rate_limited")
    assert p.stdout.splitlines()[-1] == "retried 300, skipped 0"
    wait_for(lambda: cq.r.llen(key) == n1 + n2, 10, what="%d more new failures" % n2)
    assert {d["error"]["code"] for d in cq.dead()} == {"upstream_error"}
    for i in range(300):
        assert cq.wait_job_done("back-%d" % i)["status"] == "succeeded"


def test_bad_command_lines(cq):
    for args in (["retry"], ["retry", "--all", "x-1"], ["retry", "bad id"], ["list"],
                 ["--limit", "-1"], ["retry", "--all", "--queue", "a b"], ["purge", "--code", ""]):
        p = cq.cli("dead", *args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("chatq: dead: ")
    assert "chatq dead retry" in ok(cq.cli("dead", "retry", "--help")).stdout
    assert "dead" in ok(cq.cli("--help")).stdout
