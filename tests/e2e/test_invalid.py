"""test_invalid.py — jobs that cannot be used (docs/protocol.md §4): each goes to P:dead
with code invalid_job and a message naming what is wrong, is never sent
upstream, fails its job hash and answers reply_to when its id can be read;
and chatqd keeps running whatever it is fed."""

import json

import pytest

from conftest import now_ms, wait_for

HI = [{"role": "user", "content": "hi"}]


def mk(cq, jid, R, **over):
    """A valid job (with reply_to R), then `over` applied; a value None
    removes the field; key "body" may be a dict merged into the body or any
    other value replacing it."""
    job = {"id": jid, "reply_to": R,
           "body": {"model": "mock-1", "messages": HI, "mock": {"key": cq.mock_key(jid)}}}
    for k, v in over.items():
        if k == "body_set":
            for bk, bv in v.items():
                if bv is None:
                    job["body"].pop(bk, None)
                else:
                    job["body"][bk] = bv
        elif v is None:
            job.pop(k, None)
        else:
            job[k] = v
    return json.dumps(job)


# (name, builder(cq, R) -> raw, id readable (or None), a word the message names)
CASES = [
    ("not_json", lambda cq, R: "this is {not json", None, None),
    ("not_object", lambda cq, R: '["a", 1, {"id": "x"}]', None, None),
    ("json_string", lambda cq, R: '"just a string"', None, None),
    ("no_body", lambda cq, R: mk(cq, "nb", R, body=None), "nb", "body"),
    ("body_not_object", lambda cq, R: mk(cq, "bno", R, body="hello"), "bno", "body"),
    ("no_model", lambda cq, R: mk(cq, "nm", R, body_set={"model": None}), "nm", "model"),
    ("no_messages", lambda cq, R: mk(cq, "nmsg", R, body_set={"messages": None}), "nmsg", "messages"),
    ("empty_messages", lambda cq, R: mk(cq, "emsg", R, body_set={"messages": []}), "emsg", "messages"),
    ("messages_not_array", lambda cq, R: mk(cq, "msa", R, body_set={"messages": "hi"}), "msa", "messages"),
    ("bad_id_chars", lambda cq, R: mk(cq, "bad id/!", R), None, "id"),
    ("id_too_long", lambda cq, R: mk(cq, "a" * 129, R), None, "id"),
    ("id_not_string", lambda cq, R: mk(cq, 42, R), None, "id"),
    ("method_get", lambda cq, R: mk(cq, "mget", R, method="GET"), "mget", "method"),
    ("url_other", lambda cq, R: mk(cq, "uoth", R, url="/v1/embeddings"), "uoth", "url"),
    ("unknown_provider", lambda cq, R: mk(cq, "uprov", R, provider="no-such-provider"), "uprov", "provider"),
    ("custom_id_no_model", lambda cq, R: mk(cq, "x", R, id=None, custom_id="cust.9",
                                            body_set={"model": None}), "cust.9", "model"),
]


@pytest.mark.parametrize("name,build,jid,word", CASES, ids=[c[0] for c in CASES])
def test_invalid_job(cq, upstream, name, build, jid, word):
    R = cq.prefix + "-replies"  # reply_to may not name a key under P:
    raw = build(cq, R)
    t0 = now_ms()
    cq.push(raw)
    dead = wait_for(lambda: cq.dead(), 10, what="a P:dead entry")
    t1 = now_ms()
    assert len(dead) == 1
    d = dead[0]
    assert set(d) == {"job", "error", "failed_at"}
    assert d["job"] == raw
    assert d["error"]["code"] == "invalid_job"
    msg = d["error"]["message"]
    assert isinstance(msg, str) and msg
    if word:
        assert word in msg.lower(), "message %r does not name %r" % (msg, word)
    assert t0 - 1000 <= d["failed_at"] <= t1 + 1000

    if jid is not None:
        h = cq.wait_job_done(jid)
        assert h["status"] == "failed"
        assert h["error"]["code"] == "invalid_job" and h["error"]["message"] == msg
        line = cq.wait_replies(R, 1)[0]
        custom = json.loads(raw).get("custom_id", jid)
        assert line == {"id": jid, "custom_id": custom, "response": None,
                        "error": {"code": "invalid_job", "message": msg}}
    # Never sent upstream; the daemon still serves.
    ok = cq.mkjob()
    assert cq.run(ok)["status"] == "succeeded"
    assert upstream.requests(prefix=cq.prefix + ":") == upstream.requests(cq.mock_key(ok["id"]))
    assert cq.r.hgetall(cq.job_key("bad id/!")) == {}


def test_job_over_max_job_bytes(start_chatqd, upstream):
    cq = start_chatqd(config={"max_job_bytes": 2048})
    R = cq.prefix + "-replies"  # reply_to may not name a key under P:
    raw = mk(cq, "big", R, body_set={"x_pad": "p" * 3000})
    fits = mk(cq, "fits", R, body_set={"x_pad": "p" * 1000})
    cq.push(raw)
    cq.push(fits)
    assert cq.wait_job_done("fits")["status"] == "succeeded"
    d = wait_for(lambda: cq.dead(), 10, what="a P:dead entry")[0]
    assert d["job"] == raw
    assert d["error"]["code"] == "invalid_job" and d["error"]["message"]
    assert upstream.requests(cq.mock_key("big")) == []


def test_survives_garbage(cq, upstream):
    pids = cq.wait_workers(2)
    huge = mk(cq, "huge", cq.prefix + "-replies", body_set={"x_pad": "h" * (1024 * 1024 + 10)})
    garbage = [b"\xff\xfe\x00\x01binary\x80", b"", b"null", b"0", b"{}", b"[]", b"{" * 100000,
               b"[" * 5000 + b"]" * 5000, b'{"id":"g1","body":1e999999}', b'{"id":' + b"9" * 5000 + b"}",
               b'{"id":"g2","body":{"model":"mock-1","messages":"' + b"\\u" * 1000 + b'"}}',
               b'{"id":"g3","body":{"model":["x"],"messages":[]}}', b"\x00" * 100, huge.encode()]
    for g in garbage:
        cq.push(g)
    wait_for(lambda: len(cq.dead()) == len(garbage), 20,
             what="%d P:dead entries (have %d)" % (len(garbage), len(cq.dead())))
    for d in cq.dead():
        assert d["error"]["code"] == "invalid_job"
    assert upstream.requests(prefix=cq.prefix + ":") == []
    ok = cq.mkjob(stream=True)
    assert cq.run(ok)["status"] == "succeeded"
    cq.check_alive()
    # No worker crashed (a crash would be hidden by the restart).
    assert cq.worker_pids() == pids
