"""test_pipeline.py — one job through chatqd end to end (docs/protocol.md §4-§6, §8
upstream faults): what chatq sends upstream, what it stores in the job hash,
the stream events it publishes, the assembled response, and how each kind of
upstream failure ends (retry, fail at once, timeout, idle timeout, truncated
or unparseable streams, oversized answers)."""


import pytest

from conftest import API_KEY, SCALE, now_ms, wait_for

USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
         "prompt_tokens_details": {"cached_tokens": 3},
         "completion_tokens_details": {"reasoning_tokens": 2}}


def content_of(h, i=0):
    return h["response"]["choices"][i]["message"]["content"]


def chunk_events(msgs):
    return [m for m in msgs if m["type"] == "chunk"]


def assert_seq(msgs):
    assert [m["seq"] for m in msgs] == list(range(len(msgs))), [m["seq"] for m in msgs]


def upstream_error_object(err_body):
    """docs/protocol.md §6 error.upstream is "the upstream error object": accept the
    body's "error" member or the whole body."""
    return (err_body["error"], err_body)


# ------------------------------------------------------------ success paths

def test_nonstream_success_stores_every_field(cq, upstream):
    meta = {"user": "u-17", "tags": ["a", "b"], "nested": {"n": 1}}
    job = cq.mkjob(mock={"content": ["Hello", " world"], "usage": USAGE, "request_id": "req-ns-1"},
                   tenant="acme", metadata=meta,
                   body={"temperature": 0.5, "x_custom": {"keep": [1, 2, None]}, "max_tokens": 77})
    t0 = now_ms()
    h = cq.run(job)
    t1 = now_ms()

    assert h["status"] == "succeeded"
    assert h["attempts"] == 1
    assert h["usage"] == USAGE
    assert h["model"] == "mock-1"
    assert h["provider"] == "default"
    assert h["tenant"] == "acme"
    assert h["queue"] == "default"
    assert h["worker"]
    assert t0 <= h["started_at"] <= h["first_token_at"] <= h["finished_at"] <= t1
    assert h["metadata"] == meta

    recs = upstream.requests(cq.mock_key(job["id"]))
    assert len(recs) == 1
    rec = recs[0]
    # The response of a non-stream job is the upstream's answer.
    assert h["response"] == rec["sent"][0]
    assert content_of(h) == "Hello world"
    assert h["response"]["choices"][0]["finish_reason"] == "stop"
    # What went upstream: the body unchanged, the key as a bearer token.
    assert rec["method"] == "POST" and rec["path"] == "/v1/chat/completions"
    assert rec["headers"]["authorization"] == "Bearer " + API_KEY
    assert rec["headers"]["content-type"].startswith("application/json")
    assert rec["body"] == job["body"]
    assert "stream" not in rec["body"]

    ttl = cq.r.ttl(cq.job_key(job["id"]))
    assert 0 < ttl <= 86400


def test_result_ttl_from_job(cq):
    job = cq.mkjob(result_ttl_s=50, stream=True)
    cq.run(job)
    assert 0 < cq.r.ttl(cq.job_key(job["id"])) <= 50
    ttl = cq.r.ttl(cq.k("events", job["id"]))
    assert 0 < ttl <= 50


def test_stream_success_events(cq, upstream):
    job = cq.mkjob(mock={"content": ["A", "B", "C"], "keepalive": True, "usage": USAGE}, stream=True,
                   tenant="t1")
    sub = cq.subscribe(job["id"])
    cq.push(job)
    msgs = sub.collect()
    h = cq.wait_job_done(job["id"])
    rec = upstream.requests(cq.mock_key(job["id"]))[0]

    assert rec["body"] == dict(job["body"], stream=True, stream_options={"include_usage": True})
    assert_seq(msgs)
    chunks = msgs[:-1]
    assert chunks and all(m["type"] == "chunk" and m["attempt"] == 1 for m in chunks)
    # Every upstream chunk verbatim, in order; no keep-alive, no [DONE].
    assert [m["data"] for m in chunks] == rec["sent"]
    done = msgs[-1]
    assert done["type"] == "done" and done["status"] == "succeeded"
    assert done["finish_reason"] == "stop"
    assert done["usage"] == USAGE
    # The events list holds the same events for late subscribers.
    assert cq.events(job["id"]) == msgs

    assert h["status"] == "succeeded" and h["attempts"] == 1
    assert content_of(h) == "ABC"
    assert h["usage"] == USAGE and h["response"]["usage"] == USAGE
    assert h["started_at"] <= h["first_token_at"] <= h["finished_at"]


