"""test_upstream.py — self-test of the stand-in upstream (upstream.py), so that
a failing chatq test can be trusted to be chatq's fault. Talks to it with
http.client and raw sockets; needs no chatq binary."""

import http.client
import json
import socket
import time

import upstream as up
from conftest import wait_for


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
