"""test_providers.py — several providers (issue 4, docs/protocol.md §2, §6, §7): routing by
model pattern and by name, fallbacks after retryable failures (to another
provider, to another model, a chain that fails through), rate limits shared
by every worker of two daemons through Redis (requests and tokens per
minute, slowed down by a 429 or x-ratelimit-* headers, giving up with
rate_limited), and the cost counters computed from the price table.

Every provider points at the session's stand-in upstream (or at a closed
port, for a provider that is down); each has its own API key, so the
Authorization header the upstream recorded tells which provider sent a
request. The rate-limit tests judge chatq by the arrival times the upstream
recorded ("t", unix seconds)."""

import json
from fractions import Fraction

from conftest import TERMINAL, free_port, utc_day, wait_for

KEYS = {"CQ_TEST_KEY_A": "sk-prov-a-111", "CQ_TEST_KEY_B": "sk-prov-b-222",
        "CQ_TEST_KEY_C": "sk-prov-c-333"}


def prov(name, base_url, key=None, **kw):
    """A provider object; key is one of KEYS' variables."""
    p = {"name": name, "base_url": base_url}
    if key:
        p["api_key_env"] = key
    p.update(kw)
    return p


def dead_url():
    """A base_url nobody listens on: every attempt is a connection error."""
    return "http://127.0.0.1:%d/v1" % free_port()


def bearer(key):
    return "Bearer " + KEYS[key]


def auths(recs):
    return [r["headers"].get("authorization") for r in recs]


def push_all(cq, jobs):
    p = cq.r.pipeline(transaction=False)
    for j in jobs:
        p.lpush(cq.queue_key(), json.dumps(j))
    p.execute()


def wait_all(daemons, ids, timeout):
    """Waits until every job in ids has ended; returns their hashes."""
    cq = daemons[0]

    def done():
        for d in daemons:
            d.check_alive()
        p = cq.r.pipeline(transaction=False)
        for i in ids:
            p.hget(cq.job_key(i), "status")
        return all(s in TERMINAL for s in p.execute())
    wait_for(done, timeout, interval=0.1, what="%d jobs to end" % len(ids))
    return {i: cq.job(i) for i in ids}


def max_in_window(times, width):
    """The largest number of times within any half-open window [t, t+width)."""
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] >= width:
            j += 1
        best = max(best, i - j + 1)
    return best


def usage_fields(cq, tenant, model):
    """The usage counters of (tenant, model) today, by metric."""
    pre = "%s|%s|" % (tenant, model)
    return {f[len(pre):]: v for f, v in cq.usage().items() if f.startswith(pre)}


# ------------------------------------------------------------ routing

def test_route_by_model_pattern_and_by_name(start_chatqd, upstream):
    cq = start_chatqd(config={"providers": [
        prov("gpt-gw", upstream.url, "CQ_TEST_KEY_A", models=["gpt-*"]),
        prov("claude-gw", upstream.url, "CQ_TEST_KEY_B", models=["claude-*", "gpt-5*"]),
    ]}, env=KEYS)
    cases = [  # (model, explicit provider, provider expected, key expected)
        ("gpt-4o-mini", None, "gpt-gw", "CQ_TEST_KEY_A"),
        ("claude-3-haiku", None, "claude-gw", "CQ_TEST_KEY_B"),
        # both match: the first provider in the file wins
        ("gpt-5", None, "gpt-gw", "CQ_TEST_KEY_A"),
        # named: it goes there whatever the patterns say
        ("gpt-4o", "claude-gw", "claude-gw", "CQ_TEST_KEY_B"),
        ("llama-3", "gpt-gw", "gpt-gw", "CQ_TEST_KEY_A"),
    ]
    jobs = []
    for model, named, _, _ in cases:
        extra = {"provider": named} if named else {}
        jobs.append(cq.mkjob(model=model, **extra))
    push_all(cq, jobs)
    hashes = wait_all([cq], [j["id"] for j in jobs], 10)
    for job, (model, named, want_prov, want_key) in zip(jobs, cases):
        h = hashes[job["id"]]
        assert h["status"] == "succeeded", (model, named, h.get("error"))
        assert h["provider"] == want_prov, (model, named)
        assert h["model"] == model
        recs = upstream.requests(cq.mock_key(job["id"]))
        assert len(recs) == 1
        assert auths(recs) == [bearer(want_key)], (model, named)
        assert recs[0]["body"]["model"] == model
        assert "provider" not in recs[0]["body"]  # chatq's field, not the upstream's


