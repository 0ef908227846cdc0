"""test_batch.py — `chatq batch` (issue 4, item 4) against a real chatqd.

A 10,000-line input with every 7th line answered 400 by the stand-in
upstream must give exactly one output line per input line, split between
OUT and ERR, in the OpenAI Batch output format. Killing the CLI mid-run
(SIGKILL, and Ctrl-C: exit 130) and running it again with --resume must
give the same set with no duplicate, and the upstream must have seen every
line exactly once (nothing resubmitted). A file with bad lines is refused
whole: every bad line named, nothing queued, no batch keys, no output.
Also: --window bounds what is queued, a half-written output line left by a
crash is cut and written again, --resume refuses a changed input or other
settings, the summary's cost follows the price table, and on a terminal
the progress bar is redrawn in place.

Line n (1-based) has custom_id "request-<n>", asks "line <n>" and uses the
stand-in's key "<prefix>:L<n>", so every expectation is computed from n."""

import json
import math
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import BIN, SCALE, wait_for

N = 10000
FAIL_EVERY = 7
CONCURRENCY = 256


def failing(n):
    return n % FAIL_EVERY == 0


def batch_line(prefix, n, fail=None):
    mock = {"key": "%s:L%d" % (prefix, n)}
    if failing(n) if fail is None else fail:
        mock.update({"status": 400, "message": "bad request %d" % n, "code": "mock_400"})
    return {"custom_id": "request-%d" % n, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "mock-batch", "messages": [{"role": "user", "content": "line %d" % n}],
                     "mock": mock}}


def write_input(path, prefix, n=N):
    with open(path, "w") as f:
        for i in range(1, n + 1):
            f.write(json.dumps(batch_line(prefix, i)) + "\n")


def read_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        text = f.read()
    assert text == "" or text.endswith("\n"), "%s does not end with a newline" % path
    return [json.loads(l) for l in text.splitlines()]


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def batch_keys(cq):
    return sorted(cq.r.scan_iter(match=cq.k("batch", "*"), count=1000))


def start_batch(cq, *args):
    """The CLI in the background (stderr is not a terminal)."""
    return subprocess.Popen([os.path.join(BIN, "chatq"), "batch"] + [str(a) for a in args],
                            env=cq.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p, timeout=120):
    out, err = p.communicate(timeout=timeout * SCALE)
    return p.returncode, out, err


