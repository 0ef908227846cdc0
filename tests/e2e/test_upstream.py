"""test_upstream.py — the upstream side, in two parts.

First, a self-test of the stand-in upstream (upstream.py), so that a failing
chatq test can be trusted to be chatq's fault: it talks to it with
http.client and raw sockets and needs no chatq binary.

Then chatq against a hostile upstream (issue 8, docs/protocol.md §5, §8,
docs/reliability.md): lenient JSON in chunks and bodies, an error chunk that
also finishes, too many chunks, too many tool calls, an echoed API key, a
Retry-After of years, a max_tokens of 1e15, and escape sequences in the text
`chatq watch` prints to a terminal."""

import base64
import http.client
import json
import os
import socket
import subprocess
import time

import upstream as up
from conftest import API_KEY, BIN, SCALE, TERMINAL, run_on_pty, wait_for


def body(key, mock=None, stream=False, include_usage=True, **extra):
    m = {"key": key}
    m.update(mock or {})
    b = {"model": "mock-self", "messages": [{"role": "user", "content": "ping"}], "mock": m}
    if stream:
        b["stream"] = True
        if include_usage:
            b["stream_options"] = {"include_usage": True}
    b.update(extra)
    return b


def uniq(name):
    return "selftest:%s:%f" % (name, time.time())


def raw_exchange(port, obj, extra_headers=b"", read_timeout=5):
    """POSTs with Connection: close and reads until the server closes.
    Returns (head bytes, body bytes as received, error or None)."""
    data = json.dumps(obj).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Authorization: Bearer sk-self\r\nContent-Type: application/json\r\n" + extra_headers +
              b"Content-Length: %d\r\n\r\n" % len(data) + data)
    got = b""
    err = None
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except OSError as e:
        err = e
    finally:
        s.close()
    head, _, rest = got.partition(b"\r\n\r\n")
    return head, rest, err


def dechunk(raw):
    """HTTP chunked body -> (list of chunk payloads, complete?)."""
    chunks = []
    while raw:
        line, sep, raw = raw.partition(b"\r\n")
        if not sep:
            return chunks, False
        size = int(line, 16)
        if size == 0:
            return chunks, True
        if len(raw) < size + 2:
            return chunks, False
        chunks.append(raw[:size])
        raw = raw[size + 2:]
    return chunks, False