def test_model_nobody_serves_fails_no_provider(start_chatqd, upstream):
    cq = start_chatqd(config={"providers": [
        prov("gpt-gw", upstream.url, "CQ_TEST_KEY_A", models=["gpt-*"]),
        prov("claude-gw", upstream.url, "CQ_TEST_KEY_B", models=["claude-*"]),
    ]}, env=KEYS)
    job = cq.mkjob(model="llama-3-70b", tenant="np")
    h = cq.run(job)
    assert h["status"] == "failed"
    assert h["error"]["code"] == "no_provider"
    assert h["error"]["status"] == 0
    assert "llama-3-70b" in h["error"]["message"]
    assert "provider" not in h
    assert upstream.requests(cq.mock_key(job["id"])) == []
    assert usage_fields(cq, "np", "llama-3-70b") == {"requests": 1, "failed": 1}
    # a provider name that is not configured is an invalid job
    bad_job = cq.mkjob(model="gpt-4o", provider="nope")
    bad = cq.run(bad_job)
    assert bad["status"] == "failed" and bad["error"]["code"] == "invalid_job"
    assert "nope" in bad["error"]["message"]
    assert upstream.requests(cq.mock_key(bad_job["id"])) == []


# ------------------------------------------------------------ fallbacks

def test_fallback_to_another_provider_after_connection_errors(start_chatqd, upstream):
    cq = start_chatqd(config={
        "max_attempts": 2,
        "providers": [prov("down", dead_url(), "CQ_TEST_KEY_A", models=["mock-fb*"]),
                      prov("backup", upstream.url, "CQ_TEST_KEY_B", models=["backup-*"])],
        "fallbacks": {"mock-fb": [{"provider": "backup"}]},
    }, env=KEYS)
    job = cq.mkjob(model="mock-fb", tenant="fb")
    h = cq.run(job)
    assert h["status"] == "succeeded", h.get("error")
    assert h["provider"] == "backup"
    assert h["model"] == "mock-fb"
    assert h["attempts"] == 3  # two at "down", one at "backup"
    recs = upstream.requests(cq.mock_key(job["id"]))
    assert auths(recs) == [bearer("CQ_TEST_KEY_B")]
    assert recs[0]["body"]["model"] == "mock-fb"
    assert usage_fields(cq, "fb", "mock-fb") == {
        "requests": 1, "succeeded": 1, "prompt_tokens": 9, "completion_tokens": 12,
        "total_tokens": 21}

    # a model the fallback pattern does not match fails as it did before
    other = cq.run(cq.mkjob(model="mock-fb-2"))
    assert other["status"] == "failed"
    assert other["error"]["code"] == "connection_error"
    assert other["provider"] == "down"
    assert other["attempts"] == 2


