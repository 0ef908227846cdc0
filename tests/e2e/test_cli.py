"""test_cli.py — the `chatq` client (docs/protocol.md §9) against a running chatqd:
submit (--wait, --stream, --json, --queue, --tenant), get, watch, cancel,
usage --json, stats, batch, and its exit status / one-line errors."""

import json

from conftest import utc_day

USAGE_KEYS = {"day", "tenant", "model", "requests", "succeeded", "failed", "prompt_tokens",
              "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens",
              "cost_micro_usd"}


def ok(p):
    assert p.returncode == 0, "exit %d\nstdout: %s\nstderr: %s" % (p.returncode, p.stdout, p.stderr)
    return p


def one_line_error(p):
    assert p.returncode != 0, "expected failure; stdout: %s" % p.stdout
    err = p.stderr.strip()
    assert err and "\n" not in err, "stderr should be one line: %r" % p.stderr
    return err


def job_ids_in(cq, text):
    """Tokens of text that name an existing job hash."""
    return [t for t in text.replace(",", " ").split() if cq.r.exists(cq.job_key(t.strip('"')))]


def test_submit_wait_prints_id_and_answer(cq):
    p = ok(cq.cli("submit", "-m", "mock-1", "--tenant", "cli-t", "--wait", "hello cli"))
    assert "echo: hello cli" in p.stdout
    ids = job_ids_in(cq, p.stdout)
    assert ids, "no job id in: %r" % p.stdout
    h = cq.wait_job_done(ids[0])
    assert h["status"] == "succeeded" and h["tenant"] == "cli-t"
    assert h["response"]["choices"][0]["message"]["content"] == "echo: hello cli"


def test_submit_without_wait_prints_the_id(cq):
    p = ok(cq.cli("submit", "-m", "mock-1", "just queue it"))
    jid = p.stdout.strip().splitlines()[0].strip()
    h = cq.wait_job_done(jid)
    assert h["status"] == "succeeded"


def test_submit_stream_prints_content(cq):
    p = ok(cq.cli("submit", "-m", "mock-1", "--stream", "stream me please"))
    assert "echo: stream me please" in p.stdout


def test_submit_json_from_stdin(cq, upstream):
    job = {"body": {"model": "mock-1", "messages": [{"role": "user", "content": "x"}],
                    "mock": {"key": cq.prefix + ":json", "content": ["from ", "json ", "file"]}},
           "metadata": {"via": "cli"}}
    p = ok(cq.cli("submit", "--json", "-", "--wait", input=json.dumps(job)))
    assert "from json file" in p.stdout
    assert len(upstream.requests(cq.prefix + ":json")) == 1


def test_submit_to_queue(start_chatqd):
    cq = start_chatqd(extra_args=["--queues", "default,other"])
    p = ok(cq.cli("submit", "-m", "mock-1", "--queue", "other", "--wait", "q"))
    ids = job_ids_in(cq, p.stdout)
    assert ids and cq.job(ids[0])["queue"] == "other"


def test_get_watch_usage_stats(cq):
    job = cq.mkjob(mock={"content": ["watched ", "answer"]}, stream=True, tenant="cli-u")
    h = cq.run(job)
    assert h["status"] == "succeeded"

    g = ok(cq.cli("get", job["id"]))
    assert "succeeded" in g.stdout and "watched answer" in g.stdout

    w = ok(cq.cli("watch", job["id"], timeout=15))
    assert "watched answer" in w.stdout

    u = ok(cq.cli("usage", "--json"))
    rows = json.loads(u.stdout)
    assert isinstance(rows, list)
    mine = [r for r in rows if r["tenant"] == "cli-u" and r["model"] == "mock-1"]
    assert len(mine) == 1
    r = mine[0]
    assert USAGE_KEYS <= set(r)
    assert r["day"] == utc_day()
    assert (r["requests"], r["succeeded"], r["failed"]) == (1, 1, 0)
    assert (r["prompt_tokens"], r["completion_tokens"], r["total_tokens"]) == (9, 12, 21)
    assert (r["cached_tokens"], r["reasoning_tokens"]) == (0, 0)

    other = cq.mkjob(tenant="someone-else")
    cq.run(other)
    rows = json.loads(ok(cq.cli("usage", "--json", "--tenant", "cli-u")).stdout)
    assert {r["tenant"] for r in rows} == {"cli-u"}
    assert json.loads(ok(cq.cli("usage", "--json", "--day", "2001-01-01")).stdout) == []

    s = ok(cq.cli("stats"))
    assert s.stdout.strip()


def test_get_unknown_job_fails(cq):
    one_line_error(cq.cli("get", "no-such-job"))


def test_cancel_command(cq):
    job = cq.mkjob(mock={"stall_after": 1}, stream=True)
    sub = cq.subscribe(job["id"])
    cq.push(job)
    sub.collect(until=lambda ms: any(m["type"] == "chunk" for m in ms))
    ok(cq.cli("cancel", job["id"]))
    assert cq.wait_job_done(job["id"], timeout=5)["status"] == "cancelled"


def test_batch(cq, tmp_path):
    src = tmp_path / "in.jsonl"
    out = tmp_path / "out.jsonl"
    lines = []
    for i in range(3):
        lines.append({"custom_id": "req-%d" % i, "method": "POST", "url": "/v1/chat/completions",
                      "body": {"model": "mock-1", "messages": [{"role": "user", "content": "batch %d" % i}],
                               "mock": {"key": "%s:batch-%d" % (cq.prefix, i)}}})
    src.write_text("".join(json.dumps(l) + "\n" for l in lines))
    ok(cq.cli("batch", str(src), "-o", str(out), timeout=30))
    got = [json.loads(l) for l in out.read_text().splitlines() if l.strip()]
    assert sorted(g["custom_id"] for g in got) == ["req-0", "req-1", "req-2"]
    for g in got:
        i = int(g["custom_id"].split("-")[1])
        assert g["error"] is None
        assert g["response"]["status_code"] == 200
        assert g["response"]["body"]["choices"][0]["message"]["content"] == "echo: batch %d" % i


def test_usage_errors(cq):
    one_line_error(cq.cli("submit"))
    one_line_error(cq.cli("no-such-command"))