def sse_payloads(text):
    """The data payloads of an SSE text (LF or CRLF), comments dropped."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = [ln[5:].lstrip(" ") if ln.startswith("data:") else None for ln in block.split("\n")]
        data = [d for d in data if d is not None]
        if data:
            out.append("\n".join(data))
    return out


def post(port, obj, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/v1/chat/completions", json.dumps(obj),
              dict({"Content-Type": "application/json", "Authorization": "Bearer sk-self"}, **(headers or {})))
    r = c.getresponse()
    return c, r, r.read()


def test_plain_completion_and_record(upstream):
    key = uniq("plain")
    c, r, data = post(upstream.port, body(key, temperature=0.25))
    assert r.status == 200
    assert r.getheader("x-request-id", "").startswith("req-")
    obj = json.loads(data)
    assert obj["object"] == "chat.completion"
    assert obj["choices"][0]["message"] == {"role": "assistant", "content": "echo: ping"}
    assert obj["choices"][0]["finish_reason"] == "stop"
    assert obj["usage"] == up.DEFAULT_USAGE
    recs = upstream.requests(key)
    assert len(recs) == 1
    rec = recs[0]
    assert rec["headers"]["authorization"] == "Bearer sk-self"
    assert rec["body"]["temperature"] == 0.25
    assert rec["attempt"] == 1 and rec["stream"] is False and rec["outcome"] == "ok"
    assert rec["request_id"] == r.getheader("x-request-id")
    assert rec["t"] <= rec["t_end"]
    assert rec["client_closed_at"] is None


def test_keep_alive_serves_several_requests(upstream):
    key = uniq("ka")
    c = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=10)
    for i in range(3):
        c.request("POST", "/v1/chat/completions", json.dumps(body(key, {"content": ["x%d" % i]})))
        r = c.getresponse()
        assert json.loads(r.read())["choices"][0]["message"]["content"] == "x%d" % i
    c.close()
    recs = upstream.requests(key)
    assert [r["attempt"] for r in recs] == [1, 2, 3]
    assert len({r["conn"] for r in recs}) == 1


def test_stream_events_match_record(upstream):
    key = uniq("stream")
    c, r, data = post(upstream.port, body(key, {"content": ["a", "b", "c"], "keepalive": True}, stream=True))
    assert r.status == 200 and r.getheader("content-type") == "text/event-stream"
    text = data.decode()
    assert ": keep-alive\n\n" in text
    payloads = sse_payloads(text)
    assert payloads[-1] == "[DONE]"
    events = [json.loads(p) for p in payloads[:-1]]
    assert events == upstream.requests(key)[0]["sent"]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == "abc"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["choices"] == [] and events[-1]["usage"] == up.DEFAULT_USAGE


def test_stream_without_include_usage_has_no_usage(upstream):
    key = uniq("nousage")
    _, _, data = post(upstream.port, body(key, stream=True, include_usage=False))
    events = [json.loads(p) for p in sse_payloads(data.decode())[:-1]]
    assert all("usage" not in e for e in events)


def test_split_bytes_writes_small_chunks(upstream):
    key = uniq("split")
    head, raw, err = raw_exchange(upstream.port, body(key, {"content": ["héllo 世界"], "split_bytes": 3}, stream=True))
    assert err is None and b"Transfer-Encoding: chunked" in head
    chunks, complete = dechunk(raw)
    assert complete
    assert len(chunks) > 50 and all(len(x) <= 3 for x in chunks)
    payloads = sse_payloads(b"".join(chunks).decode())
    content = "".join(json.loads(p)["choices"][0]["delta"].get("content", "")
                      for p in payloads[:-1] if json.loads(p)["choices"])
    assert content == "héllo 世界"


def test_crlf_line_ends(upstream):
    _, raw, err = raw_exchange(upstream.port, body(uniq("crlf"), {"crlf": True}, stream=True))
    text = b"".join(dechunk(raw)[0]).decode()
    assert err is None
    assert text.count("\r\n\r\n") == len(sse_payloads(text))
    assert "\n" not in text.replace("\r\n", "")


def test_error_status_and_retry_headers(upstream):
    key = uniq("err")
    c, r, data = post(upstream.port, body(key, {"status": 429, "retry_after": 2, "retry_after_ms": 1500,
                                                "message": "slow down"}, stream=True))
    assert r.status == 429
    assert r.getheader("Retry-After") == "2" and r.getheader("retry-after-ms") == "1500"
    err = json.loads(data)["error"]
    assert err["message"] == "slow down" and err["type"] == "rate_limit_error"
    # The connection stays usable after an error answer.
    c.request("POST", "/v1/chat/completions", json.dumps(body(key, {"status": 429})))
    assert c.getresponse().status == 429
    recs = upstream.requests(key)
    assert len(recs) == 2 and recs[0]["conn"] == recs[1]["conn"]


def test_fail_first_counts_attempts_by_key(upstream):
    key = uniq("ff")
    mock = {"fail_first": 2, "fail": {"status": 503}}
    statuses = [post(upstream.port, body(key, mock))[1].status for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert [r["attempt"] for r in upstream.requests(key)] == [1, 2, 3]


def test_script_per_attempt(upstream):
    key = uniq("script")
    mock = {"script": [{"status": 500}, {"status": 400}, {}]}
    statuses = [post(upstream.port, body(key, mock))[1].status for _ in range(4)]
    assert statuses == [500, 400, 200, 200]


def test_reset_before_headers_is_rst(upstream):
    key = uniq("rst0")
    head, raw, err = raw_exchange(upstream.port, body(key, {"reset": "before_headers"}))
    assert head == b"" and isinstance(err, ConnectionResetError)
    assert upstream.requests(key)[0]["outcome"] == "reset"


def test_reset_mid_stream_after_events(upstream):
    key = uniq("rst1")
    head, raw, err = raw_exchange(upstream.port, body(key, {"reset": "mid_stream", "reset_after": 2}, stream=True))
    assert head.startswith(b"HTTP/1.1 200")
    assert isinstance(err, ConnectionResetError)
    chunks, complete = dechunk(raw)
    assert not complete and len(sse_payloads(b"".join(chunks).decode())) == 2
    assert len(upstream.requests(key)[0]["sent"]) == 2


def test_stall_notices_client_close(upstream):
    key = uniq("stall")
    data = json.dumps(body(key, {"stall_after": 1}, stream=True)).encode()
    s = socket.create_connection(("127.0.0.1", upstream.port), timeout=5)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
    got = b""
    while b"data:" not in got:
        got += s.recv(65536)
    t_close = time.time()
    s.close()
    upstream.wait_requests(key, 1)
    rec = wait_for(lambda: (lambda r: r if r["client_closed_at"] else None)(upstream.requests(key)[0]),
                   5, what="upstream to notice the close")
    assert rec["outcome"] == "stall"
    assert 0 <= rec["client_closed_at"] - t_close < 1.0


def test_truncate_no_done_and_invalid_json(upstream):
    _, raw, err = raw_exchange(upstream.port, body(uniq("trunc"), {"truncate": True}, stream=True))
    chunks, complete = dechunk(raw)
    payloads = sse_payloads(b"".join(chunks).decode())
    assert complete and "[DONE]" not in payloads
    assert all(json.loads(p)["choices"][0]["finish_reason"] is None for p in payloads)

    _, raw, _ = raw_exchange(upstream.port, body(uniq("nodone"), {"no_done": True}, stream=True))
    payloads = sse_payloads(b"".join(dechunk(raw)[0]).decode())
    assert "[DONE]" not in payloads
    assert json.loads(payloads[-2])["choices"][0]["finish_reason"] == "stop"

    _, raw, _ = raw_exchange(upstream.port, body(uniq("badjson"), {"invalid_json": True}, stream=True))
    payloads = sse_payloads(b"".join(dechunk(raw)[0]).decode())
    assert payloads[1] == "{not json"


def test_framing_close(upstream):
    head, raw, err = raw_exchange(upstream.port, body(uniq("close"), {"framing": "close"}, stream=True))
    assert err is None and b"chunked" not in head
    assert sse_payloads(raw.decode())[-1] == "[DONE]"


def merge_stream(events):
    """A small independent assembler: the message of each choice."""
    msgs = {}
    for e in events:
        for ch in e.get("choices") or []:
            m = msgs.setdefault(ch["index"], {"content": "", "tool_calls": {}, "finish": None})
            d = ch["delta"]
            m["content"] += d.get("content") or ""
            for tc in d.get("tool_calls") or []:
                t = m["tool_calls"].setdefault(tc["index"], {"id": None, "name": None, "arguments": ""})
                t["id"] = t["id"] or tc.get("id")
                fn = tc.get("function") or {}
                t["name"] = t["name"] or fn.get("name")
                t["arguments"] += fn.get("arguments") or ""
            m["finish"] = ch["finish_reason"] or m["finish"]
    return msgs


def test_stream_and_plain_tell_the_same_answer(upstream):
    mock = {"contents": [["one", " two"], ["three"]],
            "tool_calls": [{"id": "call_1", "name": "get", "arguments": '{"city":"Paris"}', "pieces": 3}]}
    _, _, data = post(upstream.port, body(uniq("same-s"), mock, stream=True))
    events = [json.loads(p) for p in sse_payloads(data.decode())[:-1]]
    merged = merge_stream(events)
    _, _, data = post(upstream.port, body(uniq("same-p"), mock))
    plain = json.loads(data)
    assert len(plain["choices"]) == 2 == len(merged)
    for ch in plain["choices"]:
        m = merged[ch["index"]]
        assert m["content"] == ch["message"]["content"]
        assert m["finish"] == ch["finish_reason"] == "tool_calls"
        assert [{"id": t["id"], "type": "function", "function": {"name": t["name"], "arguments": t["arguments"]}}
                for _, t in sorted(m["tool_calls"].items())] == ch["message"]["tool_calls"]


def test_delay_and_expect_continue(upstream):
    key = uniq("delay")
    t0 = time.monotonic()
    head, raw, err = raw_exchange(upstream.port, body(key, {"delay_ms": 300}),
                                  extra_headers=b"Expect: 100-continue\r\n")
    assert time.monotonic() - t0 >= 0.3
    assert head.startswith(b"HTTP/1.1 100 Continue")
    assert b"HTTP/1.1 200 OK" in raw


def test_requests_prefix_filter_and_stats(upstream):
    base = uniq("pfx")
    post(upstream.port, body(base + ":a"))
    post(upstream.port, body(base + ":b"))
    assert sorted(r["key"] for r in upstream.requests(prefix=base)) == [base + ":a", base + ":b"]
    st = upstream.stats()
    assert st["by_key"][base + ":a"] == 1 and st["open"] == 0 and st["requests"] >= 2


def test_unknown_path(upstream):
    c = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=5)
    c.request("POST", "/v1/embeddings", "{}")
    assert c.getresponse().status == 404
    c.close()


# ================================================ chatq against a hostile upstream

def strict_loads(text):
    """json.loads as RFC 8259 and docs/protocol.md §5 have it: NaN, Infinity and lone
    surrogates (which have no UTF-8) are refused."""
    def no_constant(name):
        raise ValueError("not JSON: " + name)
    v = json.loads(text, parse_constant=no_constant)
    json.dumps(v, ensure_ascii=False).encode("utf-8")  # a lone surrogate fails here
    return v


def stored_events(cq, jid):
    """P:events:<id>, each checked to be strict JSON in valid UTF-8."""
    r = cq.redis_server.client(decode_responses=False)
    return [strict_loads(raw.decode("utf-8")) for raw in r.lrange(cq.k("events", jid), 0, -1)]


def stored_error(cq, jid):
    """The job hash's error field, checked the same way."""
    r = cq.redis_server.client(decode_responses=False)
    return strict_loads(r.hget(cq.job_key(jid), "error").decode("utf-8"))


