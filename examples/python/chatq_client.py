"""chatq_client.py — a small chatq client for Python programs (redis-py).

chatq takes jobs from Redis lists and answers through Redis, so a client is
a handful of Redis commands (the keys and JSON shapes are chatq's contract,
docs/protocol.md; P is the key prefix, "chatq" unless CHATQ_PREFIX says otherwise):

  submit   LPUSH P:queue:<queue> <job JSON>
  stream   SUBSCRIBE P:stream:<id>, then LRANGE P:events:<id> 0 -1 for what
           was published before we listened; every event carries a `seq`
           (0, 1, 2...), so an event seen on both is used once
  result   the hash P:job:<id> (status, response, error, usage...), or the
           output line chatq LPUSHes to the job's `reply_to` list
  cancel   SET P:cancel:<id> (with a TTL), then PUBLISH P:control <id>

Subscribing *before* reading the list is what makes the stream gap-free: an
event published after the SUBSCRIBE reaches us on the channel, and one
published before it is already in the list (chatq appends an event to the
list before it publishes it). Reading the list first would lose whatever is
published between the two commands.

A `retry` event means the attempt whose chunks we showed failed; a new one
starts from the beginning, so what was shown must be dropped.

Stream events are sent "best effort": while chatq cannot reach Redis it drops
them (the result itself is never lost). So `events()` also looks at the job
hash once a second, and ends with the hash's status if the final event never
comes.

Only redis-py is needed (Debian: python3-redis). Use it as a module:

    c = Chatq()                              # CHATQ_REDIS_URL, CHATQ_PREFIX
    jid = c.submit(c.make_job("Say hi", model="gpt-4o-mini", stream=True))
    answer = c.follow_text(jid, on_text=lambda s: print(s, end="", flush=True))
    print(answer.status, c.result(jid)["usage"])
"""

import json
import os
import secrets
import time
from collections import deque

import redis

TERMINAL = ("succeeded", "failed", "cancelled")
DEFAULT_MODEL = "gpt-4o-mini"


class Answer:
    """What follow_text() saw: the final status, the text of the attempt
    that counted, the final event's error (or None) and how many retries
    made it start over."""

    def __init__(self):
        self.status = None
        self.text = ""
        self.error = None
        self.retries = 0
        self.finish_reason = None
        self.usage = None

    def __repr__(self):
        return "Answer(status=%r, text=%r, error=%r, retries=%d)" % (
            self.status, self.text, self.error, self.retries)


def env_json(name):
    """A JSON object from the environment variable `name`, or {}."""
    raw = os.environ.get(name)
    if not raw:
        return {}
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("%s must hold a JSON object" % name)
    return value


def chunk_text(event):
    """The content delta of choice 0 in a chunk event ("" if none)."""
    choices = (event.get("data") or {}).get("choices") or []
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            content = (choice.get("delta") or {}).get("content")
            return content if isinstance(content, str) else ""
    return ""


def response_text(job_hash):
    """The content of choice 0 of a finished job's stored response."""
    for choice in (job_hash.get("response") or {}).get("choices") or []:
        if choice.get("index", 0) == 0:
            return (choice.get("message") or {}).get("content") or ""
    return ""