def test_fallback_to_another_provider_after_5xx(start_chatqd, upstream):
    cq = start_chatqd(config={
        "providers": [prov("a", upstream.url, "CQ_TEST_KEY_A", models=["mock-5xx"]),
                      prov("b", upstream.url, "CQ_TEST_KEY_B", models=["none"])],
        "fallbacks": {"mock-5xx": [{"provider": "b"}]},
    }, env=KEYS)
    # every attempt at "a" (max_attempts of the job: 2) answers 500
    job = cq.mkjob(model="mock-5xx", max_attempts=2, mock={"fail_first": 2})
    h = cq.run(job)
    assert h["status"] == "succeeded", h.get("error")
    assert h["provider"] == "b"
    assert h["attempts"] == 3
    recs = upstream.requests(cq.mock_key(job["id"]))
    assert auths(recs) == [bearer("CQ_TEST_KEY_A")] * 2 + [bearer("CQ_TEST_KEY_B")]
    assert [r["outcome"] for r in recs] == ["status", "status", "ok"]

    # a 400 is not retryable: no fallback
    bad = cq.mkjob(model="mock-5xx", max_attempts=2, mock={"status": 400})
    h = cq.run(bad)
    assert h["status"] == "failed"
    assert h["error"]["code"] == "upstream_error" and h["error"]["status"] == 400
    assert h["provider"] == "a"
    assert auths(upstream.requests(cq.mock_key(bad["id"]))) == [bearer("CQ_TEST_KEY_A")]


def test_fallback_to_another_model_counts_usage_under_the_asked_model(start_chatqd, upstream):
    cq = start_chatqd(config={
        "max_attempts": 1,
        "providers": [prov("down", dead_url(), "CQ_TEST_KEY_A", models=["mock-big"]),
                      prov("up", upstream.url, "CQ_TEST_KEY_B", models=["*"])],
        "fallbacks": {"mock-big": [{"model": "mock-small"}]},
    }, env=KEYS)
    job = cq.mkjob(model="mock-big", tenant="fbm",
                   mock={"usage": {"prompt_tokens": 31, "completion_tokens": 7, "total_tokens": 38}})
    h = cq.run(job)
    assert h["status"] == "succeeded", h.get("error")
    assert h["model"] == "mock-small"
    assert h["provider"] == "up"
    assert h["response"]["model"] == "mock-small"  # the stand-in echoes the model it was asked
    recs = upstream.requests(cq.mock_key(job["id"]))
    assert len(recs) == 1 and recs[0]["body"]["model"] == "mock-small"
    assert auths(recs) == [bearer("CQ_TEST_KEY_B")]
    assert usage_fields(cq, "fbm", "mock-big") == {
        "requests": 1, "succeeded": 1, "prompt_tokens": 31, "completion_tokens": 7,
        "total_tokens": 38}
    assert usage_fields(cq, "fbm", "mock-small") == {}


def test_fallback_chain_that_all_fails_ends_with_the_last_error(start_chatqd, upstream):
    cq = start_chatqd(config={
        "max_attempts": 2,
        "providers": [prov("down", dead_url(), "CQ_TEST_KEY_A", models=["mock-chain"]),
                      prov("b", upstream.url, "CQ_TEST_KEY_B", models=["none-b"]),
                      prov("c", upstream.url, "CQ_TEST_KEY_C", models=["none-c"])],
        "fallbacks": {"mock-chain": [{"provider": "b"},
                                     {"provider": "c", "model": "mock-chain-c"}]},
    }, env=KEYS)
    R = cq.prefix + "-replies"  # reply_to may not name a key under P:
    # upstream attempts 1-2 (at b) answer 503, 3-4 (at c) 502
    job = cq.mkjob(model="mock-chain", tenant="fbc", reply_to=R, mock={"script": [
        {"status": 503}, {"status": 503}, {"status": 502, "message": "the last one"}]})
    h = cq.run(job)
    assert h["status"] == "failed"
    assert h["error"]["code"] == "upstream_error"
    assert h["error"]["status"] == 502
    assert "the last one" in h["error"]["message"]
    assert h["error"]["upstream"]["message"] == "the last one"
    assert h["attempts"] == 6
    assert h["provider"] == "c" and h["model"] == "mock-chain-c"
    recs = upstream.requests(cq.mock_key(job["id"]))
    assert auths(recs) == [bearer("CQ_TEST_KEY_B")] * 2 + [bearer("CQ_TEST_KEY_C")] * 2
    assert [r["body"]["model"] for r in recs] == ["mock-chain"] * 2 + ["mock-chain-c"] * 2
    line = cq.wait_replies(R, 1)[0]
    assert line["response"]["status_code"] == 502
    assert usage_fields(cq, "fbc", "mock-chain") == {"requests": 1, "failed": 1}