def chunk_data(events):
    return [e["data"] for e in events if e["type"] == "chunk"]


def run_all(cq, jobs, timeout=20):
    for j in jobs:
        cq.push(j)
    return {j["id"]: cq.wait_job_done(j["id"], timeout) for j in jobs}


def chunk(content=None, finish=None, **extra):
    c = {"id": "chatcmpl-h", "object": "chat.completion.chunk", "created": 1700000000,
         "model": "mock-h", "choices": [{"index": 0, "delta": {} if content is None else
                                         {"content": content}, "finish_reason": finish}]}
    c.update(extra)
    return c


def raw_mock(payloads):
    """Mock options sending these SSE payloads verbatim (str, bytes or objects)."""
    if any(isinstance(p, bytes) for p in payloads):
        return {"raw_events_b64": [base64.b64encode(p if isinstance(p, bytes) else
                                                    (p if isinstance(p, str) else json.dumps(p)).encode()).decode()
                                   for p in payloads]}
    return {"raw_events": payloads}


# Every lenient form json-c's default parser lets through (docs/protocol.md §5: a chunk
# that is not strict JSON is never published).
LENIENT = {
    "single quotes": "{'id':'x','choices':[{'index':0,'delta':{'content':'q'}}]}",
    "NaN": '{"id":"x","choices":[],"v":NaN}',
    "Infinity": '{"id":"x","choices":[],"v":-Infinity}',
    "comment": '{"id":"x","choices":[]} /* a comment */',
    "trailing comma": '{"id":"x","choices":[],}',
    "raw control character": '{"choices":[{"index":0,"delta":{"content":"\x1b[2J"}}]}',
    "lone surrogate": '{"choices":[{"index":0,"delta":{"content":"\\ud800"}}]}',
    "invalid UTF-8": b'{"choices":[{"index":0,"delta":{"content":"\xff\xfe"}}]}',
    "UTF-8 surrogate": b'{"choices":[{"index":0,"delta":{"content":"\xed\xa0\x80"}}]}',
    "overlong UTF-8": b'{"choices":[{"index":0,"delta":{"content":"\xc0\xaf"}}]}',
}