class Chatq:
    """A chatq client on one Redis connection pool.

    url:    the Redis URL (default $CHATQ_REDIS_URL, else redis://127.0.0.1:6379/0)
    prefix: the key prefix (default $CHATQ_PREFIX, else "chatq")"""

    def __init__(self, url=None, prefix=None):
        url = url or os.environ.get("CHATQ_REDIS_URL") or "redis://127.0.0.1:6379/0"
        if url.startswith("unix://"):
            # chatq spells a socket unix:///path; redis-py wants the path alone.
            self.r = redis.Redis(unix_socket_path=url[len("unix://"):], decode_responses=True)
        else:
            self.r = redis.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix or os.environ.get("CHATQ_PREFIX") or "chatq"

    def key(self, *parts):
        return ":".join((self.prefix,) + parts)

    def app_key(self, *parts):
        """A key of this application's own, such as a reply_to list:
        P-examples:<parts>. Outside chatq's namespace P:, since a job's
        reply_to may not name a key under P: (chatq's state; only a `chatq
        batch` run's P:batch:<batch>:out is allowed there), and still apart
        for each prefix."""
        return ":".join((self.prefix + "-examples",) + parts)

    # ------------------------------------------------------------ submit

    @staticmethod
    def new_id(kind="py"):
        # An id of our own: without one we could not follow the job (chatq
        # would make one up, and we would never learn it).
        return "%s-%s" % (kind, secrets.token_hex(12))

    def make_job(self, prompt=None, messages=None, model=None, stream=False, id=None,
                 reply_to=None, tenant=None, extra_body=None, **fields):
        """A job dict. `prompt` is one user message (or give `messages`);
        `extra_body` is laid over the request body (temperature, max_tokens,
        ...; default $CHATQ_EXTRA_BODY); other keyword arguments are job
        fields (metadata, timeout_ms, max_attempts...)."""
        if messages is None:
            messages = [{"role": "user", "content": prompt or ""}]
        body = {"model": model or os.environ.get("CHATQ_MODEL") or DEFAULT_MODEL,
                "messages": messages}
        body.update(env_json("CHATQ_EXTRA_BODY") if extra_body is None else extra_body)
        job = {"id": id or self.new_id(), "stream": bool(stream), "body": body}
        if reply_to:
            job["reply_to"] = reply_to
        if tenant:
            job["tenant"] = tenant
        job.update(fields)
        return job

    def submit(self, job, queue="default"):
        """Pushes one job (a dict from make_job); returns its id."""
        self.r.lpush(self.key("queue", queue), json.dumps(job))
        return job["id"]

    def submit_many(self, jobs, queue="default", per_push=500):
        """Pushes many jobs, several per LPUSH (one round trip each)."""
        jobs = list(jobs)
        for i in range(0, len(jobs), per_push):
            self.r.lpush(self.key("queue", queue), *(json.dumps(j) for j in jobs[i:i + per_push]))
        return [j["id"] for j in jobs]

    # ------------------------------------------------------------ stream

    def events(self, job_id, timeout=None, check_every=1.0):
        """Yields the job's stream events in seq order, each once, from the
        first (whenever we start) to the final `done` or `error` event.

        If the job ends but its final event was lost, a last event
        {"type": "done"|"error", "status": <from the hash>, "seq": None}
        stands in for it. TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        follower = _Follower(self, job_id)
        try:
            follower.subscribe(deadline)
            follower.replay()           # after the SUBSCRIBE: nothing falls between
            next_check = time.monotonic() + check_every
            while True:
                while follower.pending:
                    event = follower.pending.popleft()
                    yield event
                    if event.get("type") in ("done", "error"):
                        return
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise TimeoutError("no end of job %s within %ss" % (job_id, timeout))
                if now >= next_check:
                    next_check = now + check_every
                    stand_in = follower.check_hash()
                    if stand_in:
                        follower.pending.append(stand_in)
                    continue
                wait = next_check - now
                if deadline is not None:
                    wait = min(wait, deadline - now)
                follower.read_channel(wait)
        finally:
            follower.close()

    def follow_text(self, job_id, on_text=None, on_retry=None, timeout=None):
        """Follows a streamed job to its end, joining the content of choice 0.
        on_text(piece) is called as pieces arrive; on_retry(event) when an
        attempt failed after we showed some of it: the caller drops what it
        showed (the Answer's text starts over by itself). Returns an Answer."""
        answer = Answer()
        min_attempt = 0     # chunks of attempts before this one are void
        for ev in self.events(job_id, timeout=timeout):
            kind = ev.get("type")
            if kind == "chunk" and ev.get("attempt", 0) >= min_attempt:
                piece = chunk_text(ev)
                if piece:
                    answer.text += piece
                    if on_text:
                        on_text(piece)
            elif kind == "retry":
                min_attempt = ev.get("attempt", 0) + 1
                answer.text = ""
                answer.retries += 1
                if on_retry:
                    on_retry(ev)
            elif kind in ("done", "error"):
                answer.status = ev.get("status") or ("succeeded" if kind == "done" else "failed")
                answer.error = ev.get("error")
                answer.finish_reason = ev.get("finish_reason")
                answer.usage = ev.get("usage")
        return answer

    # ------------------------------------------------------------ result

    def job(self, job_id):
        """The job hash with its JSON fields parsed ({} if there is none)."""
        h = self.r.hgetall(self.key("job", job_id))
        for field in ("response", "usage", "error", "metadata"):
            if field in h:
                h[field] = json.loads(h[field])
        for field in ("attempts", "started_at", "first_token_at", "finished_at"):
            if field in h:
                h[field] = int(h[field])
        return h

    def result(self, job_id, timeout=None, poll=0.1):
        """Polls the job hash until the job has ended; returns the hash
        (see job()). TimeoutError after `timeout` seconds. Fine for a few
        jobs; for many, prefer reply_to and wait_reply()."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.r.hget(self.key("job", job_id), "status") in TERMINAL:
                return self.job(job_id)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("job %s has not ended within %ss" % (job_id, timeout))
            time.sleep(poll)

    def wait_reply(self, reply_key, timeout=0):
        """Waits for one output line on a reply_to list (BRPOP: no polling);
        returns it parsed, or None after `timeout` seconds (0: forever)."""
        got = self.r.brpop(reply_key, timeout=timeout)
        return json.loads(got[1]) if got else None

    # ------------------------------------------------------------ cancel

    def cancel(self, job_id, ttl=86400):
        """Cancels a queued or running job; it ends `cancelled`. The key
        stays until the TTL if the job had already ended."""
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.key("cancel", job_id), "1", ex=ttl)
        pipe.publish(self.key("control"), job_id)
        pipe.execute()


class _Follower:
    """The state of one events() call: a subscription to the job's channel,
    the seq expected next and the events ready to hand out."""

    def __init__(self, client, job_id):
        self.c = client
        self.job_id = job_id
        self.channel = client.key("stream", job_id)
        self.events_key = client.key("events", job_id)
        self.ps = client.r.pubsub()
        self.next_seq = 0
        self.pending = deque()

    def subscribe(self, deadline):
        self.ps.subscribe(self.channel)
        # Only once Redis confirms are we sure to get every later event.
        while True:
            msg = self.ps.get_message(timeout=0.5)
            if msg and msg["type"] == "subscribe":
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("no SUBSCRIBE confirmation for %s" % self.channel)

    def accept(self, raw, from_list):
        """Takes one event text, from the list or the channel."""
        try:
            ev = json.loads(raw)
            seq = int(ev["seq"])
        except (ValueError, TypeError, KeyError):
            return          # not an event: a stray publisher must not stop us
        if seq > self.next_seq and not from_list:
            # A hole: the missing events are in the list by now (chatq
            # appends before it publishes). What is still missing after
            # this read was lost, and is skipped.
            self.replay()
        if seq >= self.next_seq:
            self.pending.append(ev)
            self.next_seq = seq + 1

    def replay(self):
        for raw in self.c.r.lrange(self.events_key, 0, -1):
            self.accept(raw, True)

    def read_channel(self, wait):
        msg = self.ps.get_message(timeout=max(wait, 0.001))
        if msg and msg["type"] == "message":
            self.accept(msg["data"], False)

    def check_hash(self):
        """The stand-in final event when the hash says the job ended but no
        final event came (it was lost while chatq could not reach Redis)."""
        status = self.c.r.hget(self.c.key("job", self.job_id), "status")
        if status not in TERMINAL:
            return None
        self.replay()
        if any(e.get("type") in ("done", "error") for e in self.pending):
            return None
        return {"type": "done" if status == "succeeded" else "error", "status": status,
                "seq": None}

    def close(self):
        try:
            self.ps.close()
        except redis.RedisError:
            pass
