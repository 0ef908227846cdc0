"""test_crashes.py — issue 9: kill anything, lose nothing.

What each test proves:
  - a configuration file broken on disk reaches no worker: replacements of
    killed workers start with the configuration chatqd validated, a SIGHUP
    refuses the file and every worker keeps running on the old one; API keys
    reach the workers in the snapshot, never in their environment or argv;
  - a burst of SIGKILLs (15, one every 200-300 ms, jobs flowing) never makes
    chatqd exit: every killed worker is replaced, each death is logged as an
    outside kill, and every job ends;
  - workers that die at once (a worker program that exits 1) make chatqd
    exit 1 after ten deaths (crash_loop), and a job finished in between
    resets that count;
  - a job in flight at three SIGKILLs still succeeds, attempts not used up;
    a real poison pill ends in P:dead after three attributed crashes while
    the other jobs flow past it, never waiting behind it.

No fixed sleeps but the pacing of kills and pushes: everything else polls
with deadlines (conftest.wait_for)."""

import hashlib
import json
import os
import random
import signal
import time


from conftest import API_KEY, REPO, SCALE, wait_for
from test_supervision import (hooks_worker_path, log_lines, logfmt_field, processing_ids,
                              statuses, wait_all_succeeded, wait_registered, worker_ids_by_pid)


def sha1(text):
    return hashlib.sha1(text.encode()).hexdigest()


def new_worker_pids(cq, n, old):
    """Waits for n worker processes none of which is in old; returns them."""
    return wait_for(lambda: (lambda p: p if len(p) == n and not set(p) & set(old) else None)(
        cq.worker_pids()), 10, what="%d new worker(s)" % n)


def proc_environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return f.read()


def proc_cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read()


# ------------------------------------------------------------ config handed down

def test_bad_config_on_disk_reaches_no_worker(start_chatqd, upstream):
    cq = start_chatqd(args=["--concurrency", "8"], config={"workers": 2})
    pids = cq.wait_workers(2)
    wait_registered(cq, pids)
    for p in pids:
        # the key comes in the snapshot, not in the environment or argv
        assert b"OPENAI_API_KEY" not in proc_environ(p)
        assert API_KEY.encode() not in proc_environ(p) + proc_cmdline(p)
        assert b"--config-stdin" in proc_cmdline(p)

    # An operator saves a half-edited file; then workers die for any reason.
    with open(cq.config_path, "w") as f:
        f.write('{"workers": 2, "timeout_ms": ')
    os.kill(pids[0], signal.SIGKILL)
    mid = wait_for(lambda: (lambda p: p if len(p) == 2 and pids[0] not in p else None)(
        cq.worker_pids()), 10, what="a replacement for the first worker")
    os.kill(pids[1], signal.SIGKILL)
    new = new_worker_pids(cq, 2, pids)
    ids = wait_registered(cq, new)
    assert set(mid) - set(pids) <= set(new)

    # The replacements run jobs, with the key chatqd resolved at its start.
    jobs = [cq.mkjob(mock={"content": ["ok"]}) for _ in range(6)]
    for j in jobs:
        cq.push(j)
    for j in jobs:
        h = cq.wait_job_done(j["id"])
        assert h["status"] == "succeeded", h
        assert h["worker"] in ids.values()
        req = upstream.requests(cq.mock_key(j["id"]))[0]
        assert req["headers"]["authorization"] == "Bearer " + API_KEY
    assert "not valid JSON" not in cq.log()

    # SIGHUP refuses the file; every worker keeps running on the old config.
    cq.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: log_lines(cq, "reload_refused"), 5, what="reload_refused")
    assert cq.worker_pids() == new
    # and a worker started after the refusal still gets the old one
    os.kill(new[0], signal.SIGKILL)
    last = wait_for(lambda: (lambda p: p if len(p) == 2 and new[0] not in p else None)(
        cq.worker_pids()), 10, what="a replacement after the refused reload")
    wait_registered(cq, last)
    more = [cq.mkjob(mock={"content": ["still"]}) for _ in range(4)]
    for j in more:
        cq.push(j)
    for j in more:
        assert cq.wait_job_done(j["id"])["status"] == "succeeded"
    assert cq.worker_pids() == last
    assert "not valid JSON" not in "\n".join(l for l in cq.log().splitlines()
                                             if "reload_refused" not in l)
    cq.check_alive()


# ------------------------------------------------------------ outside kills

