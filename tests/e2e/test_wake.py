"""test_wake.py — an idle worker wakes up when a job arrives (worker.h,
`wake`): through client tracking of its queues, whatever the queue names,
after its wake connection is cut, and by polling where Redis refuses client
tracking (an ACL without the CLIENT command)."""

import uuid

from conftest import wait_for


def idle(cq):
    """Waits until every worker has fetched once and found nothing: from then
    on only a wake-up (or a poll) can start a job."""
    cq.wait_workers(2)
    wait_for(lambda: len(cq.r.hkeys(cq.k("workers"))) >= 2, 10, what="workers registered")


def test_queue_names_that_are_prefixes_of_each_other(start_chatqd, upstream):
    """Redis refuses overlapping tracking prefixes (P:queue:a, P:queue:ab):
    the shorter one covers both."""
    cq = start_chatqd(args=["--workers", "2", "--concurrency", "8", "--queues", "a,ab"])
    idle(cq)
    for q in ("ab", "a"):
        job = cq.mkjob()
        cq.push(job, queue=q)
        assert cq.wait_job_done(job["id"])["status"] == "succeeded"
        assert cq.job(job["id"])["queue"] == q
    assert "tracking_failed" not in cq.log()


def test_wake_connection_cut(cq, upstream):
    """After its wake connection comes back, a worker tracks its queues for
    the new one (the old redirect is dropped first)."""
    idle(cq)
    assert cq.run(cq.mkjob())["status"] == "succeeded"
    # every pub/sub connection of this chatqd's workers: wake and control
    killed = cq.r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed >= 2
    for _ in range(3):
        job = cq.mkjob()
        cq.push(job)
        assert cq.wait_job_done(job["id"])["status"] == "succeeded"


def test_without_client_tracking_an_idle_worker_polls(start_chatqd, redis_server, upstream):
    user, pw = "nocl" + uuid.uuid4().hex[:6], uuid.uuid4().hex
    r = redis_server.client()
    r.execute_command("ACL", "SETUSER", user, "on", ">" + pw, "~*", "&*", "+@all", "-client")
    cq = None
    try:
        url = "redis://%s:%s@127.0.0.1:%d/0" % (user, pw, redis_server.port)
        cq = start_chatqd(env={"CHATQ_REDIS_URL": url})
        idle(cq)
        wait_for(lambda: "tracking_failed" in cq.log(), 10, what="tracking refused")
        for _ in range(2):
            job = cq.mkjob()
            cq.push(job)
            assert cq.wait_job_done(job["id"])["status"] == "succeeded"
        assert "action=poll" in cq.log()
    finally:
        if cq:
            cq.expect_exit = True
            assert cq.stop() == 0  # while its user still exists
        r.execute_command("ACL", "DELUSER", user)