def test_lenient_stream_chunks_fail_and_are_never_published(cq):
    good = chunk("ok ")
    jobs = {name: cq.mkjob(stream=True, max_attempts=1,
                           mock=raw_mock([good, bad, chunk("!", "stop")]))
            for name, bad in LENIENT.items()}
    hashes = run_all(cq, list(jobs.values()))
    for name, job in jobs.items():
        h = hashes[job["id"]]
        assert h["status"] == "failed", (name, h.get("response"))
        err = stored_error(cq, job["id"])
        assert err["code"] == "bad_upstream_response", (name, err)
        assert "strict JSON" in err["message"], (name, err)
        # the good chunk before it was published, the bad one and all after not
        events = stored_events(cq, job["id"])
        assert chunk_data(events) == [good], (name, events)
        assert events[-1]["type"] == "error"
        assert "response" not in h


def test_lenient_plain_bodies_fail(cq):
    completion = ('{"id":"x","object":"chat.completion","choices":[{"index":0,"message":'
                  '{"role":"assistant","content":"hi"},"finish_reason":"stop"}]%s}')
    bodies = {
        "NaN": completion % ',"v":NaN',
        "single quotes": completion.replace('"', "'") % "",
        "trailing comma": completion % ",",
        "comment": completion % "" + "// end",
        "raw control character": completion % ',"v":"\x07"',
        "invalid UTF-8": (completion % ',"v":"\xff"').encode("latin-1"),
    }
    jobs = {}
    for name, b in bodies.items():
        mock = {"raw_body_b64": base64.b64encode(b).decode()} if isinstance(b, bytes) else {"raw_body": b}
        jobs[name] = cq.mkjob(max_attempts=1, mock=mock)
    # the same body, strict: succeeds (the premise)
    ok = cq.mkjob(max_attempts=1, mock={"raw_body": completion % ',"v":1'})
    hashes = run_all(cq, list(jobs.values()) + [ok])
    assert hashes[ok["id"]]["status"] == "succeeded"
    for name, job in jobs.items():
        h = hashes[job["id"]]
        assert h["status"] == "failed", (name, h.get("response"))
        assert stored_error(cq, job["id"])["code"] == "bad_upstream_response", name
        assert "response" not in h