def test_sigkill_burst_never_stops_chatqd(start_chatqd, upstream):
    cq = start_chatqd(workers=2, concurrency=32)
    R = cq.prefix + "-replies"
    pids = cq.wait_workers(2)
    wait_registered(cq, pids)
    n = 300
    mock = {"content": ["a", "b", "c", "d"], "chunk_delay_ms": 25}
    jobs = [cq.mkjob(mock=mock, stream=True, reply_to=R, max_attempts=10) for _ in range(n)]
    ids = [j["id"] for j in jobs]
    rng = random.Random(9)
    kills, i = 0, 0
    killed = set()  # never count a kill of a pid not reaped yet twice
    t_next = time.monotonic()
    # Push jobs steadily and SIGKILL a random worker every 200-300 ms.
    while kills < 15 or i < n:
        if i < n:
            for j in jobs[i:i + 5]:
                cq.push(j)
            i += 5
        if kills < 15 and time.monotonic() >= t_next:
            alive = [p for p in cq.worker_pids() if p not in killed]
            if alive:
                victim = rng.choice(alive)
                os.kill(victim, signal.SIGKILL)
                killed.add(victim)
                kills += 1
            t_next = time.monotonic() + rng.uniform(0.2, 0.3)
        time.sleep(0.02)
        cq.check_alive()

    def ended():
        cq.check_alive()
        return all(v in ("succeeded", "failed") for v in statuses(cq, ids).values())
    wait_for(ended, 40, interval=0.05, what="every job to end")
    cq.wait_workers(2)
    cq.check_alive()
    assert not log_lines(cq, "crash_loop")
    exits = log_lines(cq, "worker_exited")
    assert len(exits) == kills, exits
    assert all(logfmt_field(l, "cause") == "killed" and logfmt_field(l, "signal") == "9"
               for l in exits), exits
    # every death replaced: the first two workers, then one per kill
    assert len(log_lines(cq, "worker_started")) == 2 + kills
    st = statuses(cq, ids)
    crashed = [j for j, s in st.items() if s != "succeeded"]
    # outside kills are no evidence against a job
    assert crashed == [], {j: cq.job(j).get("error") for j in crashed[:5]}
    assert cq.r.llen(cq.k("dead")) == 0
    assert len(cq.replies(R)) == n


def test_job_in_flight_at_three_sigkills_succeeds(start_chatqd, upstream):
    """The job stalls on its first three attempts (so it is in flight when
    its worker is killed) and answers on the fourth; max_attempts is the
    default 3: kills must not use attempts up."""
    cq = start_chatqd(workers=2, concurrency=8)
    pids = cq.wait_workers(2)
    wait_registered(cq, pids)
    stall = {"stall_after": 1}
    job = cq.mkjob(mock={"content": ["x", "y"], "script": [stall, stall, stall, {}]}, stream=True)
    raw = cq.push(job)
    for k in range(3):
        # the worker holding it, mid-stream
        def holder():
            for pid, wid in worker_ids_by_pid(cq).items():
                if job["id"] in processing_ids(cq, wid) and \
                        len(upstream.requests(cq.mock_key(job["id"]))) == k + 1:
                    return pid
            return None
        victim = wait_for(holder, 10, what="the job in flight (kill %d)" % (k + 1))
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in cq.worker_pids(), 5, what="the victim gone")
    h = cq.wait_job_done(job["id"], 20)
    assert h["status"] == "succeeded", h
    assert h["response"]["choices"][0]["message"]["content"] == "xy"
    assert len(upstream.requests(cq.mock_key(job["id"]))) == 4
    assert cq.r.hget(cq.k("crashes"), sha1(raw)) is None
    assert cq.r.llen(cq.k("dead")) == 0
    assert all(logfmt_field(l, "cause") == "killed" for l in log_lines(cq, "worker_exited"))


# ------------------------------------------------------------ crash loops

def test_crash_loop_when_workers_exit_at_once(start_chatqd, tmp_path):
    script = tmp_path / "worker-exits.sh"
    script.write_text("#!/bin/sh\nexit 1\n")
    script.chmod(0o755)
    cq = start_chatqd(workers=1, concurrency=4, env={"CHATQ_WORKER": str(script)})
    cq.expect_exit = True
    # ten deaths before ready: backoff 100 ms doubling with jitter, 16-33 s
    rc = cq.proc.wait(60 * SCALE)
    assert rc == 1, rc
    loop = log_lines(cq, "crash_loop")
    assert len(loop) == 1 and logfmt_field(loop[0], "deaths") == "10", loop
    exits = log_lines(cq, "worker_exited")
    assert len(exits) == 10, exits
    assert all(logfmt_field(l, "cause") == "error" and logfmt_field(l, "ready") == "0"
               for l in exits), exits
    assert log_lines(cq, "chatqd_stopped")


