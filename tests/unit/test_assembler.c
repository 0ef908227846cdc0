/* test_assembler.c — the stream assembler against hand-written expectations.
 *
 * Chunks are written as JSON in the shapes real providers send (OpenAI, Azure,
 * DeepSeek, OpenRouter, Gemini, Ollama). To keep them readable, Q() turns
 * single quotes into double quotes, so none of the texts here may contain an
 * apostrophe. Tool-call argument fragments that hold escaped quotes are built
 * with the json-c API instead. Whole results are compared with
 * json_object_equal(), which also tells an absent key from a null one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/assembler.h"
#include "common/buf.h"

/* Parses `text` with ' standing for ". Returns a new object. */
static json_object *Q(const char *text) {
    char *s = xstrdup(text);
    json_object *o;
    for (char *p = s; *p; p++)
        if (*p == '\'') *p = '"';
    o = json_tokener_parse(s);
    if (!o) print_message("unparseable test JSON: %s\n", s);
    free(s);
    assert_non_null(o);
    return o;
}

/* Adds one chunk and drops our reference at once: the assembler must keep
 * whatever it needs by itself. */
static void feed_obj(assembler *a, json_object *chunk) {
    assert_int_equal(assembler_add(a, chunk), 0);
    json_object_put(chunk);
}

static void feed(assembler *a, const char *text) { feed_obj(a, Q(text)); }

static void assert_json(json_object *got, const char *expected_text) {
    json_object *exp = Q(expected_text);
    int eq = json_object_equal(got, exp);
    if (!eq)
        print_message("got:      %s\nexpected: %s\n",
                      json_object_to_json_string_ext(got, JSON_C_TO_STRING_PLAIN),
                      json_object_to_json_string_ext(exp, JSON_C_TO_STRING_PLAIN));
    json_object_put(exp);
    assert_true(eq);
}

static void assert_result(const assembler *a, const char *expected_text) {
    json_object *r = assembler_result(a);
    assert_json(r, expected_text);
    json_object_put(r);
}

/* Borrowed r.choices[ci].message. */
static json_object *message_of(json_object *r, int ci) {
    json_object *choices, *m;
    assert_true(json_object_object_get_ex(r, "choices", &choices));
    assert_true(ci < (int)json_object_array_length(choices));
    assert_true(json_object_object_get_ex(json_object_array_get_idx(choices, ci), "message", &m));
    return m;
}

static const char *str_at(json_object *o, const char *key) {
    json_object *v;
    assert_true(json_object_object_get_ex(o, key, &v));
    assert_true(json_object_is_type(v, json_type_string));
    return json_object_get_string(v);
}

/* A chunk with one tool-call delta for choice 0; idx < 0 leaves "index" out,
 * NULL strings leave their field out. */
static json_object *tool_chunk(int idx, const char *id, const char *name, const char *args) {
    json_object *chunk = json_object_new_object(), *choices = json_object_new_array();
    json_object *choice = json_object_new_object(), *delta = json_object_new_object();
    json_object *calls = json_object_new_array(), *tc = json_object_new_object();
    json_object *fn = json_object_new_object();

    if (idx >= 0) json_object_object_add(tc, "index", json_object_new_int(idx));
    if (id) {
        json_object_object_add(tc, "id", json_object_new_string(id));
        json_object_object_add(tc, "type", json_object_new_string("function"));
    }
    if (name) json_object_object_add(fn, "name", json_object_new_string(name));
    if (args) json_object_object_add(fn, "arguments", json_object_new_string(args));
    json_object_object_add(tc, "function", fn);
    json_object_array_add(calls, tc);
    json_object_object_add(delta, "tool_calls", calls);
    json_object_object_add(choice, "index", json_object_new_int(0));
    json_object_object_add(choice, "delta", delta);
    json_object_object_add(choice, "finish_reason", NULL);
    json_object_array_add(choices, choice);
    json_object_object_add(chunk, "id", json_object_new_string("chatcmpl-tc"));
    json_object_object_add(chunk, "choices", choices);
    return chunk;
}

/* ------------------------------------------------------------------ tests */

static void test_empty(void **state) {
    (void)state;
    assembler *a = assembler_new();
    assert_int_equal(assembler_choices(a), 0);
    assert_false(assembler_complete(a));
    assert_null(assembler_finish_reason(a));
    assert_null(assembler_usage(a));
    assert_false(assembler_has_output(a));
    assert_result(a, "{'id':null,'object':'chat.completion','created':null,'model':null,"
                     "'choices':[]}");
    assembler_free(a);
}

/* OpenAI: role + "" first, text fragments, finish, then the usage-only chunk
 * that stream_options.include_usage adds. */
