/* fuzz_batchin.c — libFuzzer target for the batch input parser
 * (cli/batchin.h).
 *
 * The input is a whole batch file (JSON lines). It goes into a memfd
 * (fuzz_memfd.h), which batchin_open() takes for a regular file, and
 * batchin_validate() checks every line as `chatq batch` does (printing the
 * bad ones: run with -close_fd_mask=2). Then the input is also handed to
 * batchin_build() as one line, newlines and all, for the line parser
 * alone. max_job_bytes is 4 KiB (so lines past max_line, 12 KiB, are
 * within -max_len): every size limit is reachable. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/batchin.h"
#include "tests/fuzz/fuzz_memfd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_memfd_write(data, size);
    batchin in;
    memset(&in, 0, sizeof in);
    if (batchin_open(&in, path, 4096) != 0) abort();
    in.batch_id = "batch-fuzz";
    in.reply_to = "chatq:batch:batch-fuzz:out";
    in.tenant = size % 2 ? "fuzz-tenant" : NULL; /* with and without --tenant */
    (void)batchin_validate(&in);

    char err[512];
    batchin_info info;
    memset(&info, 0, sizeof info);
    memset(err, 'x', sizeof err);
    char *job = batchin_build(&in, (const char *)data, size, 1, err, sizeof err, &info);
    if (!job && (!memchr(err, '\0', sizeof err) || !err[0])) abort(); /* a message */
    free(job);
    batchin_info_free(&info);
    batchin_close(&in);
    return 0;
}
