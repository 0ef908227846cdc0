/* notify.c — sd_notify(3) in a few lines; see notify.h.
 *
 * An abstract socket name starts with '@' in $NOTIFY_SOCKET and with a NUL
 * byte in sun_path; its address length must count exactly the name's bytes
 * (no trailing NUL), or the kernel looks up another name. */
#include "daemon/notify.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

void notify_init(notify *n) {
    memset(n, 0, sizeof *n);
    n->fd = -1;
    const char *path = getenv("NOTIFY_SOCKET");
    const char *wd = getenv("WATCHDOG_USEC");
    const char *wd_pid = getenv("WATCHDOG_PID");
    if (wd && (!wd_pid || atol(wd_pid) == (long)getpid())) n->watchdog_usec = strtoull(wd, NULL, 10);
    if (path && (path[0] == '/' || path[0] == '@') && strlen(path) < sizeof n->path) {
        snprintf(n->path, sizeof n->path, "%s", path);
        n->abstract = path[0] == '@';
        n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (n->fd < 0) log_warn("notify_socket_failed", "path=%s", log_quote(path));
    }
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

int notify_send(notify *n, const char *msg) {
    if (n->fd < 0) return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(n->path);
    memcpy(sa.sun_path, n->path, len);
    if (n->abstract) sa.sun_path[0] = '\0';
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (n->abstract ? 0 : 1));
    ssize_t w = sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    if (w < 0) {
        log_debug("notify_failed", "msg=%s", log_quote(msg));
        return -1;
    }
    return 0;
}

int notify_reloading(notify *n) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    return notify_send(n, msg);
}

void notify_close(notify *n) {
    if (n->fd >= 0) close(n->fd);
    n->fd = -1;
}
