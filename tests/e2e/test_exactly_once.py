"""test_exactly_once.py — one id, one result (docs/protocol.md §6), and the
scripts that store it cannot be broken half way by what a job or an upstream
carries (issue 8), nor does a kill from outside use up a job's attempts
(§8).

Each test pushes jobs to a real chatqd and reads what Redis holds after."""

import json
import os
import signal

from conftest import wait_for
from test_faults import pids_talking_to


def content_of(h):
    return h["response"]["choices"][0]["message"]["content"]


def settle(cq, upstream):
    """Waits until every request of this test's jobs has ended upstream, so
    that a second run (if there were one) would have been counted."""
    wait_for(lambda: all(r["t_end"] for r in upstream.requests(prefix=cq.prefix + ":")), 10,
             what="upstream idle")


# ------------------------------------------------------------ duplicates

def test_same_text_pushed_twice_runs_once(cq, upstream):
    """A producer that retries its LPUSH: the second copy is a duplicate."""
    R = cq.prefix + "-replies"
    job = cq.mkjob(reply_to=R, tenant="t", mock={"delay_ms": 300})
    raw = cq.push(job)
    cq.push(raw)
    assert cq.wait_job_done(job["id"])["status"] == "succeeded"
    # both copies were taken (the queue is empty) and only one ran
    wait_for(lambda: cq.r.llen(cq.queue_key()) == 0, 10, what="both copies taken")
    wait_for(lambda: not any(cq.r.lrange(k, 0, -1) for k in cq.r.keys(cq.k("processing", "*"))),
             10, what="processing lists empty")
    settle(cq, upstream)
    assert len(upstream.requests(cq.mock_key(job["id"]))) == 1
    assert len(cq.replies(R)) == 1
    u = cq.usage()
    assert u.get("t|mock-1|requests") == 1 and u.get("t|mock-1|succeeded") == 1
    ev = cq.events(job["id"])
    assert [e["seq"] for e in ev] == list(range(len(ev)))
    assert [e["type"] for e in ev].count("done") == 1
    assert "job_duplicate" in cq.log()


def test_other_text_with_a_running_id_is_a_duplicate(cq, upstream):
    """Two different texts with one id: the first runs, the second writes
    nothing, neither its own result nor attempts nor events."""
    R = cq.prefix + "-replies"
    first = cq.mkjob(id="same", reply_to=R, mock={"delay_ms": 500, "content": ["first"]})
    second = cq.mkjob(id="same", reply_to=R, mock={"content": ["second"]},
                      metadata={"copy": 2})
    cq.push(first)
    wait_for(lambda: cq.r.hget(cq.job_key("same"), "status") == "running", 10,
             what="the first copy running")
    cq.push(second)
    h = cq.wait_job_done("same")
    assert h["status"] == "succeeded" and content_of(h) == "first"
    wait_for(lambda: cq.r.llen(cq.queue_key()) == 0, 10, what="the second copy taken")
    settle(cq, upstream)
    assert len(upstream.requests(cq.mock_key("same"))) == 1
    assert cq.job("same").get("metadata") is None
    assert cq.job("same")["attempts"] == 1
    assert len(cq.replies(R)) == 1
    assert cq.usage().get("|mock-1|requests") == 1


def test_id_with_a_stored_result_is_a_duplicate(cq, upstream):
    job = cq.mkjob(mock={"content": ["one"]})
    assert cq.run(job)["status"] == "succeeded"
    again = cq.mkjob(id=job["id"], mock={"content": ["two"]})
    cq.push(again)
    wait_for(lambda: "job_duplicate" in cq.log(), 10, what="the duplicate logged")
    assert content_of(cq.job(job["id"])) == "one"
    assert len([e for e in cq.events(job["id"]) if e["type"] == "done"]) == 1
    assert cq.usage().get("|mock-1|requests") == 1
    assert cq.dead() == []


def test_invalid_copy_of_a_stored_id_writes_nothing(cq, upstream):
    """An invalid job whose id already has a result does not overwrite it."""
    job = cq.mkjob()
    assert cq.run(job)["status"] == "succeeded"
    cq.push({"id": job["id"], "body": {"model": "mock-1", "messages": []}})
    wait_for(lambda: "job_duplicate" in cq.log(), 10, what="the duplicate logged")
    assert cq.job(job["id"])["status"] == "succeeded"
    assert cq.dead() == []


# ------------------------------------------------------------ oversized jobs

