/* table.c — aligned text tables; see table.h. */
#include "cli/table.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/output.h"

void table_init(table *t, int ncols, const char *const *headers, const int *right) {
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
    t->headers = headers;
    t->right = right;
}

void table_addf(table *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = xmalloc(n > 0 ? (size_t)n + 1 : 1);
    s[0] = '\0';
    if (n > 0) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (t->ncells == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 32;
        t->cells = xrealloc(t->cells, t->cap * sizeof *t->cells);
    }
    t->cells[t->ncells++] = s;
}

static void table_line(const table *t, FILE *f, const size_t *w, const char *const *row,
                       size_t n) {
    for (size_t c = 0; c < n; c++) {
        const char *s = row[c];
        size_t pad = w[c] - strlen(s);
        int last = c + 1 == n, right = t->right && t->right[c];
        if (c) fputs("  ", f);
        if (right) fprintf(f, "%*s", (int)pad, "");
        fputs(s, f);
        if (!right && !last) fprintf(f, "%*s", (int)pad, "");
    }
    fputc('\n', f);
}

/* A cell as shown: on one line (line breaks and tabs become spaces, so no
 * cell breaks a row or a column) and, on a terminal, made harmless by
 * output_term_safe(). Malloc'd. */
static char *table_shown(const char *s, int tty) {
    buf flat = {0}, out = {0};
    for (; *s; s++) buf_putc(&flat, *s == '\n' || *s == '\r' || *s == '\t' ? ' ' : *s);
    if (!tty) return buf_steal(&flat);
    output_term_safe(&out, buf_cstr(&flat), flat.len);
    buf_free(&flat);
    return buf_steal(&out);
}

void table_print(const table *t, FILE *f) {
    size_t nc = (size_t)t->ncols;
    size_t *w = xcalloc(nc, sizeof *w);
    char **shown = xcalloc(t->ncells + 1, sizeof *shown);
    int tty = isatty(fileno(f));
    for (size_t c = 0; c < nc; c++) w[c] = strlen(t->headers[c]);
    for (size_t i = 0; i < t->ncells; i++) {
        shown[i] = table_shown(t->cells[i], tty);
        size_t l = strlen(shown[i]);
        if (l > w[i % nc]) w[i % nc] = l;
    }
    table_line(t, f, w, t->headers, nc);
    for (size_t i = 0; i < t->ncells; i += nc)
        table_line(t, f, w, (const char *const *)shown + i,
                   t->ncells - i < nc ? t->ncells - i : nc);
    for (size_t i = 0; i < t->ncells; i++) free(shown[i]);
    free(shown);
    free(w);
}

void table_free(table *t) {
    for (size_t i = 0; i < t->ncells; i++) free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}
