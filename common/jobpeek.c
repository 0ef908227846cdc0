/* jobpeek.c — top-level strings of a cut-short job text; see jobpeek.h.
 *
 * The scanner keeps one position and never looks past `end`: every step
 * that would need a byte beyond it gives up, which is how a cut excerpt
 * ends the walk. Values are skipped by counting brackets outside strings. */
#include "common/jobpeek.h"

#include <stdlib.h>
#include <string.h>

#include "common/buf.h"

typedef struct jp {
    const char *p, *end;
} jp;

static void jp_ws(jp *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* At a '"': moves past the closing quote. Returns 0, or -1 when the string
 * does not end inside the text. *plain says whether it holds only escapes
 * that decode to themselves (\" \\ \/) and no control byte. */
static int jp_skip_string(jp *s, int *plain) {
    *plain = 1;
    for (s->p++; s->p < s->end; s->p++) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            return 0;
        }
        if (c < 0x20) *plain = 0;
        if (c == '\\') {
            if (++s->p >= s->end) return -1;
            if (*s->p != '"' && *s->p != '\\' && *s->p != '/') *plain = 0;
        }
    }
    return -1;
}

/* The string at s->p (a '"'), decoded when plain; NULL otherwise. */
static char *jp_string(jp *s) {
    const char *start = s->p + 1;
    int plain;
    if (jp_skip_string(s, &plain) != 0 || !plain) return NULL;
    size_t n = (size_t)(s->p - 1 - start);
    char *out = xmalloc(n + 1), *o = out;
    for (const char *q = start; q < start + n; q++) {
        if (*q == '\\') q++;
        *o++ = *q;
    }
    *o = '\0';
    return out;
}

/* Skips one value of any kind. Returns 0, or -1 when it is cut short. */
static int jp_skip_value(jp *s) {
    int depth = 0, plain;
    while (s->p < s->end) {
        char c = *s->p;
        if (c == '"') {
            if (jp_skip_string(s, &plain) != 0) return -1;
            if (depth == 0) return 0;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0) return 0; /* the end of the enclosing object */
            if (--depth == 0) {
                s->p++;
                return 0;
            }
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
            return 0; /* the end of a number, true, false or null */
        }
        s->p++;
    }
    return -1;
}

static char **jp_slot(jobpeek *out, const char *name) {
    if (strcmp(name, "id") == 0) return &out->id;
    if (strcmp(name, "custom_id") == 0) return &out->custom_id;
    if (strcmp(name, "reply_to") == 0) return &out->reply_to;
    return NULL;
}

void jobpeek_read(const char *text, size_t len, jobpeek *out) {
    memset(out, 0, sizeof *out);
    jp s = {text, text + len};
    jp_ws(&s);
    if (s.p >= s.end || *s.p != '{') return;
    s.p++;
    for (;;) {
        jp_ws(&s);
        if (s.p >= s.end || *s.p != '"') return;
        char *name = jp_string(&s);
        jp_ws(&s);
        if (!name || s.p >= s.end || *s.p != ':') {
            free(name);
            return;
        }
        s.p++;
        jp_ws(&s);
        char **slot = jp_slot(out, name);
        free(name);
        if (s.p >= s.end) return;
        if (slot && *s.p == '"') {
            char *v = jp_string(&s);
            if (!v) return;
            if (*slot)
                free(v); /* the first one counts */
            else
                *slot = v;
        } else if (jp_skip_value(&s) != 0) {
            return;
        }
        jp_ws(&s);
        if (s.p >= s.end || *s.p != ',') return;
        s.p++;
    }
}

void jobpeek_free(jobpeek *p) {
    free(p->id);
    free(p->custom_id);
    free(p->reply_to);
    memset(p, 0, sizeof *p);
}
