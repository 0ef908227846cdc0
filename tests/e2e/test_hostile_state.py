"""test_hostile_state.py — chatq's own Redis keys holding what chatq did not
write there (SPEC §8: bad input of any kind never causes a crash, a hang, a
lost job, or a job left `running` forever).

Anyone who can write to Redis can put anything in chatq's keys. The Lua
scripts (common/scripts.c) are not rolled back when they fail half way, so
each must check before it writes, or write what cannot fail. Each test puts
one kind of garbage in one key with redis-py and proves the jobs still end,
each with its one result:
  - FETCH: a queue key of another type does not strand the jobs taken from
    the queues before it;
  - FINISH: a crashes or requeued key of another type does not cut a batch
    of results short; a processing list overwritten with a string while
    its jobs run neither strands their results nor stops the worker's
    FETCH for good;
  - START: a requeued key of another type does not fail the fresh jobs of
    the batch;
  - RECOVER / REQUEUE: the requeued, workers or crashes key of another type
    (or a crash count that is not a number) neither loses the jobs of a
    dead or stopping worker nor leaves them `running`;
  - RATELIMIT: a bucket of another type, or holding nan / inf / a time
    far ahead, neither fails nor stalls the jobs under it;
  - heartbeats: counts below zero or at INT64_MAX do not make chatqd's
    STATUS= sums overflow or go negative."""

import hashlib
import json
import os
import re
import signal
import time

import pytest

from conftest import wait_for
from test_supervision import (STATUS_RE, NotifyListener, hooks_worker_path, processing_ids,
                              wait_registered, worker_ids_by_pid)


def sha1(text):
    return hashlib.sha1(text.encode()).hexdigest()


def all_ended(cq, ids, timeout=15):
    """Waits until every job of ids has ended; returns {id: hash}."""
    def done():
        cq.check_alive()
        return all(cq.r.hget(cq.job_key(i), "status") in ("succeeded", "failed", "cancelled")
                   for i in ids)
    wait_for(done, timeout, what="jobs %s to end (statuses %s)" % (
        ids, [cq.r.hget(cq.job_key(i), "status") for i in ids]))
    return {i: cq.job(i) for i in ids}


def assert_all_succeeded(cq, ids, timeout=15):
    hashes = all_ended(cq, ids, timeout)
    bad = {i: (h["status"], h.get("error")) for i, h in hashes.items() if h["status"] != "succeeded"}
    assert not bad, bad


def stalled_job_in_flight(cq, upstream):
    """Pushes a streaming job that stalls on its first attempt and answers on
    the second; returns (job, raw, pid of the worker holding it mid-stream)."""
    job = cq.mkjob(mock={"content": ["x", "y"], "script": [{"stall_after": 1}, {}]}, stream=True)
    raw = cq.push(job)

    def holder():
        for pid, wid in worker_ids_by_pid(cq).items():
            if job["id"] in processing_ids(cq, wid) and upstream.requests(cq.mock_key(job["id"])):
                return pid
        return None
    pid = wait_for(holder, 10, what="the job in flight")
    return job, raw, pid


# ------------------------------------------------------------ FETCH

def test_fetch_skips_a_queue_key_of_another_type(start_chatqd):
    """The second queue is a string: the jobs of the first still run (the
    FETCH moved them, then failed on the second queue, answering an error:
    they sat in the processing list, never started)."""
    cq = start_chatqd(config={"queues": ["default", "other"]}, workers=1, concurrency=8)
    cq.r.set(cq.queue_key("other"), "not a list")
    cq.wait_workers(1)
    jobs = [cq.mkjob(mock={"content": ["ok"]}) for _ in range(3)]
    for j in jobs:
        cq.push(j)
    assert_all_succeeded(cq, [j["id"] for j in jobs], 10)
    assert cq.r.get(cq.queue_key("other")) == "not a list"


# ------------------------------------------------------------ FINISH and START

