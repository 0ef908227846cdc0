#!/usr/bin/env python3
"""upstream.py — a stand-in OpenAI-compatible upstream for chatq's end-to-end
tests and demo (asyncio, Python standard library only).

Run alone:  python3 tests/e2e/upstream.py --port 0 --port-file F
            (binds 127.0.0.1, writes the bound port to F once listening).

It speaks HTTP/1.1 with keep-alive (Content-Length or chunked request bodies,
`Expect: 100-continue`) and answers `POST <anything>/chat/completions` the way
OpenAI does: a `chat.completion` JSON object, or with `"stream": true` an SSE
stream of `chat.completion.chunk` objects (chunked transfer encoding, a
usage-only chunk before `data: [DONE]` when `stream_options.include_usage` is
true, as OpenAI does). Every response carries an `x-request-id` header.

Scenario mechanism
------------------
What a request gets is scripted by the request itself, so that many tests can
share one server at once: any model name works (tests use `mock-...`), and an
optional body field `"mock": {...}` (chatq passes unknown body fields through
unchanged) holds the options below. Without it the server answers
"echo: <last user message>" with DEFAULT_USAGE.

  key            string: groups requests. Requests are recorded under it and
                 the attempt number (1, 2, ...) counts requests with this key,
                 so retries of one job share a key (tests use "<prefix>:<id>").
  content        list of strings: the content pieces, one per chunk (a string
                 is one piece). Default ["echo: ", <last user message>].
  contents       list of lists: content pieces per choice (overrides content).
  repeat         int: repeat the content pieces this many times.
  n              int: number of choices (default body.n, else 1).
  reasoning      list of strings: `reasoning_content` pieces (before content).
  refusal        list of strings: `refusal` pieces (after content).
  tool_calls     list of {"id","name","arguments","pieces"}: streamed as an
                 opening delta (index,id,type,name,arguments "") followed by
                 `pieces` (default 2) argument fragments; finish_reason
                 becomes "tool_calls".
  tool_call_no_index  bool: send each tool call whole in one delta without
                 "index" (as some providers do).
  logprobs       bool: content chunks carry choice.logprobs.content entries.
  finish_reason  string (default "stop", or "tool_calls").
  usage          object: the usage given verbatim (null: no usage at all).
  usage_on_finish bool: put usage on the finish chunks instead of a separate
                 usage-only chunk (as some providers do).
  id, created, reply_model, system_fingerprint: top-level chunk fields
                 (defaults "chatcmpl-mock", 1700000000, body.model, "fp_mock").
  raw_events     list: send exactly these as the SSE data payloads (objects
                 are JSON-encoded, strings go verbatim), then [DONE].
  raw_events_b64 list of base64 strings: the same, as raw bytes (invalid
                 UTF-8, control bytes); it wins over raw_events.
  repeat_events  int: send the raw events this many times over (before
                 [DONE]), for streams of very many chunks.
  one_write      bool: write the whole stream (every event and [DONE]) at
                 once, as one HTTP chunk: fast for huge numbers of events.
  raw_body       string: a non-stream answer's body, sent verbatim with
                 `status` (default 200); raw_body_b64: the same as bytes.
                 content_type: its Content-Type (default application/json).
  {{authorization}} in `message`, `raw_body`, the strings of `raw_events`,
                 `request_id` and the values of `headers` becomes the
                 request's Authorization header, as a proxy that echoes it
                 would send it (the stand-in never learns the key otherwise).
  request_id     string: the x-request-id header (default "req-<seq>").
  headers        object: extra response headers.
  delay_ms       sleep before sending the status line and headers.
  chunk_delay_ms sleep between SSE events.
  split_bytes    int: write every SSE event (and a non-stream body) in pieces
                 of this many bytes, each its own write and HTTP chunk, with
                 split_delay_ms (default 1) between pieces.
  crlf           bool: SSE lines end in CRLF instead of LF.
  keepalive      bool: a ": keep-alive" comment before every event.
  no_done        bool: no `data: [DONE]` (finish reason and usage still sent).
  truncate       bool: end the stream cleanly after the content, with no
                 finish reason, no usage and no [DONE] (non-stream: send half
                 the body announced by Content-Length, then close).
  stall_after    int: after this many SSE events (non-stream: after the
                 headers) send nothing more until the client closes.
  reset          "before_headers" | "mid_stream": close the connection with a
                 TCP RST (SO_LINGER 0). mid_stream: after `reset_after`
                 events (default 2), once reset_delay_ms (default 50) passed
                 so the client has the events (non-stream: half the body).
  status         int: answer with this HTTP status and a JSON error body
                 {"error":{"message","type","param","code"}} built from
                 `message`, `type`, `code`, or `error_body` verbatim.
  retry_after    header Retry-After (value as given, e.g. 1 or "1").
  retry_after_ms header retry-after-ms.
  invalid_json   bool: stream: after the first event send `data: {not json`;
                 non-stream: the body is `{not json`.
  framing        "chunked" (default) | "close": end a stream by closing
                 instead of with chunked encoding.
  fail_first     int K: attempts 1..K of this key use the options in `fail`
  fail           (default {"status": 500}) over the others; later attempts
                 get the plain scenario. Example: {"key":"p:j1",
                 "fail_first":1, "fail":{"reset":"mid_stream"}}.
  script         list of option objects: attempt i uses script[i-1] (the last
                 one for later attempts) over the others.

Inspection endpoints (JSON):
  GET /_health                 "ok"
  GET /_requests?key=K         requests with that key (?prefix=P: keys
                               starting with P; neither: all), in arrival
                               order: {seq, key, attempt, method, path,
                               headers (lower-case names), body (parsed JSON
                               or null), raw_body (when not JSON), conn (the
                               connection's serial number), t, t_end
                               (unix seconds), request_id, stream, outcome,
                               client_closed_at (the client closed the
                               connection before the response was complete),
                               sent (the SSE data payloads sent, or the
                               non-stream body)}
  GET /_stats                  {"requests", "by_key", "open", "max_open",
                               "connections"}
"""

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import struct
import sys
import time
import urllib.parse
from collections import defaultdict