def run_batch(cq, *args, timeout=120):
    p = cq.cli("batch", *args, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def check_output(cq, upstream, out, err, n=N):
    """The invariants of a finished batch of n lines from write_input();
    err None: no errors file, every line in out."""
    ok_lines, err_lines = read_jsonl(out), read_jsonl(err) if err else []
    assert len(ok_lines) + len(err_lines) == n, (len(ok_lines), len(err_lines))
    cids = [l["custom_id"] for l in ok_lines + err_lines]
    assert len(set(cids)) == n, "duplicate custom_ids in the output"
    assert set(cids) == {"request-%d" % i for i in range(1, n + 1)}
    batch_ids = set()
    for l in ok_lines + err_lines:
        assert set(l) == {"id", "custom_id", "response", "error"}, l
        i = int(l["custom_id"].split("-")[1])
        bid, _, line_no = l["id"].rpartition("-")
        assert line_no == str(i), l["id"]
        batch_ids.add(bid)
        assert l["error"] is None
        resp = l["response"]
        assert set(resp) == {"status_code", "request_id", "body"}
        assert isinstance(resp["request_id"], str) and resp["request_id"].startswith("req-")
        if failing(i):
            assert resp["status_code"] == 400
            assert resp["body"]["error"]["message"] == "bad request %d" % i
        else:
            assert resp["status_code"] == 200
            assert resp["body"]["object"] == "chat.completion"
            assert resp["body"]["choices"][0]["message"]["content"] == "echo: line %d" % i
            assert resp["body"]["usage"]["total_tokens"] == 21
    assert len(batch_ids) == 1 and list(batch_ids)[0].startswith("b"), batch_ids
    if err:
        assert all(not failing(int(l["custom_id"].split("-")[1])) for l in ok_lines)
        assert all(failing(int(l["custom_id"].split("-")[1])) for l in err_lines)
    # Every line reached the upstream exactly once: nothing was resubmitted.
    by_key = upstream.stats()["by_key"]
    mine = {k: v for k, v in by_key.items() if k.startswith(cq.prefix + ":L")}
    assert len(mine) == n
    twice = sorted(k for k, v in mine.items() if v != 1)
    assert not twice, "sent more than once: %s" % twice[:10]
    # The batch cleaned up after itself.
    assert not os.path.exists(str(out) + ".chatq-batch")
    assert batch_keys(cq) == []
    assert cq.r.llen(cq.queue_key()) == 0
    return list(batch_ids)[0]


def check_summary(stdout, n=N):
    failed = n // FAIL_EVERY
    assert "%d lines: %d succeeded, %d failed" % (n, n - failed, failed) in stdout, stdout
    assert "tokens: %d prompt, %d completion, %d total" % (
        9 * (n - failed), 12 * (n - failed), 21 * (n - failed)) in stdout, stdout


@pytest.fixture
def bq(start_chatqd):
    return start_chatqd(workers=2, concurrency=CONCURRENCY)


# ---------------------------------------------------------------- a whole run

def test_batch_10000_lines_with_errors(bq, upstream, tmp_path):
    src, out, err = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    write_input(src, bq.prefix)
    t = time.monotonic()
    rc, stdout, stderr = run_batch(bq, src, "-o", out, "--errors", err)
    elapsed = time.monotonic() - t
    assert rc == 0, stderr
    bid = check_output(bq, upstream, out, err)
    check_summary(stdout)
    assert "batch %s" % bid in stdout
    # The jobs kept their results under the batch's ids, echoing custom_id.
    h = bq.job("%s-3" % bid)
    assert h["status"] == "succeeded"
    assert h["response"]["choices"][0]["message"]["content"] == "echo: line 3"
    assert bq.job("%s-7" % bid)["error"]["status"] == 400
    print("10000 lines in %.1f s" % elapsed)


def test_batch_without_errors_file_writes_all_to_out(bq, upstream, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, bq.prefix, n=50)
    rc, stdout, stderr = run_batch(bq, src, "-o", out, "--tenant", "tb", "--window", "7")
    assert rc == 0, stderr
    check_output(bq, upstream, out, None, n=50)
    check_summary(stdout, n=50)
    got = read_jsonl(out)
    assert sum(1 for l in got if l["response"]["status_code"] == 400) == 50 // FAIL_EVERY
    # --tenant: the usage is accounted to it.
    u = bq.usage()
    assert u["tb|mock-batch|requests"] == 50 and u["tb|mock-batch|failed"] == 50 // FAIL_EVERY


def test_window_bounds_what_is_queued(bq, upstream, tmp_path):
    """With --window 20 and slow answers, never more than 20 jobs are queued
    or running at once (the stand-in counts its open requests)."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    with open(src, "w") as f:
        for i in range(1, 121):
            line = batch_line(bq.prefix, i, fail=False)
            line["body"]["mock"]["delay_ms"] = 30
            f.write(json.dumps(line) + "\n")
    workers = wait_for(lambda: (lambda w: w if len(w) == 2 else None)(bq.r.hkeys(bq.k("workers"))),
                       10, what="2 registered workers")
    procs = [bq.k("processing", w, "default") for w in workers]
    p = start_batch(bq, src, "-o", out, "--window", "20")
    peak = 0
    while p.poll() is None:
        # One transaction, so a job moving from the queue to a worker is
        # not counted twice.
        tx = bq.r.pipeline(transaction=True)
        tx.llen(bq.queue_key())
        for k in procs:
            tx.llen(k)
        peak = max(peak, sum(tx.execute()))
        time.sleep(0.005)
    rc, stdout, stderr = finish(p)
    assert rc == 0, stderr
    assert len(read_jsonl(out)) == 120
    assert 0 < peak <= 20, peak


# ---------------------------------------------------------------- interruptions

def interrupt_mid_run(bq, src, out, err, sig, at_least=2000):
    p = start_batch(bq, src, "-o", out, "--errors", err)
    wait_for(lambda: p.poll() is not None or count_lines(out) + count_lines(err) >= at_least,
             60, what="%d output lines" % at_least)
    assert p.poll() is None, "the batch ended before it could be interrupted: %s" % (p.communicate(),)
    p.send_signal(sig)
    return finish(p)


def test_sigkill_then_resume(bq, upstream, tmp_path):
    src, out, err = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    write_input(src, bq.prefix)
    rc, _, _ = interrupt_mid_run(bq, src, out, err, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    state = str(out) + ".chatq-batch"
    assert os.path.exists(state)
    written = count_lines(out) + count_lines(err)
    assert written < N
    # While no one collects, the queued jobs finish and their lines wait in Redis.
    wait_for(lambda: bq.r.llen(bq.queue_key()) == 0, 60, what="the queue to drain")
    # A run without --resume refuses to touch the interrupted batch.
    rc2, _, stderr2 = run_batch(bq, src, "-o", out, "--errors", err)
    assert rc2 == 1 and "--resume" in stderr2
    rc, stdout, stderr = run_batch(bq, src, "-o", out, "--resume")  # --errors is remembered
    assert rc == 0, stderr
    assert "resumed" in stderr
    check_output(bq, upstream, out, err)
    check_summary(stdout)


def test_ctrl_c_exits_130_then_resume(bq, upstream, tmp_path):
    src, out, err = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    write_input(src, bq.prefix)
    rc, _, stderr = interrupt_mid_run(bq, src, out, err, signal.SIGINT)
    assert rc == 130, stderr
    assert "--resume" in stderr.strip().splitlines()[-1]
    assert os.path.exists(str(out) + ".chatq-batch")
    # What was written is whole: every line parses (no half line at the end).
    partial = read_jsonl(out) + read_jsonl(err)
    assert 0 < len(partial) < N
    assert len({l["custom_id"] for l in partial}) == len(partial)
    rc, stdout, stderr = run_batch(bq, src, "-o", out, "--errors", err, "--resume")
    assert rc == 0, stderr
    check_output(bq, upstream, out, err)
    check_summary(stdout)


def test_repeated_kills_then_resume(bq, upstream, tmp_path):
    """Killed three times at different points, early ones before all lines
    are even queued; each resume continues and the last one completes."""
    n = 3000
    src, out, err = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    write_input(src, bq.prefix, n=n)
    args = (src, "-o", out, "--errors", err, "--window", "300")
    for i, at in enumerate((200, 900, 1800)):
        p = start_batch(bq, *(args + (("--resume",) if i else ())))
        wait_for(lambda: p.poll() is not None or count_lines(out) + count_lines(err) >= at,
                 60, what="%d output lines" % at)
        p.kill()
        p.communicate()
    rc, stdout, stderr = run_batch(bq, *(args + ("--resume",)))
    assert rc == 0, stderr
    check_output(bq, upstream, out, err, n=n)


def test_resume_damaged_tail_is_cut_and_rewritten(bq, upstream, tmp_path):
    """A crash in the middle of a write leaves half a line at the end of OUT:
    --resume cuts it and writes that line again from Redis."""
    n = 40
    src, out, err = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "err.jsonl"
    with open(src, "w") as f:
        for i in range(1, n + 1):
            line = batch_line(bq.prefix, i)
            line["body"]["mock"]["delay_ms"] = 300
            f.write(json.dumps(line) + "\n")
    # Killed right after the first push, before any answer can come.
    p = start_batch(bq, src, "-o", out, "--errors", err, "--window", "10")
    state = str(out) + ".chatq-batch"
    bid = wait_for(lambda: os.path.exists(state) and json.load(open(state))["batch_id"], 10,
                   what="the state file")
    wait_for(lambda: bq.r.hget(bq.k("batch", bid), "submitted"), 10, what="the first push")
    p.kill()
    p.communicate()
    assert bq.r.hget(bq.k("batch", bid), "submitted") == "10"
    reply = bq.k("batch", bid, "out")
    wait_for(lambda: bq.r.llen(reply) == 10, 20, what="10 answers in %s" % reply)
    # Simulate a crash half-way through writing the oldest answer.
    oldest = bq.r.lindex(reply, -1)
    with open(out, "w") as f:
        f.write(oldest[: len(oldest) // 2])
    rc, stdout, stderr = run_batch(bq, src, "-o", out, "--resume")
    assert rc == 0, stderr
    assert "cut an incomplete line" in stderr
    check_output(bq, upstream, out, err, n=n)


# ---------------------------------------------------------------- refusals

def test_invalid_lines_refuse_the_whole_file(bq, upstream, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    good = lambda i: json.dumps(batch_line(bq.prefix, i, fail=False))
    no_cid = batch_line(bq.prefix, 5, fail=False)
    del no_cid["custom_id"]
    bad_method = dict(batch_line(bq.prefix, 6, fail=False), method="GET")
    no_url = batch_line(bq.prefix, 7, fail=False)
    del no_url["url"]
    no_msgs = batch_line(bq.prefix, 8, fail=False)
    no_msgs["body"]["messages"] = []
    with_id = dict(batch_line(bq.prefix, 11, fail=False), id="mine")
    lines = [
        good(1),                                   # 1
        "{not json",                               # 2
        good(3),                                   # 3
        "",                                        # 4 empty line
        json.dumps(no_cid),                        # 5
        json.dumps(bad_method),                    # 6
        json.dumps(no_url),                        # 7
        json.dumps(no_msgs),                       # 8
        good(1),                                   # 9 duplicate custom_id of line 1
        "[1, 2]",                                  # 10
        json.dumps(with_id),                       # 11
        good(12),                                  # 12
    ]
    src.write_text("\n".join(lines) + "\n")
    rc, stdout, stderr = run_batch(bq, src, "-o", out)
    assert rc == 1
    named = {}
    for line in stderr.splitlines():
        m = re.match(r"chatq: %s:(\d+): (.*)$" % re.escape(str(src)), line)
        if m:
            assert int(m.group(1)) not in named, "line %s named twice" % m.group(1)
            named[int(m.group(1))] = m.group(2)
    assert sorted(named) == [2, 4, 5, 6, 7, 8, 9, 10, 11], stderr
    assert "not valid JSON" in named[2]
    assert named[4] == "empty line"
    assert "custom_id is required" in named[5]
    assert "method" in named[6] and "POST" in named[6]
    assert "url is required" in named[7]
    assert "body.messages" in named[8]
    assert named[9] == 'duplicate custom_id "request-1" (first on line 1)'
    assert "object" in named[10]
    assert "id is not allowed" in named[11]
    assert "9 of 12 lines are invalid; nothing was submitted" in stderr
    # Nothing queued, no batch keys, no output, no state.
    assert bq.r.llen(bq.queue_key()) == 0
    assert batch_keys(bq) == []
    assert not out.exists() and not os.path.exists(str(out) + ".chatq-batch")
    assert upstream.stats()["by_key"].get("%s:L1" % bq.prefix) is None


def test_many_bad_lines_are_capped(bq, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join("{\"custom_id\": \"x%d\"}\n" % i for i in range(250)))
    rc, _, stderr = run_batch(bq, src, "-o", out)
    assert rc == 1
    lines = stderr.splitlines()
    named = [l for l in lines if re.match(r"chatq: %s:\d+: method is required" % re.escape(str(src)), l)]
    assert len(named) == 100 and named[0].startswith("chatq: %s:1: " % src)
    assert named[-1].startswith("chatq: %s:100: " % src)
    assert "... and 150 more bad lines" in stderr
    assert "250 of 250 lines are invalid" in stderr
    assert bq.r.llen(bq.queue_key()) == 0


def test_duplicate_custom_ids_far_apart(bq, tmp_path):
    """The duplicate check reads the earlier line back: it must find the
    right one past the first offset mark (every 64 lines)."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [json.dumps(batch_line(bq.prefix, i, fail=False)) for i in range(1, 301)]
    lines[299] = lines[130]  # line 300 repeats line 131's custom_id
    src.write_text("\n".join(lines) + "\n")
    rc, _, stderr = run_batch(bq, src, "-o", out)
    assert rc == 1
    assert 'chatq: %s:300: duplicate custom_id "request-131" (first on line 131)' % src in stderr
    assert bq.r.llen(bq.queue_key()) == 0


def test_resume_and_state_errors(bq, tmp_path):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, bq.prefix, n=3)
    rc, _, stderr = run_batch(bq, src, "-o", out, "--resume")
    assert rc == 1 and "nothing to resume" in stderr
    assert len(stderr.strip().splitlines()) == 1
    # An interrupted batch (slow answers: it cannot end first), then a
    # changed input: refused.
    with open(src, "w") as f:
        for i in range(1, 4):
            line = batch_line(bq.prefix, i)
            line["body"]["mock"]["delay_ms"] = 2000
            f.write(json.dumps(line) + "\n")
    state = str(out) + ".chatq-batch"
    p = start_batch(bq, src, "-o", out, "--window", "1")
    wait_for(lambda: os.path.exists(state), 10, what="the state file")
    p.kill()
    p.communicate()
    write_input(src, bq.prefix + "x", n=3)
    rc, _, stderr = run_batch(bq, src, "-o", out, "--resume")
    assert rc == 1 and "not the file the batch started with" in stderr
    rc, _, stderr = run_batch(bq, src, "-o", out, "--resume", "--queue", "other")
    assert rc == 1 and "--queue" in stderr
    # The input as the output: refused before anything is written.
    os.unlink(state)
    before = src.read_text()
    rc, _, stderr = run_batch(bq, src, "-o", src)
    assert rc == 1 and "input file" in stderr
    assert src.read_text() == before