def test_answer_depth_bound(cq):
    """An answer may nest 32 levels deep (UPSTREAM_MAX_DEPTH, the answer
    itself counted): 32 is stored, 33 fails as too_large, no retry."""
    def body(depth):  # the answer object, a "v" member holding depth-1 levels
        return ('{"id":"x","object":"chat.completion","choices":[{"index":0,"message":'
                '{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"v":%s1%s}'
                % ("[" * (depth - 1), "]" * (depth - 1)))
    ok = cq.mkjob(max_attempts=2, mock={"raw_body": body(32)})
    deep = cq.mkjob(max_attempts=2, mock={"raw_body": body(33)})
    hashes = run_all(cq, [ok, deep])
    assert hashes[ok["id"]]["status"] == "succeeded", stored_error(cq, ok["id"])
    h = hashes[deep["id"]]
    assert (h["status"], h["attempts"]) == ("failed", 1), h
    assert stored_error(cq, deep["id"])["code"] == "too_large"


def test_error_chunk_with_finish_reason_then_done_is_upstream_error(cq):
    # What OpenRouter sends when the provider behind it fails mid-stream.
    err_chunk = chunk("", "error", error={"code": 502, "message": "Provider returned error"})
    job = cq.mkjob(stream=True, max_attempts=1, reply_to=cq.prefix + "-out-err",
                   mock=raw_mock([chunk("partial "), err_chunk]))  # then [DONE]
    h = cq.run(job)
    assert h["status"] == "failed", h.get("response")
    assert h["error"]["code"] == "upstream_error"
    assert "Provider returned error" in h["error"]["message"]
    assert h["error"]["upstream"]["message"] == "Provider returned error"
    events = stored_events(cq, job["id"])
    assert chunk_data(events) == [chunk("partial ")]  # the error chunk is not published
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "upstream_error"
    # an error object whose code is not retryable fails at once, with retries left
    job = cq.mkjob(stream=True, max_attempts=3,
                   mock=raw_mock([chunk("", "error", error={"code": 400, "message": "bad"})]))
    h = cq.run(job)
    assert h["status"] == "failed" and h["attempts"] == 1
    assert h["error"]["code"] == "upstream_error"


