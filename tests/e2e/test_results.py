"""test_results.py — what a finished job leaves behind (docs/protocol.md §4 ids, §6 output
lines, §7 usage counters) and provider routing (docs/protocol.md §2), including that
API keys never reach Redis or the log."""

import re

import pytest

from conftest import API_KEY, free_port, utc_day, wait_for

USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
         "prompt_tokens_details": {"cached_tokens": 4},
         "completion_tokens_details": {"reasoning_tokens": 2}}
ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def reply_key(cq):
    return cq.prefix + "-replies"  # reply_to may not name a key under P:


def test_output_line_success(cq):
    R = reply_key(cq)
    a = cq.mkjob(mock={"request_id": "req-out-a", "content": ["fine"]}, custom_id="cust-a", reply_to=R)
    b = cq.mkjob(mock={"request_id": "req-out-b", "content": ["streamed"]}, stream=True, reply_to=R)
    cq.push(a)
    cq.push(b)
    lines = {l["id"]: l for l in cq.wait_replies(R, 2)}
    ha = cq.wait_job_done(a["id"])
    hb = cq.wait_job_done(b["id"])
    assert lines[a["id"]] == {"id": a["id"], "custom_id": "cust-a",
                              "response": {"status_code": 200, "request_id": "req-out-a",
                                           "body": ha["response"]},
                              "error": None}
    # custom_id absent: the id stands in; the body is the assembled response.
    assert lines[b["id"]] == {"id": b["id"], "custom_id": b["id"],
                              "response": {"status_code": 200, "request_id": "req-out-b",
                                           "body": hb["response"]},
                              "error": None}
    assert hb["response"]["choices"][0]["message"]["content"] == "streamed"


def test_output_line_upstream_errors(cq):
    R = reply_key(cq)
    err = {"error": {"message": "context too long", "type": "invalid_request_error",
                     "param": "messages", "code": "context_length_exceeded"}}
    a = cq.mkjob(mock={"status": 400, "error_body": err, "request_id": "req-e400"}, custom_id="c-400",
                 reply_to=R)
    b = cq.mkjob(mock={"status": 503, "request_id": "req-e503"}, max_attempts=2, reply_to=R)
    cq.push(a)
    cq.push(b)
    lines = {l["id"]: l for l in cq.wait_replies(R, 2)}
    assert lines[a["id"]] == {"id": a["id"], "custom_id": "c-400",
                              "response": {"status_code": 400, "request_id": "req-e400", "body": err},
                              "error": None}
    lb = lines[b["id"]]
    assert lb["error"] is None
    assert lb["response"]["status_code"] == 503
    assert lb["response"]["request_id"] == "req-e503"
    assert lb["response"]["body"]["error"]["code"] == "mock_503"


def test_output_line_without_http_answer(start_chatqd, upstream):
    port = free_port()  # nothing listens there
    cq = start_chatqd(config={"providers": [
        {"name": "mock", "base_url": upstream.url, "api_key_env": "OPENAI_API_KEY", "models": ["mock-*"]},
        {"name": "down", "base_url": "http://127.0.0.1:%d/v1" % port, "api_key_env": "OPENAI_API_KEY",
         "models": ["down-*"]}]})
    R = reply_key(cq)
    t = cq.mkjob(mock={"delay_ms": 3000}, timeout_ms=200, max_attempts=1, custom_id="c-t", reply_to=R)
    d = cq.mkjob(model="down-1", max_attempts=2, reply_to=R)
    cq.push(t)
    cq.push(d)
    lines = {l["id"]: l for l in cq.wait_replies(R, 2)}
    lt = lines[t["id"]]
    assert lt["custom_id"] == "c-t" and lt["response"] is None
    assert lt["error"]["code"] == "timeout" and isinstance(lt["error"]["message"], str)
    assert set(lt["error"]) == {"code", "message"}
    ld = lines[d["id"]]
    assert ld["response"] is None and ld["error"]["code"] == "connection_error"
    hd = cq.wait_job_done(d["id"])
    assert hd["status"] == "failed" and hd["attempts"] == 2
    assert hd["error"]["code"] == "connection_error" and hd["error"]["status"] == 0
    assert hd["provider"] == "down"


def test_ids_from_custom_id_and_generated(cq, upstream):
    R = reply_key(cq)
    a = cq.mkjob(custom_id="only-custom.1", reply_to=R)
    a.pop("id")
    b = cq.mkjob(mock={"key": cq.prefix + ":generated"}, reply_to=R)
    b.pop("id")
    cq.push(a)
    cq.push(b)
    lines = cq.wait_replies(R, 2)
    by_custom = {l["custom_id"]: l for l in lines}
    la = by_custom["only-custom.1"]
    assert la["id"] == "only-custom.1"
    assert cq.wait_job_done("only-custom.1")["status"] == "succeeded"
    lb = [l for l in lines if l is not la][0]
    assert ID_RE.match(lb["id"]) and lb["custom_id"] == lb["id"]
    hb = cq.wait_job_done(lb["id"])
    assert hb["status"] == "succeeded"
    assert lb["response"]["body"] == hb["response"]
    assert len(upstream.requests(cq.prefix + ":generated")) == 1