# ------------------------------------------------------------ rate limits

def limited_config(upstream, limits, **extra):
    cfg = {"providers": [prov("lim", upstream.url, "CQ_TEST_KEY_A", limits=limits)]}
    cfg.update(extra)
    return cfg


def two_daemons(start_chatqd, config):
    """Two chatqd of two workers each on one prefix. 16 jobs a worker at
    most, so that neither daemon can take all the jobs of a test."""
    a = start_chatqd(config=config, workers=2, concurrency=16, env=KEYS)
    b = start_chatqd(config=config, workers=2, concurrency=16, env=KEYS, prefix=a.prefix)
    a.wait_workers(2)
    b.wait_workers(2)
    return a, b


def served_by(hashes):
    """The chatqd pids whose workers ran the jobs (worker ids are
    host.<chatqd pid>.<ms>.<slot>)."""
    return {int(h["worker"].split(".")[-3]) for h in hashes.values()}


def test_rpm_limit_shared_by_two_daemons(start_chatqd, upstream):
    a, b = two_daemons(start_chatqd, limited_config(upstream, {"*": {"rpm": 600}}))
    n = 210  # 21 s at 10 requests a second
    jobs = [a.mkjob(id="rpm%d" % i, model="mock-rpm") for i in range(n)]
    push_all(a, jobs)
    hashes = wait_all([a, b], [j["id"] for j in jobs], 60)
    assert all(h["status"] == "succeeded" for h in hashes.values())
    assert served_by(hashes) == {a.proc.pid, b.proc.pid}
    recs = upstream.requests(prefix=a.prefix + ":rpm")
    assert len(recs) == n  # one request each: nothing was refused or retried
    times = sorted(r["t"] for r in recs)
    # 600 a minute: no 10 s window holds more than a sixth of 600 + 1%
    worst10 = max_in_window(times, 10.0)
    assert worst10 * 6 <= 606, "%d requests in 10 s" % worst10
    # spread evenly, not bunched: a second holds 10, 11 with timing noise
    worst1 = max_in_window(times, 1.0)
    assert worst1 <= 11, "%d requests in 1 s" % worst1
    rate = (n - 1) / (times[-1] - times[0])
    assert abs(rate - 10.0) <= 1.0, "throughput %.2f/s, limit 10/s" % rate