@pytest.mark.parametrize("key", ["crashes", "requeued"])
def test_finish_stores_every_result_of_a_batch_with_bookkeeping_of_another_type(start_chatqd, key):
    """P:crashes or P:requeued is a string: FINISH stored the first job of a
    batch, then failed on its HDEL of that key; the worker dropped the rest
    of the batch, left `running` forever."""
    cq = start_chatqd(workers=1, concurrency=64)
    cq.r.set(cq.k(key), "garbage")
    cq.wait_workers(1)
    jobs = [cq.mkjob(mock={"content": ["ok"]}) for _ in range(40)]
    cq.r.lpush(cq.queue_key(), *[json.dumps(j) for j in jobs])
    assert_all_succeeded(cq, [j["id"] for j in jobs], 15)


def test_start_keeps_fresh_jobs_when_requeued_is_of_another_type(start_chatqd):
    """P:requeued is a string and a duplicate (its id's hash says running
    elsewhere) is in the batch: START failed on it, and every job of the
    batch ended failed with connection_error instead of running."""
    cq = start_chatqd(workers=1, concurrency=64)
    cq.r.set(cq.k("requeued"), "garbage")
    dup = cq.mkjob(mock={"content": ["dup"]})
    cq.r.hset(cq.job_key(dup["id"]), mapping={"status": "running", "worker": "elsewhere.1",
                                              "sha": "0" * 40, "start": "elsewhere.1/1|0|0|0|0"})
    jobs = [cq.mkjob(mock={"content": ["ok"]}) for _ in range(10)]
    cq.wait_workers(1)
    cq.r.lpush(cq.queue_key(), *[json.dumps(j) for j in jobs[:5] + [dup] + jobs[5:]])
    assert_all_succeeded(cq, [j["id"] for j in jobs], 15)
    assert cq.r.hget(cq.job_key(dup["id"]), "worker") == "elsewhere.1"


# ------------------------------------------------------------ RECOVER and REQUEUE

@pytest.mark.parametrize("key", ["requeued", "workers"])
def test_recover_puts_back_a_killed_workers_job_with_bookkeeping_of_another_type(
        start_chatqd, upstream, key):
    """P:requeued or P:workers is a string when a worker holding a job is
    killed. RECOVER failed: on P:workers before moving anything (the job sat
    in the dead worker's processing list for good), on P:requeued after
    putting the job back unmarked (START took it for a duplicate: `running`
    forever)."""
    cq = start_chatqd(workers=1, concurrency=8)
    wait_registered(cq, cq.wait_workers(1))
    job, raw, pid = stalled_job_in_flight(cq, upstream)
    cq.r.set(cq.k(key), "garbage")
    os.kill(pid, signal.SIGKILL)
    h = all_ended(cq, [job["id"]], 15)[job["id"]]
    assert h["status"] == "succeeded", h
    assert h["response"]["choices"][0]["message"]["content"] == "xy"


def test_requeue_at_stop_with_requeued_of_another_type(start_chatqd, upstream):
    """P:requeued is a string when chatqd stops with a job in flight: the
    worker's REQUEUE put the job back, then failed on its mark; the next
    chatqd's START took the job for a duplicate of itself (`running`
    forever)."""
    cq = start_chatqd(workers=1, concurrency=8)
    wait_registered(cq, cq.wait_workers(1))
    job, raw, pid = stalled_job_in_flight(cq, upstream)
    cq.r.set(cq.k("requeued"), "garbage")
    cq.expect_exit = True
    assert cq.stop() == 0
    assert json.loads(cq.r.lindex(cq.queue_key(), -1))["id"] == job["id"]
    cq2 = start_chatqd(workers=1, concurrency=8, prefix=cq.prefix)
    h = all_ended(cq2, [job["id"]], 15)[job["id"]]
    assert h["status"] == "succeeded", h


