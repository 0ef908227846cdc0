/* jobpeek.h — a few top-level strings of a job text that may be cut short.
 *
 * A job longer than max_job_bytes never leaves Redis whole: the worker sees
 * only its first bytes (scripts.h, FETCH). To store its failure under its id
 * and answer its reply_to, it reads them from that excerpt with this small
 * scanner: it walks the members of the top-level object, reads a string
 * value for the names asked, skips every other value (strings, numbers,
 * nested objects and arrays, whatever their depth, without recursion), and
 * stops where the text ends or stops being JSON. Only members wholly inside
 * the excerpt are read; a name that appears twice keeps its first value. */
#ifndef CHATQ_JOBPEEK_H
#define CHATQ_JOBPEEK_H

#include <stddef.h>

typedef struct jobpeek {
    char *id;        /* each NULL when absent, cut short or not a plain */
    char *custom_id; /*   string (escapes other than \" \\ \/ refused) */
    char *reply_to;
} jobpeek;

/* Fills *out (heap strings; jobpeek_free releases them). */
void jobpeek_read(const char *text, size_t len, jobpeek *out);
void jobpeek_free(jobpeek *p);

#endif