def test_usage_errors(bq, tmp_path):
    rc, _, stderr = run_batch(bq, tmp_path / "in.jsonl")
    assert rc == 2 and "-o" in stderr
    rc, _, stderr = run_batch(bq, tmp_path / "missing.jsonl", "-o", tmp_path / "o.jsonl")
    assert rc == 1 and "cannot open" in stderr
    rc, _, stderr = run_batch(bq, "a", "-o", "b", "--window", "0")
    assert rc == 2 and "--window" in stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    rc, _, stderr = run_batch(bq, empty, "-o", tmp_path / "o.jsonl")
    assert rc == 1 and "no request" in stderr


# ---------------------------------------------------------------- cost

def test_summary_cost_follows_the_price_table(start_chatqd, upstream, tmp_path):
    """Lines priced by model pattern, by their explicit provider, and not at
    all; the summary's cost is the price table's arithmetic (per line,
    rounded to the micro-dollar) and matches the workers' usage counters."""
    cq = start_chatqd(config={"providers": [
        {"name": "priced", "base_url": upstream.url, "models": ["*"],
         "prices": {"mock-price*": {"input": 2.5, "cached_input": 1.25, "output": 10}}},
        {"name": "other", "base_url": upstream.url, "models": ["none"],
         "prices": {"mock-x": {"input": 1, "output": 3}}},
    ]})
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    expected, unpriced = 0, 0
    with open(src, "w") as f:
        for i in range(1, 31):
            line = batch_line(cq.prefix, i, fail=False)
            body, mock = line["body"], line["body"]["mock"]
            if i % 3 == 0:
                body["model"] = "mock-price-a"
                mock["usage"] = {"prompt_tokens": 1000 + i, "completion_tokens": 50,
                                 "total_tokens": 1050 + i,
                                 "prompt_tokens_details": {"cached_tokens": 100}}
                # rounded half away from zero, as llround() does
                expected += math.floor((900 + i) * 2.5 + 100 * 1.25 + 50 * 10 + 0.5)
            elif i % 3 == 1:
                line["provider"] = "other"
                body["model"] = "mock-x"
                mock["usage"] = {"prompt_tokens": 10 + i, "completion_tokens": 20,
                                 "total_tokens": 30 + i}
                expected += (10 + i) * 1 + 20 * 3
            else:
                body["model"] = "mock-free"
                unpriced += 1
            f.write(json.dumps(line) + "\n")
    rc, stdout, stderr = run_batch(cq, src, "-o", out)
    assert rc == 0, stderr
    assert len(read_jsonl(out)) == 30
    want = "cost: $%d.%06d (%d answers of models without a price not counted)" % (
        expected // 10 ** 6, expected % 10 ** 6, unpriced)
    assert want in stdout, stdout
    counted = sum(v for k, v in cq.usage().items() if k.endswith("|cost_micro_usd"))
    assert counted == expected


# ---------------------------------------------------------------- progress

def test_progress_bar_on_a_terminal(bq, tmp_path):
    """stderr a terminal: a bar redrawn in place (\\r, erase line), cleared
    at the end; the summary on stdout."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(src, bq.prefix, n=300)
    master, slave = os.openpty()
    try:
        p = subprocess.Popen([os.path.join(BIN, "chatq"), "batch", str(src), "-o", str(out)],
                             env=bq.env, stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        stdout, _ = p.communicate(timeout=60 * SCALE)
        tty = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            tty += chunk
    finally:
        os.close(master)
    assert p.returncode == 0, tty
    text = tty.decode()
    bars = re.findall(r"\r\x1b\[K\[([#.]{16})\] (\d+)/300 \d+% \| (\d+) failed \| \d+/s \| ETA \S+ \| \S+ tokens",
                      text)
    assert bars, repr(text[-500:])
    assert all(int(done) <= 300 for _, done, _ in bars)
    assert text.endswith("\r\x1b[K"), repr(text[-100:])  # cleared before the summary
    assert "300 lines: %d succeeded" % (300 - 300 // FAIL_EVERY) in stdout