@pytest.mark.parametrize("garbage", ["key", "abc", "9223372036854775807", "-1000000"])
def test_poison_pill_ends_with_a_crash_count_of_garbage(start_chatqd, garbage):
    """P:crashes is a string, or the pill's count in it is not a number, too
    big to add one to, or far below zero. RECOVER's HINCRBY failed after the
    LPOP of the pill: the pill was lost, and any job after it in the dead
    worker's list too (a count below zero only delayed the verdict)."""
    cq = start_chatqd(workers=1, concurrency=8, env={"CHATQ_WORKER": hooks_worker_path()})
    wait_registered(cq, cq.wait_workers(1))
    pill = cq.mkjob(body={"chatq_test_crash": True})
    raw = json.dumps(pill)
    if garbage == "key":
        cq.r.set(cq.k("crashes"), "garbage")
    else:
        cq.r.hset(cq.k("crashes"), sha1(raw), garbage)
    cq.push(raw)
    h = all_ended(cq, [pill["id"]], 30)[pill["id"]]
    assert h["status"] == "failed" and h["error"]["code"] == "worker_crashed", h
    assert [d["job"] for d in cq.dead()] == [raw]
    others = [cq.mkjob(mock={"content": ["ok"]}) for _ in range(3)]
    for j in others:
        cq.push(j)
    assert_all_succeeded(cq, [j["id"] for j in others], 10)


# ------------------------------------------------------------ RATELIMIT

@pytest.mark.parametrize("garbage", ["string", "abc", "nan", "1e400", "-1e400", "1e15"])
def test_ratelimit_bucket_of_garbage_neither_fails_nor_stalls_jobs(start_chatqd, upstream,
                                                                   garbage):
    """The shared bucket of a limit is a string, or its times are not
    numbers, infinite, or centuries ahead. RATELIMIT failed (a string: HGET;
    nan: PEXPIRE after its HSET, keeping the nan), or answered a wait
    nobody can serve: every job under the limit ended rate_limited."""
    cfg = {"providers": [{"name": "lim", "base_url": upstream.url, "api_key_env": "CQ_KEY",
                          "limits": {"*": {"rpm": 600, "tpm": 600000}}}],
           "rate_limit_wait_ms": 3000}
    cq = start_chatqd(config=cfg, workers=1, concurrency=8, env={"CQ_KEY": "sk-x"})
    key = cq.k("ratelimit", "lim", "*")
    if garbage == "string":
        cq.r.set(key, "garbage")
    else:
        cq.r.hset(key, mapping={"r": garbage, "t": garbage})
    cq.wait_workers(1)
    jobs = [cq.mkjob(model="mock-rl", mock={"content": ["ok"]}) for _ in range(3)]
    for j in jobs:
        cq.push(j)
    assert_all_succeeded(cq, [j["id"] for j in jobs], 10)


def test_finish_stores_the_results_when_the_processing_list_turns_into_a_string(
        start_chatqd, upstream):
    """A worker's processing list is overwritten with a string while it runs
    jobs: FINISH's LREM failed, before storing or after the results of the
    batch's earlier jobs: the jobs stayed `running` forever. The entry
    cannot be anywhere else (nothing can recover it from a string), so the
    run still owns its result."""
    cq = start_chatqd(workers=1, concurrency=16)
    pid = cq.wait_workers(1)[0]
    wid = wait_registered(cq, [pid])[pid]
    jobs = [cq.mkjob(mock={"content": ["ok"], "delay_ms": 1500}) for _ in range(6)]
    cq.r.lpush(cq.queue_key(), *[json.dumps(j) for j in jobs])
    wait_for(lambda: len(processing_ids(cq, wid)) == 6, 5, what="the jobs in flight")
    cq.r.set(cq.k("processing", wid, "default"), "garbage")
    assert_all_succeeded(cq, [j["id"] for j in jobs], 10)
    # and the worker takes jobs again (its FETCH failed on the string)
    more = [cq.mkjob(mock={"content": ["ok"]}) for _ in range(3)]
    for j in more:
        cq.push(j)
    assert_all_succeeded(cq, [j["id"] for j in more], 10)


# ------------------------------------------------------------ garbage moved by RECOVER

