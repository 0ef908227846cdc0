/* table.h — aligned text tables for the CLI's human-readable output.
 *
 * A table has a fixed number of columns, a header row, and cells added left
 * to right, top to bottom. table_print() pads every column to its widest
 * cell (counted in bytes), two spaces apart, right-aligning the columns
 * marked so (numbers); the last column is not padded, so no line ends in
 * spaces. Cells often hold text read from Redis, which anyone can write:
 * each is printed on one line (line breaks and tabs as spaces) and, when
 * the stream is a terminal, made harmless for it (output_term_safe(),
 * common/output.h), so a cell cannot break the table or move the cursor.
 *
 * Ownership: the table owns its cells (table_addf() formats a new one) and
 * frees them in table_free(); headers and alignment flags are borrowed. */
#ifndef CHATQ_CLI_TABLE_H
#define CHATQ_CLI_TABLE_H

#include <stddef.h>
#include <stdio.h>

typedef struct table {
    int ncols;
    const char *const *headers;
    const int *right;   /* per column, 1 = right-aligned; NULL = all left */
    char **cells;
    size_t ncells, cap;
} table;

void table_init(table *t, int ncols, const char *const *headers, const int *right);
void table_addf(table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void table_print(const table *t, FILE *f);
void table_free(table *t);

#endif