def test_too_many_chunks_fail_too_large(cq, upstream):
    # 100,001 tiny events (10 bytes each: far below max_response_bytes)
    job = cq.mkjob(stream=True, max_attempts=1,
                   mock={"raw_events": ["{}"], "repeat_events": 100001, "one_write": True})
    h = cq.run(job, timeout=60)
    assert h["status"] == "failed"
    assert h["error"]["code"] == "too_large"
    assert "100000 chunks" in h["error"]["message"]
    assert upstream.requests(cq.mock_key(job["id"]))[0]["sent_count"] == 100001
    # what was kept of it is bounded: 100,000 chunks and the final event
    assert cq.r.llen(cq.k("events", job["id"])) == 100001


def tool_calls(n):
    return [{"id": "call_%d" % i, "name": "f", "arguments": '{"i":%d}' % i} for i in range(n)]


def test_tool_calls_without_index_are_bounded(cq):
    fine = cq.mkjob(stream=True, max_attempts=1,
                    mock={"tool_calls": tool_calls(128), "tool_call_no_index": True})
    over = cq.mkjob(stream=True, max_attempts=1,
                    mock={"tool_calls": tool_calls(129), "tool_call_no_index": True})
    hashes = run_all(cq, [fine, over])
    h = hashes[fine["id"]]
    assert h["status"] == "succeeded", h.get("error")
    calls = h["response"]["choices"][0]["message"]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_%d" % i for i in range(128)]
    h = hashes[over["id"]]
    assert h["status"] == "failed"
    assert h["error"]["code"] == "too_large"
    assert "more than 128 tool calls" in h["error"]["message"]
    # the 129th call's chunk was not published
    published = [d for d in chunk_data(stored_events(cq, over["id"]))
                 if d["choices"] and d["choices"][0]["delta"].get("tool_calls")]
    assert len(published) == 128


def test_a_chunk_of_too_many_values_fails_too_large(cq):
    big = chunk("x", logprobs_junk=[0] * 20000)
    job = cq.mkjob(stream=True, max_attempts=1, mock=raw_mock([chunk("a"), big]))
    h = cq.run(job)
    assert h["status"] == "failed"
    assert h["error"]["code"] == "too_large"
    assert "10000 values" in h["error"]["message"]
    assert chunk_data(stored_events(cq, job["id"])) == [chunk("a")]


def everything_stored(cq):
    """Every value of every key of this chatqd's prefix, as bytes."""
    r = cq.redis_server.client(decode_responses=False)
    out = []
    for k in r.scan_iter(match=(cq.prefix + ":*").encode(), count=1000):
        t = r.type(k)
        if t == b"hash":
            for f, v in r.hgetall(k).items():
                out += [k, f, v]
        elif t == b"list":
            out += [k] + r.lrange(k, 0, -1)
        elif t == b"string":
            out += [k, r.get(k)]
        elif t == b"set":
            out += [k] + list(r.smembers(k))
        elif t == b"zset":
            out += [k] + [m for m, _ in r.zrange(k, 0, -1, withscores=True)]
    return out