def test_garbage_in_a_dead_workers_processing_list_and_quarantine_ends_dead(
        start_chatqd, upstream):
    """Entries nobody queued (empty, not JSON, a megabyte, NUL bytes) in the
    processing list of a worker that is killed, and in the quarantine list:
    RECOVER moves them like jobs, each ends in P:dead as invalid_job, the
    real job in flight still succeeds, and chatqd lives."""
    cq = start_chatqd(workers=1, concurrency=8)
    wait_registered(cq, cq.wait_workers(1))
    job, raw, pid = stalled_job_in_flight(cq, upstream)
    wid = worker_ids_by_pid(cq)[pid]
    garbage = ["", "not json", "x" * (1 << 20), "\x00\x01\xff", "[]", "null"]
    cq.r.lpush(cq.k("processing", wid, "default"), *garbage)
    cq.r.rpush(cq.k("quarantine", "default"), "", "{\"id\": 5}")
    os.kill(pid, signal.SIGKILL)
    h = all_ended(cq, [job["id"]], 15)[job["id"]]
    assert h["status"] == "succeeded", h
    wait_for(lambda: cq.r.llen(cq.k("dead")) == len(garbage) + 2, 15,
             what="every garbage entry in P:dead (%d now)" % cq.r.llen(cq.k("dead")))
    assert all(d["error"]["code"] == "invalid_job" for d in cq.dead())
    for key in (cq.queue_key(), cq.k("quarantine", "default"), cq.k("processing", "*")):
        assert not [k for k in cq.r.scan_iter(match=key) if cq.r.llen(k)], key


def test_start_answer_of_garbage_fails_no_job(start_chatqd):
    """A job hash's `start` field begins with the token of the START that
    claims it (worker id/1 for a worker's first job) but the rest is not an
    answer: START put a nil in its reply, which came back short, and every
    job of the batch ended failed with connection_error."""
    cq = start_chatqd(workers=1, concurrency=64)
    pid = cq.wait_workers(1)[0]
    wid = wait_registered(cq, [pid])[pid]
    first = cq.mkjob(mock={"content": ["ok"]})
    cq.r.hset(cq.job_key(first["id"]), "start", "%s/1|not an answer" % wid)
    jobs = [first] + [cq.mkjob(mock={"content": ["ok"]}) for _ in range(5)]
    cq.r.lpush(cq.queue_key(), *[json.dumps(j) for j in jobs])  # `first` is taken first
    assert_all_succeeded(cq, [j["id"] for j in jobs], 10)


@pytest.mark.parametrize("started_at", ["-9223372036854775808", "99999999999999999999"])
def test_resumed_run_takes_no_garbage_started_at(start_chatqd, started_at):
    """A job hash that says a run of this very text was taken back from its
    worker (status running, its sha, a requeued mark), with a started_at
    far out of range: the resumed run took it as the first run's start (the
    duration `end - started_at` overflowed, a fault under UBSan) and stored
    it in the result."""
    cq = start_chatqd(workers=1, concurrency=8)
    job = cq.mkjob(mock={"content": ["ok"]})
    raw = json.dumps(job)
    cq.r.hset(cq.job_key(job["id"]), mapping={
        "status": "running", "sha": sha1(raw), "worker": "gone.1", "attempts": "1",
        "started_at": started_at, "start": "gone.1/1|0|0|0|0"})
    cq.r.hset(cq.k("requeued"), sha1(raw), "gone.1")
    cq.wait_workers(1)
    cq.push(raw)
    h = all_ended(cq, [job["id"]], 10)[job["id"]]
    assert h["status"] == "succeeded", h
    assert 0 < int(h["started_at"]) <= int(h["finished_at"]), h


@pytest.mark.parametrize("count", ["-3", "1e20", "nan"])
def test_resumed_run_start_answer_keeps_its_form(start_chatqd, upstream, count):
    """A resumed run's attempts and charged counts of garbage in the job
    hash: START's answer, kept in the "start" field for a resend, must stay
    <token>|<kind>|<seq>|<attempts>|<charged> in whole numbers (else a resent
    START cannot read it back and drops the job as a duplicate)."""
    cq = start_chatqd(workers=1, concurrency=8)
    job = cq.mkjob(mock={"content": ["ok"], "delay_ms": 1500})
    raw = json.dumps(job)
    cq.r.hset(cq.job_key(job["id"]), mapping={
        "status": "running", "sha": sha1(raw), "worker": "gone.1", "attempts": count,
        "charged": count, "started_at": "1700000000000", "start": "gone.1/1|0|0|0|0"})
    cq.r.hset(cq.k("requeued"), sha1(raw), "gone.1")
    cq.wait_workers(1)
    cq.push(raw)
    wait_for(lambda: (cq.r.hget(cq.job_key(job["id"]), "start") or "").split("|")[0]
             not in ("", "gone.1/1"), 10, what="the resumed run's START")
    start = cq.r.hget(cq.job_key(job["id"]), "start")
    assert re.match(r"^[^|]+/\d+\|1\|\d+\|\d+\|\d+$", start), start
    h = all_ended(cq, [job["id"]], 10)[job["id"]]
    assert h["status"] == "succeeded", h


