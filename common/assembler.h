/* assembler.h — turns the chunks of a streamed chat completion into the final
 * `chat.completion` object (docs/protocol.md §6 "response").
 *
 * Feed every parsed chunk (`chat.completion.chunk` objects, in arrival order)
 * to assembler_add(); then assembler_result() builds:
 *   {"id","object":"chat.completion","created","model",
 *    "system_fingerprint" (if any chunk had one), "service_tier" (if any),
 *    "choices":[{"index","message":{"role","content","refusal"?,
 *                "reasoning_content"? / "reasoning"?, "tool_calls"?},
 *                "logprobs","finish_reason"}...],
 *    "usage" (if any chunk carried a non-null one)}
 * Rules:
 *   - choices are keyed by their "index" (n>1 streams interleave them) and
 *     come out sorted by index;
 *   - delta.content, delta.refusal and the reasoning text
 *     (delta.reasoning_content, as DeepSeek sends it, or delta.reasoning, as
 *     OpenRouter does; the output uses the same field name) are joined per
 *     choice; content is null when no content delta came; refusal and
 *     reasoning appear only when some came;
 *   - role: the first delta.role seen, default "assistant";
 *   - tool calls merge by their "index": id, type and function.name are taken
 *     from the first delta that has them, function.arguments strings are
 *     joined; a tool-call delta without "index" is a call of its own, appended
 *     in array order;
 *   - finish_reason: the last non-null one seen for the choice (null if none);
 *   - logprobs: the "content" and "refusal" arrays of each chunk's
 *     choice.logprobs are concatenated; null when no chunk had logprobs;
 *   - top-level id/created/model/system_fingerprint/service_tier: first
 *     non-null value seen ("" and 0 count as null: Azure's first chunk has
 *     id "", model "", created 0);
 *   - usage: the last non-null "usage" object of any chunk (the usage-only
 *     final chunk with empty choices, or providers that send it on every
 *     chunk).
 * A chunk with no "choices" (or an empty array) is fine.
 *
 * Limits. An upstream is not trusted to stay within reason, so what one
 * answer may make the assembler keep is bounded (the bytes of text are
 * bounded already by the stream's, max_response_bytes):
 *   - choice indexes below ASSEMBLER_MAX_CHOICES (OpenAI allows n <= 128);
 *   - at most ASSEMBLER_MAX_TOOL_CALLS tool calls per choice, whatever their
 *     index (each delta without "index" is a call of its own), and indexes
 *     below that;
 *   - logprobs entries kept: at most ASSEMBLER_MAX_LOGPROB_VALUES JSON
 *     values in all, ASSEMBLER_MAX_LOGPROB_CONTAINERS of them objects or
 *     arrays (as common/strictjson.h counts them; the same bounds as a
 *     plain answer's, see worker/upstream.h).
 * A chunk that would pass one of them spoils the assembler: assembler_add()
 * returns -2 and assembler_error() says which limit; the answer is then
 * too large to be kept. Indexes that are not whole numbers >= 0 (a string,
 * -1, 1.5) are ignored, as they always were.
 *
 * Ownership: the assembler keeps its own references; assembler_result()
 * returns a new object the caller must json_object_put(). */
#ifndef CHATQ_ASSEMBLER_H
#define CHATQ_ASSEMBLER_H

#include <json-c/json.h>

#define ASSEMBLER_MAX_CHOICES 128
#define ASSEMBLER_MAX_TOOL_CALLS 128
#define ASSEMBLER_MAX_LOGPROB_VALUES 1000000
#define ASSEMBLER_MAX_LOGPROB_CONTAINERS 250000

typedef struct assembler assembler;

assembler *assembler_new(void);
/* Adds one chunk. Returns 0, -1 when `chunk` is not a JSON object (the
 * assembler is unchanged then), or -2 when it passes a limit (above; this
 * and every later call return -2). */
int assembler_add(assembler *a, json_object *chunk);
/* Adds one chunk given as its text, which must be strict JSON (common/
 * strictjson.h passed it). The common chunk of a stream is read straight
 * from the text, without json-c, whose objects (a hash table each) were
 * most of what a stream cost: one choice with an integer "index", a delta
 * holding only "content" and/or "role" strings, "finish_reason" and
 * "logprobs" null or absent, "usage" null or absent, "object", and only
 * top-level fields this assembler has taken already (or null). Returns
 * what assembler_add() would (0, or -2 past a limit), or 1 when the chunk
 * is of another form: nothing was changed, parse it and assembler_add() it. */
int assembler_add_text(assembler *a, const char *text, size_t len);
/* Which limit a chunk passed ("more than 128 tool calls in choice 0"), or
 * NULL while none was. Borrowed. */
const char *assembler_error(const assembler *a);
/* Number of choices seen so far. */
int assembler_choices(const assembler *a);
/* 1 when at least one choice was seen and every choice seen has a finish
 * reason: the answer is complete even without "[DONE]". */
int assembler_complete(const assembler *a);
/* The finish reason of the lowest-index choice, or NULL. Borrowed. */
const char *assembler_finish_reason(const assembler *a);
/* The last usage object seen, or NULL. Borrowed. */
json_object *assembler_usage(const assembler *a);
/* 1 once any content, refusal, reasoning or tool-call text has arrived. */
int assembler_has_output(const assembler *a);
json_object *assembler_result(const assembler *a);
void assembler_free(assembler *a);

#endif