def test_echoed_api_key_is_never_stored_or_logged(cq):
    R = cq.prefix + "-out-keys"
    echo = "{{authorization}}"  # the stand-in puts "Bearer <key>" there
    jobs = [
        # a JSON error body, its message and the request id
        cq.mkjob(reply_to=R, mock={"status": 401, "message": "Incorrect API key provided: " + echo,
                                   "request_id": "req-" + echo}),
        # a body that is not JSON (a proxy's text), retryable: every attempt
        cq.mkjob(reply_to=R, max_attempts=2,
                 mock={"status": 502, "content_type": "text/plain",
                       "raw_body": "upstream proxy error; you sent " + echo + " (bad)"}),
        # an error inside a stream
        cq.mkjob(reply_to=R, stream=True, max_attempts=1,
                 mock={"raw_events": ['{"error":{"message":"key ' + echo + ' refused","code":401}}']}),
        # a chunk of an answer that succeeds
        cq.mkjob(reply_to=R, stream=True,
                 mock={"raw_events": ['{"choices":[{"index":0,"delta":{"content":"you are ' + echo +
                                      '"},"finish_reason":"stop"}]}']}),
        # a plain answer that lenient-parses fine but is not JSON: quoted in the message
        cq.mkjob(reply_to=R, max_attempts=1, mock={"raw_body": "{'key': '" + echo + "'}"}),
    ]
    hashes = run_all(cq, jobs)
    cq.wait_replies(R, len(jobs))
    h = [hashes[j["id"]] for j in jobs]
    assert [x["status"] for x in h] == ["failed", "failed", "failed", "succeeded", "failed"]
    # the texts are there, masked
    assert h[0]["error"]["message"] == "HTTP 401: Incorrect API key provided: Bearer ***"
    assert h[0]["error"]["upstream"]["message"] == "Incorrect API key provided: Bearer ***"
    assert h[1]["error"]["upstream"] == "upstream proxy error; you sent Bearer *** (bad)"
    assert "Bearer ***" in h[2]["error"]["message"]
    assert h[3]["response"]["choices"][0]["message"]["content"] == "you are Bearer ***"
    assert "Bearer ***" in h[4]["error"]["message"]
    lines = {line["id"]: line for line in cq.replies(R)}
    assert lines[jobs[0]["id"]]["response"]["request_id"] == "req-Bearer ***"
    # and the key is nowhere: not in Redis, not in the log
    stored = everything_stored(cq)
    assert stored and not [v for v in stored if API_KEY.encode() in v]
    assert API_KEY not in cq.log()