# ------------------------------------------------------------ heartbeats

def test_status_sums_of_garbage_heartbeats(start_chatqd, tmp_path, monkeypatch):
    """Both workers' heartbeats say INT64_MAX jobs in flight, -5 done and
    "x" failed: the STATUS= sums overflowed (undefined behaviour) and
    showed counts below zero."""
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    ln = NotifyListener(tmp_path, False)
    try:
        cq = start_chatqd(workers=2, concurrency=8, env={"NOTIFY_SOCKET": ln.env})
        ids = wait_registered(cq, cq.wait_workers(2)).values()
        bad = json.dumps({"in_flight": 2 ** 63 - 1, "done": -5, "failed": "x"})
        mark = len(ln.msgs)
        end = time.monotonic() + 5
        while time.monotonic() < end:  # the workers rewrite theirs every 3 s
            for w in ids:
                cq.r.set(cq.k("heartbeat", w), bad, px=10000)
            ln.read_for(0.05)
        status = [m for _, _, m in ln.msgs[mark:] if m.startswith("STATUS=")]
        assert len(status) >= 2, status
        for m in status:
            assert STATUS_RE.match(m), m
        cq.check_alive()
    finally:
        ln.close()


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def test_json_bombs_in_heartbeats_and_workers_cost_chatqd_little(start_chatqd, tmp_path,
                                                                  monkeypatch):
    """1 MiB of "[{},{},...]" in a worker's heartbeat (chatqd reads them every
    2 s for STATUS=) and as a dead worker's entry in P:workers (the sweep
    reads those): json-c made it about 260 MB each time."""
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    ln = NotifyListener(tmp_path, False)
    try:
        cq = start_chatqd(workers=1, concurrency=8, env={"NOTIFY_SOCKET": ln.env})
        wid = list(wait_registered(cq, cq.wait_workers(1)).values())[0]
        ln.read_for(2.5)
        before = vm_hwm_kb(cq.proc.pid)
        bomb = "[" + ",".join(["{}"] * (1 << 19)) + "]"
        cq.r.hset(cq.k("workers"), "gone.host.1.0", bomb)
        end = time.monotonic() + 5
        while time.monotonic() < end:  # the worker rewrites its own every 3 s
            cq.r.set(cq.k("heartbeat", wid), bomb, px=10000)
            ln.read_for(0.5)
        cq.check_alive()
        grew = vm_hwm_kb(cq.proc.pid) - before
        assert grew < 50 * 1024, "chatqd grew by %d kB" % grew
        job = cq.mkjob(mock={"content": ["ok"]})
        assert cq.run(job)["status"] == "succeeded"
    finally:
        ln.close()


# ------------------------------------------------------------ the control channel

def test_control_channel_takes_any_bytes_and_cancels_only_exact_ids(start_chatqd, upstream):
    """Messages on the control channel of any bytes, size and rate: the
    workers live, and a job is cancelled only by its exact id. "<id>\\0x"
    cancelled job <id>: the id was copied into a C string, cut at the NUL."""
    cq = start_chatqd(workers=1, concurrency=8)
    wait_registered(cq, cq.wait_workers(1))
    job = cq.mkjob(mock={"content": ["ok"], "delay_ms": 1500})
    cq.push(job)
    wait_for(lambda: upstream.requests(cq.mock_key(job["id"])), 5, what="the job's request")
    ch = cq.k("control")
    p = cq.r.pipeline(transaction=False)
    for i in range(3000):
        p.publish(ch, os.urandom(i % 300))
    p.publish(ch, b"x" * (8 << 20))
    p.publish(ch, b"")
    p.publish(ch, job["id"].encode() + b"\x00x")
    p.publish(ch, job["id"].encode() + b"\n")
    p.publish(ch, job["id"].encode() * 100)
    p.execute()
    h = all_ended(cq, [job["id"]], 10)[job["id"]]
    assert h["status"] == "succeeded", h
    other = cq.mkjob(mock={"content": ["ok"], "delay_ms": 3000})
    cq.push(other)
    wait_for(lambda: upstream.requests(cq.mock_key(other["id"])), 5, what="the other's request")
    cq.cancel(other["id"])
    assert all_ended(cq, [other["id"]], 10)[other["id"]]["status"] == "cancelled"