def test_progress_resets_the_crash_count(start_chatqd, upstream):
    """Nine faults of idle workers (no job ended), a job finished, nine more:
    chatqd lives on. A tenth in a row then makes it exit 1."""
    cq = start_chatqd(workers=1, concurrency=4)
    pid = cq.wait_workers(1)[0]

    def crash_next(pid):
        wait_registered(cq, [pid])  # said ready: the restart is quick
        os.kill(pid, signal.SIGSEGV)
        return new_worker_pids(cq, 1, [pid])[0]

    for _ in range(9):
        pid = crash_next(pid)
    cq.check_alive()
    wait_registered(cq, [pid])
    assert cq.run(cq.mkjob(mock={"content": ["go"]}))["status"] == "succeeded"
    wait_for(lambda: log_lines(cq, "crash_count_reset"), 5, what="crash_count_reset")
    assert logfmt_field(log_lines(cq, "crash_count_reset")[0], "barren_deaths") == "9"
    # The worker that ran the job may die now: it made progress, no count.
    pid = crash_next(pid)
    for _ in range(9):
        pid = crash_next(pid)
    cq.check_alive()
    assert not log_lines(cq, "crash_loop")
    exits = log_lines(cq, "worker_exited")
    assert len(exits) == 19
    assert all(logfmt_field(l, "cause") == "fault" and logfmt_field(l, "signal") == "11"
               for l in exits), exits
    # the tenth barren death in a row
    cq.expect_exit = True
    wait_registered(cq, [pid])
    os.kill(pid, signal.SIGSEGV)
    assert cq.proc.wait(15 * SCALE) == 1
    loop = log_lines(cq, "crash_loop")
    assert len(loop) == 1 and logfmt_field(loop[0], "deaths") == "10", loop


# ------------------------------------------------------------ poison pill, apart

def test_poison_pill_proven_apart_while_jobs_flow(start_chatqd, upstream):
    cq = start_chatqd(workers=2, concurrency=16, env={"CHATQ_WORKER": hooks_worker_path()})
    R = cq.prefix + "-replies"
    pids = cq.wait_workers(2)
    wait_registered(cq, pids)
    n = 200
    mock = {"content": ["p", "q"], "chunk_delay_ms": 20}
    jobs = [cq.mkjob(mock=mock, stream=True, reply_to=R) for _ in range(n)]
    pill = cq.mkjob(body={"chatq_test_crash": True}, reply_to=R)
    t0 = time.monotonic()
    raw_pill = None
    for k, j in enumerate(jobs):
        cq.push(j)
        if k == 20:
            raw_pill = cq.push(pill)
        time.sleep(0.005)
    wait_all_succeeded(cq, [j["id"] for j in jobs], 30)
    dead = wait_for(lambda: [d for d in cq.dead() if d["job"] == raw_pill], 15,
                    what="the pill in P:dead")
    assert len(dead) == 1 and dead[0]["error"]["code"] == "worker_crashed"
    assert len(cq.dead()) == 1
    exits = log_lines(cq, "worker_exited")
    assert len(exits) == 3, exits
    for l in exits:
        assert logfmt_field(l, "cause") == "fault" and logfmt_field(l, "signal") == "6", l
        assert logfmt_field(l, "culprit") == sha1(raw_pill), l
    # two of the three deaths were of the quarantine worker
    assert sum(1 for l in exits if logfmt_field(l, "quarantine") == "1") == 2, exits
    assert log_lines(cq, "worker_started")
    assert any(logfmt_field(l, "quarantine") == "1" for l in log_lines(cq, "worker_started"))
    # nobody waited behind the pill
    assert not log_lines(cq, "suspect_job_solo")
    rec = log_lines(cq, "worker_recovered")
    assert sum(int(logfmt_field(l, "jobs_dead")) for l in rec) == 1
    took = time.monotonic() - t0
    assert took < 20 * SCALE, took
    cq.check_alive()
    # the quarantine worker leaves once its lists are empty
    wait_for(lambda: len(cq.worker_pids()) == 2, 15, what="the quarantine worker gone")
    assert cq.r.llen(cq.k("quarantine", "default")) == 0


def test_quarantine_worker_runs_innocent_suspects_and_comes_back(start_chatqd, upstream):
    """A suspect that is innocent (counted twice without a culprit, say) runs
    in the quarantine worker and succeeds; the quarantine worker then exits,
    and a later suspect gets a new one."""
    cq = start_chatqd(workers=2, concurrency=8)
    cq.wait_workers(2)
    qkey = cq.k("quarantine", "default")
    for round_ in range(2):
        job = cq.mkjob()
        cq.r.lpush(qkey, json.dumps(job))
        h = cq.wait_job_done(job["id"], timeout=20)
        assert h["status"] == "succeeded", h
        assert h["worker"].endswith(".q"), h["worker"]  # run apart
        wait_for(lambda: len(log_lines(cq, "quarantine_empty")) > round_, 20,
                 what="the quarantine worker to exit")
        wait_for(lambda: cq.r.llen(qkey) == 0, 5, what="the quarantine list empty")
    assert cq.r.llen(cq.queue_key()) == 0