def bucket_pause_ms(cq, key):
    """How far ahead of Redis' clock a bucket's request time lies (ms)."""
    sec, usec = cq.r.time()
    r = float(cq.r.hget(key, "r") or 0)
    return r - (sec * 1000 + usec // 1000)


def test_huge_retry_after_pauses_the_model_a_minute_at_most(start_chatqd, upstream):
    cq = start_chatqd(config={"providers": [{
        "name": "lim", "base_url": upstream.url, "api_key_env": "OPENAI_API_KEY",
        "limits": {"*": {"rpm": 60000}}}]})
    bucket = cq.k("ratelimit", "lim", "*")
    # a 429 asking for 31 years (the job itself gives up: one attempt)
    h = cq.run(cq.mkjob(model="mock-ra", max_attempts=1,
                        mock={"status": 429, "retry_after": "1000000000"}))
    assert h["status"] == "failed" and h["error"]["status"] == 429
    pause = bucket_pause_ms(cq, bucket)
    assert 50000 < pause <= 60000, pause
    assert cq.r.pttl(bucket) <= 60000 + 120000 + 1000  # the key goes with it
    # retry-after-ms as large, and x-ratelimit-reset-* of days: the same
    cq.r.delete(bucket)
    h = cq.run(cq.mkjob(model="mock-ra", max_attempts=1,
                        mock={"status": 429, "retry_after_ms": "99999999999999999999"}))
    assert 50000 < bucket_pause_ms(cq, bucket) <= 60000
    cq.r.delete(bucket)
    h = cq.run(cq.mkjob(model="mock-ra", mock={"headers": {
        "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "150h"}}))
    assert h["status"] == "succeeded"
    assert 50000 < bucket_pause_ms(cq, bucket) <= 60000
    # a remaining count that is not a number is no "0 left": no pause at all
    cq.r.delete(bucket)
    h = cq.run(cq.mkjob(model="mock-ra", mock={"headers": {
        "x-ratelimit-remaining-requests": "none", "x-ratelimit-reset-requests": "150h"}}))
    assert h["status"] == "succeeded"
    assert bucket_pause_ms(cq, bucket) <= 1000


def tpm_config(upstream, tpm, wait_ms):
    return {"rate_limit_wait_ms": wait_ms, "providers": [{
        "name": "lim", "base_url": upstream.url, "api_key_env": "OPENAI_API_KEY",
        "limits": {"mock-big*": {"tpm": tpm}}}]}


def test_max_tokens_1e15_refused_upstream_does_not_stall_the_model(start_chatqd, upstream):
    # 100,000 tokens a second. The upstream refuses max_tokens 1e15 (400), so
    # no usage ever comes back to correct what the job was charged.
    cq = start_chatqd(config=tpm_config(upstream, 6000000, 3000))
    big = cq.run(cq.mkjob(model="mock-big", max_attempts=1, body={"max_tokens": 10 ** 15},
                          mock={"status": 400, "message": "max_tokens is too large"}))
    assert big["status"] == "failed" and big["error"]["status"] == 400
    t0 = time.time()
    small = [cq.mkjob(model="mock-big", body={"max_tokens": 100}) for _ in range(5)]
    hashes = run_all(cq, small)
    assert all(h["status"] == "succeeded" for h in hashes.values()), \
        [h.get("error") for h in hashes.values()]
    assert time.time() - t0 < 2 * SCALE


def test_max_tokens_1e15_charges_at_most_a_capped_estimate(start_chatqd, upstream):
    # 10 M tokens a second: the capped estimate (1 M tokens) holds the bucket
    # for 0.1 s; 1e15 tokens held it until the big job's usage came back.
    cq = start_chatqd(config=tpm_config(upstream, 600000000, 10000))
    big = cq.mkjob(model="mock-big", body={"max_tokens": 10 ** 15}, mock={"delay_ms": 3000})
    cq.push(big)
    upstream.wait_requests(cq.mock_key(big["id"]), 1)
    small = [cq.mkjob(model="mock-big", body={"max_tokens": 100}) for _ in range(5)]
    hashes = run_all(cq, small + [big])
    assert all(h["status"] == "succeeded" for h in hashes.values())
    big_rec = upstream.requests(cq.mock_key(big["id"]))[0]
    for j in small:
        rec = upstream.requests(cq.mock_key(j["id"]))[0]
        assert rec["t"] < big_rec["t_end"] - 1.0, "a small job waited for the big one"


# ---------------------------------------------------------------- the terminal

HOSTILE_TEXT = ["safe ", "\x1b]0;pwned\x07\x1b[2J\x1b[1;1H", "\u202eevil\u202c", "\r", " \u009b31m", "done"]


def test_watch_filters_escape_sequences_on_a_terminal(cq):
    job = cq.mkjob(stream=True, mock={"content": HOSTILE_TEXT})
    h = cq.run(job)
    assert h["status"] == "succeeded"
    p = run_on_pty([os.path.join(BIN, "chatq"), "watch", job["id"]], cq.env)
    out, rc = p.stdout, p.returncode
    assert rc == 0, out
    text = out.decode("utf-8")
    assert "\x1b" not in text and "\u009b" not in text and "\u202e" not in text, repr(text)
    assert "safe ^[]0;pwned^G^[[2J^[[1;1H<U+202E>evil<U+202C>^M <U+009B>31mdone" in text, repr(text)
    # to a pipe the text goes as it is
    r = subprocess.run([os.path.join(BIN, "chatq"), "watch", job["id"]], env=cq.env,
                       capture_output=True, timeout=20 * SCALE)
    assert r.returncode == 0
    assert r.stdout == ("".join(HOSTILE_TEXT) + "\n").encode()