DEFAULT_USAGE = {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           409: "Conflict", 413: "Payload Too Large", 422: "Unprocessable Entity",
           429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


# ---------------------------------------------------------------- scenarios

def resolve_options(mock, attempt):
    """The options in force for this attempt: the base options, with `fail`
    laid over them for the first `fail_first` attempts and script[i] over
    that."""
    if not isinstance(mock, dict):
        mock = {}
    opts = {k: v for k, v in mock.items() if k not in ("fail_first", "fail", "script")}
    if attempt <= int(mock.get("fail_first") or 0):
        opts.update(mock.get("fail") or {"status": 500})
    script = mock.get("script")
    if isinstance(script, list) and script:
        opts.update(script[min(attempt, len(script)) - 1])
    return opts


def last_user_text(body):
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


def _pieces(v):
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


def _split(s, k):
    """s cut into k nearly equal parts (some may be empty only when s is short)."""
    k = max(1, int(k))
    step = max(1, -(-len(s) // k))
    parts = [s[i:i + step] for i in range(0, len(s), step)]
    return parts or [""]


def choice_plans(body, o):
    """Per choice: content/reasoning/refusal pieces, tool calls, finish reason."""
    n = o.get("n") or (body.get("n") if isinstance(body.get("n"), int) else 1) or 1
    if "contents" in o:
        contents = [_pieces(c) for c in o["contents"]]
        n = len(contents)
    else:
        base = _pieces(o["content"]) if "content" in o else ["echo: ", last_user_text(body)]
        contents = [list(base) for _ in range(n)]
    rep = int(o.get("repeat") or 1)
    tools = o.get("tool_calls") or []
    plans = []
    for i in range(n):
        plans.append({
            "content": contents[i] * rep,
            "reasoning": _pieces(o.get("reasoning")),
            "refusal": _pieces(o.get("refusal")),
            "tool_calls": tools,
            "finish_reason": o.get("finish_reason") or ("tool_calls" if tools else "stop"),
        })
    return plans


def _logprob(piece):
    return {"token": piece, "logprob": -0.25, "bytes": list(piece.encode()), "top_logprobs": []}


def stream_parts(body, o, include_usage):
    """The SSE data payloads of a streamed answer, in three parts:
    (body events, finish events, usage events). Objects are chunks; a string
    or bytes payload is sent verbatim."""
    if "raw_events_b64" in o:
        raw = [base64.b64decode(e) for e in o["raw_events_b64"]]
        return raw * int(o.get("repeat_events") or 1), [], []
    if "raw_events" in o:
        return list(o["raw_events"]) * int(o.get("repeat_events") or 1), [], []
    usage = o.get("usage", DEFAULT_USAGE)
    head = {"id": o.get("id", "chatcmpl-mock"), "object": "chat.completion.chunk",
            "created": o.get("created", 1700000000),
            "model": o.get("reply_model", body.get("model")),
            "system_fingerprint": o.get("system_fingerprint", "fp_mock")}
    plans = choice_plans(body, o)

    def chunk(i, delta, finish=None, logprobs=None):
        c = dict(head)
        c["choices"] = [{"index": i, "delta": delta, "logprobs": logprobs,
                         "finish_reason": finish}]
        return c

    # As OpenAI: the opening delta has content "" for a text answer, null
    # when the answer is only tool calls or a refusal.
    events = [chunk(i, {"role": "assistant", "content": "" if p["content"] else None})
              for i, p in enumerate(plans)]

    def interleave(field, make):
        longest = max((len(p[field]) for p in plans), default=0)
        for step in range(longest):
            for i, p in enumerate(plans):
                if step < len(p[field]):
                    events.append(make(i, p[field][step]))

    interleave("reasoning", lambda i, s: chunk(i, {"reasoning_content": s}))
    if o.get("logprobs"):
        interleave("content", lambda i, s: chunk(
            i, {"content": s}, logprobs={"content": [_logprob(s)], "refusal": None}))
    else:
        interleave("content", lambda i, s: chunk(i, {"content": s}))
    interleave("refusal", lambda i, s: chunk(i, {"refusal": s}))
    for i, p in enumerate(plans):
        for k, t in enumerate(p["tool_calls"]):
            if o.get("tool_call_no_index"):
                events.append(chunk(i, {"tool_calls": [{
                    "id": t.get("id"), "type": "function",
                    "function": {"name": t.get("name"), "arguments": t.get("arguments", "")}}]}))
                continue
            events.append(chunk(i, {"tool_calls": [{
                "index": k, "id": t.get("id"), "type": "function",
                "function": {"name": t.get("name"), "arguments": ""}}]}))
            for frag in _split(t.get("arguments", ""), t.get("pieces", 2)):
                events.append(chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": frag}}]}))
    finish = []
    for i, p in enumerate(plans):
        c = chunk(i, {}, p["finish_reason"])
        if o.get("usage_on_finish") and usage is not None and include_usage:
            c["usage"] = usage
        finish.append(c)
    tail = []
    if usage is not None and include_usage and not o.get("usage_on_finish"):
        u = dict(head)
        u["choices"] = []
        u["usage"] = usage
        tail.append(u)
    return events, finish, tail


def completion_body(body, o):
    """The non-stream chat.completion object."""
    plans = choice_plans(body, o)
    choices = []
    for i, p in enumerate(plans):
        msg = {"role": "assistant", "content": "".join(p["content"]) if p["content"] else None}
        if p["reasoning"]:
            msg["reasoning_content"] = "".join(p["reasoning"])
        if p["refusal"]:
            msg["refusal"] = "".join(p["refusal"])
        if p["tool_calls"]:
            msg["tool_calls"] = [{"id": t.get("id"), "type": "function",
                                  "function": {"name": t.get("name"),
                                               "arguments": t.get("arguments", "")}}
                                 for t in p["tool_calls"]]
        choices.append({"index": i, "message": msg, "logprobs": None,
                        "finish_reason": p["finish_reason"]})
    out = {"id": o.get("id", "chatcmpl-mock"), "object": "chat.completion",
           "created": o.get("created", 1700000000),
           "model": o.get("reply_model", body.get("model")),
           "system_fingerprint": o.get("system_fingerprint", "fp_mock"),
           "choices": choices}
    usage = o.get("usage", DEFAULT_USAGE)
    if usage is not None:
        out["usage"] = usage
    return out


def substitute(o, auth):
    """The options with {{authorization}} replaced by the request's
    Authorization header wherever upstream.py's docstring says."""
    if not auth:
        return o

    def sub(v):
        return v.replace("{{authorization}}", auth) if isinstance(v, str) else v
    o = dict(o)
    for k in ("message", "raw_body", "request_id"):
        if k in o:
            o[k] = sub(o[k])
    if isinstance(o.get("raw_events"), list):
        o["raw_events"] = [sub(e) for e in o["raw_events"]]
    if isinstance(o.get("headers"), dict):
        o["headers"] = {k: sub(v) for k, v in o["headers"].items()}
    return o


def error_body(status, o):
    if "error_body" in o:
        return o["error_body"]
    kind = {400: "invalid_request_error", 401: "authentication_error",
            429: "rate_limit_error"}.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": o.get("message", "mock error %d" % status),
                      "type": o.get("type", kind), "param": None,
                      "code": o.get("code", "mock_%d" % status)}}


# ---------------------------------------------------------------- HTTP

class Request:
    def __init__(self, method, target, version, headers, body):
        self.method = method
        self.target = target
        u = urllib.parse.urlsplit(target)
        self.path = u.path
        self.query = urllib.parse.parse_qs(u.query)
        self.version = version
        self.headers = headers  # lower-case name -> value
        self.body = body


class Conn:
    """One client connection: a byte buffer over the stream reader (so that a
    watcher can read while a response is being written without losing
    pipelined bytes), close detection, and writes that report a gone peer."""

    def __init__(self, reader, writer):
        self.r = reader
        self.w = writer
        self.buf = bytearray()
        self.eof = False
        self.closed = asyncio.Event()
        self.aborted = False
        self.watcher = None

    async def fill(self):
        if self.eof:
            return False
        try:
            data = await self.r.read(65536)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.eof = True
            self.closed.set()
            return False
        self.buf += data
        return True

    async def read_until(self, sep, limit=1 << 20):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit or not await self.fill():
                return None

    async def read_exact(self, n):
        while len(self.buf) < n:
            if not await self.fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read_request(self):
        head = await self.read_until(b"\r\n\r\n", 1 << 16)
        if head is None:
            return None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise ValueError("bad request line")
        headers = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = headers[name] + ", " + value if name in headers else value
        if headers.get("expect", "").lower() == "100-continue":
            self.w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = b""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await self.read_until(b"\r\n")
                if size_line is None:
                    return None
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                data = await self.read_exact(size + 2)
                if data is None:
                    return None
                if size == 0:
                    break
                body += data[:-2]
        elif "content-length" in headers:
            body = await self.read_exact(int(headers["content-length"]))
            if body is None:
                return None
        return Request(parts[0], parts[1], parts[2], headers, body)

    def watch(self):
        """While a response is written, notice the client going away."""
        async def run():
            while await self.fill():
                pass
        self.watcher = asyncio.ensure_future(run())

    async def unwatch(self):
        if self.watcher is not None:
            self.watcher.cancel()
            try:
                await self.watcher
            except (asyncio.CancelledError, Exception):
                pass
            self.watcher = None

    async def send(self, data):
        if self.closed.is_set() or self.aborted:
            return False
        try:
            self.w.write(data)
            await self.w.drain()
        except (ConnectionError, OSError):
            self.closed.set()
            return False
        return True

    async def sleep(self, seconds):
        """Sleeps; returns True early if the client closed meanwhile."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return self.closed.is_set()
        try:
            await asyncio.wait_for(self.closed.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    def reset(self):
        """Closes with a TCP RST: SO_LINGER on with a zero timeout."""
        sock = self.w.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.aborted = True
        self.w.transport.abort()


def sse_event(ev, nl):
    """One SSE event (bytes) carrying payload ev: an object (JSON-encoded),
    a string or bytes (verbatim)."""
    if isinstance(ev, bytes):
        payload = ev
    else:
        payload = (ev if isinstance(ev, str) else json.dumps(ev)).encode()
    return b"data: " + payload + (nl + nl).encode()


def recorded(ev):
    """How a sent payload is recorded (bytes cannot go into JSON as such)."""
    return {"b64": base64.b64encode(ev).decode()} if isinstance(ev, bytes) else ev


def status_head(status, headers):
    lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Upstream:
    def __init__(self):
        self.records = []
        self.by_key = defaultdict(int)
        self.seq = 0
        self.open = 0
        self.max_open = 0
        self.connections = 0

    async def on_conn(self, reader, writer):
        self.connections += 1
        sock = writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn = Conn(reader, writer)
        conn.serial = self.connections
        try:
            while True:
                req = await conn.read_request()
                if req is None:
                    break
                if not await self.dispatch(conn, req):
                    break
                if req.headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            await conn.unwatch()
            if not conn.aborted:
                try:
                    writer.close()
                except Exception:
                    pass

    async def send_json(self, conn, status, obj, extra=()):
        data = json.dumps(obj).encode()
        head = status_head(status, [("Content-Type", "application/json"),
                                    ("Content-Length", len(data))] + list(extra))
        return await conn.send(head + data)

    async def dispatch(self, conn, req):
        if req.method == "GET" and req.path == "/_health":
            return await self.send_json(conn, 200, "ok")
        if req.method == "GET" and req.path == "/_requests":
            key = req.query.get("key", [None])[0]
            prefix = req.query.get("prefix", [None])[0]
            out = [r for r in self.records
                   if (key is None or r["key"] == key)
                   and (prefix is None or r["key"].startswith(prefix))]
            return await self.send_json(conn, 200, out)
        if req.method == "GET" and req.path == "/_stats":
            return await self.send_json(conn, 200, {
                "requests": len(self.records), "by_key": self.by_key,
                "open": self.open, "max_open": self.max_open,
                "connections": self.connections})
        if req.path.endswith("/chat/completions"):
            if req.method != "POST":
                return await self.send_json(conn, 405, error_body(405, {}))
            return await self.chat(conn, req)
        return await self.send_json(conn, 404, error_body(404, {"message": "no route " + req.path}))

    async def chat(self, conn, req):
        self.seq += 1
        try:
            body = json.loads(req.body)
        except ValueError:
            body = None
        mock = body.get("mock") if isinstance(body, dict) else None
        mock = mock if isinstance(mock, dict) else {}
        key = mock.get("key") if isinstance(mock.get("key"), str) else ""
        self.by_key[key] += 1
        o = substitute(resolve_options(mock, self.by_key[key]), req.headers.get("authorization"))
        rec = {"seq": self.seq, "key": key, "attempt": self.by_key[key], "conn": conn.serial,
               "method": req.method, "path": req.path, "headers": req.headers,
               "body": body, "t": time.time(), "t_end": None,
               "request_id": str(o.get("request_id", "req-%d" % self.seq)),
               "stream": isinstance(body, dict) and body.get("stream") is True,
               "outcome": None, "client_closed_at": None, "sent": []}
        if body is None:
            rec["raw_body"] = req.body.decode("utf-8", "replace")
        self.records.append(rec)
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        conn.watch()
        try:
            keep = await self.answer(conn, body, o, rec)
        finally:
            await conn.unwatch()
            self.open -= 1
            rec["t_end"] = time.time()
            if conn.closed.is_set() and rec["outcome"] not in ("reset",) and rec["client_closed_at"] is None:
                rec["client_closed_at"] = time.time()
        return keep and not conn.closed.is_set()

    async def answer(self, conn, body, o, rec):
        """Writes the scripted answer; returns True when the connection may
        serve another request."""
        if await conn.sleep(float(o.get("delay_ms") or 0) / 1000):
            rec["outcome"] = "client_closed"
            return False
        if o.get("reset") == "before_headers":
            rec["outcome"] = "reset"
            conn.reset()
            return False
        headers = [("x-request-id", rec["request_id"])]
        headers += [(k, v) for k, v in (o.get("headers") or {}).items()]
        if body is None or not isinstance(body, dict):
            rec["outcome"] = "status"
            return await self.send_json(conn, 400, error_body(400, {"message": "body is not a JSON object"}), headers)
        status = int(o.get("status") or 200)
        if "raw_body" in o or "raw_body_b64" in o:
            return await self.answer_raw_body(conn, o, rec, headers, status)
        if status != 200:
            if "retry_after" in o:
                headers.append(("Retry-After", o["retry_after"]))
            if "retry_after_ms" in o:
                headers.append(("retry-after-ms", o["retry_after_ms"]))
            rec["outcome"] = "status"
            err = error_body(status, o)
            rec["sent"] = [err]
            return await self.send_json(conn, status, err, headers)
        if rec["stream"]:
            return await self.answer_stream(conn, body, o, rec, headers)
        return await self.answer_plain(conn, body, o, rec, headers)

    async def write_split(self, conn, data, o, chunked):
        """Writes data whole or in split_bytes pieces, each its own HTTP chunk."""
        n = int(o.get("split_bytes") or 0)
        pieces = [data[i:i + n] for i in range(0, len(data), n)] if n > 0 else [data]
        gap = float(o.get("split_delay_ms", 1)) / 1000
        for k, p in enumerate(pieces):
            if k and n > 0 and await conn.sleep(gap):
                return False
            frame = b"%x\r\n%s\r\n" % (len(p), p) if chunked else p
            if not await conn.send(frame):
                return False
        return True

    async def hang(self, conn, rec):
        rec["outcome"] = "stall"
        await conn.closed.wait()
        return False

    async def rst_later(self, conn, o, rec):
        await conn.sleep(float(o.get("reset_delay_ms", 50)) / 1000)
        rec["outcome"] = "reset"
        if not conn.closed.is_set():
            conn.reset()
        return False

    async def answer_raw_body(self, conn, o, rec, headers, status):
        if "raw_body_b64" in o:
            data = base64.b64decode(o["raw_body_b64"])
            rec["sent"] = [{"b64": o["raw_body_b64"]}]
        else:
            data = o["raw_body"].encode()
            rec["sent"] = [o["raw_body"]]
        rec["outcome"] = "ok" if status == 200 else "status"
        head = status_head(status, [("Content-Type", o.get("content_type", "application/json")),
                                    ("Content-Length", len(data))] + headers)
        return await conn.send(head + data)

    async def answer_plain(self, conn, body, o, rec, headers):
        obj = completion_body(body, o)
        data = b"{not json" if o.get("invalid_json") else json.dumps(obj).encode()
        rec["sent"] = [obj if not o.get("invalid_json") else "{not json"]
        head = status_head(200, [("Content-Type", "application/json"),
                                 ("Content-Length", len(data))] + headers)
        if not await conn.send(head):
            return False
        if "stall_after" in o:
            return await self.hang(conn, rec)
        if o.get("reset") == "mid_stream":
            await conn.send(data[:len(data) // 2])
            return await self.rst_later(conn, o, rec)
        if o.get("truncate"):
            await conn.send(data[:len(data) // 2])
            rec["outcome"] = "truncated"
            return False
        if not await self.write_split(conn, data, o, False):
            return False
        rec["outcome"] = "ok"
        return True

    async def answer_one_write(self, conn, o, rec, events, nl, chunked, truncated):
        data = b"".join(sse_event(ev, nl) for ev in events)
        if not truncated and not o.get("no_done"):
            data += ("data: [DONE]" + nl + nl).encode()
        frame = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data) if chunked else data
        # very many events are summed up, not recorded one by one
        rec["sent"] = [recorded(ev) for ev in events[:100]]
        rec["sent_count"] = len(events)
        if not await conn.send(frame):
            rec["outcome"] = "client_closed"
            return False
        rec["outcome"] = "truncated" if truncated else "ok"
        return chunked

    async def answer_stream(self, conn, body, o, rec, headers):
        so = body.get("stream_options")
        include_usage = isinstance(so, dict) and so.get("include_usage") is True
        events, finish, tail = stream_parts(body, o, include_usage)
        if o.get("invalid_json"):
            events.insert(1, "{not json")
        truncated = bool(o.get("truncate"))
        if not truncated:
            events += finish + tail
        chunked = o.get("framing", "chunked") != "close"
        framing = [("Transfer-Encoding", "chunked")] if chunked else [("Connection", "close")]
        head = status_head(200, [("Content-Type", "text/event-stream"),
                                 ("Cache-Control", "no-cache")] + framing + headers)
        if not await conn.send(head):
            return False
        nl = "\r\n" if o.get("crlf") else "\n"
        if o.get("one_write"):
            return await self.answer_one_write(conn, o, rec, events, nl, chunked, truncated)
        gap = float(o.get("chunk_delay_ms") or 0) / 1000
        stall_at = o.get("stall_after")
        reset_at = int(o.get("reset_after", 2)) if o.get("reset") == "mid_stream" else None
        for k, ev in enumerate(events):
            if stall_at is not None and k == int(stall_at):
                return await self.hang(conn, rec)
            if reset_at is not None and k == reset_at:
                return await self.rst_later(conn, o, rec)
            if k and gap and await conn.sleep(gap):
                rec["outcome"] = "client_closed"
                return False
            out = b""
            if o.get("keepalive"):
                out += (": keep-alive" + nl + nl).encode()
            out += sse_event(ev, nl)
            if not await self.write_split(conn, out, o, chunked):
                rec["outcome"] = "client_closed"
                return False
            rec["sent"].append(recorded(ev))
        if stall_at is not None and int(stall_at) >= len(events):
            return await self.hang(conn, rec)
        if reset_at is not None and reset_at >= len(events):
            return await self.rst_later(conn, o, rec)
        if not truncated and not o.get("no_done"):
            if not await self.write_split(conn, ("data: [DONE]" + nl + nl).encode(), o, chunked):
                return False
        if chunked:
            if not await conn.send(b"0\r\n\r\n"):
                return False
        rec["outcome"] = "truncated" if truncated else "ok"
        return chunked


async def serve(host, port, port_file):
    up = Upstream()
    server = await asyncio.start_server(up.on_conn, host, port, limit=1 << 22)
    bound = server.sockets[0].getsockname()[1]
    if port_file:
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % bound)
        os.replace(tmp, port_file)
    print("upstream: listening on http://%s:%d/v1" % (host, bound), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description="stand-in OpenAI-compatible upstream")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here once listening")
    a = ap.parse_args(argv)
    try:
        asyncio.run(serve(a.host, a.port, a.port_file))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