def test_stream_flag_from_body_keeps_other_stream_options(cq, upstream):
    job = cq.mkjob(body={"stream": True, "stream_options": {"include_usage": False, "x_opt": 1}})
    h = cq.run(job)
    rec = upstream.requests(cq.mock_key(job["id"]))[0]
    assert rec["body"]["stream"] is True
    assert rec["body"]["stream_options"] == {"include_usage": True, "x_opt": 1}
    assert h["status"] == "succeeded" and h["usage"] == {"prompt_tokens": 9, "completion_tokens": 12,
                                                         "total_tokens": 21}
    assert [e["type"] for e in cq.events(job["id"])][-1] == "done"


def test_job_stream_false_overrides_body(cq, upstream):
    job = cq.mkjob(stream=False, body={"stream": True, "stream_options": {"include_usage": True}})
    h = cq.run(job)
    rec = upstream.requests(cq.mock_key(job["id"]))[0]
    assert rec["body"].get("stream") is not True
    assert rec["stream"] is False
    assert h["status"] == "succeeded" and content_of(h) == "echo: hi"


def test_body_passed_through_exactly(cq, upstream):
    # (no "\u0000": docs/protocol.md §4 refuses it in any string of a job)
    exotic = {"s": "héllo 世界 🙂 \"quoted\" \\ back", "big": 9007199254740993,
              "neg": -2 ** 63, "f": 0.1, "e": 1.5e-7, "t": True, "n": None, "empty": {}, "arr": [[], [{}]],
              "deep": {"a": {"b": {"c": {"d": [1, 2, 3]}}}}}
    job = cq.mkjob(body={"x_exotic": exotic, "tools": [{"type": "function", "function": {"name": "f"}}]},
                   messages=[{"role": "system", "content": "sys"},
                             {"role": "user", "content": [{"type": "text", "text": "part"}]}])
    h = cq.run(job)
    assert h["status"] == "succeeded"
    assert upstream.requests(cq.mock_key(job["id"]))[0]["body"] == job["body"]


# ------------------------------------------------------------ assembly

def test_assembled_two_choices_reasoning_logprobs(cq, upstream):
    mock = {"contents": [["Hel", "lo", " there"], ["Bon", "jour"]], "reasoning": ["think ", "hard"],
            "logprobs": True, "usage": USAGE, "id": "chatcmpl-e2e-1", "created": 1711111111,
            "reply_model": "mock-served-1", "system_fingerprint": "fp_e2e"}
    job = cq.mkjob(mock=mock, stream=True, body={"n": 2})
    h = cq.run(job)
    rec = upstream.requests(cq.mock_key(job["id"]))[0]
    r = h["response"]
    assert r["object"] == "chat.completion"
    assert r["id"] == "chatcmpl-e2e-1" and r["created"] == 1711111111
    assert r["model"] == "mock-served-1" and r["system_fingerprint"] == "fp_e2e"
    assert r["usage"] == USAGE
    assert [c["index"] for c in r["choices"]] == [0, 1]
    c0, c1 = r["choices"]
    assert c0["message"]["role"] == "assistant"
    assert c0["message"]["content"] == "Hello there" and c1["message"]["content"] == "Bonjour"
    assert c0["message"]["reasoning_content"] == "think hard" == c1["message"]["reasoning_content"]
    assert c0["finish_reason"] == "stop" and c1["finish_reason"] == "stop"
    # logprobs: the per-chunk content arrays concatenated, per choice.
    want0 = [lp for ev in rec["sent"] for ch in ev.get("choices", [])
             if ch["index"] == 0 and ch.get("logprobs") for lp in ch["logprobs"]["content"]]
    assert [x["token"] for x in want0] == ["Hel", "lo", " there"]
    assert c0["logprobs"]["content"] == want0


def strip_call(c):
    return {"id": c["id"], "type": c["type"], "function": c["function"]}