def test_oversized_job_never_leaves_redis(start_chatqd, upstream):
    """A 24 MB job is refused by FETCH: the worker holds only its first
    4 KiB, which still give its id and reply_to."""
    cq = start_chatqd(config={"max_job_bytes": 65536})
    R = cq.prefix + "-replies"
    pids = cq.wait_workers(2)
    pad = "\u0001" * (4 * 1024 * 1024)  # 24 MB once escaped
    raw = json.dumps({"id": "huge", "reply_to": R, "body": {"model": "mock-1", "messages": [
        {"role": "user", "content": pad}]}})
    size = len(raw.encode())
    cq.push(raw)
    h = cq.wait_job_done("huge", timeout=20)
    assert h["status"] == "failed" and h["error"]["code"] == "invalid_job"
    assert str(size) in h["error"]["message"]
    d = cq.dead()[0]
    assert d["job_bytes"] == size and d["error"]["code"] == "invalid_job"
    assert raw.startswith(d["job"]) and 0 < len(d["job"].encode()) <= 4096
    line = cq.wait_replies(R, 1)[0]
    assert line["id"] == "huge" and line["error"]["code"] == "invalid_job"
    assert upstream.requests(cq.mock_key("huge")) == []
    for pid in pids:  # the job never reached a worker's memory
        with open("/proc/%d/status" % pid) as f:
            hwm = [l for l in f if l.startswith("VmHWM:")][0]
        assert int(hwm.split()[1]) < 24 * 1024, hwm
    ok = cq.mkjob()
    assert cq.run(ok)["status"] == "succeeded"


def test_oversized_job_without_readable_id(start_chatqd, upstream):
    cq = start_chatqd(config={"max_job_bytes": 4096})
    raw = json.dumps({"body": {"model": "mock-1", "messages": [
        {"role": "user", "content": "x" * 10000}]}, "id": "late"})
    cq.push(raw)
    d = wait_for(lambda: cq.dead(), 10, what="a P:dead entry")[0]
    assert d["job_bytes"] == len(raw) and d["error"]["code"] == "invalid_job"
    assert cq.r.exists(cq.job_key("late")) == 0


# ------------------------------------------------------------ scripts that cannot fail half way

def test_an_overflowing_usage_counter_does_not_stop_results(cq, upstream):
    """HINCRBY on a counter near INT64_MAX fails: the job's result, reply
    and other counters are stored all the same, and later jobs too."""
    from conftest import utc_day
    R = cq.prefix + "-replies"
    cq.r.hset(cq.k("usage", utc_day()), "ov|mock-1|total_tokens", 2 ** 63 - 10)
    jobs = [cq.mkjob(reply_to=R, tenant="ov") for _ in range(3)]
    for j in jobs:
        assert cq.run(j)["status"] == "succeeded"
    assert len(cq.wait_replies(R, 3)) == 3
    u = cq.usage()
    assert u["ov|mock-1|requests"] == 3
    assert u["ov|mock-1|total_tokens"] == 2 ** 63 - 10


def test_reply_to_of_another_type_does_not_stop_the_result(cq, upstream):
    key = cq.prefix + "-not-a-list"
    cq.r.set(key, "x")
    job = cq.mkjob(reply_to=key)
    assert cq.run(job)["status"] == "succeeded"
    assert cq.r.get(key) == "x"


def test_events_key_of_another_type_does_not_stop_the_result(cq, upstream):
    job = cq.mkjob(stream=True)
    cq.r.set(cq.k("events", job["id"]), "in the way")
    assert cq.run(job)["status"] == "succeeded"
    assert cq.events(job["id"])[-1]["type"] == "done"


# ------------------------------------------------------------ interruptions are not the job's fault

def test_sigkill_does_not_use_up_attempts(cq, upstream):
    """max_attempts 2: attempt 1 is cut short by a SIGKILL of its worker,
    attempt 2 gets a 500, attempt 3 succeeds. Only the 500 counted."""
    pieces = ["p%d " % i for i in range(15)]
    mock = {"content": pieces, "script": [{"chunk_delay_ms": 200}, {"status": 500}, {}]}
    job = cq.mkjob(mock=mock, stream=True, max_attempts=2)
    workers = cq.wait_workers(2)
    cq.push(job)
    wait_for(lambda: any(e["type"] == "chunk" for e in cq.events(job["id"])), 10,
             what="chunks published")
    busy = wait_for(lambda: [p for p in workers if p in pids_talking_to(upstream.port)], 10,
                    what="a worker connected to the upstream")
    os.kill(busy[0], signal.SIGKILL)
    h = cq.wait_job_done(job["id"], timeout=30)
    assert h["status"] == "succeeded", h
    assert h["attempts"] == 3
    assert content_of(h) == "".join(pieces)
    assert len(upstream.requests(cq.mock_key(job["id"]))) == 3
    assert cq.r.hget(cq.k("crashes"), "x") is None
    assert cq.r.hlen(cq.k("crashes")) == 0  # a kill from outside is no crash
