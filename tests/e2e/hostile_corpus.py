"""hostile_corpus.py — a generated corpus of jobs chatq must refuse (docs/protocol.md §4).

build(prefix, reply_to) returns a list of Case: a few thousand malformed jobs,
each of which must end as an `invalid_job` (P:dead; a failed job hash when
its id can be read; a reply_to line when its reply_to can be read). The
corpus is deterministic (a fixed seed) and every text in it is distinct, so
a dead entry can be matched to its case by its text. Used by
test_hostile_jobs.py; run as a script it writes the corpus to a directory,
one file per case (seeds for a fuzzer, or for poking a chatqd by hand):

    python3 tests/e2e/hostile_corpus.py OUTDIR [PREFIX]

Families (the names of the cases start with them):
  type.*     a field of the wrong type or value (each field, many values)
  id.*       an id that cannot be read (wrong type, characters, length)
  limit.*    every limit plus one (strings, numbers, cost, max_job_bytes)
  nul.*      \\u0000 in named fields and elsewhere; raw NUL bytes
  utf8.*     invalid UTF-8 (overlong, surrogates, past U+10FFFF, cut short)
  syntax.*   not strict JSON (NaN, comments, trailing commas, quotes, ...)
  trunc.*    valid jobs cut short at every byte
  deep.*     nesting past the limit, up to 100,000 levels
  huge.*     big strings (just under max_job_bytes) in an invalid job
  amp.*      JSON amplification: ~1 MiB of [{},{},...] and friends
  garbage.*  random bytes, random non-object JSON, jobs missing parts

The limits are chatq's defaults (common/job.h, max_job_bytes 1 MiB)."""

import collections
import hashlib
import json
import os
import random
import sys

MAX_JOB_BYTES = 1024 * 1024
MAX_CONTAINERS = 20000
MAX_VALUES = 100000
MAX_DEPTH = 128

# id: the job id chatq can read (None: none); reply: whether the reply_to
# can be read (then a line goes there, with id null when there is no id);
# word: text the message must contain (None: any clear message).
Case = collections.namedtuple("Case", "name raw id reply word")