def nonzero(d):
    return {k: v for k, v in d.items() if v != 0}


def test_usage_counters(cq):
    day0 = utc_day()
    jobs = [
        cq.mkjob(model="mock-u", tenant="acme", mock={"usage": USAGE}),
        cq.mkjob(model="mock-u", tenant="acme", mock={"usage": USAGE}, stream=True),
        # Retried once: still one request in the counters.
        cq.mkjob(model="mock-u", tenant="acme", stream=True,
                 mock={"usage": USAGE, "fail_first": 1, "fail": {"reset": "mid_stream"}}),
        cq.mkjob(model="mock-u", tenant="acme", mock={"status": 400}),
        # No tenant; usage counted under the model the job asked for.
        cq.mkjob(model="mock-v", mock={"usage": {"prompt_tokens": 3, "completion_tokens": 4,
                                                 "total_tokens": 7}, "reply_model": "served-v"}),
    ]
    for j in jobs:
        cq.push(j)
    for j in jobs:
        cq.wait_job_done(j["id"])
    if utc_day() != day0:
        pytest.skip("UTC day changed during the test")
    want = {
        "acme|mock-u|requests": 4, "acme|mock-u|succeeded": 3, "acme|mock-u|failed": 1,
        "acme|mock-u|prompt_tokens": 30, "acme|mock-u|completion_tokens": 15,
        "acme|mock-u|total_tokens": 45, "acme|mock-u|cached_tokens": 12,
        "acme|mock-u|reasoning_tokens": 6,
        "|mock-v|requests": 1, "|mock-v|succeeded": 1, "|mock-v|prompt_tokens": 3,
        "|mock-v|completion_tokens": 4, "|mock-v|total_tokens": 7,
    }
    # Counters are written when a job ends; allow the last HINCRBYs to land.
    wait_for(lambda: nonzero(cq.usage(day0)) == want, 5,
             what="usage counters %s == %s" % (nonzero(cq.usage(day0)), want))


def test_routing_keys_and_secrets(start_chatqd, upstream, tmp_path):
    keyfile = tmp_path / "alt.key"
    keyfile.write_text("sk-file-secret-456\n")
    cq = start_chatqd(
        config={"providers": [
            {"name": "mockp", "base_url": upstream.url, "api_key_env": "OPENAI_API_KEY", "models": ["mock-*"]},
            {"name": "alt", "base_url": upstream.url, "api_key_env": "ALT_API_KEY", "models": ["alt-*"],
             "headers": {"X-Extra": "yes"}},
            {"name": "filed", "base_url": upstream.url, "api_key_file": str(keyfile), "models": ["file-*"]},
        ]},
        env={"ALT_API_KEY": "sk-alt-secret-123"})
    m = cq.mkjob(model="mock-r")
    a = cq.mkjob(model="alt-r")
    f = cq.mkjob(model="file-r")
    o = cq.mkjob(model="mock-r", provider="alt")
    n = cq.mkjob(model="nomatch-r", max_attempts=1)
    for j in (m, a, f, o, n):
        cq.push(j)
    hm, ha, hf, ho, hn = (cq.wait_job_done(j["id"]) for j in (m, a, f, o, n))

    def auth(j):
        return upstream.requests(cq.mock_key(j["id"]))[0]["headers"]

    assert hm["status"] == "succeeded" and hm["provider"] == "mockp"
    assert auth(m)["authorization"] == "Bearer " + API_KEY
    assert ha["provider"] == "alt" and auth(a)["authorization"] == "Bearer sk-alt-secret-123"
    assert auth(a)["x-extra"] == "yes"
    assert hf["provider"] == "filed" and auth(f)["authorization"] == "Bearer sk-file-secret-456"
    assert ho["provider"] == "alt" and auth(o)["authorization"] == "Bearer sk-alt-secret-123"
    assert hn["status"] == "failed" and hn["error"]["code"] == "no_provider"
    assert upstream.requests(cq.mock_key(n["id"])) == []

    # No key in any value under the prefix, nor in the log.
    secrets = (API_KEY, "sk-alt-secret-123", "sk-file-secret-456")
    for key in cq.r.scan_iter(cq.prefix + ":*"):
        t = cq.r.type(key)
        if t == "string":
            vals = [cq.r.get(key)]
        elif t == "hash":
            vals = list(cq.r.hgetall(key).values())
        elif t == "list":
            vals = cq.r.lrange(key, 0, -1)
        else:
            vals = []
        for v in vals:
            for s in secrets:
                assert s not in (v or ""), "secret found in %s" % key
    log = cq.log()
    for s in secrets:
        assert s not in log


def test_reply_to_that_is_not_a_list_does_not_undo_the_result(cq):
    """A producer's reply_to key of the wrong type must not cost the result,
    the usage or the events: only the output line cannot go there."""
    bad = cq.prefix + "-not-a-list"
    cq.r.set(bad, "a string")
    job = cq.mkjob(reply_to=bad)
    h = cq.run(job)
    assert h["status"] == "succeeded", h
    assert cq.r.get(bad) == "a string"
    assert cq.events(job["id"])[-1]["type"] == "done"
    assert cq.usage().get("|mock-1|succeeded") == 1
    assert "reply_to_failed" in cq.log()