def test_assembled_tool_calls(cq):
    calls = [{"id": "call_a", "name": "get_weather", "arguments": '{"city":"Paris","unit":"C"}', "pieces": 4},
             {"id": "call_b", "name": "get_time", "arguments": '{"tz":"Europe/Paris"}', "pieces": 3}]
    job = cq.mkjob(mock={"content": [], "tool_calls": calls}, stream=True)
    h = cq.run(job)
    ch = h["response"]["choices"][0]
    assert ch["finish_reason"] == "tool_calls"
    assert ch["message"]["content"] is None
    assert [strip_call(c) for c in ch["message"]["tool_calls"]] == [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in calls]


def test_assembled_tool_calls_without_index(cq):
    calls = [{"id": "call_1", "name": "f", "arguments": '{"x":1}'},
             {"id": "call_2", "name": "g", "arguments": '{"y":2}'}]
    job = cq.mkjob(mock={"content": [], "tool_calls": calls, "tool_call_no_index": True}, stream=True)
    h = cq.run(job)
    got = h["response"]["choices"][0]["message"]["tool_calls"]
    assert [strip_call(c) for c in got] == [
        {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in calls]


def test_assembled_refusal_and_usage_on_finish_chunk(cq):
    job = cq.mkjob(mock={"content": [], "refusal": ["I can't", " help", " with that."],
                         "usage": USAGE, "usage_on_finish": True}, stream=True)
    h = cq.run(job)
    msg = h["response"]["choices"][0]["message"]
    assert msg["refusal"] == "I can't help with that."
    assert msg["content"] is None
    assert h["usage"] == USAGE and h["response"]["usage"] == USAGE


def test_split_writes_byte_by_byte(cq, upstream):
    text = ["héllo ", "世界 ", "🙂", " done"]
    job = cq.mkjob(mock={"content": text, "split_bytes": 1, "split_delay_ms": 0.3, "usage": USAGE},
                   stream=True)
    sub = cq.subscribe(job["id"])
    cq.push(job)
    msgs = sub.collect(timeout=20)
    h = cq.wait_job_done(job["id"])
    assert h["status"] == "succeeded"
    assert content_of(h) == "".join(text)
    assert [m["data"] for m in chunk_events(msgs)] == upstream.requests(cq.mock_key(job["id"]))[0]["sent"]
    assert msgs[-1]["usage"] == USAGE


def test_split_nonstream_body(cq, upstream):
    job = cq.mkjob(mock={"content": ["split ", "plain ", "body ✓"], "split_bytes": 7})
    h = cq.run(job)
    assert content_of(h) == "split plain body ✓"
    assert h["response"] == upstream.requests(cq.mock_key(job["id"]))[0]["sent"][0]


def test_crlf_and_close_framing(cq):
    a = cq.mkjob(mock={"content": ["crlf", " ends"], "crlf": True, "keepalive": True, "split_bytes": 5},
                 stream=True)
    b = cq.mkjob(mock={"content": ["closed", " stream"], "framing": "close"}, stream=True)
    cq.push(a)
    cq.push(b)
    ha = cq.wait_job_done(a["id"])
    hb = cq.wait_job_done(b["id"])
    assert ha["status"] == "succeeded" and content_of(ha) == "crlf ends"
    assert hb["status"] == "succeeded" and content_of(hb) == "closed stream"


def test_finish_reason_without_done_is_complete(cq, upstream):
    job = cq.mkjob(mock={"content": ["no", " done"], "no_done": True, "usage": USAGE}, stream=True)
    h = cq.run(job)
    assert h["status"] == "succeeded" and h["attempts"] == 1
    assert content_of(h) == "no done" and h["usage"] == USAGE
    assert len(upstream.requests(cq.mock_key(job["id"]))) == 1


# ------------------------------------------------------------ retries

def test_midstream_reset_then_success_publishes_retry(cq, upstream):
    job = cq.mkjob(mock={"content": ["one", "two", "three"], "usage": USAGE, "fail_first": 1,
                         "fail": {"reset": "mid_stream", "reset_after": 3}}, stream=True)
    sub = cq.subscribe(job["id"])
    cq.push(job)
    msgs = sub.collect()
    h = cq.wait_job_done(job["id"])
    recs = upstream.requests(cq.mock_key(job["id"]))
    assert len(recs) == 2 and recs[0]["outcome"] == "reset"

    assert_seq(msgs)
    types = [m["type"] for m in msgs]
    assert types.count("retry") == 1 and types[-1] == "done"
    r = types.index("retry")
    first, second = msgs[:r], msgs[r + 1:-1]
    assert [m["data"] for m in first] == recs[0]["sent"]
    assert all(m["type"] == "chunk" and m["attempt"] == 1 for m in first)
    assert [m["data"] for m in second] == recs[1]["sent"]
    assert all(m["type"] == "chunk" and m["attempt"] == 2 for m in second)
    assert isinstance(msgs[r]["error"], dict) and msgs[r]["error"].get("code")
    assert isinstance(msgs[r]["attempt"], int)
    assert cq.events(job["id"]) == msgs

    assert h["status"] == "succeeded" and h["attempts"] == 2
    assert content_of(h) == "onetwothree"
    assert h["usage"] == USAGE


def test_500_before_stream_then_success_has_no_retry_event(cq, upstream):
    job = cq.mkjob(mock={"content": ["ok"], "fail_first": 1, "fail": {"status": 500}}, stream=True)
    sub = cq.subscribe(job["id"])
    cq.push(job)
    msgs = sub.collect()
    h = cq.wait_job_done(job["id"])
    assert h["status"] == "succeeded" and h["attempts"] == 2
    assert [m["type"] for m in msgs].count("retry") == 0
    assert all(m["attempt"] == 2 for m in chunk_events(msgs))
    assert_seq(msgs)
    recs = upstream.requests(cq.mock_key(job["id"]))
    assert len(recs) == 2 and recs[0]["body"] == recs[1]["body"]


def test_retryable_and_final_statuses(cq, upstream):
    retryable = [408, 409, 429, 500, 502, 503, 504]
    final = [400, 401, 403, 404, 422]
    jobs = {}
    for s in retryable:
        jobs[s] = cq.mkjob(mock={"fail_first": 1, "fail": {"status": s}, "content": ["after %d" % s]})
    for s in final:
        jobs[s] = cq.mkjob(mock={"status": s, "message": "nope %d" % s})
    for j in jobs.values():
        cq.push(j)
    for s, j in jobs.items():
        h = cq.wait_job_done(j["id"])
        n = len(upstream.requests(cq.mock_key(j["id"])))
        if s in retryable:
            assert (s, h["status"], h["attempts"], n) == (s, "succeeded", 2, 2)
            assert content_of(h) == "after %d" % s
        else:
            assert (s, h["status"], h["attempts"], n) == (s, "failed", 1, 1)
            assert h["error"]["code"] == "upstream_error" and h["error"]["status"] == s


def test_retry_after_headers_are_honoured(cq, upstream):
    a = cq.mkjob(mock={"fail_first": 1, "fail": {"status": 429, "retry_after": 1}})
    b = cq.mkjob(mock={"fail_first": 1, "fail": {"status": 503, "retry_after_ms": 400}})
    cq.push(a)
    cq.push(b)
    for j, gap in ((a, 1.0), (b, 0.4)):
        h = cq.wait_job_done(j["id"])
        assert h["status"] == "succeeded" and h["attempts"] == 2
        recs = upstream.requests(cq.mock_key(j["id"]))
        assert len(recs) == 2
        waited = recs[1]["t"] - recs[0]["t_end"]
        assert waited >= gap - 0.005, "retried after %.3fs, Retry-After said %.1fs" % (waited, gap)


def test_400_fails_at_once_with_upstream_error(cq, upstream):
    err = {"error": {"message": "bad param: temperature", "type": "invalid_request_error",
                     "param": "temperature", "code": "invalid_value"}}
    job = cq.mkjob(mock={"status": 400, "error_body": err, "request_id": "req-400"}, max_attempts=5)
    t0 = now_ms()
    raw = cq.push(job)
    h = cq.wait_job_done(job["id"])
    t1 = now_ms()
    assert h["status"] == "failed" and h["attempts"] == 1
    assert h["error"]["code"] == "upstream_error"
    assert h["error"]["status"] == 400
    assert h["error"]["upstream"] in upstream_error_object(err)
    assert isinstance(h["error"]["message"], str) and h["error"]["message"]
    assert len(upstream.requests(cq.mock_key(job["id"]))) == 1
    # A job that failed for good is in P:dead with its raw text.
    dead = wait_for(lambda: [d for d in cq.dead() if d["job"] == raw], 5, what="P:dead entry")
    assert len(dead) == 1
    assert dead[0]["error"]["code"] == "upstream_error"
    assert t0 <= dead[0]["failed_at"] <= t1 + 1000


def test_exhausting_attempts_on_500(cq, upstream):
    a = cq.mkjob(mock={"status": 500})
    b = cq.mkjob(mock={"status": 502}, max_attempts=2)
    cq.push(a)
    cq.push(b)
    ha = cq.wait_job_done(a["id"])
    hb = cq.wait_job_done(b["id"])
    assert (ha["status"], ha["attempts"]) == ("failed", 3)
    assert ha["error"]["code"] == "upstream_error" and ha["error"]["status"] == 500
    assert len(upstream.requests(cq.mock_key(a["id"]))) == 3
    assert (hb["status"], hb["attempts"]) == ("failed", 2)
    assert hb["error"]["status"] == 502
    assert len(upstream.requests(cq.mock_key(b["id"]))) == 2


# ------------------------------------------------------------ timeouts

def test_whole_job_timeout(cq, upstream):
    job = cq.mkjob(mock={"delay_ms": 5000}, timeout_ms=300, max_attempts=1)
    h = cq.run(job)
    assert h["status"] == "failed" and h["attempts"] == 1
    assert h["error"]["code"] == "timeout"
    assert h["error"]["status"] == 0
    assert h["finished_at"] - h["started_at"] < 2000 * SCALE
    # chatq gave up the connection.
    wait_for(lambda: upstream.requests(cq.mock_key(job["id"]))[0]["client_closed_at"], 5,
             what="upstream connection closed")


def test_stream_timeout_is_retried(cq, upstream):
    job = cq.mkjob(mock={"content": ["x"] * 30, "chunk_delay_ms": 60}, stream=True,
                   timeout_ms=400, max_attempts=2)
    sub = cq.subscribe(job["id"])
    cq.push(job)
    msgs = sub.collect()
    h = cq.wait_job_done(job["id"])
    assert h["status"] == "failed" and h["attempts"] == 2
    assert h["error"]["code"] == "timeout"
    assert len(upstream.requests(cq.mock_key(job["id"]))) == 2
    assert_seq(msgs)
    types = [m["type"] for m in msgs]
    assert types.count("retry") == 1 and types[-1] == "error"
    assert msgs[-1]["status"] == "failed" and msgs[-1]["error"]["code"] == "timeout"


def test_stall_hits_idle_timeout(start_chatqd, upstream):
    cq = start_chatqd(config={"idle_timeout_ms": 300})
    stall = cq.mkjob(mock={"stall_after": 2}, stream=True, max_attempts=1)
    h = cq.run(stall)
    assert h["status"] == "failed"
    assert h["error"]["code"] == "timeout"
    assert h["finished_at"] - h["started_at"] < 2500 * SCALE
    ev = cq.events(stall["id"])
    assert ev[-1]["type"] == "error" and ev[-1]["status"] == "failed"
    wait_for(lambda: upstream.requests(cq.mock_key(stall["id"]))[0]["client_closed_at"], 5,
             what="upstream connection closed")
    # Chunks slower than nothing but faster than the idle timeout are fine.
    steady = cq.mkjob(mock={"content": ["s"] * 5, "chunk_delay_ms": 150}, stream=True, max_attempts=1)
    hs = cq.run(steady)
    assert hs["status"] == "succeeded" and content_of(hs) == "sssss"


# ------------------------------------------------------------ bad answers

def test_truncated_stream_fails_after_retries(cq, upstream):
    job = cq.mkjob(mock={"content": ["cut", " short"], "truncate": True}, stream=True, max_attempts=2)
    h = cq.run(job)
    assert h["status"] == "failed" and h["attempts"] == 2
    assert h["error"]["code"] == "bad_upstream_response"
    assert len(upstream.requests(cq.mock_key(job["id"]))) == 2
    assert cq.events(job["id"])[-1]["type"] == "error"


def test_invalid_json_answers(cq):
    s = cq.mkjob(mock={"invalid_json": True}, stream=True, max_attempts=1)
    p = cq.mkjob(mock={"invalid_json": True}, max_attempts=1)
    cq.push(s)
    cq.push(p)
    for j in (s, p):
        h = cq.wait_job_done(j["id"])
        assert h["status"] == "failed"
        assert h["error"]["code"] == "bad_upstream_response"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_too_large_answer(start_chatqd, stream):
    cq = start_chatqd(config={"max_response_bytes": 4096})
    big = cq.mkjob(mock={"content": ["x" * 500], "repeat": 40}, stream=stream, max_attempts=1)
    small = cq.mkjob(mock={"content": ["fits"]}, stream=stream)
    cq.push(big)
    cq.push(small)
    h = cq.wait_job_done(big["id"])
    assert (h["status"], h.get("error", {}).get("code")) == ("failed", "too_large")
    assert cq.wait_job_done(small["id"])["status"] == "succeeded"


# A chunk as small as a provider may send (about 60 bytes on the wire), so
# that the chunk bounds are met well inside the default max_response_bytes.
TINY_CHUNK = {"choices": [{"index": 0, "delta": {"content": "x"}}]}


def test_too_many_chunks_in_one_attempt(cq, upstream):
    """One attempt may publish at most 100,000 chunks (UPSTREAM_MAX_CHUNKS):
    the 100,001st ends it as too_large, which no retry can mend."""
    job = cq.mkjob(mock={"raw_events": [TINY_CHUNK], "repeat_events": 100001, "one_write": True},
                   stream=True, max_attempts=3)
    h = cq.run(job, timeout=60)
    assert (h["status"], h["error"]["code"], h["attempts"]) == ("failed", "too_large", 1), h
    assert "more than 100000 chunks" in h["error"]["message"]
    assert len(upstream.requests(cq.mock_key(job["id"]))) == 1
    assert cq.r.llen(cq.k("events", job["id"])) <= 100000 + 1


def test_too_many_events_over_all_attempts(cq, upstream):
    """A job's attempts may leave at most 250,000 events in P:events
    (JR_MAX_EVENTS): attempts of 90,000 chunks that each end truncated are
    retried until the third has passed the bound, then the job fails
    too_large although attempts are left."""
    job = cq.mkjob(mock={"raw_events": [TINY_CHUNK], "repeat_events": 90000, "one_write": True,
                         "no_done": True},
                   stream=True, max_attempts=5)
    h = cq.run(job, timeout=120)
    assert (h["status"], h["error"]["code"], h["attempts"]) == ("failed", "too_large", 3), h
    assert "stream events, more than 250000" in h["error"]["message"]
    assert len(upstream.requests(cq.mock_key(job["id"]))) == 3
    n = cq.r.llen(cq.k("events", job["id"]))
    assert 250000 <= n <= 3 * 90000 + 10, n


def test_slow_job_does_not_hold_up_others(start_chatqd, upstream):
    # One worker, so both jobs share its HTTP client; pushed together so the
    # fast one is added while the slow one's connection is still pending.
    cq = start_chatqd(workers=1)
    slow = cq.mkjob(mock={"delay_ms": 2500 * SCALE}, stream=True)
    fast = [cq.mkjob(mock={"content": ["quick"]}, stream=s) for s in (True, False)]
    cq.push(slow)
    for j in fast:
        cq.push(j)
    for j in fast:
        h = cq.wait_job_done(j["id"])
        assert h["status"] == "succeeded"
        assert h["finished_at"] - h["started_at"] < 1500 * SCALE, "held up by a slow job on the same worker"
    assert cq.r.hget(cq.job_key(slow["id"]), "status") == "running"


def test_many_jobs_run_concurrently(cq, upstream):
    jobs = [cq.mkjob(mock={"delay_ms": 300, "content": ["n%d" % i]}) for i in range(60)]
    t0 = now_ms()
    for j in jobs:
        cq.push(j)
    for i, j in enumerate(jobs):
        h = cq.wait_job_done(j["id"], timeout=20)
        assert h["status"] == "succeeded" and content_of(h) == "n%d" % i
    elapsed = now_ms() - t0
    recs = upstream.requests(prefix=cq.prefix + ":")
    assert len(recs) == 60
    # At least half of them were in flight at once.
    overlap = max(sum(1 for r in recs if r["t"] <= x["t"] < r["t_end"]) for x in recs)
    assert overlap >= 30, overlap
    assert elapsed < 6000 * SCALE