static void test_plain_content(void **state) {
    (void)state;
    assembler *a = assembler_new();
    const char *head = "'id':'chatcmpl-1','object':'chat.completion.chunk','created':1700000000,"
                       "'model':'gpt-4o-mini','system_fingerprint':'fp_1'";
    char *c;

    c = xasprintf("{%s,'choices':[{'index':0,'delta':{'role':'assistant','content':'',"
                  "'refusal':null},'logprobs':null,'finish_reason':null}],'usage':null}", head);
    feed(a, c);
    free(c);
    assert_false(assembler_has_output(a)); /* "" is not output yet */
    const char *parts[] = {"Hel", "lo, ", "world"};
    for (int i = 0; i < 3; i++) {
        c = xasprintf("{%s,'choices':[{'index':0,'delta':{'content':'%s'},'logprobs':null,"
                      "'finish_reason':null}],'usage':null}", head, parts[i]);
        feed(a, c);
        free(c);
    }
    assert_true(assembler_has_output(a));
    assert_false(assembler_complete(a));
    c = xasprintf("{%s,'choices':[{'index':0,'delta':{},'logprobs':null,"
                  "'finish_reason':'stop'}],'usage':null}", head);
    feed(a, c);
    free(c);
    assert_true(assembler_complete(a));
    assert_null(assembler_usage(a));
    c = xasprintf("{%s,'choices':[],'usage':{'prompt_tokens':9,'completion_tokens':3,"
                  "'total_tokens':12,'prompt_tokens_details':{'cached_tokens':0}}}", head);
    feed(a, c);
    free(c);

    assert_int_equal(assembler_choices(a), 1);
    assert_string_equal(assembler_finish_reason(a), "stop");
    assert_non_null(assembler_usage(a));
    json_object *pt;
    assert_true(json_object_object_get_ex(assembler_usage(a), "prompt_tokens", &pt));
    assert_int_equal(json_object_get_int(pt), 9);

    json_object *r = assembler_result(a);
    assembler_free(a); /* the result must not depend on the assembler */
    assert_json(r, "{'id':'chatcmpl-1','object':'chat.completion','created':1700000000,"
                   "'model':'gpt-4o-mini','system_fingerprint':'fp_1',"
                   "'choices':[{'index':0,'message':{'role':'assistant','content':'Hello, world'},"
                   "'logprobs':null,'finish_reason':'stop'}],"
                   "'usage':{'prompt_tokens':9,'completion_tokens':3,'total_tokens':12,"
                   "'prompt_tokens_details':{'cached_tokens':0}}}");
    json_object_put(r);
}

static void test_role(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'choices':[{'index':0,'delta':{'content':'x'}}]}");
    assert_result(a, "{'id':null,'object':'chat.completion','created':null,'model':null,"
                     "'choices':[{'index':0,'message':{'role':'assistant','content':'x'},"
                     "'logprobs':null,'finish_reason':null}]}");
    assembler_free(a);

    /* The first role seen wins; later ones (and null) do not replace it. */
    a = assembler_new();
    feed(a, "{'choices':[{'index':0,'delta':{'role':null,'content':'a'}}]}");
    feed(a, "{'choices':[{'index':0,'delta':{'role':'tool','content':'b'}}]}");
    feed(a, "{'choices':[{'index':0,'delta':{'role':'user','content':'c'}}]}");
    json_object *r = assembler_result(a);
    assert_string_equal(str_at(message_of(r, 0), "role"), "tool");
    assert_string_equal(str_at(message_of(r, 0), "content"), "abc");
    json_object_put(r);
    assembler_free(a);
}

/* Two tool calls interleaved by index, arguments split anywhere — including
 * right after the backslash of an escaped quote. */
