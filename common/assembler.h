/* assembler.h — turns the chunks of a streamed chat completion into the final
 * `chat.completion` object (SPEC §6 "response").
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
 * Ownership: the assembler keeps its own references; assembler_result()
 * returns a new object the caller must json_object_put(). */
#ifndef CHATQ_ASSEMBLER_H
#define CHATQ_ASSEMBLER_H

#include <json-c/json.h>

typedef struct assembler assembler;

assembler *assembler_new(void);
/* Adds one chunk. Returns 0, or -1 when `chunk` is not a JSON object (the
 * assembler is unchanged then). */
int assembler_add(assembler *a, json_object *chunk);
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
