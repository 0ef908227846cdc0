"""test_faults.py — docs/protocol.md §8 under faults: cancel (running and queued), a
worker SIGKILLed while holding streaming jobs, the supervisor restarting
workers, SIGTERM drain, Redis going away and coming back, queue priority."""

import json
import os
import signal
import subprocess
import time

from conftest import SCALE, wait_for


def content_of(h):
    return h["response"]["choices"][0]["message"]["content"]


# ------------------------------------------------------------ cancel

def test_cancel_running_stream(cq, upstream):
    R = cq.prefix + "-replies"  # reply_to may not name a key under P:
    job = cq.mkjob(mock={"content": ["a", "b", "c"], "stall_after": 2}, stream=True, reply_to=R)
    sub = cq.subscribe(job["id"])
    cq.push(job)
    sub.collect(until=lambda ms: any(m["type"] == "chunk" for m in ms))
    t0 = time.monotonic()
    t_cancel = time.time()
    cq.cancel(job["id"])
    h = cq.wait_status(job["id"], ("succeeded", "failed", "cancelled"), timeout=5)
    assert h["status"] == "cancelled"
    assert time.monotonic() - t0 < 2.0 * SCALE
    assert h["error"]["code"] == "cancelled"
    msgs = sub.collect()
    assert msgs[-1]["type"] == "error" and msgs[-1]["status"] == "cancelled"
    assert msgs[-1]["error"]["code"] == "cancelled"
    assert [m["seq"] for m in msgs] == list(range(len(msgs)))
    # The upstream connection was closed, and the job was not retried.
    rec = wait_for(lambda: (lambda r: r[0] if r[0]["client_closed_at"] else None)(
        upstream.requests(cq.mock_key(job["id"]))), 3, what="upstream connection closed")
    assert rec["client_closed_at"] - t_cancel < 2.0 * SCALE
    line = cq.wait_replies(R, 1)[0]
    assert line["id"] == job["id"] and line["response"] is None
    assert line["error"]["code"] == "cancelled"
    assert len(upstream.requests(cq.mock_key(job["id"]))) == 1


def test_cancel_before_the_job_is_reached(cq, upstream):
    job = cq.mkjob()
    cq.cancel(job["id"])
    cq.push(job)
    h = cq.wait_job_done(job["id"])
    assert h["status"] == "cancelled"
    assert upstream.requests(cq.mock_key(job["id"])) == []


def test_cancel_queued_job(start_chatqd, upstream):
    cq = start_chatqd(workers=1, concurrency=1)
    blocker = cq.mkjob(mock={"stall_after": 1}, stream=True)
    queued = cq.mkjob()
    cq.push(blocker)
    upstream.wait_requests(cq.mock_key(blocker["id"]), 1)
    cq.push(queued)
    cq.cancel(queued["id"])
    cq.cancel(blocker["id"])
    assert cq.wait_job_done(blocker["id"])["status"] == "cancelled"
    assert cq.wait_job_done(queued["id"])["status"] == "cancelled"
    assert upstream.requests(cq.mock_key(queued["id"])) == []


# ------------------------------------------------------------ worker death