static void test_tool_calls_interleaved(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'id':'chatcmpl-tc','choices':[{'index':0,'delta':{'role':'assistant',"
            "'content':null},'finish_reason':null}]}");
    feed_obj(a, tool_chunk(0, "call_A", "get_weather", ""));
    feed_obj(a, tool_chunk(1, "call_B", "get_time", ""));
    feed_obj(a, tool_chunk(0, NULL, NULL, "{\"a\":\"x\\"));
    feed_obj(a, tool_chunk(1, NULL, NULL, "{\"tz\":"));
    feed_obj(a, tool_chunk(0, NULL, NULL, "\"y\"}"));
    feed_obj(a, tool_chunk(1, NULL, NULL, "\"UTC\"}"));
    feed(a, "{'id':'chatcmpl-tc','choices':[{'index':0,'delta':{},'finish_reason':'tool_calls'}]}");
    assert_true(assembler_has_output(a));
    assert_string_equal(assembler_finish_reason(a), "tool_calls");

    json_object *r = assembler_result(a);
    json_object *m = message_of(r, 0), *calls, *v;
    assert_true(json_object_object_get_ex(m, "content", &v));
    assert_null(v);
    assert_true(json_object_object_get_ex(m, "tool_calls", &calls));
    assert_int_equal(json_object_array_length(calls), 2);

    json_object *t0 = json_object_array_get_idx(calls, 0), *t1 = json_object_array_get_idx(calls, 1);
    json_object *f0, *f1;
    assert_string_equal(str_at(t0, "id"), "call_A");
    assert_string_equal(str_at(t0, "type"), "function");
    assert_true(json_object_object_get_ex(t0, "function", &f0));
    assert_string_equal(str_at(f0, "name"), "get_weather");
    assert_string_equal(str_at(f0, "arguments"), "{\"a\":\"x\\\"y\"}");
    assert_string_equal(str_at(t1, "id"), "call_B");
    assert_true(json_object_object_get_ex(t1, "function", &f1));
    assert_string_equal(str_at(f1, "name"), "get_time");
    assert_string_equal(str_at(f1, "arguments"), "{\"tz\":\"UTC\"}");
    assert_false(json_object_object_get_ex(t0, "index", &v)); /* not in a final message */

    /* The joined arguments are valid JSON with the escape intact. */
    json_object *args = json_tokener_parse(str_at(f0, "arguments"));
    assert_non_null(args);
    assert_string_equal(str_at(args, "a"), "x\"y");
    json_object_put(args);
    json_object_put(r);
    assembler_free(a);
}

/* Gemini: tool-call deltas without "index"; each is a call of its own, in
 * array order, also across chunks. */
static void test_tool_calls_without_index(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'id':'g1','model':'gemini-2.0-flash','created':1731000000,'choices':[{'index':0,"
            "'delta':{'role':'assistant','tool_calls':["
            "{'id':'c1','type':'function','function':{'name':'f','arguments':'{}'}},"
            "{'id':'c2','type':'function','function':{'name':'g','arguments':'[]'}}]},"
            "'finish_reason':null}]}");
    feed(a, "{'id':'g1','choices':[{'index':0,'delta':{'tool_calls':["
            "{'id':'c3','type':'function','function':{'name':'h','arguments':'{}'}}]},"
            "'finish_reason':'tool_calls'}]}");
    assert_result(a, "{'id':'g1','object':'chat.completion','created':1731000000,"
                     "'model':'gemini-2.0-flash','choices':[{'index':0,'message':{"
                     "'role':'assistant','content':null,'tool_calls':["
                     "{'id':'c1','type':'function','function':{'name':'f','arguments':'{}'}},"
                     "{'id':'c2','type':'function','function':{'name':'g','arguments':'[]'}},"
                     "{'id':'c3','type':'function','function':{'name':'h','arguments':'{}'}}]},"
                     "'logprobs':null,'finish_reason':'tool_calls'}]}");
    assembler_free(a);
}

/* Arguments sent as an object (not a string) come out as its JSON text;
 * a tool-call delta with no id/type gets type "function". */
static void test_tool_call_odd_arguments(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'choices':[{'index':0,'delta':{'tool_calls':[{'index':0,"
            "'function':{'name':'f','arguments':{'x':1}}}]}}]}");
    json_object *r = assembler_result(a);
    json_object *calls, *fn, *v;
    assert_true(json_object_object_get_ex(message_of(r, 0), "tool_calls", &calls));
    json_object *t = json_object_array_get_idx(calls, 0);
    assert_false(json_object_object_get_ex(t, "id", &v));
    assert_string_equal(str_at(t, "type"), "function");
    assert_true(json_object_object_get_ex(t, "function", &fn));
    assert_string_equal(str_at(fn, "arguments"), "{\"x\":1}");
    json_object_put(r);
    assembler_free(a);
}

/* n=3: choices interleaved out of order, each with its own finish reason. */
static void test_n3_interleaved(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'id':'n3','choices':[{'index':2,'delta':{'role':'assistant','content':'C'}}]}");
    feed(a, "{'id':'n3','choices':[{'index':0,'delta':{'role':'assistant','content':'A'}}]}");
    feed(a, "{'id':'n3','choices':[{'index':1,'delta':{'role':'assistant','content':'B'}}]}");
    assert_int_equal(assembler_choices(a), 3);
    assert_false(assembler_complete(a));
    feed(a, "{'id':'n3','choices':[{'index':2,'delta':{},'finish_reason':'content_filter'}]}");
    assert_false(assembler_complete(a));
    feed(a, "{'id':'n3','choices':[{'index':1,'delta':{'content':'b'},'finish_reason':'length'}]}");
    assert_false(assembler_complete(a));
    feed(a, "{'id':'n3','choices':[{'index':0,'delta':{'content':'a'},'finish_reason':null}]}");
    assert_false(assembler_complete(a));
    assert_null(assembler_finish_reason(a)); /* index 0 has none yet */
    feed(a, "{'id':'n3','choices':[{'index':0,'delta':{},'finish_reason':'stop'}]}");
    assert_true(assembler_complete(a));
    assert_string_equal(assembler_finish_reason(a), "stop");
    assert_int_equal(assembler_choices(a), 3);
    assert_result(a, "{'id':'n3','object':'chat.completion','created':null,'model':null,"
                     "'choices':["
                     "{'index':0,'message':{'role':'assistant','content':'Aa'},"
                     "'logprobs':null,'finish_reason':'stop'},"
                     "{'index':1,'message':{'role':'assistant','content':'Bb'},"
                     "'logprobs':null,'finish_reason':'length'},"
                     "{'index':2,'message':{'role':'assistant','content':'C'},"
                     "'logprobs':null,'finish_reason':'content_filter'}]}");
    assembler_free(a);
}

/* Several choices in one chunk, sparse indexes. */
static void test_sparse_choices(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'choices':[{'index':3,'delta':{'content':'d'},'finish_reason':'stop'},"
            "{'index':0,'delta':{'content':'a'}}]}");
    assert_int_equal(assembler_choices(a), 2);
    assert_false(assembler_complete(a));
    assert_null(assembler_finish_reason(a));
    assert_result(a, "{'id':null,'object':'chat.completion','created':null,'model':null,"
                     "'choices':["
                     "{'index':0,'message':{'role':'assistant','content':'a'},"
                     "'logprobs':null,'finish_reason':null},"
                     "{'index':3,'message':{'role':'assistant','content':'d'},"
                     "'logprobs':null,'finish_reason':'stop'}]}");
    assembler_free(a);
}

static void test_refusal(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'id':'r1','choices':[{'index':0,'delta':{'role':'assistant','content':null,"
            "'refusal':''}}]}");
    assert_false(assembler_has_output(a));
    feed(a, "{'id':'r1','choices':[{'index':0,'delta':{'refusal':'I cannot '}}]}");
    assert_true(assembler_has_output(a));
    feed(a, "{'id':'r1','choices':[{'index':0,'delta':{'refusal':'help with that.'}}]}");
    feed(a, "{'id':'r1','choices':[{'index':0,'delta':{},'finish_reason':'stop'}]}");
    assert_result(a, "{'id':'r1','object':'chat.completion','created':null,'model':null,"
                     "'choices':[{'index':0,'message':{'role':'assistant','content':null,"
                     "'refusal':'I cannot help with that.'},"
                     "'logprobs':null,'finish_reason':'stop'}]}");
    assembler_free(a);
}

/* DeepSeek: reasoning_content first, then content; its own usage fields. */
static void test_reasoning_content(void **state) {
    (void)state;
    assembler *a = assembler_new();
    const char *head = "'id':'ds1','object':'chat.completion.chunk','created':1737000000,"
                       "'model':'deepseek-reasoner','system_fingerprint':'fp_ds'";
    const char *deltas[] = {
        "{'role':'assistant','content':null,'reasoning_content':''}",
        "{'content':null,'reasoning_content':'Think'}",
        "{'content':null,'reasoning_content':'ing.'}",
        "{'content':'Ans','reasoning_content':null}",
        "{'content':'wer','reasoning_content':null}",
    };
    for (int i = 0; i < 5; i++) {
        char *c = xasprintf("{%s,'choices':[{'index':0,'delta':%s,'logprobs':null,"
                            "'finish_reason':null}]}", head, deltas[i]);
        feed(a, c);
        free(c);
    }
    char *c = xasprintf("{%s,'choices':[{'index':0,'delta':{'content':'','reasoning_content':null},"
                        "'logprobs':null,'finish_reason':'stop'}],'usage':{'prompt_tokens':10,"
                        "'completion_tokens':20,'total_tokens':30,'prompt_tokens_details':"
                        "{'cached_tokens':8},'completion_tokens_details':{'reasoning_tokens':15},"
                        "'prompt_cache_hit_tokens':8,'prompt_cache_miss_tokens':2}}", head);
    feed(a, c);
    free(c);
    assert_true(assembler_complete(a));
    assert_result(a, "{'id':'ds1','object':'chat.completion','created':1737000000,"
                     "'model':'deepseek-reasoner','system_fingerprint':'fp_ds',"
                     "'choices':[{'index':0,'message':{'role':'assistant','content':'Answer',"
                     "'reasoning_content':'Thinking.'},'logprobs':null,'finish_reason':'stop'}],"
                     "'usage':{'prompt_tokens':10,'completion_tokens':20,'total_tokens':30,"
                     "'prompt_tokens_details':{'cached_tokens':8},"
                     "'completion_tokens_details':{'reasoning_tokens':15},"
                     "'prompt_cache_hit_tokens':8,'prompt_cache_miss_tokens':2}}");
    assembler_free(a);
}

/* OpenRouter: delta.reasoning, "usage": null on each chunk, then a final
 * chunk with empty choices carrying the usage. */
static void test_reasoning_openrouter(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'id':'gen-1','provider':'X','model':'m/r1','object':'chat.completion.chunk',"
            "'created':1740000000,'choices':[{'index':0,'delta':{'role':'assistant',"
            "'content':'','reasoning':'Hmm'},'finish_reason':null,'native_finish_reason':null,"
            "'logprobs':null}],'usage':null}");
    assert_true(assembler_has_output(a)); /* reasoning text counts */
    feed(a, "{'id':'gen-1','model':'m/r1','choices':[{'index':0,'delta':{'role':'assistant',"
            "'content':'','reasoning':', ok'},'finish_reason':null}],'usage':null}");
    feed(a, "{'id':'gen-1','model':'m/r1','choices':[{'index':0,'delta':{'role':'assistant',"
            "'content':'Yes','reasoning':null},'finish_reason':'stop',"
            "'native_finish_reason':'stop'}],'usage':null}");
    assert_null(assembler_usage(a));
    feed(a, "{'id':'gen-1','model':'m/r1','choices':[],'usage':{'prompt_tokens':5,"
            "'completion_tokens':7,'total_tokens':12}}");
    feed(a, "{'id':'gen-1','model':'m/r1','choices':[],'usage':null}"); /* ignored */
    assert_non_null(assembler_usage(a));
    assert_result(a, "{'id':'gen-1','object':'chat.completion','created':1740000000,"
                     "'model':'m/r1','choices':[{'index':0,'message':{'role':'assistant',"
                     "'content':'Yes','reasoning':'Hmm, ok'},'logprobs':null,"
                     "'finish_reason':'stop'}],"
                     "'usage':{'prompt_tokens':5,'completion_tokens':7,'total_tokens':12}}");
    assembler_free(a);
}

/* Providers that send usage on every chunk: the last one wins. */
static void test_usage_last_wins(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'choices':[{'index':0,'delta':{'content':'a'}}],'usage':{'prompt_tokens':3,"
            "'completion_tokens':1,'total_tokens':4}}");
    feed(a, "{'choices':[{'index':0,'delta':{'content':'b'}}],'usage':{'prompt_tokens':3,"
            "'completion_tokens':2,'total_tokens':5}}");
    feed(a, "{'choices':[{'index':0,'delta':{},'finish_reason':'stop'}],'usage':null}");
    feed(a, "{'choices':[],'usage':'bogus'}"); /* not an object: ignored too */
    json_object *r = assembler_result(a), *u;
    assert_true(json_object_object_get_ex(r, "usage", &u));
    assert_json(u, "{'prompt_tokens':3,'completion_tokens':2,'total_tokens':5}");
    json_object_put(r);
    assembler_free(a);
}

static void test_no_usage(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'id':'x','choices':[{'index':0,'delta':{'content':'hi'}}],'usage':null}");
    feed(a, "{'id':'x','choices':[{'index':0,'delta':{},'finish_reason':'stop'}]}");
    assert_null(assembler_usage(a));
    json_object *r = assembler_result(a), *u;
    assert_false(json_object_object_get_ex(r, "usage", &u));
    json_object_put(r);
    assembler_free(a);
}

static void test_logprobs(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'choices':[{'index':0,'delta':{'role':'assistant','content':''},"
            "'logprobs':{'content':[],'refusal':null}},"
            "{'index':1,'delta':{'role':'assistant','content':''},'logprobs':null}]}");
    feed(a, "{'choices':[{'index':0,'delta':{'content':'Hi'},'logprobs':{'content':["
            "{'token':'Hi','logprob':-0.25,'bytes':[72,105],'top_logprobs':[]}],"
            "'refusal':null}}]}");
    feed(a, "{'choices':[{'index':1,'delta':{'content':'Yo'},'logprobs':null}]}");
    feed(a, "{'choices':[{'index':0,'delta':{'content':'!'},'logprobs':{'content':["
            "{'token':'!','logprob':-1.5,'bytes':[33],'top_logprobs':[]}],"
            "'refusal':null}}]}");
    feed(a, "{'choices':[{'index':0,'delta':{},'logprobs':null,'finish_reason':'stop'},"
            "{'index':1,'delta':{},'logprobs':null,'finish_reason':'stop'}]}");
    assert_result(a, "{'id':null,'object':'chat.completion','created':null,'model':null,"
                     "'choices':[{'index':0,'message':{'role':'assistant','content':'Hi!'},"
                     "'logprobs':{'content':["
                     "{'token':'Hi','logprob':-0.25,'bytes':[72,105],'top_logprobs':[]},"
                     "{'token':'!','logprob':-1.5,'bytes':[33],'top_logprobs':[]}],"
                     "'refusal':null},'finish_reason':'stop'},"
                     "{'index':1,'message':{'role':'assistant','content':'Yo'},"
                     "'logprobs':null,'finish_reason':'stop'}]}");
    assembler_free(a);

    /* Refusal logprobs are concatenated the same way. */
    a = assembler_new();
    feed(a, "{'choices':[{'index':0,'delta':{'refusal':'No'},'logprobs':{'content':null,"
            "'refusal':[{'token':'No','logprob':-0.5,'bytes':[78,111],'top_logprobs':[]}]}}]}");
    feed(a, "{'choices':[{'index':0,'delta':{'refusal':'.'},'logprobs':{'content':null,"
            "'refusal':[{'token':'.','logprob':-0.75,'bytes':[46],'top_logprobs':[]}]}}]}");
    assert_result(a, "{'id':null,'object':'chat.completion','created':null,'model':null,"
                     "'choices':[{'index':0,'message':{'role':'assistant','content':null,"
                     "'refusal':'No.'},'logprobs':{'content':null,'refusal':["
                     "{'token':'No','logprob':-0.5,'bytes':[78,111],'top_logprobs':[]},"
                     "{'token':'.','logprob':-0.75,'bytes':[46],'top_logprobs':[]}]},"
                     "'finish_reason':null}]}");
    assembler_free(a);
}

static void test_complete_semantics(void **state) {
    (void)state;
    assembler *a = assembler_new();
    assert_false(assembler_complete(a));
    feed(a, "{'choices':[]}");
    feed(a, "{'id':'c'}"); /* no choices key at all */
    assert_false(assembler_complete(a));
    assert_int_equal(assembler_choices(a), 0);
    feed(a, "{'choices':[{'index':0,'delta':{'content':'x'},'finish_reason':null}]}");
    assert_int_equal(assembler_choices(a), 1);
    assert_false(assembler_complete(a));
    feed(a, "{'choices':[{'index':0,'delta':{},'finish_reason':'length'}]}");
    assert_true(assembler_complete(a));
    assert_string_equal(assembler_finish_reason(a), "length");
    /* A later null does not clear it; a later non-null replaces it. */
    feed(a, "{'choices':[{'index':0,'delta':{},'finish_reason':null}]}");
    assert_true(assembler_complete(a));
    assert_string_equal(assembler_finish_reason(a), "length");
    feed(a, "{'choices':[{'index':0,'delta':{},'finish_reason':'stop'}]}");
    assert_string_equal(assembler_finish_reason(a), "stop");
    /* A new choice without a finish reason makes it incomplete again. */
    feed(a, "{'choices':[{'index':1,'delta':{'content':'y'}}]}");
    assert_false(assembler_complete(a));
    assert_string_equal(assembler_finish_reason(a), "stop");
    assembler_free(a);
}

/* Azure: a first chunk with empty choices, prompt_filter_results and empty
 * id/model/created 0; content_filter_results inside choices. */
static void test_azure(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'choices':[],'created':0,'id':'','model':'','object':'',"
            "'prompt_filter_results':[{'prompt_index':0,'content_filter_results':{"
            "'hate':{'filtered':false,'severity':'safe'}}}]}");
    assert_int_equal(assembler_choices(a), 0);
    const char *cf = "'content_filter_results':{'hate':{'filtered':false,'severity':'safe'}}";
    const char *head = "'created':1731000000,'id':'chatcmpl-AZ','model':'gpt-4o-2024-08-06',"
                       "'object':'chat.completion.chunk','system_fingerprint':'fp_az'";
    char *c = xasprintf("{'choices':[{'content_filter_results':{},'delta':{'content':'',"
                        "'refusal':null,'role':'assistant'},'finish_reason':null,'index':0,"
                        "'logprobs':null}],%s}", head);
    feed(a, c);
    free(c);
    c = xasprintf("{'choices':[{%s,'delta':{'content':'Hi'},'finish_reason':null,'index':0,"
                  "'logprobs':null}],%s}", cf, head);
    feed(a, c);
    free(c);
    c = xasprintf("{'choices':[{'content_filter_results':{},'delta':{},"
                  "'finish_reason':'stop','index':0,'logprobs':null}],%s}", head);
    feed(a, c);
    free(c);
    assert_result(a, "{'id':'chatcmpl-AZ','object':'chat.completion','created':1731000000,"
                     "'model':'gpt-4o-2024-08-06','system_fingerprint':'fp_az',"
                     "'choices':[{'index':0,'message':{'role':'assistant','content':'Hi'},"
                     "'logprobs':null,'finish_reason':'stop'}]}");
    assembler_free(a);
}

static void test_top_level_first_non_null(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'id':null,'model':null,'created':null,'system_fingerprint':null,'choices':[]}");
    feed(a, "{'id':'first','model':'m1','created':5,'system_fingerprint':null,"
            "'service_tier':'default','choices':[]}");
    feed(a, "{'id':'second','model':'m2','created':6,'system_fingerprint':'fp_x',"
            "'service_tier':'flex','choices':[]}");
    feed(a, "{'id':'third','model':'m3','created':7,'system_fingerprint':'fp_y','choices':[]}");
    assert_result(a, "{'id':'first','object':'chat.completion','created':5,'model':'m1',"
                     "'system_fingerprint':'fp_x','service_tier':'default','choices':[]}");
    assembler_free(a);
}

/* Gemini: finish_reason and usage on the same chunk as the content. */
static void test_gemini_single_chunk(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'choices':[{'delta':{'content':'Hello there','role':'assistant'},"
            "'finish_reason':'stop','index':0}],'created':1731000001,'id':'gm-1',"
            "'model':'gemini-2.0-flash','object':'chat.completion.chunk',"
            "'usage':{'completion_tokens':2,'prompt_tokens':4,'total_tokens':6}}");
    assert_true(assembler_complete(a));
    assert_result(a, "{'id':'gm-1','object':'chat.completion','created':1731000001,"
                     "'model':'gemini-2.0-flash','choices':[{'index':0,'message':{"
                     "'role':'assistant','content':'Hello there'},'logprobs':null,"
                     "'finish_reason':'stop'}],"
                     "'usage':{'completion_tokens':2,'prompt_tokens':4,'total_tokens':6}}");
    assembler_free(a);
}

/* Ollama: empty content deltas and finish_reason "stop" on the last chunk. */
static void test_ollama(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'id':'chatcmpl-7','object':'chat.completion.chunk','created':1731000002,"
            "'model':'llama3.2','system_fingerprint':'fp_ollama','choices':[{'index':0,"
            "'delta':{'role':'assistant','content':''},'finish_reason':null}]}");
    feed(a, "{'id':'chatcmpl-7','object':'chat.completion.chunk','created':1731000002,"
            "'model':'llama3.2','system_fingerprint':'fp_ollama','choices':[{'index':0,"
            "'delta':{'role':'assistant','content':''},'finish_reason':'stop'}]}");
    assert_false(assembler_has_output(a));
    assert_true(assembler_complete(a));
    /* Content deltas came, so content is "" rather than null. */
    assert_result(a, "{'id':'chatcmpl-7','object':'chat.completion','created':1731000002,"
                     "'model':'llama3.2','system_fingerprint':'fp_ollama','choices':[{"
                     "'index':0,'message':{'role':'assistant','content':''},"
                     "'logprobs':null,'finish_reason':'stop'}]}");
    assembler_free(a);
}

static void test_invalid_input(void **state) {
    (void)state;
    assembler *a = assembler_new();
    json_object *arr = Q("[{'choices':[{'index':0,'delta':{'content':'x'}}]}]");
    json_object *str = json_object_new_string("{}");
    assert_int_equal(assembler_add(a, NULL), -1);
    assert_int_equal(assembler_add(a, arr), -1);
    assert_int_equal(assembler_add(a, str), -1);
    json_object_put(arr);
    json_object_put(str);
    assert_int_equal(assembler_choices(a), 0);
    assert_result(a, "{'id':null,'object':'chat.completion','created':null,'model':null,"
                     "'choices':[]}");
    /* Wrong-typed parts of an object chunk are skipped, not fatal. */
    feed(a, "{'choices':'nope','usage':[1]}");
    feed(a, "{'choices':[7,null,{'index':0,'delta':'text','finish_reason':3,"
            "'logprobs':'x'}]}");
    feed(a, "{'choices':[{'index':0,'delta':{'content':5,'refusal':{},"
            "'tool_calls':{'index':0}}}]}");
    assert_result(a, "{'id':null,'object':'chat.completion','created':null,'model':null,"
                     "'choices':[{'index':0,'message':{'role':'assistant','content':null},"
                     "'logprobs':null,'finish_reason':null}]}");
    assembler_free(a);
}

/* Indexes that are not whole numbers >= 0 are ignored; 127 is the last
 * choice index, and 1.0 reads as 1. */
static void test_absurd_indexes(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'choices':[{'index':-1,'delta':{'content':'neg'}},"
            "{'index':'0','delta':{'content':'str'}},"
            "{'index':1.5,'delta':{'content':'half'}}]}");
    assert_int_equal(assembler_choices(a), 0);
    feed(a, "{'choices':[{'index':127,'delta':{'content':'edge'},'finish_reason':'stop'}]}");
    feed(a, "{'choices':[{'index':1.0,'delta':{'content':'one'},'finish_reason':'stop'}]}");
    assert_int_equal(assembler_choices(a), 2);
    feed(a, "{'choices':[{'index':1,'delta':{'tool_calls':["
            "{'index':-3,'id':'bad2','function':{'name':'y','arguments':'{}'}},"
            "{'index':2,'id':'ok','type':'function','function':{'name':'z','arguments':'1'}}"
            "]}}]}");
    assert_null(assembler_error(a));
    assert_result(a, "{'id':null,'object':'chat.completion','created':null,'model':null,"
                     "'choices':["
                     "{'index':1,'message':{'role':'assistant','content':'one','tool_calls':["
                     "{'id':'ok','type':'function','function':{'name':'z','arguments':'1'}}]},"
                     "'logprobs':null,'finish_reason':'stop'},"
                     "{'index':127,'message':{'role':'assistant','content':'edge'},"
                     "'logprobs':null,'finish_reason':'stop'}]}");
    assembler_free(a);
}

/* Adds `text` expecting it to pass a limit: -2, and the message says which. */
static void feed_over(assembler *a, const char *text, const char *why) {
    json_object *chunk = Q(text);
    assert_int_equal(assembler_add(a, chunk), -2);
    json_object_put(chunk);
    assert_non_null(assembler_error(a));
    assert_string_equal(assembler_error(a), why);
}

static void test_choice_index_limit(void **state) {
    (void)state;
    const char *over[] = {"128", "5000", "2147483648", "1e300", "128.0"};
    for (size_t i = 0; i < sizeof over / sizeof *over; i++) {
        assembler *a = assembler_new();
        char *c = xasprintf("{'choices':[{'index':%s,'delta':{'content':'x'}}]}", over[i]);
        feed_over(a, c, "a choice index over 127");
        free(c);
        /* spoiled: even a good chunk is refused now */
        json_object *good = Q("{'choices':[{'index':0,'delta':{'content':'x'}}]}");
        assert_int_equal(assembler_add(a, good), -2);
        json_object_put(good);
        assembler_free(a);
    }
    /* choices without an index take their position: the 129th is too many */
    buf b = {0};
    buf_puts(&b, "{'choices':[");
    for (int i = 0; i < 129; i++) buf_printf(&b, "%s{'delta':{'content':'x'}}", i ? "," : "");
    buf_puts(&b, "]}");
    assembler *a = assembler_new();
    feed_over(a, buf_cstr(&b), "a choice index over 127");
    assembler_free(a);
    buf_free(&b);
}

static void test_tool_call_limits(void **state) {
    (void)state;
    /* 128 calls without index are fine, the 129th is not */
    assembler *a = assembler_new();
    for (int i = 0; i < 128; i++) feed_obj(a, tool_chunk(-1, "call", "f", "{}"));
    json_object *chunk = tool_chunk(-1, "call", "f", "{}");
    assert_int_equal(assembler_add(a, chunk), -2);
    json_object_put(chunk);
    assert_string_equal(assembler_error(a), "more than 128 tool calls in choice 0");
    assembler_free(a);

    /* indexed ones count the same way, and the two kinds together */
    a = assembler_new();
    for (int i = 0; i < 100; i++) feed_obj(a, tool_chunk(i, "call", "f", "{"));
    for (int i = 0; i < 100; i++) feed_obj(a, tool_chunk(i, NULL, NULL, "}")); /* the same calls */
    for (int i = 0; i < 28; i++) feed_obj(a, tool_chunk(-1, "call", "g", "{}"));
    chunk = tool_chunk(100, "call", "f", "{}");
    assert_int_equal(assembler_add(a, chunk), -2);
    json_object_put(chunk);
    assert_string_equal(assembler_error(a), "more than 128 tool calls in choice 0");
    assembler_free(a);

    /* an index of 128 or more is refused at once */
    a = assembler_new();
    chunk = tool_chunk(128, "call", "f", "{}");
    assert_int_equal(assembler_add(a, chunk), -2);
    json_object_put(chunk);
    assert_string_equal(assembler_error(a), "a tool-call index over 127 in choice 0");
    assembler_free(a);
    a = assembler_new();
    feed_over(a, "{'choices':[{'index':3,'delta':{'tool_calls':[{'index':99999,'id':'x'}]}}]}",
              "a tool-call index over 127 in choice 3");
    assembler_free(a);
}

/* Logprobs entries are kept whole: their values are counted. */
static void test_logprobs_limit(void **state) {
    (void)state;
    assembler *a = assembler_new();
    /* one chunk of 10,000 empty objects: 10,000 values and containers */
    buf b = {0};
    buf_puts(&b, "{'choices':[{'index':0,'delta':{'content':'x'},'logprobs':{'content':[");
    for (int i = 0; i < 10000; i++) buf_puts(&b, i ? ",{}" : "{}");
    buf_puts(&b, "]}}]}");
    json_object *chunk = Q(buf_cstr(&b));
    int i, rc = 0;
    for (i = 0; i < 1000 && rc == 0; i++) rc = assembler_add(a, chunk);
    assert_int_equal(rc, -2);
    /* 250,000 containers fit in 25 chunks; the 26th passes the limit */
    assert_int_equal(i, 26);
    assert_string_equal(assembler_error(a),
                        "logprobs of more than 1000000 values or 250000 objects and arrays");
    json_object_put(chunk);
    buf_free(&b);
    assembler_free(a);
}

/* A choice without "index" takes its position in the chunk's array. */
static void test_choice_without_index(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'choices':[{'delta':{'content':'a'}},{'delta':{'content':'b'}}]}");
    feed(a, "{'choices':[{'delta':{'content':'A'},'finish_reason':'stop'}]}");
    assert_int_equal(assembler_choices(a), 2);
    assert_result(a, "{'id':null,'object':'chat.completion','created':null,'model':null,"
                     "'choices':["
                     "{'index':0,'message':{'role':'assistant','content':'aA'},"
                     "'logprobs':null,'finish_reason':'stop'},"
                     "{'index':1,'message':{'role':'assistant','content':'b'},"
                     "'logprobs':null,'finish_reason':null}]}");
    assembler_free(a);
}

/* Decoded strings may hold NUL bytes (\u0000); they are kept. */
static void test_nul_in_content(void **state) {
    (void)state;
    assembler *a = assembler_new();
    feed(a, "{'choices':[{'index':0,'delta':{'content':'a\\u0000b'}}]}");
    feed(a, "{'choices':[{'index':0,'delta':{'content':'c'}}]}");
    json_object *r = assembler_result(a), *content;
    assert_true(json_object_object_get_ex(message_of(r, 0), "content", &content));
    assert_int_equal(json_object_get_string_len(content), 4);
    assert_memory_equal(json_object_get_string(content), "a\0bc", 4);
    json_object_put(r);
    assembler_free(a);
}

/* Many fragments: the text comes out whole and in order. */
static void test_many_fragments(void **state) {
    (void)state;
    assembler *a = assembler_new();
    buf want = {0};
    for (int i = 0; i < 2000; i++) {
        char *c = xasprintf("{'choices':[{'index':0,'delta':{'content':'%d,'}}]}", i);
        feed(a, c);
        free(c);
        buf_printf(&want, "%d,", i);
    }
    json_object *r = assembler_result(a);
    assert_string_equal(str_at(message_of(r, 0), "content"), buf_cstr(&want));
    json_object_put(r);
    buf_free(&want);
    assembler_free(a);
}

/* assembler_add_text() against assembler_add(): the same chunks go to one
 * assembler as text (then to assembler_add() when it says 1) and to another
 * through json-c only; the answers must be the same, and the common chunks
 * must take the text path. */
static void both(assembler *t, assembler *j, const char *text, int want) {
    int r = assembler_add_text(t, text, strlen(text));
    if (r != want) print_message("assembler_add_text gave %d for %s\n", r, text);
    assert_int_equal(r, want);
    json_object *o = json_tokener_parse(text);
    assert_non_null(o);
    int added = json_object_is_type(o, json_type_object) ? 0 : -1; /* "[1]": -1 */
    if (r == 1) assert_int_equal(assembler_add(t, o), added);
    assert_int_equal(assembler_add(j, o), added);
    json_object_put(o);
}

static void test_text_path_same_answer(void **state) {
    (void)state;
    assembler *t = assembler_new(), *j = assembler_new();
    const char *top = "\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
                      "\"model\":\"m\",\"system_fingerprint\":null";
    char c[1024];
    /* the first chunk brings the top-level fields: json-c */
    snprintf(c, sizeof c, "{%s,\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
             "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}", top);
    both(t, j, c, 1);
    snprintf(c, sizeof c, "{%s,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},"
             "\"logprobs\":null,\"finish_reason\":null}]}", top);
    both(t, j, c, 0);
    /* every escape, a surrogate pair, a NUL */
    both(t, j, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\" l1\\nl2 \\\"q\\\" \\u00e9 "
               "\\ud83d\\ude00 \\t \\/ \\\\ \\b\\f\\r \\u0000 end\"}}]}", 0);
    both(t, j, " { \"choices\" : [ { \"index\" : 0 , \"delta\" : { \"role\" : \"user\" , "
               "\"content\" : \"spaced\" } } ] , \"usage\" : null , \"service_tier\" : null } ", 0);
    both(t, j, "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"second\"}}]}", 0);
    both(t, j, "{\"choices\":[{\"index\":2,\"delta\":{\"role\":\"assistant\"}}]}", 0);
    both(t, j, "{\"choices\":[{\"index\":2,\"delta\":{}}]}", 0);
    /* other forms: json-c */
    both(t, j, "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}", 1);
    both(t, j, "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"x\"}}],\"obfuscation\":\"ab\"}", 1);
    both(t, j, "{\"choices\":[{\"index\":1,\"delta\":{\"cont\\u0065nt\":\"y\"}}]}", 1);
    both(t, j, "{\"choices\":[{\"index\":1.0,\"delta\":{\"content\":\"z\"}}]}", 1);
    both(t, j, "{\"choices\":[{\"index\":1,\"delta\":{\"content\":null}}]}", 1);
    both(t, j, "{\"choices\":[{\"delta\":{\"content\":\"no index\"}}]}", 1);
    both(t, j, "{\"choices\":[{\"index\":1,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"t\","
               "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}", 1);
    both(t, j, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}},"
               "{\"index\":1,\"delta\":{\"content\":\"b\"}}]}", 1);
    both(t, j, "{\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,"
               "\"total_tokens\":3}}", 1);
    both(t, j, "{\"model\":\"other\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"!\"}}]}", 0);
    both(t, j, "[1]", 1);
    both(t, j, "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"x\"}}],\"error\":{}}", 1);

    json_object *rt = assembler_result(t), *rj = assembler_result(j);
    if (!json_object_equal(rt, rj))
        print_message("text: %s\njson-c: %s\n", json_object_to_json_string(rt),
                      json_object_to_json_string(rj));
    assert_true(json_object_equal(rt, rj));
    assert_int_equal(assembler_has_output(t), assembler_has_output(j));
    assert_int_equal(assembler_choices(t), assembler_choices(j));
    json_object_put(rt);
    json_object_put(rj);
    assembler_free(t);
    assembler_free(j);
}

/* A spoiled assembler says so on the text path too. */
static void test_text_path_spoiled(void **state) {
    (void)state;
    assembler *a = assembler_new();
    json_object *o = json_tokener_parse("{\"choices\":[{\"index\":500,\"delta\":{}}]}");
    assert_int_equal(assembler_add(a, o), -2);
    json_object_put(o);
    const char *c = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}";
    assert_int_equal(assembler_add_text(a, c, strlen(c)), -2);
    assembler_free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_text_path_same_answer),
        cmocka_unit_test(test_text_path_spoiled),
        cmocka_unit_test(test_plain_content),
        cmocka_unit_test(test_role),
        cmocka_unit_test(test_tool_calls_interleaved),
        cmocka_unit_test(test_tool_calls_without_index),
        cmocka_unit_test(test_tool_call_odd_arguments),
        cmocka_unit_test(test_n3_interleaved),
        cmocka_unit_test(test_sparse_choices),
        cmocka_unit_test(test_refusal),
        cmocka_unit_test(test_reasoning_content),
        cmocka_unit_test(test_reasoning_openrouter),
        cmocka_unit_test(test_usage_last_wins),
        cmocka_unit_test(test_no_usage),
        cmocka_unit_test(test_logprobs),
        cmocka_unit_test(test_complete_semantics),
        cmocka_unit_test(test_azure),
        cmocka_unit_test(test_top_level_first_non_null),
        cmocka_unit_test(test_gemini_single_chunk),
        cmocka_unit_test(test_ollama),
        cmocka_unit_test(test_invalid_input),
        cmocka_unit_test(test_absurd_indexes),
        cmocka_unit_test(test_choice_index_limit),
        cmocka_unit_test(test_tool_call_limits),
        cmocka_unit_test(test_logprobs_limit),
        cmocka_unit_test(test_choice_without_index),
        cmocka_unit_test(test_nul_in_content),
        cmocka_unit_test(test_many_fragments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