def test_recover_keeps_jobs_when_neither_queue_nor_quarantine_is_a_list(start_chatqd, upstream):
    """The queue and its quarantine list are both strings when a worker
    holding a job is killed: the job cannot go anywhere, so it stays in the
    dead worker's processing list and the worker stays in P:workers; once
    the queue is a list again, the sweep puts the job back and it runs."""
    cq = start_chatqd(workers=1, concurrency=8)
    wait_registered(cq, cq.wait_workers(1))
    job, raw, pid = stalled_job_in_flight(cq, upstream)
    wid = worker_ids_by_pid(cq)[pid]
    cq.r.set(cq.queue_key(), "garbage")
    cq.r.set(cq.k("quarantine", "default"), "garbage")
    os.kill(pid, signal.SIGKILL)
    # RECOVER ran: it dropped the heartbeat (which would live 7 s more)
    wait_for(lambda: not cq.r.exists(cq.k("heartbeat", wid)), 5, what="the RECOVER")
    assert cq.r.lrange(cq.k("processing", wid, "default"), 0, -1) == [raw]
    assert cq.r.hexists(cq.k("workers"), wid)
    wait_for(lambda: "recover_stuck" in cq.log(), 5, what="chatqd to say why")
    cq.r.delete(cq.queue_key())
    h = all_ended(cq, [job["id"]], 15)[job["id"]]
    assert h["status"] == "succeeded", h
    assert not cq.r.hexists(cq.k("workers"), wid)


@pytest.mark.parametrize("start", ["garbage", "", "x/1|9"])
def test_finish_stores_the_result_when_start_turns_into_garbage(start_chatqd, upstream, start):
    """The job hash's `start` field (the token of the run that owns the id)
    is overwritten with something that is no token while the job runs:
    FINISH took it for another run's and stored nothing (`running`
    forever)."""
    cq = start_chatqd(workers=1, concurrency=8)
    cq.wait_workers(1)
    job = cq.mkjob(mock={"content": ["ok"], "delay_ms": 1500})
    cq.push(job)
    wait_for(lambda: upstream.requests(cq.mock_key(job["id"])), 5, what="the job's request")
    cq.r.hset(cq.job_key(job["id"]), "start", start)
    h = all_ended(cq, [job["id"]], 10)[job["id"]]
    assert h["status"] == "succeeded", h


def test_poison_pill_ends_with_its_hash_and_events_of_another_type(start_chatqd):
    """The pill's job hash is overwritten with a string and its events list
    with a hash while it crashes its workers: its result is still stored."""
    cq = start_chatqd(workers=1, concurrency=8, env={"CHATQ_WORKER": hooks_worker_path()})
    wait_registered(cq, cq.wait_workers(1))
    pill = cq.mkjob(body={"chatq_test_crash": True})
    raw = cq.push(json.dumps(pill))
    wait_for(lambda: cq.r.hget(cq.k("crashes"), sha1(raw)), 15, what="a first crash")
    cq.r.delete(cq.job_key(pill["id"]))
    cq.r.set(cq.job_key(pill["id"]), "garbage")
    cq.r.hset(cq.k("events", pill["id"]), "a", "b")
    wait_for(lambda: [d for d in cq.dead() if d["job"] == raw], 30, what="the pill in P:dead")
    h = all_ended(cq, [pill["id"]], 10)[pill["id"]]
    assert h["status"] == "failed" and h["error"]["code"] == "worker_crashed", h
    assert cq.events(pill["id"])[-1]["type"] == "error"