def pids_talking_to(port):
    """Pids with an established TCP connection to 127.0.0.1:port."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", "dst", "127.0.0.1:%d" % port],
                         capture_output=True, text=True).stdout
    pids = set()
    for part in out.split("pid=")[1:]:
        pids.add(int(part.split(",")[0]))
    return pids


def test_sigkill_worker_holding_streams(cq, upstream):
    R = cq.prefix + "-replies"  # reply_to may not name a key under P:
    n = 8
    pieces = ["p%d " % i for i in range(12)]
    # Slow first attempts (about 3 s), so the kill surely lands mid-stream;
    # fast reruns.
    mock = {"content": pieces, "script": [{"chunk_delay_ms": 200}, {"chunk_delay_ms": 5}]}
    jobs = [cq.mkjob(mock=mock, stream=True, reply_to=R, tenant="k") for _ in range(n)]
    workers = cq.wait_workers(2)
    for j in jobs:
        cq.push(j)
    # Kill a worker that is mid-stream (no first attempt has ended yet, so a
    # connection to the upstream is a job in flight) once chunks are out.
    wait_for(lambda: any(any(e["type"] == "chunk" for e in cq.events(j["id"])) for j in jobs), 10,
             what="chunks published")
    busy = wait_for(lambda: [p for p in workers if p in pids_talking_to(upstream.port)], 10,
                    what="a worker connected to the upstream")
    victim = busy[0]
    os.kill(victim, signal.SIGKILL)

    lines = cq.wait_replies(R, n, timeout=30)
    for j in jobs:
        h = cq.wait_job_done(j["id"], timeout=30)
        assert h["status"] == "succeeded", (j["id"], h)
        assert content_of(h) == "".join(pieces)
    # The supervisor replaced the dead worker.
    new = cq.wait_workers(2)
    assert victim not in new
    # Let any duplicate run finish before counting.
    wait_for(lambda: all(r["t_end"] for r in upstream.requests(prefix=cq.prefix + ":")), 10,
             what="upstream idle")
    lines = cq.replies(R)
    assert sorted(l["id"] for l in lines) == sorted(j["id"] for j in jobs)
    assert all(l["response"]["status_code"] == 200 for l in lines)
    usage = cq.usage()
    assert usage.get("k|mock-1|requests") == n and usage.get("k|mock-1|succeeded") == n
    recovered = 0
    for j in jobs:
        ev = cq.events(j["id"])
        types = [e["type"] for e in ev]
        assert [e["seq"] for e in ev] == list(range(len(ev)))
        assert types.count("done") == 1 and types[-1] == "done"
        reqs = upstream.requests(cq.mock_key(j["id"]))
        if len(reqs) >= 2:
            # Run again after the kill: its first chunks were published, so
            # subscribers must have been told to drop them.
            recovered += 1
            assert "retry" in types, (j["id"], types)
        r = len(types) - 1 - types[::-1].index("retry") if "retry" in types else -1
        assert [e["data"] for e in ev[r + 1:-1]] == reqs[-1]["sent"]
        assert all(e["type"] == "chunk" for e in ev[r + 1:-1])
    assert recovered >= 1, "the killed worker held no job with published chunks"


def test_supervisor_restarts_a_dead_worker(cq):
    before = cq.wait_workers(2)
    os.kill(before[0], signal.SIGKILL)
    after = wait_for(lambda: (lambda p: p if len(p) == 2 and before[0] not in p else None)(cq.worker_pids()),
                     10, what="a replacement worker")
    assert before[1] in after
    assert cq.run(cq.mkjob())["status"] == "succeeded"


# ------------------------------------------------------------ SIGTERM

def test_sigterm_drains_then_requeues(start_chatqd, upstream):
    cq = start_chatqd(config={"shutdown_grace_ms": 1500})
    short = cq.mkjob(mock={"content": ["d"] * 6, "chunk_delay_ms": 100}, stream=True)
    # Stalls on its first attempt only, so it can finish after a restart.
    stuck = cq.mkjob(mock={"script": [{"stall_after": 1}, {}], "content": ["later"]}, stream=True)
    cq.push(short)
    raw_stuck = cq.push(stuck)
    upstream.wait_requests(cq.mock_key(short["id"]), 1)
    upstream.wait_requests(cq.mock_key(stuck["id"]), 1)
    t0 = time.monotonic()
    cq.expect_exit = True
    cq.proc.send_signal(signal.SIGTERM)
    rc = cq.proc.wait(15)
    assert rc == 0
    assert time.monotonic() - t0 < 6 * SCALE
    assert cq.job(short["id"])["status"] == "succeeded"
    assert cq.job(stuck["id"]).get("status") not in ("succeeded", "failed", "cancelled")
    queued = [json.loads(x) for x in cq.r.lrange(cq.queue_key(), 0, -1)]
    assert [q.get("id") for q in queued] == [stuck["id"]]
    assert queued[0]["body"] == json.loads(raw_stuck)["body"]
    # A new daemon on the same prefix finishes it.
    cq2 = start_chatqd(prefix=cq.prefix)
    h = cq2.wait_job_done(stuck["id"])
    assert h["status"] == "succeeded" and content_of(h) == "later"


# ------------------------------------------------------------ Redis outage

def test_redis_restart_keeps_job_and_result(redis_factory, start_chatqd, upstream):
    srv = redis_factory(extra=["--appendonly", "yes", "--appendfsync", "always"]).start()
    port = srv.port
    cq = start_chatqd(redis=srv)
    R = cq.prefix + "-replies"  # reply_to may not name a key under P:
    job = cq.mkjob(mock={"content": ["r"] * 10, "chunk_delay_ms": 100}, stream=True, reply_to=R, tenant="rr")
    cq.push(job)
    upstream.wait_requests(cq.mock_key(job["id"]), 1)
    srv.stop(signal.SIGKILL)
    # The answer completes while Redis is down.
    wait_for(lambda: upstream.requests(cq.mock_key(job["id"]))[0]["t_end"], 10, what="upstream answer done")
    srv.port = port
    srv.start()
    cq.r = srv.client()
    h = cq.wait_job_done(job["id"], timeout=20)
    assert h["status"] == "succeeded" and content_of(h) == "r" * 10
    lines = cq.wait_replies(R, 1)
    assert len(lines) == 1
    assert cq.usage().get("rr|mock-1|requests") == 1


# ------------------------------------------------------------ queues

def test_queue_priority(start_chatqd, upstream):
    cq = start_chatqd(args=["--workers", "1", "--concurrency", "1", "--queues", "high,low"])
    blocker = cq.mkjob(mock={"delay_ms": 500})
    cq.push(blocker, "low")
    upstream.wait_requests(cq.mock_key(blocker["id"]), 1)
    low = [cq.mkjob() for _ in range(3)]
    high = [cq.mkjob() for _ in range(3)]
    for j in low:
        cq.push(j, "low")
    for j in high:
        cq.push(j, "high")
    for j in low + high:
        cq.wait_job_done(j["id"])
    t = {j["id"]: upstream.requests(cq.mock_key(j["id"]))[0]["t"] for j in low + high}
    assert max(t[j["id"]] for j in high) < min(t[j["id"]] for j in low)
    assert cq.job(high[0]["id"])["queue"] == "high" and cq.job(low[0]["id"])["queue"] == "low"