def generated_id(raw):
    """The id of a job with neither id nor custom_id: job- and the first 24
    hex digits of the SHA1 of its text."""
    return "job-" + hashlib.sha1(raw).hexdigest()[:24]


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Corpus:
    def __init__(self, prefix, reply_to):
        self.prefix = prefix
        self.R = reply_to
        self.cases = []
        self.seen = set()
        self.n = 0

    def new_id(self):
        self.n += 1
        return "h%05d" % self.n

    def base(self, jid=None, reply=True):
        """A valid job: id, reply_to, body with a mock key (a job that were
        wrongly accepted would reach the stand-in upstream and show there)."""
        jid = jid or self.new_id()
        job = {"id": jid}
        if reply:
            job["reply_to"] = self.R
        job["body"] = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}],
                       "mock": {"key": "%s:%s" % (self.prefix, jid)}}
        return job

    def add(self, name, raw, jid=None, reply=False, word=None):
        if isinstance(raw, str):
            raw = raw.encode()
        if raw in self.seen:
            return
        self.seen.add(raw)
        self.cases.append(Case(name, raw, jid, reply, word))

    def add_job(self, name, job, word=None, gen_id=False, reply=None):
        """A job dict whose id can be read (gen_id: the job has no id, so
        chatq makes one from the text). reply: whether its reply_to can be
        read (default: whether it has one)."""
        if gen_id:
            job = dict(job)
            job.pop("id", None)
        raw = dumps(job)
        jid = generated_id(raw) if gen_id else job["id"]
        self.add(name, raw, jid, "reply_to" in job if reply is None else reply, word)

    # ------------------------------------------------------------ families

    def wrong_types(self):
        """Each field with values outside its rule; the id stays readable
        (every third one without id, so the id is made from the text)."""
        top = {
            "custom_id": [1, 2.5, True, None, [], {}, ["x"]],
            "method": ["GET", "post", "", 1, None, [], {}],
            "url": ["/v1/embeddings", "", "/v1/chat/completions/", 1, None, []],
            "body": [None, 1, "body", [], [1], True, {}, {"model": "mock-1"},
                     {"messages": [{"role": "user", "content": "hi"}]}],
            "stream": ["true", 1, 0, None, [], {}, "false"],
            "tenant": [1, 2.5, True, None, [], {}, ["acme"]],
            "reply_to": [1, True, None, [], {}, ["q"], 2.5],
            "provider": ["no-such-provider", "", 1, None, [], {}],
            "metadata": [1, "m", True, None, [], [1]],
            "timeout_ms": [0, -1, 1.5, "1000", True, None, [], {}, 1e3, -0.0],
            "max_attempts": [0, -3, 2.0, "3", False, None, [], {}],
            "result_ttl_s": [0, -60, 60.5, "60", True, None, [], {}],
        }
        body = {
            "model": [None, 1, "", [], {}, ["mock-1"], True],
            "messages": [None, "hi", [], {}, 1, True],
            "n": [0, -1, 129, 1.0, "2", None, [], True],
            "max_tokens": [-1, 1.5, "10", None, [], {}, True, 1e3],
            "max_completion_tokens": [-1, 2.5, "10", None, [], {}, False],
        }
        i = 0
        for field, values in top.items():
            for v in values:
                i += 1
                job = self.base()
                job[field] = v
                # a reply_to that is not a string cannot be answered
                # (a custom_id, even of the wrong type, stops the id being made up)
                self.add_job("type.%s.%d" % (field, i), job, word=field,
                             gen_id=i % 3 == 0 and field != "custom_id",
                             reply=field != "reply_to")
        for field, values in body.items():
            for v in values:
                i += 1
                job = self.base()
                if v is None and field in ("model", "messages"):
                    del job["body"][field]
                else:
                    job["body"][field] = v
                self.add_job("type.body.%s.%d" % (field, i), job, word="body." + field,
                             gen_id=i % 3 == 0)
        # a wrong custom_id with no id cannot serve as the id
        for v in ["", "a b", "a/b", "x" * 129, "caf\u00e9"]:
            job = self.base()
            del job["id"]
            job["custom_id"] = v
            self.add("type.custom_id_as_id.%r" % v[:10], dumps(job), None, True, "custom_id")

    def bad_ids(self):
        for v in [1, 0, None, True, [], {}, ["a"], "", "a b", "a/b", "a\tb", "x" * 129,
                  "caf\u00e9", "id|x", "\u2028", "a" * 1000]:
            job = self.base()
            job["id"] = v
            self.add("id.%r" % (v if not isinstance(v, str) else v[:20]), dumps(job), None,
                     True, "id")

    def limits(self):
        def field(name, value, word, reply=True):
            job = self.base()
            job[name] = value
            self.add_job("limit.%s" % name, job, word=word, reply=reply)

        field("custom_id", "c" * 513, "custom_id must be at most 512 bytes")
        field("tenant", "t" * 129, "tenant must be at most 128 characters")
        field("tenant", "\u00e9" * 129, "tenant must be at most 128 characters")
        field("tenant", "acme|mock-1", "tenant must not contain '|'")
        field("tenant", "ac\u0001me", "tenant must not contain a control character")
        field("tenant", "ac\u0085me", "tenant must not contain a control character")
        field("tenant", "ac\u007fme", "tenant must not contain a control character")
        field("timeout_ms", 86400001, "timeout_ms must be an integer from 1 to 86400000")
        field("max_attempts", 101, "max_attempts must be an integer from 1 to 100")
        field("max_attempts", 2 ** 31, "max_attempts")
        field("max_attempts", 2 ** 64, "max_attempts")
        field("result_ttl_s", 31536001, "result_ttl_s must be an integer from 1 to 31536000")
        field("result_ttl_s", 10 ** 16, "result_ttl_s")
        # issue 8: EXPIRE refused 1e16 after the result was half stored
        job = self.base()
        raw = dumps(job)[:-1] + b',"result_ttl_s":1e16}'
        self.add("limit.result_ttl_s.1e16", raw, job["id"], True, "not 1e16")
        field("reply_to", "r" * 513, "reply_to must be 1-512 bytes", reply=False)
        field("reply_to", "", "reply_to must be 1-512 bytes", reply=False)
        field("reply_to", "my\nreplies", "reply_to must not contain a control character",
              reply=False)

        def body_field(name, value, word):
            job = self.base()
            job["body"][name] = value
            self.add_job("limit.body.%s" % name, job, word=word)

        body_field("model", "m" * 257, "body.model must be at most 256 bytes")
        body_field("model", "mock|1", "body.model must not contain '|'")
        body_field("model", "mock\u00851", "body.model must not contain a control character")
        body_field("n", 129, "body.n must be an integer from 1 to 128")
        body_field("max_tokens", -1, "body.max_tokens")
        body_field("max_tokens", 2 ** 63, "body.max_tokens")
        body_field("max_completion_tokens", -1, "body.max_completion_tokens")

        # id: 129 characters cannot be read
        job = self.base()
        job["id"] = "i" * 129
        self.add("limit.id", dumps(job), None, True, "id must be")
        # the cost of the JSON: one past each limit, refused before parsing
        # (nothing of the job is read, so no id and no line)
        job = self.base()
        job["x"] = [{}] * (MAX_CONTAINERS - 4)  # + root, body, messages, message, x
        self.add("limit.containers", dumps(job), None, False,
                 "more than %d objects and arrays" % MAX_CONTAINERS)
        job = self.base()
        job["x"] = [0] * MAX_VALUES
        self.add("limit.values", dumps(job), None, False, "more than %d values" % MAX_VALUES)
        job = self.base()
        inner = 0
        for _ in range(MAX_DEPTH):  # + the root: 129 levels
            inner = [inner]
        job["x"] = inner
        self.add("limit.depth", dumps(job), None, False, "nested deeper than %d" % MAX_DEPTH)
        # max_job_bytes + 1: refused before a worker holds it; its id and
        # reply_to are read from the first 4 KiB FETCH keeps
        job = self.base()
        raw = dumps(job)
        pad = MAX_JOB_BYTES + 1 - len(raw) - len(',"x":""')
        job["x"] = "p" * pad
        raw = dumps(job)
        assert len(raw) == MAX_JOB_BYTES + 1
        self.add("limit.max_job_bytes", raw, job["id"], True, "max_job_bytes")

    def nuls(self):
        # json-c reads "victim\u0000x" as "victim": refused by name, and the
        # id is not read (the caller checks that no hash "victim" appears)
        job = self.base()
        job["id"] = "victim\u0000x"
        self.add("nul.id", dumps(job), None, True, "id must not contain \\u0000")
        job = self.base()
        del job["id"]
        job["custom_id"] = "victim\u0000x"
        self.add("nul.custom_id_as_id", dumps(job), None, True, "custom_id must not contain")
        for name in ("custom_id", "tenant", "provider"):
            job = self.base()
            job[name] = "v\u0000x"
            self.add_job("nul." + name, job, word=name + " must not contain \\u0000")
        job = self.base()
        job["reply_to"] = self.R + "\u0000x"
        self.add_job("nul.reply_to", job, word="reply_to must not contain \\u0000", reply=False)
        job = self.base()
        job["body"]["model"] = "mock-1\u0000x"
        self.add_job("nul.model", job, word="body.model must not contain \\u0000")
        job = self.base()
        job["body"]["messages"][0]["content"] = "hi\u0000there"
        self.add_job("nul.content", job, word="\\u0000 (NUL) at byte")
        job = self.base()
        job["metadata"] = {"k\u0000": 1}
        self.add_job("nul.member_name", job, word="\\u0000 (NUL) at byte")
        # raw NUL bytes: not JSON
        raw = dumps(self.base())
        for at in (0, 1, 7, len(raw) // 2, len(raw) - 1):
            self.add("nul.raw.%d" % at, raw[:at] + b"\x00" + raw[at:], None, False, "JSON")
        self.add("nul.raw.tail", raw + b"\x00", None, False, "JSON")
        self.add("nul.raw.all", b"\x00" * 64, None, False, "JSON")

    def utf8(self):
        bad = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",
               b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80",
               b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\x80", b"\xbf\xbf", b"\xc3\x28"]
        for i, seq in enumerate(bad):
            for where in ("content", "tenant", "model", "id", "key"):
                job = self.base()
                mark = "@@BAD@@"
                if where == "content":
                    job["body"]["messages"][0]["content"] = "a" + mark + "b"
                elif where == "tenant":
                    job["tenant"] = mark
                elif where == "model":
                    job["body"]["model"] = mark
                elif where == "id":
                    job["id"] = mark
                else:
                    job["metadata"] = {mark: 1}
                raw = dumps(job).replace(mark.encode(), seq)
                self.add("utf8.%d.%s" % (i, where), raw, None, False, "JSON")

    def syntax(self):
        good = dumps(self.base(jid="syn"))
        body = good[:-1]
        cases = {
            "nan": body + b',"x":NaN}',
            "infinity": body + b',"x":Infinity}',
            "neg_infinity": body + b',"x":-Infinity}',
            "number_dot": body + b',"x":1.}',
            "leading_zero": body + b',"x":01}',
            "plus": body + b',"x":+1}',
            "hex": body + b',"x":0x10}',
            "trailing_comma": body + b',}',
            "trailing_comma_array": body + b',"x":[1,2,]}',
            "single_quotes": body + b",'x':1}",
            "single_quoted_value": body + b',"x":\'v\'}',
            "comment_block": body + b',/* c */"x":1}',
            "comment_line": body + b',"x":1 // c\n}',
            "missing_colon": body + b',"x" 1}',
            "missing_comma": body + b' "x":1}',
            "extra_close": good + b"}",
            "two_values": good + b" " + good,
            "bom": b"\xef\xbb\xbf" + good,
            "raw_tab": body + b',"x":"a\tb"}',
            "raw_newline": body + b',"x":"a\nb"}',
            "raw_control": body + b',"x":"a\x01b"}',
            "bad_escape": body + b',"x":"\\x41"}',
            "short_unicode": body + b',"x":"\\u12"}',
            "unterminated_string": body + b',"x":"abc}',
            "unterminated_object": body,
            "bare_word": body + b',"x":undefined}',
            "true_cut": body + b',"x":tru}',
            "unquoted_key": body + b',x:1}',
            "empty": b"",
            "spaces": b"   \n\t ",
            "eq_sign": body + b',"x"=1}',
            "vertical_tab": b"\x0b" + good,
            "formfeed": good + b"\x0c",
            "nbsp": b"\xc2\xa0" + good,
        }
        for name, raw in cases.items():
            self.add("syntax." + name, raw, None, False, "JSON")

    def truncations(self):
        jobs = [
            self.base(jid="trunc-a"),
            dict(self.base(jid="trunc-b"), stream=True, tenant="t\u00e9",
                 metadata={"a": [1, 2.5, None, True, {"b": "\\\"q\""}]}, timeout_ms=5000),
            dict(self.base(jid="trunc-c"), custom_id="c-\u2603",
                 body={"model": "mock-1", "messages": [{"role": "user", "content": "\u00e9\ud83d\ude00"}],
                       "tools": [{"type": "function", "function": {"name": "f", "parameters": {
                           "type": "object", "properties": {"x": {"type": "string"}}}}}]}),
        ]
        for j, job in enumerate(jobs):
            raw = json.dumps(job).encode()  # with spaces, ASCII escapes
            for cut in range(len(raw)):
                self.add("trunc.%d.%d" % (j, cut), raw[:cut], None, False, None)

    def deep(self):
        job = self.base()
        for n in (129, 1000, 100000):
            self.add("deep.array.%d" % n, b"[" * n + b"]" * n, None, False, "nested deeper")
            self.add("deep.object.%d" % n, b'{"a":' * n + b"1" + b"}" * n, None, False,
                     "nested deeper")
            self.add("deep.open.%d" % n, b"{" * n, None, False, None)
        body = dumps(job)[:-1]
        self.add("deep.metadata", body + b',"metadata":' + b'{"a":' * 200 + b"1" + b"}" * 200 + b"}",
                 None, False, "nested deeper")
        self.add("deep.content", body.replace(b'"content":"hi"', b'"content":' + b"[" * 500 +
                                              b"]" * 500), None, False, "nested deeper")

    def huge(self):
        # big strings just under max_job_bytes in a job that is invalid for a
        # small reason: the message must name the small reason
        for i, (unit, field) in enumerate([("a", "tenant"), ("\\u0001", "max_attempts"),
                                           ("\u00e9", "custom_id"), ("\\\"", "method")]):
            job = self.base()
            job["body"]["messages"][0]["content"] = "@@PAD@@"
            if field == "tenant":
                job["tenant"] = "x|y"
                word = "tenant"
            elif field == "max_attempts":
                job["max_attempts"] = 0
                word = "max_attempts"
            elif field == "custom_id":
                job["custom_id"] = "c" * 600
                word = "custom_id"
            else:
                job["method"] = "GET"
                word = "method"
            raw = dumps(job)
            room = MAX_JOB_BYTES - len(raw) + len("@@PAD@@") - 16
            pad = (unit * (room // len(unit.encode())))
            raw = raw.replace(b"@@PAD@@", pad.encode())
            assert len(raw) <= MAX_JOB_BYTES, len(raw)
            self.add("huge.%d" % i, raw, json.loads(raw)["id"], True, word)

    def amplification(self):
        def amp(name, inner, word):
            head = b'{"id":"amp","body":{"model":"mock-1","messages":'
            tail = b"}}"
            n = (MAX_JOB_BYTES - len(head) - len(tail) - 2) // (len(inner) + 1)
            raw = head + b"[" + b",".join([inner] * n) + b"]" + tail
            assert len(raw) <= MAX_JOB_BYTES
            self.add("amp." + name, raw, None, False, word)

        amp("empty_objects", b"{}", "job is too complex: more than 20000 objects and arrays")
        amp("empty_arrays", b"[]", "job is too complex")
        amp("nested_pairs", b"[[]]", "job is too complex")
        amp("numbers", b"0", "job is too complex: more than 100000 values")
        amp("nulls", b"null", "job is too complex")
        amp("short_strings", b'""', "job is too complex")
        members = b",".join([b'"a":0'] * (MAX_VALUES + 1))
        self.add("amp.members", b'{"id":"amp-m","x":{' + members + b'},"body":{}}', None, False,
                 "job is too complex: more than 100000 values")

    def garbage(self, rng):
        """Random bytes; random JSON that is not an object; objects that
        miss parts of a job."""
        alphabet = b'{}[]:,"\\ 0123456789-.eEtruefalsn\x00\x01\xff\xc3\xa9abc\n'
        for i in range(600):
            n = rng.randrange(0, 200)
            if i % 2:
                raw = bytes(rng.choice(alphabet) for _ in range(n))
            else:
                raw = bytes(rng.randrange(256) for _ in range(n))
            self.add("garbage.bytes.%d" % i, raw, None, False, None)
        for i in range(300):
            v = self.random_value(rng, 3)
            if isinstance(v, dict):
                v = [v]
            self.add("garbage.value.%d" % i, json.dumps(v).encode(), None, False,
                     "job must be a JSON object")
        for i in range(500):
            job = self.base()
            drop = rng.choice(["body", "model", "messages", "messages_empty", "body_list",
                               "model_num", "method", "url", "stream", "metadata"])
            if drop == "body":
                del job["body"]
            elif drop == "model":
                del job["body"]["model"]
            elif drop == "messages":
                del job["body"]["messages"]
            elif drop == "messages_empty":
                job["body"]["messages"] = []
            elif drop == "body_list":
                job["body"] = [job["body"]]
            elif drop == "model_num":
                job["body"]["model"] = rng.randrange(1000)
            elif drop == "method":
                job["method"] = rng.choice(["GET", "PUT", "DELETE", "get", "POST "])
            elif drop == "url":
                job["url"] = rng.choice(["/v1/completions", "/v1/chat", "v1/chat/completions"])
            elif drop == "stream":
                job["stream"] = rng.choice(["yes", 1, [], None])
            else:
                job["metadata"] = rng.choice([[], "m", 7, None])
            # random extra members, which chatq ignores
            for _ in range(rng.randrange(4)):
                job["x%d" % rng.randrange(100)] = self.random_value(rng, 2)
            self.add_job("garbage.job.%s.%d" % (drop, i), job, word=None, gen_id=i % 4 == 0)

    def random_value(self, rng, depth):
        k = rng.randrange(8 if depth > 0 else 5)
        if k == 0:
            return None
        if k == 1:
            return rng.choice([True, False])
        if k == 2:
            return rng.randrange(-10 ** 6, 10 ** 6)
        if k == 3:
            return rng.random() * 1000
        if k == 4:
            return "".join(rng.choice("ab\u00e9\u2603 \"\\\n") for _ in range(rng.randrange(8)))
        if k in (5, 6):
            return [self.random_value(rng, depth - 1) for _ in range(rng.randrange(4))]
        return {"k%d" % i: self.random_value(rng, depth - 1) for i in range(rng.randrange(4))}


def build(prefix, reply_to, seed=8):
    c = Corpus(prefix, reply_to)
    c.wrong_types()
    c.bad_ids()
    c.limits()
    c.nuls()
    c.utf8()
    c.syntax()
    c.truncations()
    c.deep()
    c.huge()
    c.amplification()
    c.garbage(random.Random(seed))
    return c.cases


def main(argv):
    if len(argv) < 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    out = argv[1]
    prefix = argv[2] if len(argv) > 2 else "chatq"
    os.makedirs(out, exist_ok=True)
    cases = build(prefix, prefix + "-replies")
    for i, c in enumerate(cases):
        with open(os.path.join(out, "%05d-%s" % (i, c.name.replace("/", "_")[:60])), "wb") as f:
            f.write(c.raw)
    print("%d cases in %s" % (len(cases), out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