def run_tpm(start_chatqd, upstream, tpm, max_tokens, used):
    """Runs one job per entry of max_tokens/used (the job asks for that many
    tokens; the stand-in reports that many used) on two daemons under a
    tokens-per-minute limit. Returns (records in arrival order, tokens used
    by each, chatq's estimate for each)."""
    a, b = two_daemons(start_chatqd, limited_config(upstream, {"mock-tpm*": {"tpm": tpm}}))
    jobs = [a.mkjob(id="tpm%d" % i, model="mock-tpm", body={"max_tokens": m}, mock={
        "usage": {"prompt_tokens": u - 10, "completion_tokens": 10, "total_tokens": u}})
        for i, (m, u) in enumerate(zip(max_tokens, used))]
    push_all(a, jobs)
    hashes = wait_all([a, b], [j["id"] for j in jobs], 60)
    assert all(h["status"] == "succeeded" for h in hashes.values())
    assert served_by(hashes) == {a.proc.pid, b.proc.pid}
    recs = sorted(upstream.requests(prefix=a.prefix + ":tpm"), key=lambda r: r["t"])
    assert len(recs) == len(jobs)
    tokens = [r["body"]["mock"]["usage"]["total_tokens"] for r in recs]
    # chatq's estimate (ratelimit.h): request bytes / 4 + max_tokens
    est = [int(r["headers"]["content-length"]) // 4 + r["body"]["max_tokens"] for r in recs]
    return recs, tokens, est


def token_rate(recs, tokens):
    """Tokens per second: those of all requests but the last were spent by
    the time of the last."""
    return sum(tokens[:-1]) / (recs[-1]["t"] - recs[0]["t"])


def test_tpm_limit_shared_by_two_daemons(start_chatqd, upstream):
    # 10500 tokens a second; jobs of 550 and 1550 tokens, ~10 a second
    n = 90
    max_tokens = [500 if i % 2 else 1500 for i in range(n)]
    used = [m + 50 for m in max_tokens]
    recs, tokens, est = run_tpm(start_chatqd, upstream, 630000, max_tokens, used)
    # the premise: chatq's estimates were close to the real usage
    assert all(abs(e - t) <= 0.05 * t for e, t in zip(est, tokens)), list(zip(est, tokens))[:5]
    rate = token_rate(recs, tokens)
    assert abs(rate - 10500) <= 0.1 * 10500, "%.0f tokens/s, limit 10500/s" % rate
    times = [r["t"] for r in recs]
    worst = max(sum(t for t, x in zip(tokens, times) if times[i] <= x < times[i] + 3.0)
                for i in range(n))
    assert worst <= 3 * 10500 * 1.01 + 1550, "%d tokens in 3 s" % worst


def test_tpm_estimate_corrected_with_real_usage(start_chatqd, upstream):
    # 1000 tokens a second. Each job asks for max_tokens 1000 but uses 50 or
    # 150: without the correction with the real usage, about one job a
    # second would pass (~100 tokens/s); with it, close to 10 a second.
    n = 60
    used = [50 if i % 2 else 150 for i in range(n)]
    recs, tokens, est = run_tpm(start_chatqd, upstream, 60000, [1000] * n, used)
    assert min(est) > 1000
    rate = token_rate(recs, tokens)
    assert 500 <= rate <= 1050, "%.0f tokens/s, limit 1000/s" % rate


def pause_scenario(kind):
    """The mock options of the first attempt of the job that tells chatq to
    slow down, 1 s after it arrived, for 1.5 s."""
    if kind == "429":
        return {"script": [{"delay_ms": 1000, "status": 429, "retry_after_ms": 1500}, {}]}
    return {"delay_ms": 1000, "headers": {"x-ratelimit-remaining-requests": "0",
                                          "x-ratelimit-reset-requests": "1.5s"}}


def check_pause(cq, upstream, kind):
    slow = cq.mkjob(id="slow", model="mock-pause", mock=pause_scenario(kind))
    cq.push(slow)
    upstream.wait_requests(cq.mock_key("slow"), 1)
    # while it is held for 1 s, 40 more jobs queue up behind the same bucket
    jobs = [cq.mkjob(id="f%d" % i, model="mock-pause") for i in range(40)]
    push_all(cq, jobs)
    hashes = wait_all([cq], ["slow"] + [j["id"] for j in jobs], 30)
    assert all(h["status"] == "succeeded" for h in hashes.values())
    first = upstream.requests(cq.mock_key("slow"))[0]
    told = first["t_end"]  # when the upstream said "slow down"
    others = sorted(r["t"] for r in upstream.requests(prefix=cq.prefix + ":f"))
    assert len(others) == 40
    before = [t for t in others if t < told]
    assert 5 <= len(before) <= 11, before  # 10 a second until then
    # one request may have been granted before chatq read the answer; after
    # that, nothing for 1.5 s, though 30 jobs were waiting
    assert len([t for t in others if told <= t < told + 0.15]) <= 1
    assert [t for t in others if told + 0.15 <= t < told + 1.45] == []
    after = [t for t in others if t >= told + 1.45]
    assert len(after) >= 25
    # then the limit's own pace again
    rate = (len(after) - 1) / (after[-1] - after[0])
    assert abs(rate - 10) <= 1.5, rate
    return hashes["slow"]


def test_429_slows_down_every_job_of_the_bucket(start_chatqd, upstream):
    cq = start_chatqd(config=limited_config(upstream, {"*": {"rpm": 600}}), env=KEYS)
    h = check_pause(cq, upstream, "429")
    assert h["attempts"] == 2
    recs = upstream.requests(cq.mock_key("slow"))
    assert [r["outcome"] for r in recs] == ["status", "ok"]
    assert recs[1]["t"] - recs[0]["t_end"] >= 1.5  # retry-after-ms honoured


def test_ratelimit_headers_slow_down_every_job_of_the_bucket(start_chatqd, upstream):
    cq = start_chatqd(config=limited_config(upstream, {"*": {"rpm": 600}}), env=KEYS)
    h = check_pause(cq, upstream, "headers")
    assert h["attempts"] == 1


def test_no_capacity_in_time_fails_rate_limited_or_falls_back(start_chatqd, upstream):
    cq = start_chatqd(config={
        "rate_limit_wait_ms": 300,
        "providers": [prov("lim", upstream.url, "CQ_TEST_KEY_A", models=["mock-rl*"],
                           limits={"mock-rl*": {"rpm": 1}}),
                      prov("spare", upstream.url, "CQ_TEST_KEY_B", models=["none"])],
        "fallbacks": {"mock-rl-fb": [{"provider": "spare"}]},
    }, env=KEYS)
    first = cq.run(cq.mkjob(model="mock-rl-a"))
    assert first["status"] == "succeeded" and first["provider"] == "lim"
    # the next request at 1 a minute is ~60 s away: more than 300 ms
    job = cq.mkjob(model="mock-rl-a", tenant="rl")
    h = cq.run(job)
    assert h["status"] == "failed"
    assert h["error"]["code"] == "rate_limited"
    assert h["error"]["status"] == 0
    assert "lim" in h["error"]["message"]
    assert h["finished_at"] - h["started_at"] < 300 + 700
    assert upstream.requests(cq.mock_key(job["id"])) == []
    assert usage_fields(cq, "rl", "mock-rl-a") == {"requests": 1, "failed": 1}
    # with a fallback (the same bucket, "mock-rl*"), it goes there instead
    fb = cq.mkjob(model="mock-rl-fb")
    h = cq.run(fb)
    assert h["status"] == "succeeded", h.get("error")
    assert h["provider"] == "spare"
    assert auths(upstream.requests(cq.mock_key(fb["id"]))) == [bearer("CQ_TEST_KEY_B")]


def test_job_waiting_for_capacity_does_not_block_others(start_chatqd, upstream):
    cq = start_chatqd(config={
        "rate_limit_wait_ms": 10000,
        "providers": [prov("lim", upstream.url, "CQ_TEST_KEY_A",
                           limits={"mock-slow*": {"rpm": 20}})],  # one per 3 s
    }, env=KEYS, args=["--workers", "1", "--concurrency", "8"])
    a = cq.run(cq.mkjob(id="a", model="mock-slow"))
    assert a["status"] == "succeeded"
    cq.push(cq.mkjob(id="b", model="mock-slow"))
    wait_for(lambda: cq.r.hget(cq.job_key("b"), "status") == "running", 5, what="b running")
    c = cq.run(cq.mkjob(id="c", model="mock-free"), timeout=2)
    assert c["status"] == "succeeded"
    assert cq.r.hget(cq.job_key("b"), "status") == "running"  # still waiting
    b = cq.wait_job_done("b", 10)
    assert b["status"] == "succeeded"
    ta = upstream.requests(cq.mock_key("a"))[0]["t"]
    tb = upstream.requests(cq.mock_key("b"))[0]["t"]
    tc = upstream.requests(cq.mock_key("c"))[0]["t"]
    assert tc < tb
    assert 2.9 <= tb - ta <= 4.0, tb - ta


# ------------------------------------------------------------ cost

PRICE = (Fraction(5, 2), Fraction(5, 4), Fraction(10))  # input, cached input, output


def expected_cost(prompt, cached, completion, price=PRICE):
    """micro-USD, to the nearest integer (no ties in the cases below)."""
    inp, cin, out = price
    x = (prompt - cached) * inp + cached * cin + completion * out
    return int(x + Fraction(1, 2))


def usage_obj(prompt, cached, completion):
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def test_cost_counters_follow_the_price_table(start_chatqd, upstream):
    cq = start_chatqd(config={
        "max_attempts": 1,
        "providers": [
            prov("down", dead_url(), "CQ_TEST_KEY_A", models=["mock-fbcost"],
                 prices={"*": {"input": 100, "output": 100}}),
            prov("priced", upstream.url, "CQ_TEST_KEY_B", models=["*"],
                 prices={"mock-c*": {"input": 2.5, "cached_input": 1.25, "output": 10}}),
            prov("cheap", upstream.url, "CQ_TEST_KEY_C", models=["none"],
                 prices={"mock-fbcost": {"input": 1, "output": 2}}),
        ],
        "fallbacks": {"mock-fbcost": [{"provider": "cheap"}]},
    }, env=KEYS)
    # (prompt, cached, completion, streamed)
    cases = [(1000, 400, 200, False), (3, 1, 0, False), (13, 5, 1, False),
             (6, 3, 2, False), (4, 1, 1, False), (10, 3, 7, True)]
    jobs = [cq.mkjob(model="mock-c1", tenant="acme", stream=s, mock={"usage": usage_obj(p, c, o)})
            for p, c, o, s in cases]
    jobs.append(cq.mkjob(model="other-1", tenant="acme", mock={"usage": usage_obj(100, 20, 10)}))
    jobs.append(cq.mkjob(model="mock-fbcost", tenant="acme",
                         mock={"usage": usage_obj(100, 0, 50)}))
    push_all(cq, jobs)
    hashes = wait_all([cq], [j["id"] for j in jobs], 10)
    assert all(h["status"] == "succeeded" for h in hashes.values()), \
        [h.get("error") for h in hashes.values()]
    assert hashes[jobs[-1]["id"]]["provider"] == "cheap"

    want = sum(expected_cost(p, c, o) for p, c, o, _ in cases)
    assert want == 4183  # each job rounded: 4000 + 6 + 36 + 31 + 19 + 91
    u = usage_fields(cq, "acme", "mock-c1")
    assert u["cost_micro_usd"] == want
    assert u["prompt_tokens"] == sum(p for p, _, _, _ in cases)
    assert u["cached_tokens"] == sum(c for _, c, _, _ in cases)
    assert u["completion_tokens"] == sum(o for _, _, o, _ in cases)
    # no price for the model: no cost counter at all
    other = usage_fields(cq, "acme", "other-1")
    assert other["prompt_tokens"] == 100 and "cost_micro_usd" not in other
    # served by a fallback: the price of the provider that served it
    assert usage_fields(cq, "acme", "mock-fbcost")["cost_micro_usd"] == 100 * 1 + 50 * 2

    p = cq.cli("usage", "--json", "--tenant", "acme")
    assert p.returncode == 0, p.stderr
    rows = {r["model"]: r for r in json.loads(p.stdout)}
    assert set(rows) == {"mock-c1", "other-1", "mock-fbcost"}
    assert rows["mock-c1"]["cost_micro_usd"] == 4183
    assert rows["mock-c1"]["day"] == utc_day()
    assert rows["mock-fbcost"]["cost_micro_usd"] == 200
    assert rows["other-1"]["cost_micro_usd"] == 0
    assert rows["mock-c1"]["requests"] == len(cases)

    p = cq.cli("usage", "--tenant", "acme")
    assert p.returncode == 0, p.stderr
    lines = {ln.split()[1]: ln.split() for ln in p.stdout.splitlines()[1:] if ln.strip()
             and not ln.startswith("TOTAL")}
    assert lines["mock-c1"][-1] == "0.004183"
    assert lines["mock-fbcost"][-1] == "0.000200"
    assert lines["other-1"][-1] == "-"
    total = [ln for ln in p.stdout.splitlines() if ln.startswith("TOTAL")]
    assert total and total[0].split()[-1] == "0.004383"
